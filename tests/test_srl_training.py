"""Semantic role labelling as a task: the predicate marked as a second segment (P-tuning v2), a few
training steps on MiniLM, one tag per word back, span F1, and the CLI, on AllenNLP's real
CoNLL-2012 sample (`nt_6401.gold_conll`)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from ptune.cli import main
from ptune.config import MethodConfig
from ptune.data import TaggedExample, from_files, read_examples
from ptune.data.srl import read_srl
from ptune.data.tasks import file_task
from ptune.infer.predict import evaluate, predict
from ptune.model.prompt_model import PromptModel
from ptune.training.loop import TrainConfig, train


def _fixture() -> Path | None:
    spec = importlib.util.find_spec("allennlp")  # finds the folder; never imports allennlp
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "tests/fixtures/data/srl/nt_6401.gold_conll"
    return path if path.is_file() else None


FIXTURE = _fixture()
pytestmark = pytest.mark.skipif(FIXTURE is None, reason="allennlp 0.9.0's nt_6401.gold_conll is not installed")


@pytest.fixture(scope="module")
def srl():
    return file_task("srl", FIXTURE, FIXTURE)


def test_gold_conll_files_are_read_as_srl(srl):
    assert srl.kind == "tagging" and srl.metric == "srl_f1"  # CoNLL-2005 counting: V left out
    assert srl.train == read_srl(FIXTURE) and all(e.predicate is not None for e in srl.train)
    assert "B-V" in srl.labels and "B-ARG0" in srl.labels
    assert read_examples(FIXTURE) == srl.train  # by suffix, not the coreference column
    assert from_files(FIXTURE).train == srl.train


@pytest.mark.parametrize("method", ["deep", "prompt"])
def test_encoding_marks_the_predicate_as_a_second_segment(minilm, srl, method):
    model = PromptModel.for_task(minilm, srl, MethodConfig(method=method, length=4))
    tokenizer = minilm.tokenizer
    features = model.encode(srl.train)
    for example, feature in zip(srl.train, features):
        sep = feature.input_ids.index(tokenizer.sep_token_id)
        second = feature.input_ids[sep + 1 : -1]
        assert tokenizer.decode(second) == example.tokens[example.predicate].lower()
        assert feature.input_ids[-1] == tokenizer.sep_token_id
        assert feature.token_types[: sep + 1] == [0] * (sep + 1)
        assert feature.token_types[sep + 1 :] == [1] * (len(second) + 1)
        assert all(w == -1 for w in feature.word_index[sep:])  # never read by the per-word head
        assert sorted(w for w in feature.word_index if w >= 0) == list(range(len(example.tokens)))
    unmarked = model.encode([TaggedExample(srl.train[0].tokens, srl.train[0].tags)])[0]
    assert unmarked.input_ids.count(tokenizer.sep_token_id) == 1


def test_a_bad_predicate_index_is_refused(minilm, srl):
    from ptune.errors import PtuneError

    model = PromptModel.for_task(minilm, srl, MethodConfig(method="deep", length=4))
    with pytest.raises(PtuneError, match="predicate 99"):
        model.encode([TaggedExample(("a", "b"), predicate=99)])


def test_training_steps_and_one_tag_per_word(minilm, srl):
    model = PromptModel.for_task(minilm, srl, MethodConfig(method="deep", length=4, layers="top:3"))
    features = model.encode(srl.train)
    model.initialise(seed=0)
    model.eval()
    with torch.no_grad():
        before = model.loss(model.collate(features[:16])).item()
    result = train(model, srl, TrainConfig(epochs=1, max_steps=4, batch_size=16, lr=5e-2, progress=False,
                                           checkpoint_every=0))
    model.eval()
    with torch.no_grad():
        assert model.loss(model.collate(features[:16])).item() < before
    assert set(result.dev) == {"f1", "precision", "recall", "f1_with_v"}
    tagged = predict(model, srl.dev)
    assert [len(tags) for tags in tagged] == [len(e.tokens) for e in srl.dev]
    assert all(tag in srl.labels for tags in tagged for tag in tags)
    assert evaluate(model, srl.dev, srl.metric) == result.dev


# -- command line -------------------------------------------------------------------------------


def test_cli_train_srl_and_predict(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["-q", "train", "--task", "srl", "--train", str(FIXTURE), "--dev", str(FIXTURE), "--method", "deep",
                 "--length", "4", "--layers", "top:2", "--max-steps", "3", "--epochs", "1", "--batch-size", "16",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "srl" and "f1" in results["dev"]
    capsys.readouterr()
    prompt = str(out / "prompt.safetensors")
    assert main(["predict", prompt, "--text", "The man said he would come", "--predicate", "2"]) == 0
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(record["tags"]) == 6
    assert main(["evaluate", prompt, "--data", str(FIXTURE)]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == len(read_srl(FIXTURE))


def test_cli_detects_gold_conll_without_task(tmp_path):
    assert main(["-q", "train", "--train", str(FIXTURE), "--method", "prompt", "--length", "2", "--max-steps", "1",
                 "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "run")]) == 0


def test_cli_missing_argument_column_is_one_line(tmp_path, capsys):
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    # The first sentence with predicates (rows of more than 12 columns) loses its last argument column.
    start = next(i for i, line in enumerate(lines) if len(line.split()) > 12)
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    cut = [" ".join(line.split()[:-2] + line.split()[-1:]) if start <= i < end else line
           for i, line in enumerate(lines)]
    bad = tmp_path / "bad.gold_conll"
    bad.write_text("\n".join(cut) + "\n", encoding="utf-8")
    assert main(["train", "--task", "srl", "--train", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert f"bad.gold_conll:{start + 1}:" in err and "argument column" in err
