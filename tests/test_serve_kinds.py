"""The server beyond texts, over real loopback HTTP: QA items (question and context) and SRL items (a
predicate word) answered in the same request and pass as the other tasks, in request order and equal to
``ptune predict``'s records; prompt files of kinds it cannot serve listed with the reason; items that do
not fit their task refused naming it; and ``GET /tasks/{task}/neighbours`` equal to ``analysis.interpret``."""

from __future__ import annotations

import pytest
from playground_steps import CONTEXT, QUESTION, SENTENCE, call, make_prompts

from ptune.analysis.interpret import nearest_tokens
from ptune.config import MethodConfig
from ptune.data import TaggedExample, TextExample
from ptune.data.squad import QAExample
from ptune.infer.predict import predict
from ptune.model.prompt_model import PromptModel
from ptune.storage.prompt_files import load_prompt, save_prompt

PROMPTS = {
    "sentiment": ("classification", "deep", ["negative", "positive"], "accuracy", 1),
    "topic": ("classification", "prompt", ["world", "sports", "business", "science"], "accuracy", 2),
    "ner": ("tagging", "deep", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "entity_f1", 3),
    "squad": ("qa", "prompt", [], "squad", 4),
    "srl": ("tagging", "prompt", ["O", "B-V", "B-ARG0", "I-ARG0", "B-ARG1", "I-ARG1"], "srl_f1", 5),
}


@pytest.fixture(scope="module")
def server(minilm, tmp_path_factory, ptune_server):
    folder = make_prompts(minilm, tmp_path_factory.mktemp("kinds"), PROMPTS)
    choices = PromptModel(minilm, MethodConfig(method="prompt", length=2), [], kind="multiple_choice")
    save_prompt(folder / "choices.safetensors", choices, task_name="choices", metric="choice_accuracy")
    with ptune_server(folder, "--max-text-chars", "300") as port:
        yield port, folder


def same(got, want) -> bool:
    """Records equal but for float rounding (a padded mixed batch and a batch alone differ in the last bits)."""
    if isinstance(want, float):
        return got == pytest.approx(want, rel=1e-4, abs=1e-5)
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(same(g, w) for g, w in zip(got, want))
    return got == want


def records(minilm, folder, name, examples):
    """What ``ptune predict`` prints for ``examples`` with the prompt file ``name``."""
    return predict(load_prompt(folder / f"{name}.safetensors", minilm), examples, scores=True)


def test_qa_and_srl_items_share_the_request_and_pass_in_order(server, minilm):
    port, folder = server
    words = SENTENCE.split()
    items = [{"task": "squad", "question": QUESTION, "context": CONTEXT},
             {"task": "sentiment", "text": SENTENCE},
             {"task": "srl", "text": SENTENCE, "predicate": 2},
             {"task": "squad", "question": "When did he fly?", "context": CONTEXT},
             {"task": "ner", "text": SENTENCE},
             {"task": "srl", "text": SENTENCE, "predicate": 5}]
    before = call(port, "/health")[1]
    status, body = call(port, "/predict", {"items": items})
    assert status == 200, body
    after = call(port, "/health")[1]
    assert after["batches"] - before["batches"] == 1 and after["mixed_batches"] - before["mixed_batches"] == 1
    got = body["predictions"]
    qa = records(minilm, folder, "squad", [QAExample("", QUESTION, CONTEXT),
                                           QAExample("", "When did he fly?", CONTEXT)])
    assert same([got[0], got[3]], qa)
    assert got[0]["answer"] == CONTEXT[got[0]["start"] : got[0]["end"]] != ""
    assert same(got[1], records(minilm, folder, "sentiment", [TextExample(SENTENCE)])[0])
    srl = records(minilm, folder, "srl", [TaggedExample(tuple(words), predicate=2),
                                          TaggedExample(tuple(words), predicate=5)])
    assert same([got[2], got[5]], srl)
    assert got[2]["tag_probabilities"] != got[5]["tag_probabilities"]  # the predicate is part of the input
    assert same(got[4], records(minilm, folder, "ner", [TaggedExample(tuple(words))])[0])


def test_a_qa_task_alone_and_its_listing(server):
    port, _ = server
    status, body = call(port, "/predict", {"items": [{"task": "squad", "question": QUESTION, "context": CONTEXT}]})
    assert status == 200 and set(body["predictions"][0]) >= {"answer", "score", "start", "end"}
    listed = {t["task"]: t for t in call(port, "/tasks")[1]["tasks"]}
    assert listed["squad"]["kind"] == "qa" and listed["srl"]["metric"] == "srl_f1"


def test_kinds_it_cannot_serve_are_listed_with_the_reason(server):
    port, _ = server
    failed = call(port, "/tasks")[1]["failed"]
    assert "multiple_choice prompts are not served" in failed["choices"] and "ptune predict" in failed["choices"]
    status, body = call(port, "/predict", {"items": [{"task": "choices", "text": "x"}]})
    assert status == 404 and "multiple_choice prompts are not served" in body["error"]


@pytest.mark.parametrize("item, status, fragment", [
    ({"task": "squad", "text": "Where?"}, 422, "items[0] for task 'squad' (qa): expected a JSON object with"),
    ({"task": "squad", "question": "Where?", "context": " "}, 422, "context 0 is empty"),
    ({"task": "squad", "question": "Where?", "context": "x" * 301}, 413, "context 0 has 301 characters; the limit"),
    ({"task": "sentiment", "question": "Where?", "context": "here"}, 422, "'sentiment' (classification): expected"),
    ({"task": "sentiment", "text": "fine", "predicate": 0}, 422, "a predicate marks a word of a tagging task"),
    ({"task": "srl", "text": "two words", "predicate": 2}, 422, "predicate 2 is not the index of one of its 2 words"),
    ({"task": "srl", "text": "two words", "predicate": "1"}, 422, "items[0].predicate must be a word index"),
    ({"task": "srl", "text": "two words", "predicate": True}, 422, "items[0].predicate must be a word index"),
    ({"task": "squad", "question": 3, "context": "here"}, 422, "items[0].question must be a string"),
    ({"task": "squad", "question": "q", "context": "c", "text": "t"}, 422, "must have exactly the fields"),
])
def test_items_that_do_not_fit_their_task(server, item, status, fragment):
    port, _ = server
    got, body = call(port, "/predict", {"items": [item]})
    assert got == status and fragment in body["error"], body
    assert call(port, "/health")[0] == 200


def check_neighbours(port, folder, backbone, task, space):
    status, body = call(port, f"/tasks/{task}/neighbours?k=3")
    assert status == 200, body
    expected = nearest_tokens(load_prompt(folder / f"{task}.safetensors", backbone), k=3)
    assert body["space"] == expected.space == space and body["k"] == 3 and len(body["positions"]) == 4
    assert [p["tokens"] for p in body["positions"]] == expected.tokens
    for got, want in zip(body["positions"], expected.similarities):
        assert got["similarities"] == pytest.approx(want, abs=1e-3)


def test_neighbours_of_an_input_prompt(server, minilm):
    port, folder = server
    check_neighbours(port, folder, minilm, "topic", "input embeddings")


@pytest.mark.parametrize("path, status, fragment", [
    ("/tasks/topic/neighbours?k=0", 422, "query.k"),
    ("/tasks/topic/neighbours?k=51", 422, "query.k"),
    ("/tasks/topic/neighbours?k=two", 422, "query.k"),
    ("/tasks/nope/neighbours", 404, "unknown task"),
    ("/tasks/choices/neighbours", 404, "multiple_choice prompts are not served"),
])
def test_neighbours_errors(server, path, status, fragment):
    port, _ = server
    got, body = call(port, path)
    assert got == status and fragment in body["error"], body


@pytest.fixture(scope="module")
def llama_server(tiny_llama, tmp_path_factory, ptune_server):
    folder = make_prompts(tiny_llama, tmp_path_factory.mktemp("llama-kinds"), {
        "story": ("classification", "prompt", ["negative", "positive"], "accuracy", 1),
        "squad": ("qa", "prompt", [], "squad", 2), "deep": ("classification", "deep", ["a", "b"], "accuracy", 3)})
    text = PromptModel(tiny_llama, MethodConfig(method="prompt", length=2), [], kind="text_to_text")
    save_prompt(folder / "t2t.safetensors", text, task_name="t2t", metric="exact_match")
    with ptune_server(folder) as port:
        yield port, folder


def test_on_a_causal_lm_qa_answers_but_does_not_generate(llama_server, tiny_llama):
    port, folder = llama_server
    status, body = call(port, "/predict", {"items": [{"task": "squad", "question": QUESTION, "context": CONTEXT},
                                                     {"task": "story", "text": SENTENCE}]})
    assert status == 200, body
    assert same(body["predictions"][0], records(tiny_llama, folder, "squad", [QAExample("", QUESTION, CONTEXT)])[0])
    status, body = call(port, "/generate", {"task": "squad", "texts": ["Once"]})
    assert status == 400 and "task 'squad' cannot generate: a qa task reads" in body["error"], body
    assert [m["id"] for m in call(port, "/v1/models")[1]["data"]] == ["deep", "story"]
    failed = call(port, "/tasks")[1]["failed"]
    assert "text_to_text prompts are not served" in failed["t2t"]


def test_neighbours_of_a_deep_prompt(llama_server, tiny_llama):
    """Compared in layer 0's key space: the backbone runs over the whole vocabulary (a tiny one here)."""
    port, folder = llama_server
    check_neighbours(port, folder, tiny_llama, "deep", "layer 0 keys")
