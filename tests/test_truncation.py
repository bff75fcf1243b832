"""Truncation to max_length: done by slicing (as the old one-token-at-a-time loop cut), counted, logged
for training and evaluation, marked per item by `ptune predict` and the server; long QA questions cut."""

from __future__ import annotations

import json
import logging
import random

import pytest
import torch

from ptune.batch import encoding
from ptune.batch.encoding import Encoder, fit, truncation_counts
from ptune.batch.templates import parse_template
from ptune.cli import main
from ptune.config import MethodConfig, TrainConfig
from ptune.data import QAExample, TaggedExample, TextExample
from ptune.data.tasks import Task
from ptune.errors import PtuneError
from ptune.infer.bank import PromptBank
from ptune.model.prompt_model import PromptModel
from ptune.storage.prompt_files import save_prompt

CUT = "were cut to max_length"


def old_loop(text: int, pair: int, budget: int) -> tuple[int, int]:
    """The reference: the loop that cut the longer of text / text_pair one token at a time (text on ties)."""
    while text + pair > budget:
        if text >= pair:
            text -= 1
        else:
            pair -= 1
    return text, pair


def test_fit_is_the_old_loop():
    for text in range(30):
        for pair in range(30):
            for budget in range(1, 62):
                assert fit(text, pair, budget) == old_loop(text, pair, budget), (text, pair, budget)


@pytest.mark.parametrize("words, template", [(False, "[P]*2 {text} {label}"), (False, "{text} [P]*2 {text_pair}"),
                                             (True, "[P]*3 {text}")])
def test_slicing_gives_the_features_of_the_old_loop(minilm, monkeypatch, words, template):
    rng = random.Random(0)
    vocab = "the a film good bad plot actors brilliant unwatchable extraordinarily".split()

    def sentence(n):
        return [rng.choice(vocab) for _ in range(n)]

    if words:
        examples = [TaggedExample(tuple(sentence(n)), tuple("O" for _ in range(n))) for n in (0, 1, 5, 12, 30, 60)]
    else:
        pairs = "{text_pair}" in template
        examples = [TextExample(" ".join(sentence(a)), text_pair=" ".join(sentence(b)) if pairs else None)
                    for a in (1, 4, 9, 25, 50) for b in (1, 3, 9, 26, 40)]
    encoder = Encoder(minilm.tokenizer, parse_template(template), words=words, target=lambda e: None,
                      decoder=False, max_length=24)
    sliced = encoder.encode(examples)
    monkeypatch.setattr(encoding, "fit", old_loop)
    assert encoder.encode(examples) == sliced
    full = Encoder(minilm.tokenizer, parse_template(template), words=words, target=lambda e: None, decoder=False,
                   max_length=512).encode(examples)
    for cut, whole in zip(sliced, full):
        assert cut.truncated == len(whole.input_ids) - len(cut.input_ids)
        assert len(cut.input_ids) <= 24
        if words:
            placed = sum(w >= 0 for w in cut.word_index)
            assert cut.words_cut == sum(w >= 0 for w in whole.word_index) - placed


def test_encode_logs_one_summary(minilm, caplog):
    encoder = Encoder(minilm.tokenizer, parse_template("{text}"), words=False, target=lambda e: None, decoder=False,
                      max_length=16)
    with caplog.at_level(logging.WARNING, logger="ptune"):
        features = encoder.encode([TextExample("good " * 40), TextExample("good " * 20), TextExample("fine")])
    cut = [r for r in caplog.records if CUT in r.getMessage()]
    assert len(cut) == 1
    assert "2 of 3 examples were cut to max_length=16, losing 32 tokens (up to 26 per example)" in cut[0].getMessage()
    assert truncation_counts(features) == {"examples": 2, "tokens": 32}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ptune"):
        encoder.encode([TextExample("fine")])
    assert not [r for r in caplog.records if CUT in r.getMessage()]


def make_prompt(backbone, path, *, tagging=False, max_length=24):
    labels = ["O", "B-PER", "I-PER"] if tagging else ["negative", "positive"]
    model = PromptModel(backbone, MethodConfig(method="prompt", length=2, max_length=max_length), labels,
                        kind="tagging" if tagging else "classification")
    model.initialise(seed=0)
    save_prompt(path, model, task_name="t", metric="entity_f1" if tagging else "accuracy")
    return model


def test_training_reports_what_was_cut(minilm, caplog):
    train = [TextExample("a good film " * 20, label="positive"), TextExample("bad", label="negative")] * 4
    dev = [TextExample("an awful film " * 20, label="negative"), TextExample("fine", label="positive")]
    task = Task("t", "classification", ["negative", "positive"], train, dev, [], "accuracy")
    model = PromptModel(minilm, MethodConfig(method="prompt", length=2, max_length=24), task.labels)
    from ptune.training.loop import train as run_training

    with caplog.at_level(logging.WARNING, logger="ptune"):
        result = run_training(model, task, TrainConfig(epochs=1, max_steps=1, batch_size=8, progress=False))
    messages = [r.getMessage() for r in caplog.records if CUT in r.getMessage()]
    assert any(m.startswith("4 of 8 examples") for m in messages) and any(m.startswith("1 of 2") for m in messages)
    assert result.truncated["train"]["examples"] == 4 and result.truncated["dev"]["examples"] == 1


def test_evaluate_and_predict_mark_what_was_cut(minilm, tmp_path, capsys, caplog):
    path = tmp_path / "p.safetensors"
    make_prompt(minilm, path)
    data = tmp_path / "dev.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [{"text": "a good film " * 20, "label": "positive"},
                                                       {"text": "bad", "label": "negative"}]) + "\n")
    with caplog.at_level(logging.WARNING, logger="ptune"):
        assert main(["-q", "evaluate", str(path), "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["truncated"]["examples"] == 1
    assert any("1 of 2 examples" in r.getMessage() for r in caplog.records)

    assert main(["-q", "predict", str(path), "--text", "a good film " * 20, "bad"]) == 0
    long, short = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert long["truncated"] > 0 and "truncated" not in short

    tags = tmp_path / "tags.safetensors"
    make_prompt(minilm, tags, tagging=True)
    assert main(["-q", "predict", str(tags), "--text", "Peter went to Paris " * 10]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["truncated"] > 0 and 0 < record["truncated_words"] < 40
    assert record["tags"][-record["truncated_words"]:] == ["O"] * record["truncated_words"]


def test_the_server_marks_what_was_cut(minilm, tmp_path):
    from fastapi.testclient import TestClient

    from ptune.serve.app import create_app

    make_prompt(minilm, tmp_path / "sentiment.safetensors")
    with TestClient(create_app(tmp_path, minilm)) as client:
        response = client.post("/predict", json={"task": "sentiment", "texts": ["a good film " * 20, "bad"]})
    assert response.status_code == 200
    long, short = response.json()["predictions"]
    assert long["truncated"] > 0 and "truncated" not in short


def test_bank_returns_the_features(minilm, tmp_path):
    model = make_prompt(minilm, tmp_path / "p.safetensors")
    bank = PromptBank({"t": model})
    (label, cut), (_, whole) = bank.predict_features([("t", TextExample("good " * 40)), ("t", TextExample("good"))])
    assert label in model.labels and cut.truncated > 0 and whole.truncated == 0


def test_a_long_question_is_cut_with_a_warning(minilm, caplog):
    from ptune.tasks.qa import featurize

    tokenizer = minilm.tokenizer
    example = QAExample("q-long", "why " * 60, "some context here", ("some",), (0,), False)
    with caplog.at_level(logging.WARNING, logger="ptune"):
        features = featurize([example], tokenizer, max_length=64, stride=16)
    keep = 64 - tokenizer.num_special_tokens_to_add(pair=True) - 16 - 1
    warned = [r.getMessage() for r in caplog.records if "q-long" in r.getMessage()]
    assert warned and f"'q-long' lost {60 - keep}" in warned[0]
    assert len(features) == 1 and features[0].input_ids.count(tokenizer.convert_tokens_to_ids("why")) == keep
    assert any(offset is not None for offset in features[0].offsets)  # the context is still there
    with pytest.raises(PtuneError, match="no room for a question"):
        featurize([example], tokenizer, max_length=20, stride=16)


def test_a_cut_question_still_trains_and_predicts(minilm):
    from ptune.infer.predict import predict

    model = PromptModel(minilm, MethodConfig(method="prompt", length=2, max_length=48), [], kind="qa")
    model.initialise(seed=0)
    example = QAExample("q", "what " * 80 + "?", "Paris is in France", ("Paris",), (0,), False)
    torch.manual_seed(0)
    assert isinstance(predict(model, [example])[0], str)
