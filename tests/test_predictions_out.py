"""Answers users can use: class probabilities and top-k, per-word and per-entity tag scores, QA answer
and no-answer scores, ensembles' probabilities, the server's JSON, ``ptune predict --output`` files,
the QA truncation marks and one truncation warning per call. Untrained real MiniLM prompts: these
check shapes and consistency, not quality."""

from __future__ import annotations

import csv
import json
import logging
import math
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
import torch

from ptune.cli import main
from ptune.config import MethodConfig
from ptune.data import QAExample, TaggedExample, TextExample
from ptune.errors import PtuneError
from ptune.infer.bank import PromptBank, ensemble_predict
from ptune.infer.predict import predict
from ptune.model.prompt_model import PromptModel
from ptune.storage.prompt_files import save_prompt
from ptune.tasks.qa_answers import unseen_context

LABELS = ["negative", "neutral", "positive"]
TAGS = ["O", "B-PER", "I-PER", "B-LOC"]
TEXTS = [TextExample("a gripping , beautifully acted film"), TextExample("dull and overlong"),
         TextExample("not bad at all")]
SENTENCE = TaggedExample(("Peter", "Blackburn", "visited", "Brussels"))
CONTEXT = "Peter Blackburn went home to Brussels after the summit in Paris. " * 3


def model(backbone, *, kind="classification", seed=0, **options):
    labels = {"classification": LABELS, "tagging": TAGS}.get(kind, [])
    m = PromptModel(backbone, MethodConfig(**{"method": "deep", "length": 4, **options}), labels, kind=kind)
    m.initialise(seed=seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in m.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.5)  # distinct, far from uniform predictions
    return m.eval()


def qa_model(backbone, metric, **options):
    m = PromptModel(backbone, MethodConfig(method="prompt", length=2, **options), [], kind="qa", metric=metric)
    m.initialise(seed=0)
    return m.eval()


def check_probabilities(record, labels=LABELS):
    probabilities = record["probabilities"]
    values = list(probabilities.values())
    assert set(probabilities) <= set(labels) and all(0.0 <= p <= 1.0 for p in values)
    assert values == sorted(values, reverse=True)  # likeliest first
    assert next(iter(probabilities)) == record["label"] and record["probability"] == probabilities[record["label"]]


# -- the Python API ----------------------------------------------------------------------------------
def test_probabilities_sum_to_one_and_agree_with_the_label(minilm):
    m = model(minilm)
    records = predict(m, TEXTS, scores=True)
    assert [r["label"] for r in records] == predict(m, TEXTS)  # the plain API is unchanged
    logits = m(m.collate(m.encode(TEXTS)))
    for record, row in zip(records, logits.softmax(-1)):
        check_probabilities(record)
        assert math.isclose(sum(record["probabilities"].values()), 1.0, abs_tol=1e-5)
        for label, p in zip(LABELS, row.tolist()):
            assert record["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_top_k_keeps_the_k_likeliest_in_order(minilm):
    m = model(minilm)
    full = predict(m, TEXTS, scores=True)
    for k in (1, 2, 5):
        for record, whole in zip(predict(m, TEXTS, scores=True, top_k=k), full):
            check_probabilities(record)
            assert list(record["probabilities"].items()) == list(whole["probabilities"].items())[:k]
            assert len(record["probabilities"]) == min(k, len(LABELS))
    with pytest.raises(PtuneError, match="at least 1"):
        predict(m, TEXTS, scores=True, top_k=0)
    with pytest.raises(PtuneError, match="scores=True"):
        predict(m, TEXTS, top_k=2)


def test_tagging_gives_word_and_entity_scores(minilm):
    m = model(minilm, kind="tagging", seed=3, max_length=12)
    long = TaggedExample(("Peter", "went", "to", "Paris") * 4)  # words past max_length are cut
    short, cut = predict(m, [SENTENCE, long], scores=True)
    assert short["tags"] == predict(m, [SENTENCE])[0] and "truncated" not in short
    assert len(short["tag_probabilities"]) == 4 and all(0.0 <= p <= 1.0 for p in short["tag_probabilities"])
    for record in (short, cut):
        for entity in record["entities"]:
            words = record["tag_probabilities"][entity["start"] : entity["end"]]
            assert 0.0 <= entity["score"] <= 1.0
            assert entity["score"] == pytest.approx(sum(words) / len(words))
    lost = cut["truncated_words"]
    assert lost > 0 and cut["tag_probabilities"][-lost:] == [None] * lost and cut["tags"][-lost:] == ["O"] * lost


def test_qa_gives_an_answer_score_and_a_no_answer_score_where_allowed(minilm):
    question = QAExample("q", "Where did Peter go?", CONTEXT)
    (squad,) = predict(qa_model(minilm, "squad", max_length=48), [question], scores=True)
    assert isinstance(squad["score"], float) and "no_answer_score" not in squad
    assert squad["answer"] and CONTEXT[squad["start"] : squad["end"]] == squad["answer"]
    (v2,) = predict(qa_model(minilm, "squad_v2", max_length=48), [question], scores=True)
    assert isinstance(v2["no_answer_score"], float)
    if v2["answer"] == "":
        assert v2["start"] is None and v2["no_answer_score"] > v2["score"]
    else:
        assert v2["score"] >= v2["no_answer_score"] and CONTEXT[v2["start"] : v2["end"]] == v2["answer"]


def test_qa_records_say_what_was_cut(minilm):
    m = qa_model(minilm, "squad", max_length=48)
    long = QAExample("long", "where did he go " * 20 + "?", CONTEXT)
    short = QAExample("short", "Where did Peter go?", CONTEXT)
    cut, whole = predict(m, [long, short], scores=True)
    assert cut["truncated"] > 0 and "truncated" not in whole
    assert "truncated_context" not in cut and "truncated_context" not in whole  # the windows cover it all
    # a context character that no window holds is counted (spaces are not)
    window = SimpleNamespace(offsets=(None, (0, 5), (6, 15), None))
    assert unseen_context("Peter Blackburn went home", [window]) == len("wenthome")
    assert m.kind.marks([short], [SimpleNamespace(example_index=0, question_cut=0, offsets=((0, 5),))]) == [
        {"truncated_context": len(CONTEXT.replace(" ", "")) - 5}]


def test_regression_keeps_its_score(minilm):
    m = PromptModel(minilm, MethodConfig(method="deep", length=4), [], kind="regression")
    m.initialise(seed=0)
    (record,) = predict(m, TEXTS[:1], scores=True)
    assert set(record) == {"text", "score"} and isinstance(record["score"], float)


def test_ensembles_give_mean_probabilities_and_vote_shares(minilm):
    members = [model(minilm, seed=s) for s in range(3)]
    alone = [predict(m, TEXTS, scores=True) for m in members]
    mean = ensemble_predict(members, TEXTS, combine="mean", scored=True)
    vote = ensemble_predict(members, TEXTS, combine="vote", scored=True)
    assert [label for label, _ in mean] == ensemble_predict(members, TEXTS, combine="mean")
    assert [label for label, _ in vote] == ensemble_predict(members, TEXTS, combine="vote")
    for i, ((label, scores), (voted, shares)) in enumerate(zip(mean, vote)):
        for name in LABELS:
            expected = sum(records[i]["probabilities"][name] for records in alone) / len(members)
            assert scores["probabilities"][name] == pytest.approx(expected, abs=1e-5)
            votes = sum(records[i]["label"] == name for records in alone)
            assert shares["probabilities"][name] == pytest.approx(votes / len(members), abs=1e-6)
        assert label == max(scores["probabilities"], key=scores["probabilities"].get)
    taggers = [model(minilm, kind="tagging", seed=s) for s in range(2)]
    ((tags, scores),) = ensemble_predict(taggers, [SENTENCE], scored=True)
    assert len(tags) == 4 and all(0.0 <= p <= 1.0 for p in scores["tag_probabilities"])


def test_the_bank_gives_the_records_of_each_task_alone(minilm):
    tasks = {"sentiment": model(minilm, seed=1), "ner": model(minilm, kind="tagging", seed=2)}
    items = [("sentiment", TEXTS[0]), ("ner", SENTENCE), ("sentiment", TEXTS[1])]
    records = PromptBank(tasks).predict_records(items, top_k=2)
    for (name, example), record in zip(items, records):
        (expected,) = predict(tasks[name], [example], scores=True, top_k=2)
        assert record.keys() == expected.keys()
        if name == "sentiment":
            check_probabilities(record)
            assert record["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
        else:
            assert record["tags"] == expected["tags"]
            assert record["tag_probabilities"] == pytest.approx(expected["tag_probabilities"], abs=1e-5)


def test_the_truncation_warning_is_logged_once_per_call(minilm, caplog):
    m = model(minilm, max_length=16)
    long = [TextExample(f"a good film number {i} " * 10) for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="ptune"):
        PromptBank({"t": m, "u": model(minilm, seed=1, max_length=20)}).predict_records(
            [("t", long[0]), ("u", long[1]), ("t", long[2]), ("t", TEXTS[0])], batch_size=1)
    warned = [r.getMessage() for r in caplog.records if "were cut to max_length" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("3 of 4 examples were cut to max_length=16/20")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ptune"):
        ensemble_predict([m, model(minilm, seed=2, max_length=16)], long, batch_size=2)
    warned = [r.getMessage() for r in caplog.records if "were cut to max_length" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("3 of 3 examples were cut to max_length=16,")


# -- ptune predict --output ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prompt_file(minilm, tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "sentiment.safetensors"
    save_prompt(path, model(minilm, max_length=24), task_name="sentiment", metric="accuracy")
    return path


def test_predict_prints_probabilities_and_checks_top_k(prompt_file, capsys):
    assert main(["-q", "predict", str(prompt_file), "--text", "a triumph", "a mess", "--top-k", "2"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2 and all(len(r["probabilities"]) == 2 for r in records)
    for record in records:
        check_probabilities(record)
    assert main(["-q", "predict", str(prompt_file), "--text", "x", "--top-k", "0"]) == 2
    assert "--top-k: '0' is out of range" in capsys.readouterr().err


def test_predict_writes_jsonl_json_and_csv(prompt_file, tmp_path, capsys):
    texts = ["a triumph", "a mess", "a good film " * 20]
    assert main(["-q", "predict", str(prompt_file), "--text", *texts]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed[2]["truncated"] > 0

    assert main(["-q", "predict", str(prompt_file), "--text", *texts, "--output", str(tmp_path / "p.jsonl")]) == 0
    assert capsys.readouterr().out == ""  # written, not printed
    lines = (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == printed

    assert main(["-q", "predict", str(prompt_file), "--text", *texts, "--output", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text(encoding="utf-8")) == printed

    out = tmp_path / "sub" / "p.csv"
    assert main(["-q", "predict", str(prompt_file), "--text", *texts, "--output", str(out)]) == 0
    with open(out, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["text", "label", "probability", *(f"probabilities.{label}" for label in LABELS),
                                 "truncated"]
    for row, record in zip(rows, printed):
        assert row["text"] == record["text"] and row["label"] == record["label"]
        assert float(row["probability"]) == pytest.approx(record["probability"])
        assert sum(float(row[f"probabilities.{label}"]) for label in LABELS) == pytest.approx(1.0, abs=1e-5)
        assert row["truncated"] == str(record.get("truncated", ""))
    assert [p.name for p in out.parent.iterdir()] == ["p.csv"]  # no temporary file left behind

    assert main(["-q", "predict", str(prompt_file), "--text", "x", "--output", str(tmp_path / "p.txt")]) == 2
    assert ".jsonl, .json or .csv" in capsys.readouterr().err


def test_predict_marks_a_cut_qa_question(minilm, tmp_path, capsys):
    path = tmp_path / "qa.safetensors"
    save_prompt(path, qa_model(minilm, "squad_v2", max_length=48), task_name="qa", metric="squad_v2")
    assert main(["-q", "predict", str(path), "--question", "where did he go " * 20, "--context", CONTEXT]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["truncated"] > 0 and {"answer", "score", "no_answer_score"} <= record.keys()


# -- the server over real HTTP ----------------------------------------------------------------------
def request(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(minilm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    save_prompt(folder / "sentiment.safetensors", model(minilm, seed=1), task_name="sentiment", metric="accuracy")
    save_prompt(folder / "ner.safetensors", model(minilm, kind="tagging", seed=2), task_name="ner", metric="entity_f1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "ptune.cli", "serve", str(folder), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("server did not start: " + process.stdout.read())
    yield port, folder
    process.terminate()
    process.wait(timeout=30)


def test_the_server_returns_probabilities_and_scores(server, minilm):
    port, folder = server
    texts = [e.text for e in TEXTS]
    status, body = request(port, {"task": "sentiment", "texts": texts})
    assert status == 200
    from ptune.storage.prompt_files import load_prompt

    expected = predict(load_prompt(folder / "sentiment.safetensors", minilm), TEXTS, scores=True)
    for got, want in zip(body["predictions"], expected):
        check_probabilities(got)
        assert got["label"] == want["label"] and len(got["probabilities"]) == len(LABELS)
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)

    items = [{"task": "sentiment", "text": texts[0]}, {"task": "ner", "text": "Peter Blackburn visited Brussels"}]
    status, body = request(port, {"items": items, "top_k": 1})
    assert status == 200
    label, tags = body["predictions"]
    check_probabilities(label)
    assert len(label["probabilities"]) == 1
    assert len(tags["tag_probabilities"]) == 4 and all(0.0 <= e["score"] <= 1.0 for e in tags["entities"])

    status, body = request(port, {"task": "sentiment", "texts": texts, "top_k": 0})
    assert status == 422 and "top_k" in body["error"]
