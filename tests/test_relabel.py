"""Domain shift: evaluating a prompt on another data set whose label names differ (--label-map)."""

from __future__ import annotations

import json

import pytest

from ptune.storage.prompt_files import save_prompt
from ptune.cli import main
from ptune.config import MethodConfig
from ptune.data import TaggedExample, TextExample
from ptune.data.relabel import parse_label_map, relabel
from ptune.errors import PtuneError
from ptune.model.prompt_model import PromptModel

KNOWN = ["negative", "positive"]


def test_parse_label_map():
    assert parse_label_map("pos=positive, neg = negative") == {"pos": "positive", "neg": "negative"}
    for bad, needle in [("pos", "their_label=prompt_label"), ("a=x,a=y", "twice"), (" , ", "empty")]:
        with pytest.raises(PtuneError, match=needle):
            parse_label_map(bad)


def test_relabel_maps_and_passes_known_labels_through():
    examples = [TextExample("a", "pos"), TextExample("b", "negative"), TextExample("c")]
    out = relabel(examples, {"pos": "positive"}, KNOWN, "other.csv")
    assert [e.label for e in out] == ["positive", "negative", None]
    tagged = relabel([TaggedExample(("Ann",), ("B-PERSON",))], {"B-PERSON": "B-PER"}, ["O", "B-PER"], "x")
    assert tagged[0].tags == ("B-PER",)


def test_relabel_names_unmapped_and_unknown_labels():
    with pytest.raises(PtuneError, match=r"'neutral' \(first at row 2\).*--label-map"):
        relabel([TextExample("a", "pos"), TextExample("b", "neutral")], {"pos": "positive"}, KNOWN, "other.csv")
    with pytest.raises(PtuneError, match="'good', not labels of the prompt"):
        relabel([TextExample("a", "pos")], {"pos": "good"}, KNOWN, "other.csv")


def test_cli_evaluate_with_label_map(minilm, tmp_path, capsys):
    model = PromptModel(minilm, MethodConfig(method="deep", length=2, layers="top:1"), KNOWN)
    model.initialise(seed=0)
    prompt = tmp_path / "p.safetensors"
    save_prompt(prompt, model, task_name="rotten_tomatoes", metric="accuracy")
    data = tmp_path / "other.csv"
    data.write_text("text,label\nloved it,pos\nhated it,neg\nfine,positive\n")
    assert main(["evaluate", str(prompt), "--data", str(data), "--label-map", "pos=positive,neg=negative"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 3
    assert main(["evaluate", str(prompt), "--data", str(data), "--label-map", "pos=positive"]) == 2
    assert "'neg'" in capsys.readouterr().err
    assert main(["evaluate", str(prompt), "--data", str(data)]) == 2  # without a map, 'pos' is unknown
