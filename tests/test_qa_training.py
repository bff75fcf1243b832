"""Extractive QA as a task: training the span head on strided windows, answers mapped back to the
context, EM/F1, prompt files, and the CLI, on MiniLM and AllenNLP's real 5-question SQuAD sample."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from ptune.storage.prompt_files import load_prompt, read_header
from ptune.cli import main
from ptune.config import MethodConfig
from ptune.data import read_examples
from ptune.data.squad import QAExample
from ptune.data.tasks import Task, file_task, from_files
from ptune.infer.predict import evaluate, predict
from ptune.model.prompt_model import PromptModel
from ptune.tasks.qa import NO_ANSWER
from ptune.training.loop import TrainConfig, train


def _fixture() -> Path | None:
    spec = importlib.util.find_spec("allennlp")  # finds the folder; never imports allennlp
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "tests" / "fixtures" / "data" / "squad.json"
    return path if path.is_file() else None


FIXTURE = _fixture()
pytestmark = pytest.mark.skipif(FIXTURE is None, reason="allennlp 0.9.0's tests/fixtures/data/squad.json is not installed")

DEEP = MethodConfig(method="deep", length=4, layers="top:3")
QUICK = TrainConfig(epochs=4, max_steps=8, batch_size=4, lr=5e-2, patience=0, progress=False, checkpoint_every=0)


def fixed_loss(model: PromptModel, features) -> float:
    """The loss on the first 4 features, dropout off (comparable before and after training)."""
    model.eval()
    with torch.no_grad():
        return model.loss(model.collate(features[:4])).item()


def squad_v2_file(tmp_path: Path) -> Path:
    """A hand-made SQuAD 2.0 file: one answerable and one impossible question on one context."""
    context = "The Eiffel Tower was completed in 1889 in Paris. It is made of wrought iron."
    qas = [
        {"id": "q1", "question": "When was the Eiffel Tower completed?", "is_impossible": False,
         "answers": [{"text": "1889", "answer_start": context.index("1889")}]},
        {"id": "q2", "question": "Who painted the Eiffel Tower blue?", "is_impossible": True, "answers": [],
         "plausible_answers": [{"text": "Paris", "answer_start": context.index("Paris")}]},
    ]
    path = tmp_path / "v2.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}))
    return path


@pytest.fixture(scope="module")
def squad():
    return file_task("squad", FIXTURE, FIXTURE, FIXTURE)


@pytest.fixture(scope="module")
def trained(minilm, squad, tmp_path_factory):
    out = tmp_path_factory.mktemp("qa")
    model = PromptModel.for_task(minilm, squad, DEEP)
    features = model.encode(squad.train)
    model.initialise(seed=0)
    before = fixed_loss(model, features)
    result = train(model, squad, QUICK, out_dir=out)
    return model, result, before, fixed_loss(model, features), out


def test_squad_files_make_a_qa_task(squad):
    assert squad.kind == "qa" and squad.metric == "squad" and squad.labels == []
    assert len(squad.train) == 5 and all(isinstance(e, QAExample) for e in squad.train)
    auto = from_files(FIXTURE)  # detected from the JSON, no --task needed
    assert auto.kind == "qa" and auto.train == squad.train
    assert read_examples(FIXTURE) == squad.train


def test_deep_prompt_training_lowers_the_loss_and_scores_em_f1(trained):
    model, result, before, after, out = trained
    assert after < before
    assert set(result.dev) == {"exact", "f1"} and 0 <= result.dev["exact"] <= result.dev["f1"] <= 100
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "dev_f1" in records[0] and "dev_exact" in records[0]


def test_predictions_are_spans_of_the_context(trained, squad):
    model = trained[0]
    answers = predict(model, squad.dev)
    assert len(answers) == 5
    for example, answer in zip(squad.dev, answers):
        assert answer and answer in example.context


def test_prompt_file_round_trip_gives_identical_predictions(trained, squad, minilm):
    model, result, *_, out = trained
    header = read_header(out / "prompt.safetensors")
    assert header["task"]["kind"] == "qa" and header["task"]["metric"] == "squad" and header["task"]["labels"] == []
    loaded = load_prompt(out / "prompt.safetensors", minilm)
    assert loaded.kind.name == "qa" and loaded.metric == "squad"
    assert predict(loaded, squad.dev) == predict(model, squad.dev)
    assert evaluate(loaded, squad.dev, "squad") == evaluate(model, squad.dev, "squad") == result.dev


@pytest.mark.parametrize("method", ["prompt", "ptuning"])
def test_input_prompts_shift_the_answer_targets(minilm, squad, method):
    model = PromptModel.for_task(minilm, squad, MethodConfig(method=method, length=4, encoder="mlp"))
    prompts = model.template.num_prompts
    features = model.encode(squad.train)
    assert all(len(f.input_ids) <= model.config.max_length for f in features)
    found = 0
    for f in features:
        assert f.prompt_index[: prompts + 1] == [-1, *range(prompts)]
        assert all(span is None for span in f.offsets[1 : prompts + 1])  # never part of an answer
        if f.start_position != NO_ANSWER:
            found += 1
            example = squad.train[f.example_index]
            text = example.context[f.offsets[f.start_position][0] : f.offsets[f.end_position][1]]
            assert text == example.answers[0]
    assert found >= 5
    model.initialise(seed=0)
    result = train(model, squad, TrainConfig(epochs=1, max_steps=2, batch_size=4, progress=False, checkpoint_every=0))
    assert set(result.dev) == {"exact", "f1"}
    assert all(answer in e.context for e, answer in zip(squad.dev, predict(model, squad.dev)))


def test_a_long_context_is_strided_for_training_and_prediction(minilm):
    filler = " ".join(f"Sentence {i} talks about nothing in particular." for i in range(60))
    context = filler + " The treasure is buried under the old oak tree."
    answer = "under the old oak tree"
    example = QAExample("long", "Where is the treasure buried?", context, (answer,), (context.index(answer),))
    model = PromptModel(minilm, DEEP, [], kind="qa")
    features = model.encode([example])
    assert len(features) >= 4  # one example, several windows
    holding = [f for f in features if f.start_position != NO_ANSWER]
    assert holding and holding[-1] is features[-1]  # only the last windows hold the answer
    assert all(f.start_position == f.end_position == NO_ANSWER for f in features[:-2])
    task = Task("long", "qa", [], [example], [example], [], "squad")
    model.initialise(seed=0)
    result = train(model, task, TrainConfig(epochs=1, max_steps=2, batch_size=8, progress=False, checkpoint_every=0))
    assert set(result.dev) == {"exact", "f1"}
    [predicted] = predict(model, [example])
    assert predicted in context


def test_squad_v2_no_answer_path(minilm, tmp_path):
    path = squad_v2_file(tmp_path)
    task = from_files(path, path)  # an impossible question makes it SQuAD 2.0
    assert task.metric == "squad_v2" and [e.is_impossible for e in task.train] == [False, True]
    model = PromptModel.for_task(minilm, task, DEEP)
    assert model.metric == "squad_v2"
    features = model.encode(task.train)
    impossible = [f for f in features if f.example_index == 1]
    assert impossible and all(f.start_position == f.end_position == NO_ANSWER for f in impossible)
    model.initialise(seed=0)
    result = train(model, task, TrainConfig(epochs=1, max_steps=2, batch_size=2, progress=False, checkpoint_every=0),
                   out_dir=tmp_path / "run")
    assert set(result.dev) == {"exact", "f1"}
    # A null score far above every span predicts "" (scoring 100 on q2); SQuAD 1.1 never does.
    original = model.head.forward

    def null_first(hidden, batch=None):
        start, end = original(hidden, batch)
        return start.index_fill(1, torch.tensor([NO_ANSWER]), 1e4), end

    model.head.forward = null_first
    assert predict(model, task.dev) == ["", ""]
    assert evaluate(model, task.dev, "squad_v2") == {"exact": 50.0, "f1": 50.0}
    model.metric = "squad"
    assert all(predict(model, task.dev))
    loaded = load_prompt(tmp_path / "run" / "prompt.safetensors", minilm)
    assert loaded.metric == "squad_v2" and read_header(tmp_path / "run" / "prompt.safetensors")["task"]["metric"] == "squad_v2"


def test_squad_v2_task_name_allows_no_answer_on_v1_files(squad):
    assert file_task("squad_v2", FIXTURE).metric == "squad_v2"


# -- command line -------------------------------------------------------------------------------


def test_cli_train_evaluate_predict(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["-q", "train", "--task", "squad", "--data", str(FIXTURE), "--dev", str(FIXTURE), "--test", str(FIXTURE),
                 "--method", "deep", "--length", "4", "--layers", "top:2", "--max-steps", "2", "--epochs", "1",
                 "--batch-size", "4", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["dev"]) == set(results["test"]) == {"exact", "f1"}
    capsys.readouterr()
    prompt = str(out / "prompt.safetensors")
    assert main(["evaluate", prompt, "--data", str(FIXTURE)]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["examples"] == 5 and scored["f1"] == pytest.approx(results["test"]["f1"])
    context = "Architecturally, the school has a Catholic character."
    assert main(["predict", prompt, "--question", "What character does the school have?", "--context", context]) == 0
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["answer"] in context and record["question"].startswith("What")
    lines = tmp_path / "questions.jsonl"
    lines.write_text(json.dumps({"id": "a", "question": "Who?", "context": "Peter went home."}) + "\n")
    assert main(["predict", prompt, "--input", str(lines)]) == 0
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["id"] == "a" and record["answer"] in "Peter went home."
    assert main(["predict", prompt, "--text", "no question here"]) == 2
    assert "--question" in capsys.readouterr().err


def test_cli_squad_v2_detected_from_is_impossible(tmp_path, capsys):
    path = squad_v2_file(tmp_path)
    out = tmp_path / "run"
    assert main(["-q", "train", "--train", str(path), "--method", "prompt", "--length", "4", "--max-steps", "1",
                 "--epochs", "1", "--out", str(out)]) == 0
    assert read_header(out / "prompt.safetensors")["task"]["metric"] == "squad_v2"


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("flags", [["--task", "squad"], []])
def test_cli_answer_offset_mismatch_is_one_line(tmp_path, capsys, flags):
    context = "Paris is the capital of France."
    qa = {"id": "q9", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 3}]}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}))
    assert main(["train", *flags, "--train", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = error_line(capsys)
    assert "bad.json" in err and "'q9'" in err and "does not match the context" in err


def test_cli_file_task_needs_files(capsys):
    assert main(["train", "--task", "squad"]) == 2
    assert "--train FILE" in error_line(capsys)


def test_cli_resume_a_squad_run(tmp_path, monkeypatch):
    """A file task is found again by --resume, and the resumed run ends with the same prompt."""
    from safetensors.torch import load_file

    import ptune.training.loop

    options = ["-q", "train", "--task", "squad", "--train", str(FIXTURE), "--method", "deep", "--length", "4",
               "--layers", "top:2", "--epochs", "2", "--batch-size", "4", "--checkpoint-every", "1", "--patience", "0"]
    assert main([*options, "--out", str(tmp_path / "whole")]) == 0

    def interrupt(event, count):
        if count == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(ptune.training.loop, "fault", interrupt)
    assert main([*options, "--out", str(tmp_path / "cut")]) == 130
    monkeypatch.undo()
    assert main(["-q", "train", "--resume", str(tmp_path / "cut")]) == 0
    whole, cut = (load_file(tmp_path / name / "prompt.safetensors") for name in ("whole", "cut"))
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)


def test_decoder_no_answer_score_sees_the_whole_window(tiny_llama, tmp_path):
    """On a causal model, position 0 sees nothing after it: its no-answer score must come from a
    position that sees the question and the context (the last real token), so it can differ by input."""
    task = from_files(squad_v2_file(tmp_path), squad_v2_file(tmp_path))
    model = PromptModel.for_task(tiny_llama, task, MethodConfig(method="deep", length=4))
    assert model.head.null is not None
    model.initialise(seed=0)
    model.eval()
    contexts = ["Peter went home to Paris.", "The river is long and it runs through three countries."]
    examples = [QAExample(str(i), "Who went home?", c) for i, c in enumerate(contexts)]
    with torch.no_grad():
        start, end = model(model.collate(model.encode(examples)))
    assert not torch.allclose(start[0, NO_ANSWER], start[1, NO_ANSWER])  # the null score depends on the input
    train(model, task, TrainConfig(epochs=1, max_steps=2, batch_size=2, progress=False, checkpoint_every=0),
          out_dir=tmp_path / "run")
    loaded = load_prompt(tmp_path / "run" / "prompt.safetensors", tiny_llama)
    assert predict(loaded, task.dev) == predict(model, task.dev)
    model.head.null.bias.data.fill_(1e4)  # a null score above every span: "" for SQuAD 2.0
    assert predict(model, task.dev) == ["", ""]


def test_encoder_span_head_keeps_cls_as_no_answer(minilm):
    model = PromptModel(minilm, DEEP, [], kind="qa")
    assert model.head.null is None
