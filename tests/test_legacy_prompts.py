"""Prompt files written by ptune before the package restructure still load and predict identically.

The files in tests/fixtures/legacy/ were written by ptune at commit 945acf5 (make_fixtures.py, run
once against that commit; never regenerate them with newer code). expected.json records, per file,
the backbone it needs, the inputs, and the predictions and logits the old code made. Each test
rebuilds the backbone, loads the file with the public API and must predict the same labels, tag
lists and answers exactly, and the same logits within ``logits_atol``.

Backbones: the embedded ``minilm`` (conftest's session fixture), and tiny random models rebuilt
from the recipe in expected.json (transformers config + ``torch.manual_seed`` + a real tokenizer);
a rebuilt model must hash to the recorded ``state_sha256`` before any prompt is checked on it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import ptune
from ptune import QAExample

FIXTURES = Path(__file__).parent / "fixtures" / "legacy"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
RECORDS = {record["file"]: record for record in EXPECTED["fixtures"]}
ATOL = EXPECTED["logits_atol"]


def logits_of(model, examples) -> list:
    """The model's raw logits for ``examples`` as one padded batch, as nested lists: classification
    [B][C]; tagging one [words][C] list per example (the fixture inputs are short: no word is cut).
    The one place to adapt if the way to get logits changes."""
    with torch.no_grad():
        logits = model(model.collate(model.encode(examples)))
    if not all(hasattr(e, "tokens") for e in examples):
        return logits.tolist()
    out, cursor = [], 0
    for example in examples:
        out.append(logits[cursor : cursor + len(example.tokens)].tolist())
        cursor += len(example.tokens)
    assert cursor == logits.shape[0], f"{logits.shape[0]} word logits for {cursor} words"
    return out


def examples_of(record: dict) -> list:
    kind = record["kind"]
    if kind == "classification":
        return [ptune.TextExample(e["text"]) for e in record["examples"]]
    if kind == "tagging":
        return [ptune.TaggedExample(tuple(e["tokens"])) for e in record["examples"]]
    return [QAExample(e["id"], e["question"], e["context"]) for e in record["examples"]]


def state_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().contiguous().cpu()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def build_tiny(recipe: dict, folder: Path, minilm_tokenizer) -> str:
    """Save the tiny model of ``recipe`` (as make_fixtures.py built it) into ``folder``; returns its hash."""
    import transformers
    from transformers import AutoTokenizer

    if recipe["tokenizer"]["from"] == "minilm":
        tokenizer = minilm_tokenizer
    else:
        spec = importlib.util.find_spec(recipe["tokenizer"]["package"])
        if spec is None:
            pytest.skip(f"package {recipe['tokenizer']['package']} (the tokenizer) is not installed")
        tokenizer = AutoTokenizer.from_pretrained(spec.submodule_search_locations[0],
                                                  gguf_file=recipe["tokenizer"]["gguf_file"])
    config = getattr(transformers, recipe["config_class"])(vocab_size=len(tokenizer), **recipe["config"])
    torch.manual_seed(recipe["seed"])
    model = getattr(transformers, recipe["architecture"])(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return state_sha256(model)


@pytest.fixture(scope="module")
def backbone_of(request, tmp_path_factory):
    """name in expected.json's "backbones" -> a loaded Backbone (built once per module)."""
    loaded = {}

    def get(name: str):
        if name not in loaded:
            minilm = request.getfixturevalue("minilm")
            recipe = EXPECTED["backbones"][name]
            if recipe["kind"] == "embedded":
                loaded[name] = minilm if name == "minilm" else ptune.load_backbone(recipe["name"])
            else:
                folder = tmp_path_factory.mktemp(name)
                sha = build_tiny(recipe, folder, minilm.tokenizer)
                assert sha == recipe["state_sha256"], (
                    f"tiny backbone {name} rebuilt with other weights (transformers/torch changed its random init?)")
                loaded[name] = ptune.load_backbone(str(folder))
        return loaded[name]

    return get


def test_every_fixture_file_is_recorded_and_small():
    files = {path.name for path in FIXTURES.glob("*.safetensors")}
    assert files == set(RECORDS)
    for name in files:
        assert (FIXTURES / name).stat().st_size == RECORDS[name]["bytes"] < 1 << 20


@pytest.mark.parametrize("name", sorted(EXPECTED["backbones"]))
def test_backbone_matches_the_recorded_fingerprint(name, backbone_of):
    fingerprint = backbone_of(name).fingerprint()
    assert {k: fingerprint[k] for k in EXPECTED["backbones"][name]["fingerprint"]} == EXPECTED["backbones"][name]["fingerprint"]


@pytest.mark.parametrize("file", sorted(RECORDS))
def test_legacy_header_reads(file):
    record = RECORDS[file]
    header = ptune.read_header(FIXTURES / file)
    assert header["version"] == 1
    assert header["method"] == record["method"]
    assert header["task"]["kind"] == record["kind"]
    assert header["task"]["labels"] == record["labels"]
    recorded = EXPECTED["backbones"][record["backbone"]]["fingerprint"]
    assert {k: header["backbone"][k] for k in recorded} == recorded


# Trained by 945acf5 on byte-level BPE words glued without their spaces ("UnitedArabEmirates"):
# issue 12 fixed the encoding, so this file no longer sees the input it was trained on. Its
# predictions are not expected to stay; loading it must say so (a warning naming the file), never
# change silently.
RESPACED = {"conll_deep_top1_tinyllama.safetensors"}


@pytest.mark.parametrize("file", sorted(RECORDS))
def test_legacy_prompt_predicts_identically(file, backbone_of, caplog):
    record = RECORDS[file]
    with caplog.at_level("WARNING", logger="ptune"):
        model = ptune.load_prompt(FIXTURES / file, backbone_of(record["backbone"]))
    warned = [r.getMessage() for r in caplog.records if "older ptune" in r.getMessage()]
    if file in RESPACED:
        assert warned and file in warned[0] and "glued pre-split words" in warned[0] and "retrain" in warned[0]
        return
    assert not warned, warned
    examples = examples_of(record)
    assert ptune.predict(model, examples) == record["predictions"]
    if "logits" in record:
        actual, expected = logits_of(model, examples), record["logits"]
        assert len(actual) == len(expected)
        for got, want in zip(actual, expected):  # per example: tagging rows differ in length
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=ATOL, rtol=0)
