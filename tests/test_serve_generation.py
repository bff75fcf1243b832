"""Generation over real HTTP on loopback (``serve.generation``): ``POST /generate`` with tasks mixed in one
request and across concurrent requests, server-sent events, the OpenAI-compatible ``/v1/completions``
through the official ``openai`` client (streaming included), clear 400/404 errors, and the README's
generation commands as written. Every answer is checked against in-process generation."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import torch

from ptune.config import MethodConfig
from ptune.infer.decoding import prompt_features
from ptune.infer.generate import Generation
from ptune.model.prompt_model import PromptModel
from ptune.storage.prompt_files import load_prompt, save_prompt

TEXTS = ["The capital of France is", "Once upon a time, a small dog", "Water boils at",
         "My favourite recipe for a quick weeknight dinner starts with"]
TASKS = {  # the README's examples use "story" and "qa"
    "story": {"method": "prompt", "length": 4},
    "qa": {"method": "ptuning", "length": 3, "encoder": "mlp", "template": "[P] Question: {text} [P]*2 Answer:"},
    "deep": {"method": "deep", "length": 4},
    "top": {"method": "deep", "length": 2, "layers": "top:1"},
}


def save(backbone, folder, name, options, *, kind="classification", seed=0):
    labels = ["O", "B-PER"] if kind == "tagging" else ["negative", "positive"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the P-tuning encoder's init fit is slow with two threads on tiny models
    try:
        model = PromptModel(backbone, MethodConfig(**options), labels, kind=kind)
        model.initialise(seed=seed)
    finally:
        torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # loud prompts: a row generated with another task's prompt shows
        for p in model.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    metric = "entity_f1" if kind == "tagging" else "accuracy"
    save_prompt(folder / f"{name}.safetensors", model, task_name=name, metric=metric)


@pytest.fixture(scope="module")
def server(tiny_llama, tmp_path_factory, ptune_server):
    folder = tmp_path_factory.mktemp("generation-prompts")
    for seed, (name, options) in enumerate(TASKS.items()):
        save(tiny_llama, folder, name, options, seed=seed)
    save(tiny_llama, folder, "tags", {"method": "prompt", "length": 2}, kind="tagging")
    with ptune_server(folder, "--max-texts", "8", "--window-ms", "50") as port:
        yield port, folder


@pytest.fixture(scope="module")
def served(server, tiny_llama):
    """The served tasks, loaded in this process on the same weights: the reference."""
    return {name: load_prompt(server[1] / f"{name}.safetensors", tiny_llama) for name in TASKS}


def alone(served, task, text, **options):
    generation = Generation(served[task], [text], **options).run()
    return generation.texts[0], generation.finish[0], len(generation.ids[0])


def post(port, path, body=None, *, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def events(text: str) -> list:
    """Server-sent events: the JSON of every ``data:`` line, and the closing "[DONE]"."""
    lines = [line[len("data: "):] for line in text.split("\n\n") if line.strip()]
    assert all(not line.startswith("data: ") for line in lines) and lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]] + ["[DONE]"]


def client(port) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)


# -- POST /generate ---------------------------------------------------------------------------------------
def test_generate_mixes_tasks_in_one_request(server, served):
    port, _ = server
    tasks = ["story", "qa", "deep", "top", "qa", "story"]
    items = [{"task": task, "text": TEXTS[i % 4]} for i, task in enumerate(tasks)]
    status, body = post(port, "/generate", {"items": items, "max_new_tokens": 6})
    assert status == 200, body
    body = json.loads(body)
    assert body["batch"] == {"texts": 6, "tasks": 4}
    for item, got in zip(items, body["generations"]):
        assert (got["task"], got["text"]) == (item["task"], item["text"])
        assert (got["generated"], got["finish"], got["generated_tokens"]) == alone(served, item["task"], item["text"],
                                                                                   max_new_tokens=6)
    assert len({g["generated"] for g in body["generations"][:4]}) > 1


def test_concurrent_requests_for_different_tasks_share_batches(server, served):
    port, _ = server
    jobs = [(task, TEXTS[i % 4]) for i, task in enumerate(list(TASKS) * 2)]
    options = {"max_new_tokens": 5, "temperature": 0.9, "seed": 11}  # sampled: each row keeps its own generator
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: post(port, "/generate", {"task": job[0], "texts": [job[1]], **options}),
                                jobs))
    shared = 0
    for (task, text), (status, body) in zip(jobs, answers):
        assert status == 200, body
        body = json.loads(body)
        shared += body["batch"]["tasks"] > 1
        (got,) = body["generations"]
        assert (got["generated"], got["finish"]) == alone(served, task, text, **options)[:2]
    assert shared  # requests for different tasks ran as one batch


def test_generate_streams_server_sent_events(server, served):
    port, _ = server
    status, text = post(port, "/generate", {"task": "deep", "texts": TEXTS[:2], "max_new_tokens": 8, "stream": True})
    assert status == 200
    chunks = events(text)
    finals = [c for c in chunks[:-1] if "generated" in c]
    for index in (0, 1):
        joined = "".join(c["piece"] for c in chunks[:-1] if "piece" in c and c["index"] == index)
        assert joined == finals[index]["generated"] == alone(served, "deep", TEXTS[index], max_new_tokens=8)[0]


# -- POST /v1/completions through the official client ----------------------------------------------------
def test_openai_client_completions(server, served):
    port, _ = server
    api = client(port)
    done = api.completions.create(model="qa", prompt=TEXTS[0], max_tokens=7, temperature=0)
    text, finish, count = alone(served, "qa", TEXTS[0], max_new_tokens=7)
    assert done.object == "text_completion" and done.model == "qa" and done.id.startswith("cmpl-")
    assert done.choices[0].text == text
    assert done.choices[0].finish_reason == ("length" if finish == "length" else "stop")
    prompt_tokens = sum(1 for p in prompt_features(served["qa"], [TEXTS[0]])[0].prompt_index if p < 0)
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (prompt_tokens, count)
    assert done.usage.total_tokens == prompt_tokens + count
    sampled = api.completions.create(model="story", prompt=TEXTS[1], max_tokens=6, temperature=0.8, top_p=0.9, seed=3)
    assert sampled.choices[0].text == alone(served, "story", TEXTS[1], max_new_tokens=6, temperature=0.8, top_p=0.9,
                                            seed=3)[0]
    many = api.completions.create(model="top", prompt=TEXTS[:3], max_tokens=4, temperature=0)
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert [c.text for c in many.choices] == [alone(served, "top", t, max_new_tokens=4)[0] for t in TEXTS[:3]]
    assert {"story", "qa", "deep", "top"} == {m.id for m in api.models.list()}  # "tags" cannot generate


def test_openai_client_streams(server, served):
    port, _ = server
    api = client(port)
    full = alone(served, "deep", TEXTS[3], max_new_tokens=10)[0]
    stop = full[len(full) // 2:][:3]  # from the middle: pieces come before it
    chunks = list(api.completions.create(model="deep", prompt=TEXTS[3], max_tokens=10, temperature=0, stop=[stop],
                                         stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].text for c in chunks if c.choices]
    assert len(pieces) >= 2 and "".join(pieces) == full[: full.index(stop)]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_errors(server):
    port, _ = server
    api = client(port)
    with pytest.raises(openai.NotFoundError, match="unknown task 'nope'"):
        api.completions.create(model="nope", prompt="hi")
    for options, words in [({"n": 2}, "n must be 1"), ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"),
                           ({"max_tokens": 0}, "max_new_tokens"), ({"logprobs": 2}, "logprobs"),
                           ({"max_tokens": 100000}, "at most")]:
        with pytest.raises(openai.BadRequestError, match=re.escape(words)):
            api.completions.create(model="story", prompt="hi", **options)
    with pytest.raises(openai.BadRequestError, match="'tags' cannot generate: it is a tagging task"):
        api.completions.create(model="tags", prompt="hi")
    status, body = post(port, "/v1/completions", raw=b'{"model": "story"')
    assert status == 400 and json.loads(body)["error"]["message"].startswith("malformed JSON")


@pytest.mark.parametrize("body, status, words", [
    ({"task": "nope", "texts": ["x"]}, 404, "unknown task 'nope'"),
    ({"task": "../../etc/passwd", "texts": ["x"]}, 404, "unknown task"),
    ({"task": "tags", "texts": ["x"]}, 400, "cannot generate"),
    ({"task": "story", "texts": []}, 400, "empty"),
    ({"task": "story", "texts": ["  "]}, 400, "text 0 is empty"),
    ({"task": "story", "texts": ["x"] * 9}, 413, "limit is 8"),
    ({"task": "story", "texts": ["x"], "top_k": 0}, 400, "top_k (--top-k) must be an integer >= 1"),
    ({"task": "story", "texts": ["x"], "max_new_tokens": 5000}, 400, "at most 2048"),
    ({"task": "story", "texts": ["x"], "temprature": 1}, 400, "temprature"),
    ({"items": [{"task": "story"}]}, 400, "task and text"),
])
def test_generate_errors(server, body, status, words):
    port, _ = server
    got, answer = post(port, "/generate", body)
    assert got == status and words in json.loads(answer)["error"], answer
    assert post(port, "/generate", {"task": "story", "texts": ["x"], "max_new_tokens": 1})[0] == 200  # still serving


def test_an_encoder_server_refuses_generation(minilm, tmp_path, ptune_server):
    save(minilm, tmp_path, "sentiment", {"method": "prompt", "length": 2})
    with ptune_server(tmp_path) as port:
        status, body = post(port, "/generate", {"task": "sentiment", "texts": ["a triumph"]})
        assert status == 400 and "cannot generate" in body and "not a causal LM" in body and "/predict" in body
        with pytest.raises(openai.BadRequestError, match="not a causal LM"):
            client(port).completions.create(model="sentiment", prompt="hi")
        assert client(port).models.list().data == []


# -- the README, as written ------------------------------------------------------------------------------
def generation_section() -> str:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Server: generation", 1)[1].split("\n## ", 1)[0]


def test_readme_generation_commands_work_as_written(server):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: the README's commands need it")
    port, _ = server
    section = generation_section()
    commands = [line for line in section.splitlines() if line.startswith("curl ")]
    assert len(commands) >= 2
    for command in commands:
        argv = [part.replace("localhost:8000", f"localhost:{port}") for part in shlex.split(command)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stderr)
        answer = events(done.stdout) if '"stream": true' in command else json.loads(done.stdout)
        assert "error" not in answer, (command, answer)
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code.replace("localhost:8000", f"localhost:{port}"), "<README generation>", "exec"), namespace)
    assert namespace["completion"].choices[0].text and namespace["pieces"]

