"""The multiple-choice kind: a row per (text, choice), one score per choice, a softmax over an example's
choices. Encoding and the head's shapes, training and predicting with every method on a tiny BERT, the
prompt file round trip, what it refuses (verbalizer, a template without {text_pair}, mixed batches,
ensembles, the server), and the CLI on COPA and on the generic JSON-lines format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ptune.cli import main
from ptune.config import MethodConfig, TrainConfig
from ptune.data import ChoiceExample
from ptune.data.choices import copa_row, read_choices
from ptune.data.tasks import Task, file_task, from_files
from ptune.errors import PtuneError
from ptune.infer.bank import PromptBank, ensemble_predict
from ptune.infer.predict import evaluate, predict
from ptune.model.prompt_model import PromptModel
from ptune.storage.prompt_files import load_prompt, read_header, save_prompt
from ptune.tasks import get_kind
from ptune.training.loop import train

COPA = Path(__file__).parent / "fixtures" / "superglue" / "copa"
EXAMPLES = [ChoiceExample("The glass fell off the table.", ("so it shattered.", "so it flew away.", "so it sang."), 0),
            ChoiceExample("The man was thirsty.", ("because he ran a race.", "because he slept."), 0),
            ChoiceExample("It rained all day.", ("so the ground was wet.", "so the sun shone."), 0)]
# Two epochs of one step: the second reads what the first left (the bottom layer cache, with layers top:1).
STEP = TrainConfig(epochs=2, batch_size=4, progress=False)


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_dir):
    from ptune.model.backbones import load_backbone

    return load_backbone(str(tiny_bert_dir))


def model_for(backbone, **options) -> PromptModel:
    model = PromptModel(backbone, MethodConfig(**{"method": "prompt", "length": 4, **options}), [],
                        kind="multiple_choice")
    model.initialise(seed=0)
    return model


# -- reading -----------------------------------------------------------------------------------------
def test_copa_rows_read_each_choice_as_cause_or_effect():
    cause = copa_row("x", {"premise": "My body cast a shadow.", "choice1": "The sun was rising.",
                           "choice2": "I was in a hurry.", "question": "cause", "label": 1})
    assert cause == ChoiceExample("My body cast a shadow.", ("because the sun was rising.", "because I was in a hurry."), 1)
    effect = copa_row("x", {"premise": "p", "choice1": "NASA called.", "choice2": "b.", "question": "effect", "label": -1})
    assert effect.choices == ("so NASA called.", "so b.") and effect.label is None  # the hub's unlabelled test row
    with pytest.raises(PtuneError, match="'cause' or 'effect'"):
        copa_row("f:3", {"premise": "p", "choice1": "a", "choice2": "b", "question": "why"})


def test_generic_jsonl_takes_an_index_or_the_choice_text(tmp_path):
    data = tmp_path / "mc.jsonl"
    data.write_text('{"text": "2 + 2 =", "choices": ["3", "4"], "label": 1}\n'
                    '{"text": "Capital of France?", "choices": ["Paris", "Rome", "Oslo"], "label": "Paris"}\n'
                    '{"text": "Unlabelled", "choices": ["a", "b"]}\n')
    assert [(e.choices, e.label) for e in read_choices(data)] == [(("3", "4"), 1), (("Paris", "Rome", "Oslo"), 0),
                                                                 (("a", "b"), None)]
    data.write_text('{"text": "q", "choices": ["a", "b"], "label": 2}\n')
    with pytest.raises(PtuneError, match=r"mc.jsonl:1: label 2 is neither the index"):
        read_choices(data)
    data.write_text('{"text": "q", "choices": ["only one"]}\n')
    with pytest.raises(PtuneError, match="two or more non-empty strings"):
        read_choices(data)


# -- encoding, the head ------------------------------------------------------------------------------
def test_a_row_per_choice_and_logits_per_example(tiny_bert):
    model = model_for(tiny_bert)
    features = model.encode(EXAMPLES[:2])
    assert [len(f.choices) for f in features] == [3, 2] and [f.label for f in features] == [0, 0]
    batch = model.collate(features)
    assert batch["input_ids"].shape[0] == 5  # example by example, choice by choice
    assert batch["choice_count"].tolist() == [3, 2] and batch["labels"].tolist() == [0, 0]
    text = tiny_bert.tokenizer.decode(batch["input_ids"][1][batch["attention_mask"][1].bool()])
    assert "glass fell" in text and "flew away" in text  # the text and the choice, as a pair
    logits = model(batch)
    assert logits.shape == (2, 3) and logits[1, 2].item() == -math.inf  # example 2 has 2 choices
    rows = get_kind("multiple_choice").rows(logits, batch)
    assert [len(r) for r in rows] == [3, 2]
    loss = model.loss(batch)
    assert torch.isfinite(loss)
    loss.backward()  # reaches the prompt through the -inf padding
    assert model.input_prompt.embedding.grad.abs().sum() > 0


# -- every method --------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{"method": "prompt"}, {"method": "ptuning"}, {"method": "deep"},
                                     {"method": "deep", "layers": "top:1"},  # the bottom layer cache is on
                                     {"method": "finetune"}, {"method": "prompt", "pool": "pooler"}],
                         ids=["prompt", "ptuning", "deep", "deep-top", "finetune", "pooler"])
def test_every_method_trains_and_predicts_probabilities_per_choice(tiny_bert, options):
    task = Task("mc", "multiple_choice", [], EXAMPLES, EXAMPLES[:2], [], "choice_accuracy")
    model = PromptModel.for_task(tiny_bert, task, MethodConfig(**{"length": 4, **options}))
    result = train(model, task, STEP)
    assert 0.0 <= result.dev["accuracy"] <= 1.0
    records = predict(model, EXAMPLES, scores=True)
    for example, record in zip(EXAMPLES, records):
        assert record["choices"] == list(example.choices) and 0 <= record["choice"] < len(example.choices)
        assert len(record["probabilities"]) == len(example.choices)
        assert sum(record["probabilities"]) == pytest.approx(1.0)
        assert record["probability"] == max(record["probabilities"])
        assert record["answer"] == example.choices[record["choice"]]
    assert predict(model, EXAMPLES) == [r["choice"] for r in records]


def test_the_bottom_layer_cache_leaves_training_as_it_is(tiny_bert):
    """Deep prompts on the top layer only: the bottom layer's outputs are cached per example, and an
    example of several rows is computed each time, so the run matches one without the cache."""
    task = Task("mc", "multiple_choice", [], EXAMPLES, [], [], "choice_accuracy")
    states = []
    for cache_mb in (2048, 0):
        model = PromptModel.for_task(tiny_bert, task, MethodConfig(method="deep", length=4, layers="top:1"))
        assert model.first_prompted_layer == 1
        train(model, task, TrainConfig(epochs=3, batch_size=4, cache_mb=cache_mb, progress=False))
        states.append(model.trainable_state())
    assert all(torch.equal(states[0][name], states[1][name]) for name in states[0])


def test_the_prompt_file_round_trips(tiny_bert, tmp_path):
    model = model_for(tiny_bert, method="deep")
    path = tmp_path / "mc.safetensors"
    save_prompt(path, model, task_name="superglue/copa", metric="choice_accuracy")
    header = read_header(path)
    assert header["task"]["kind"] == "multiple_choice" and header["task"]["pair"] is True
    loaded = load_prompt(path, tiny_bert)
    model.eval()
    assert torch.equal(loaded(loaded.collate(loaded.encode(EXAMPLES))), model(model.collate(model.encode(EXAMPLES))))
    assert evaluate(loaded, EXAMPLES) == evaluate(model, EXAMPLES)


# -- what it refuses ---------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"head": "verbalizer"}, "verbalizer head"),
    ({"template": "[P]*4 {text}"}, r"give a template with \{text\} and \{text_pair\}"),
    ({"init": "labels"}, "--init labels"),
])
def test_refused_when_the_model_is_built(tiny_bert, options, message):
    with pytest.raises(PtuneError, match=message):
        model_for(tiny_bert, **options)


def test_mixed_batches_ensembles_and_text_examples_are_refused(tiny_bert):
    model = model_for(tiny_bert)
    with pytest.raises(PtuneError, match="cannot share a mixed-task batch"):
        PromptBank({"copa": model})
    with pytest.raises(PtuneError, match="ensembles of multiple_choice prompts are not supported"):
        ensemble_predict([model, model], EXAMPLES)
    from ptune.data import TextExample

    with pytest.raises(PtuneError, match="needs examples with choices"):
        model.encode([TextExample("no choices")])


def test_predict_input_rows():
    kind = get_kind("multiple_choice")
    assert kind.example({"text": "q", "choices": ["a", "b"]}) == ChoiceExample("q", ("a", "b"))
    copa = kind.example({"premise": "It rained.", "choice1": "The street was wet.", "choice2": "The sun shone.",
                         "question": "effect"})
    assert copa.choices == ("so the street was wet.", "so the sun shone.") and copa.label is None
    for row, message in [({"text": "q"}, "expected a JSON object"), ({"text": " ", "choices": ["a", "b"]}, "empty"),
                         ({"text": "q", "choices": ["a"]}, "two or more")]:
        with pytest.raises(ValueError, match=message):
            kind.example(row)


# -- the CLI -----------------------------------------------------------------------------------------
def test_cli_trains_evaluates_and_predicts_copa(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "copa"
    assert main(["-q", "train", "--task", "superglue/copa", "--train", str(COPA / "train.jsonl"), "--dev",
                 str(COPA / "val.jsonl"), "--backbone", str(tiny_bert_dir), "--method", "prompt", "--length", "4",
                 "--epochs", "1", "--max-steps", "1", "--out", str(out)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["task"] == "superglue/copa" and set(results["dev"]) == {"accuracy"}
    prompt = str(out / "prompt.safetensors")
    assert main(["-q", "evaluate", prompt, "--data", str(COPA / "val.jsonl")]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["examples"] == 3 and scored["accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert main(["-q", "predict", prompt, "--input", str(COPA / "test.jsonl")]) == 0  # COPA's own fields
    record = json.loads(capsys.readouterr().out)
    assert record["choices"] == ["because it was fragile.", "because it was small."]
    assert sum(record["probabilities"]) == pytest.approx(1.0)


def test_cli_kind_multiple_choice_reads_generic_jsonl(tiny_bert_dir, tmp_path, capsys):
    data = tmp_path / "quiz.jsonl"
    data.write_text("".join(json.dumps({"text": e.text, "choices": list(e.choices), "label": e.label}) + "\n"
                            for e in EXAMPLES))
    task = from_files(data, data, kind="multiple_choice")
    assert (task.kind, task.metric, task.labels, len(task.dev)) == ("multiple_choice", "choice_accuracy", [], 3)
    assert main(["-q", "train", "--train", str(data), "--dev", str(data), "--kind", "multiple_choice", "--backbone",
                 str(tiny_bert_dir), "--length", "4", "--epochs", "1", "--max-steps", "1", "--out",
                 str(tmp_path / "quiz")]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out)["dev"]
    assert file_task("superglue/copa", COPA / "train.jsonl").kind == "multiple_choice"
