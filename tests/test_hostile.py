"""Hostile input, property-based: whatever bytes reach a reader, the only error is PtuneError.

Each target gets random bytes, text over a format's own alphabet, and mutations of a valid file
(truncated, spliced, bytes flipped, lines duplicated, non-UTF-8 bytes inserted).
``PTUNE_FUZZ_EXAMPLES`` sets the examples per target (default 40); ``PTUNE_FUZZ_REPORT=FILE``
writes the count of inputs and outcomes per target (used by benchmarks/faults.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from ptune.storage.prompt_files import load_prompt, save_prompt
from ptune.cli import build_parser
from ptune.cli.options import dataclass_from as _dataclass_from, read_config as _read_config
from ptune.config import MethodConfig
from ptune.data import read_conll, read_examples, read_table
from ptune.data.squad import read_squad
from ptune.data.srl import read_srl
from ptune.errors import PtuneError
from ptune.model.prompt_model import PromptModel
from ptune.training.resume import read_checkpoint
from ptune.training.loop import TrainConfig

EXAMPLES = int(os.environ.get("PTUNE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
OUTCOMES: Counter = Counter()

VALID = {
    "conll": b"-DOCSTART- O\n\nEU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\nBlackburn I-PER\n",
    "csv": b'text,label\n"a fine, moving film",positive\ndull,negative\n',
    "tsv": b"text\ttext_pair\tlabel\nA man sleeps\tA person rests\tentailment\nhi\tbye\tneutral\n",
    "jsonl": b'{"text": "great", "label": "positive"}\n{"text": "awful", "label": "negative"}\n',
    "json": b'[{"text": "great", "label": "pos"}, {"text": "bad", "label": "neg"}]',
    "srl": (b"#begin document (x); part 000\n"
            b"x 0 0 John NNP (TOP* - - - - * (ARG0*) -\n"
            b"x 0 1 saw VBD * see 01 - - * (V*) -\n"
            b"x 0 2 Mary NNP *) - - - - * (ARG1*) -\n\n#end document\n"),
    "squad": json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [{
        "context": "Paris is the capital of France.",
        "qas": [{"id": "q1", "question": "What is the capital?", "answers": [{"text": "Paris", "answer_start": 0}]}],
    }]}]}).encode(),
}
ALPHABET = list("ab xyz\t\n\r,;\"'{}[]:()*-#|0123456789.") + ["B-PER", "I-", "O", "(V*)", "(ARG0*", "*)", "text",
                                                                  "label", "answers", "answer_start", "\ufeff", "é", "\x00"]


@st.composite
def hostile_bytes(draw, valid: bytes) -> bytes:
    """Random bytes, format-flavoured text, or a mutated valid file."""
    kind = draw(st.sampled_from(["bytes", "text", "mutation", "mutation"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return "".join(draw(st.lists(st.sampled_from(ALPHABET), max_size=120))).encode("utf-8")
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "delete", "insert", "flip", "duplicate_line", "latin1"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "truncate":
            del data[at:]
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=10))
        elif op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "duplicate_line":
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            data = bytearray(b"\n".join(lines[: i + 1] + lines[i:]))
        elif op == "latin1":
            data[at:at] = "café".encode("latin-1")
    return bytes(data)


def outcome(target: str, call) -> None:
    """Run ``call``: a result or a PtuneError is fine; anything else fails the test."""
    try:
        call()
    except PtuneError as error:
        assert str(error) and "\n" not in str(error).strip(), f"{target}: error message must be one line"
        OUTCOMES[target, "clear error"] += 1
    else:
        OUTCOMES[target, "read"] += 1


def write(suffix: str, data: bytes) -> Path:
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    handle.write(data)
    handle.close()
    return Path(handle.name)


def fuzz_file(target: str, suffix: str, valid: bytes, read):
    @FUZZ
    @given(hostile_bytes(valid))
    def run(data: bytes) -> None:
        path = write(suffix, data)
        try:
            outcome(target, lambda: read(path))
        finally:
            path.unlink()
    run()


@pytest.mark.parametrize("target, suffix, valid, read", [
    ("read_conll", ".txt", VALID["conll"], read_conll),
    ("read_table csv", ".csv", VALID["csv"], read_table),
    ("read_table tsv", ".tsv", VALID["tsv"], read_table),
    ("read_table jsonl", ".jsonl", VALID["jsonl"], read_table),
    ("read_table json", ".json", VALID["json"], read_table),
    ("read_srl", ".gold_conll", VALID["srl"], read_srl),
    ("read_squad", ".json", VALID["squad"], read_squad),
    ("read_examples", ".tsv", VALID["tsv"], read_examples),
])
def test_readers_raise_only_clear_errors(target, suffix, valid, read):
    assert read(write(suffix, valid)), "the valid sample itself must read"
    fuzz_file(target, suffix, valid, read)


def test_saved_dataset_folder_with_garbage_files():
    @FUZZ
    @given(st.sampled_from(["dataset_info.json", "state.json", "dataset_dict.json"]), hostile_bytes(b'{"splits": {}}'))
    def run(name: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / name).write_bytes(data)
            outcome("read_examples (datasets folder)", lambda: read_examples(folder))
    run()


def test_config_files_with_wrong_fields():
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                               lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                               max_leaves=6)
    names = st.sampled_from(["method", "length", "lr", "epochs", "layers", "template", "batch_size", "reparam", "task",
                             "train", "scheduler", "seed", "init", "bogus"])
    args = build_parser().parse_args(["train"])

    @FUZZ
    @given(st.one_of(st.dictionaries(names, json_values, max_size=4), json_values, st.binary(max_size=60).map(repr)))
    def run(content) -> None:
        path = write(".json", json.dumps(content).encode())

        def read():
            config = _read_config(str(path))
            _dataclass_from(MethodConfig, args, config)
            _dataclass_from(TrainConfig, args, config, skip=("progress",))
        try:
            outcome("config file", read)
        finally:
            path.unlink()
    run()


@pytest.fixture(scope="module")
def prompt_file(minilm, tmp_path_factory):
    model = PromptModel(minilm, MethodConfig(method="deep", length=2, layers="top:2"), ["negative", "positive"],
                        )
    model.initialise(seed=0)
    path = tmp_path_factory.mktemp("prompt") / "rt.safetensors"
    save_prompt(path, model, task_name="rt", metric="accuracy")
    return path


def test_damaged_prompt_files(minilm, prompt_file):
    valid = prompt_file.read_bytes()

    @FUZZ
    @given(hostile_bytes(valid))
    def run(data: bytes) -> None:
        path = write(".safetensors", data)
        try:
            outcome("prompt file (bytes)", lambda: load_prompt(path, minilm))
        finally:
            path.unlink()
    run()


def test_prompt_headers_with_missing_extra_or_mistyped_fields(minilm, prompt_file):
    from safetensors import safe_open

    with safe_open(str(prompt_file), framework="pt") as handle:
        header = json.loads(handle.metadata()["ptune"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    paths = st.sampled_from(["format", "version", "method", "task", "backbone", "metrics", "tensors_sha256",
                             "method.length", "method.layers", "method.method", "method.bogus", "task.labels",
                             "task.kind", "task.metric", "task.pair", "backbone.hidden_size", "backbone.name"])
    values = st.none() | st.booleans() | st.integers(-3, 10**6) | st.text(max_size=6) | st.just([]) | st.just({})

    @FUZZ
    @given(st.lists(st.tuples(paths, st.sampled_from(["drop", "set"]), values), min_size=1, max_size=3))
    def run(edits) -> None:
        changed = json.loads(json.dumps(header))
        for dotted, action, value in edits:
            *parents, key = dotted.split(".")
            node = changed
            for parent in parents:
                node = node.get(parent) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                continue
            if action == "drop":
                node.pop(key, None)
            else:
                node[key] = json.loads(json.dumps(value))  # a fresh copy: no shared objects
        path = write(".safetensors", b"")
        save_file(tensors, str(path), metadata={"ptune": json.dumps(changed)})
        try:
            outcome("prompt file (header fields)", lambda: load_prompt(path, minilm))
        finally:
            path.unlink()
    run()


def test_damaged_checkpoints(tmp_path):
    from ptune.training.resume import CHECKPOINT

    optimizer_state = {"state": {}, "param_groups": []}
    header = {"format": "ptune-checkpoint", "version": 1, "run": {}, "progress": {}, "selection": {},
              "optimizer": optimizer_state, "scheduler": {}, "rng": {}}
    save_file({"model.x": torch.zeros(2)}, str(tmp_path / "valid"), metadata={"ptune": json.dumps(header)})
    valid = (tmp_path / "valid").read_bytes()

    @FUZZ
    @given(hostile_bytes(valid))
    def run(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / CHECKPOINT).write_bytes(data)
            outcome("training checkpoint", lambda: read_checkpoint(folder))
    run()


def pytest_sessionfinish_report() -> None:
    target = os.environ.get("PTUNE_FUZZ_REPORT")
    if target:
        report = {}
        for (name, result), count in sorted(OUTCOMES.items()):
            report.setdefault(name, {})[result] = count
        Path(target).write_text(json.dumps(report, indent=2) + "\n")


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    pytest_sessionfinish_report()


def test_server_answers_hostile_requests_without_crashing(minilm, prompt_file, tmp_path):
    """Random bodies, JSON shapes and sizes: the server answers 200 or a JSON 4xx, never a 500."""
    import shutil

    from fastapi.testclient import TestClient

    from ptune.serve.app import Limits, create_app

    shutil.copy(prompt_file, tmp_path / "rt.safetensors")
    app = create_app(tmp_path, minilm, Limits(max_body_bytes=2_000, max_texts=4, max_text_chars=50))
    texts = st.lists(st.one_of(st.text(max_size=60), st.integers(), st.none()), max_size=6)
    bodies = st.one_of(
        st.binary(max_size=300),
        st.fixed_dictionaries({"task": st.sampled_from(["rt", "../rt", "nope", "", "rt.safetensors"]),
                               "texts": texts}).map(lambda d: json.dumps(d).encode()),
        st.lists(st.fixed_dictionaries({"task": st.sampled_from(["rt", 3, None]), "text": st.text(max_size=20)}),
                 max_size=5).map(lambda items: json.dumps({"items": items}).encode()),
        st.just(b'{"task": "rt", "texts": ["' + b"x" * 5000 + b'"]}'),
    )
    with TestClient(app) as client:
        @FUZZ
        @given(bodies, st.sampled_from(["/predict", "/tasks", "/health", "/predict/../tasks"]))
        def run(body: bytes, path: str) -> None:
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            assert response.status_code < 500, response.text
            if response.status_code >= 400:
                assert "error" in response.json() or "detail" in response.json()
            OUTCOMES["server /predict", "200" if response.status_code == 200 else "4xx"] += 1
        run()


def test_no_pickle_and_no_remote_code_by_default():
    """Files are safetensors + JSON only; model code from the hub runs only with the user's flag."""
    import re

    source = Path(__file__).parents[1] / "src" / "ptune"
    for path in source.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.M), path
        assert "allow_pickle=True" not in text, path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert "trust_remote_code=True" not in text, path
    assert build_parser().parse_args(["train"]).trust_remote_code is False
