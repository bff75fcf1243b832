"""The real server process over real HTTP on loopback: batching across tasks, limits, hot-adding, the
README's curl commands as written, and prompt files it cannot serve listed as failed."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from ptune.storage.prompt_files import load_prompt, save_prompt
from ptune.cli import build_parser
from ptune.config import MethodConfig
from ptune.data import TaggedExample, TextExample
from ptune.infer.predict import predict
from ptune.model.prompt_model import PromptModel

TEXTS = ["a gripping , beautifully acted film", "dull and overlong", "not bad at all", "the worst thing this year"]


def make_prompt(backbone, folder, name, method, *, tagging=False, seed=0):
    labels = ["O", "B-PER", "I-PER", "B-LOC"] if tagging else ["negative", "positive"]
    model = PromptModel(backbone, MethodConfig(method=method, length=4), labels, kind="tagging" if tagging else "classification")
    model.initialise(seed=seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(torch.randn_like(p))
    path = folder / f"{name}.safetensors"
    save_prompt(path, model, task_name=name, metric="entity_f1" if tagging else "accuracy")
    return path


def request(port, path, body=None, *, raw: bytes | None = None, headers=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(minilm, tiny_bert_dir, tmp_path_factory, ptune_server):
    from ptune.model.backbones import load_backbone

    folder = tmp_path_factory.mktemp("prompts")
    make_prompt(minilm, folder, "sentiment", "deep", seed=1)
    make_prompt(minilm, folder, "soft", "prompt", seed=2)
    make_prompt(minilm, folder, "ner", "ptuning", tagging=True, seed=3)
    # Served by name order: the first file is corrupt and the last was trained on another backbone; the
    # backbone comes from the first file that reads, and both others are listed as failed.
    (folder / "aaa_corrupt.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    make_prompt(load_backbone(str(tiny_bert_dir)), folder, "zz_other_backbone", "deep", seed=4)
    with ptune_server(folder, "--max-texts", "16", "--max-text-chars", "500", "--max-body-bytes", "20000") as port:
        yield port, folder


def reference(minilm, folder, name, texts):
    model = load_prompt(folder / f"{name}.safetensors", minilm)
    examples = [TaggedExample(tuple(t.split())) for t in texts] if model.kind.name == "tagging" else [TextExample(t) for t in texts]
    return predict(model, examples)


def test_default_bind_is_loopback():
    assert build_parser().parse_args(["serve", "somewhere"]).host == "127.0.0.1"


def test_health_tasks_and_docs(server):
    port, _ = server
    status, body = request(port, "/health")
    assert status == 200 and body["status"] == "ok"
    status, body = request(port, "/tasks")
    assert sorted(t["task"] for t in body["tasks"]) == ["ner", "sentiment", "soft"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json") as response:
        assert "/predict" in json.loads(response.read())["paths"]


def test_predict_one_task_matches_in_process(server, minilm):
    port, folder = server
    status, body = request(port, "/predict", {"task": "sentiment", "texts": TEXTS})
    assert status == 200
    assert [p["label"] for p in body["predictions"]] == reference(minilm, folder, "sentiment", TEXTS)


def test_predict_mixed_tasks_in_one_request(server, minilm):
    port, folder = server
    items = [{"task": "soft", "text": TEXTS[0]}, {"task": "ner", "text": "Peter Blackburn visited Brussels"},
             {"task": "sentiment", "text": TEXTS[1]}]
    status, body = request(port, "/predict", {"items": items})
    assert status == 200
    got = body["predictions"]
    assert got[0]["label"] == reference(minilm, folder, "soft", [TEXTS[0]])[0]
    assert got[1]["tags"] == reference(minilm, folder, "ner", ["Peter Blackburn visited Brussels"])[0]
    assert got[2]["label"] == reference(minilm, folder, "sentiment", [TEXTS[1]])[0]


def test_concurrent_requests_for_different_tasks(server, minilm):
    port, folder = server
    jobs = [("sentiment", TEXTS[i % 4 :]) for i in range(4)] + [("soft", TEXTS[: i + 1]) for i in range(4)]
    before = request(port, "/health")[1]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: request(port, "/predict", {"task": job[0], "texts": job[1]}), jobs))
    after = request(port, "/health")[1]
    assert after["requests"] - before["requests"] == len(jobs)
    assert after["batches"] - before["batches"] < len(jobs)  # requests for different tasks shared passes
    for (task, texts), (status, body) in zip(jobs, answers):
        assert status == 200
        assert [p["label"] for p in body["predictions"]] == reference(minilm, folder, task, texts)


@pytest.mark.parametrize("raw, status, words", [
    (b'{"task": "sentiment", "texts": ["x"', 400, "malformed JSON"),
    (b'[1, 2]', 422, "invalid request"),
    (json.dumps({"task": "nope", "texts": ["x"]}).encode(), 404, "unknown task"),
    (json.dumps({"task": "../../etc/passwd", "texts": ["x"]}).encode(), 404, "unknown task"),
    (json.dumps({"task": "sentiment", "texts": ["x"] * 17}).encode(), 413, "limit is 16"),
    (json.dumps({"task": "sentiment", "texts": ["x" * 501]}).encode(), 413, "limit is 500"),
    (json.dumps({"task": "sentiment", "texts": []}).encode(), 422, "empty"),
    (json.dumps({"items": [{"task": "soft"}]}).encode(), 422, "task and text"),
    (b"x" * 30000, 413, "over 20000 bytes"),
])
def test_bad_input_gets_a_clear_json_error(server, raw, status, words):
    port, _ = server
    got, body = request(port, "/predict", raw=raw)
    assert got == status and words in body["error"]
    assert request(port, "/health")[0] == 200  # still serving


def test_hot_added_prompt_is_served_without_restart(server, minilm, tmp_path):
    port, folder = server
    path = make_prompt(minilm, tmp_path, "late", "deep", seed=9)
    shutil.copy(path, folder / "late.safetensors")
    status, body = request(port, "/predict", {"task": "late", "texts": TEXTS[:2]})
    assert status == 200
    assert [p["label"] for p in body["predictions"]] == reference(minilm, folder, "late", TEXTS[:2])


def test_a_corrupt_prompt_file_is_reported_not_fatal(server):
    port, folder = server
    (folder / "broken.safetensors").write_bytes(b"not a safetensors file")
    status, body = request(port, "/tasks")
    assert status == 200 and "broken" in body["failed"] and "broken" not in [t["task"] for t in body["tasks"]]


def test_unservable_files_are_listed_as_failed_and_the_rest_served(server):
    port, _ = server
    for path in ("/tasks", "/health"):
        status, body = request(port, path)
        assert status == 200 and {"aaa_corrupt", "zz_other_backbone"} <= set(body["failed"]), body
    assert "trained for backbone" in request(port, "/health")[1]["failed"]["zz_other_backbone"]


def server_section() -> str:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Server\n", 1)[1].split("\n## ", 1)[0]


def test_readme_curl_commands_work_as_written(server):
    """The README's curl lines, run as written but for the port: curl -d sends a form content type, and
    the server reads the JSON all the same; the answer the README shows has the keys a real one has."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: the README's commands need it")
    port, _ = server
    section = server_section()
    commands = [line for line in section.splitlines() if line.startswith("curl ")]
    assert len(commands) >= 3
    answers = []
    for command in commands:
        argv = [part.replace("localhost:8000", f"localhost:{port}") for part in shlex.split(command)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stderr)
        answers.append(json.loads(done.stdout))
        assert "error" not in answers[-1] and answers[-1]["predictions"], (command, answers[-1])
    shown = [json.loads(line[2:])["predictions"][0] for line in section.splitlines() if line.startswith("# {")]
    assert shown
    for expected in shown:
        real = [a["predictions"][0] for a in answers if set(a["predictions"][0]) == set(expected)]
        assert any(len(r["probabilities"]) == len(expected["probabilities"]) for r in real), (expected, answers)
