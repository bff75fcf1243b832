"""Regression (a score per text): kind detection, the correlation metric, training through the API and
the CLI on real VADER tweets (tests/fixtures/regression), and serving next to a classification prompt."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from ptune.cli import main
from ptune.config import MethodConfig, TrainConfig
from ptune.data import Task, TextExample, from_files
from ptune.errors import PtuneError
from ptune.infer.predict import evaluate, predict
from ptune.model.prompt_model import PromptModel
from ptune.storage.prompt_files import load_prompt, read_header, save_prompt
from ptune.tasks import get_kind
from ptune.tasks.metrics import MAIN_KEY, correlation, score
from ptune.training.loop import train

FIXTURE = Path(__file__).parent / "fixtures" / "regression"
TWEETS = ["I love this so much, best day ever!", "This is awful. I hate it.", "ok I guess"]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as stream:
        csv.writer(stream).writerows([("text", "label"), *rows])
    return path


# -- which kind a file makes -----------------------------------------------------------------------
def test_fractional_numeric_labels_make_a_regression_task(caplog):
    with caplog.at_level(logging.INFO, logger="ptune"):
        task = from_files(FIXTURE / "train.csv", FIXTURE / "dev.csv", FIXTURE / "test.csv")
    assert (task.kind, task.metric, task.labels) == ("regression", "correlation", [])
    assert (len(task.train), len(task.dev), len(task.test)) == (120, 40, 40)
    assert all(isinstance(e.label, float) and -4 <= e.label <= 4 for e in task.train + task.dev + task.test)
    assert "regression" in caplog.text and "--kind classification" in caplog.text


def test_whole_number_labels_stay_classes(tmp_path, caplog):
    data = write_csv(tmp_path / "binary.csv", [("good", "1"), ("bad", "0"), ("fine", "1")])
    with caplog.at_level(logging.INFO, logger="ptune"):
        task = from_files(data)
    assert (task.kind, task.labels, task.metric) == ("classification", ["0", "1"], "accuracy")
    assert "--kind regression" in caplog.text


def test_kind_overrides_detection(tmp_path):
    classes = from_files(FIXTURE / "train.csv", kind="classification")
    assert classes.kind == "classification" and len(classes.labels) > 50
    assert all(isinstance(e.label, str) for e in classes.train)
    whole = write_csv(tmp_path / "stars.csv", [("great", "5"), ("poor", "1"), ("fine", "3")])
    scores = from_files(whole, kind="regression")
    assert scores.kind == "regression" and [e.label for e in scores.train] == [5.0, 1.0, 3.0]


def test_a_label_that_is_not_a_number_is_one_line_naming_file_and_row(tmp_path):
    bad = write_csv(tmp_path / "bad.csv", [("good", "1.5"), ("meh", "n/a"), ("bad", "-2.25")])
    good = write_csv(tmp_path / "good.csv", [("good", "1.5"), ("bad", "-2.25")])
    cases = [
        (lambda: from_files(bad, kind="regression"), bad, "row 2"),  # asked for
        (lambda: from_files(bad), bad, "row 2"),  # detected from the other, fractional labels
        (lambda: from_files(good, dev=bad), bad, "row 2"),  # detected on train; the dev file is wrong
    ]
    for load, path, row in cases:
        with pytest.raises(PtuneError) as error:
            load()
        message = str(error.value)
        assert str(path) in message and row in message and "'n/a'" in message and "\n" not in message
    # an explicit --kind classification keeps every label a class
    assert from_files(bad, kind="classification").labels == ["-2.25", "1.5", "n/a"]


def test_cli_refuses_a_non_numeric_label_before_loading_a_model(tmp_path, capsys):
    bad = write_csv(tmp_path / "bad.csv", [("good", "1"), ("meh", "positive")])
    assert main(["train", "--train", str(bad), "--kind", "regression", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "row 2" in err, err


# -- the metric -----------------------------------------------------------------------------------
def test_correlation_agrees_with_scipy():
    from scipy.stats import pearsonr, spearmanr

    gold = [0.5, -1.25, 3.0, 2.0, -0.75, 1.0, 1.0]
    predicted = [0.4, -0.5, 2.2, 2.6, 0.1, 0.3, 1.9]
    got = score("correlation", gold, predicted)
    assert got["pearson"] == pytest.approx(pearsonr(gold, predicted)[0], abs=1e-12)
    assert got["spearman"] == pytest.approx(spearmanr(gold, predicted)[0], abs=1e-12)
    assert got["mse"] == pytest.approx(sum((g - p) ** 2 for g, p in zip(gold, predicted)) / len(gold))
    assert correlation([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])["pearson"] == pytest.approx(1.0)
    assert correlation([1.0, 2.0, 3.0], [9.0, 4.0, 1.0])["spearman"] == pytest.approx(-1.0)
    assert MAIN_KEY["correlation"] == "pearson"


def test_a_constant_has_no_correlation_zero_not_nan():
    for gold, predicted in (([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]), ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]), ([1.0], [2.0])):
        got = correlation(gold, predicted)
        assert got["pearson"] == 0.0 and got["spearman"] == 0.0 and not math.isnan(got["mse"])


def test_a_regression_task_refuses_label_words_and_a_vote(minilm):
    with pytest.raises(PtuneError, match="--head linear"):
        PromptModel(minilm, MethodConfig(method="deep", length=2, head="verbalizer"), [], kind="regression")
    with pytest.raises(PtuneError, match="init vocab"):
        PromptModel(minilm, MethodConfig(method="prompt", length=2, init="labels"), [], kind="regression")
    with pytest.raises(PtuneError, match="combine mean"):
        get_kind("regression").combine(torch.tensor([0.5, 1.5]), "vote")
    assert get_kind("regression").combine(torch.tensor([0.5, 1.5]), "mean").item() == pytest.approx(1.0)


def test_text_pairs_are_scored(minilm):
    """STS-B style: a score per sentence pair; the second sentence changes the score."""
    pairs = [TextExample("A man is playing a guitar.", 4.2, "A man plays guitar."),
             TextExample("A man is playing a guitar.", 0.4, "The stock market fell sharply today.")]
    task = Task("sts", "regression", [], pairs, [], [], "correlation")
    model = PromptModel.for_task(minilm, task, MethodConfig(method="deep", length=2))
    model.initialise(seed=0)
    scores = predict(model, pairs)
    assert all(isinstance(s, float) for s in scores) and scores[0] != scores[1]


# -- end to end on the real sample ----------------------------------------------------------------
@pytest.fixture(scope="module")
def api_run(minilm, tmp_path_factory):
    """A deep prompt trained a few steps through the Python API (kind given explicitly)."""
    out = tmp_path_factory.mktemp("api")
    task = from_files(FIXTURE / "train.csv", FIXTURE / "dev.csv", FIXTURE / "test.csv", kind="regression")
    model = PromptModel.for_task(minilm, task, MethodConfig(method="deep", length=4))
    model.initialise(seed=0)
    result = train(model, task, TrainConfig(epochs=1, max_steps=4, batch_size=16, seed=0, progress=False), out_dir=out)
    return task, model, result, out


def test_api_trains_scores_and_reloads_the_same_scores(api_run, minilm, tmp_path):
    task, model, result, out = api_run
    assert set(result.dev) == {"pearson", "spearman", "mse"}
    test = evaluate(model, task.test)
    assert set(test) == {"pearson", "spearman", "mse"} and -1 <= test["pearson"] <= 1
    scores = predict(model, task.test)
    assert len(scores) == 40 and all(isinstance(s, float) for s in scores) and len(set(scores)) > 1
    for path in (out / "prompt.safetensors", tmp_path / "again.safetensors"):
        if not path.exists():
            save_prompt(path, model, task_name="tweets", metric=task.metric)
        loaded = load_prompt(path, minilm)
        assert loaded.kind.name == "regression"
        assert predict(loaded, task.test) == pytest.approx(scores, abs=1e-6)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`ptune train` on the CSV files, the kind detected from the fractional labels."""
    out = tmp_path_factory.mktemp("cli")
    code = main(["-q", "train", "--train", str(FIXTURE / "train.csv"), "--dev", str(FIXTURE / "dev.csv"),
                 "--test", str(FIXTURE / "test.csv"), "--method", "deep", "--length", "4", "--max-steps", "4",
                 "--epochs", "1", "--batch-size", "16", "--out", str(out)])
    assert code == 0
    return out


def test_cli_train_writes_correlations_and_a_regression_header(cli_run):
    results = json.loads((cli_run / "results.json").read_text())
    for split in ("dev", "test"):
        assert set(results[split]) == {"pearson", "spearman", "mse"}, results
        assert -1 <= results[split]["pearson"] <= 1 and -1 <= results[split]["spearman"] <= 1
    assert "dev_pearson" in (cli_run / "metrics.jsonl").read_text()
    header = read_header(cli_run / "prompt.safetensors")["task"]
    assert (header["kind"], header["metric"], header["labels"]) == ("regression", "correlation", [])


def test_cli_evaluate_and_predict(cli_run, minilm, capsys):
    prompt = str(cli_run / "prompt.safetensors")
    assert main(["-q", "evaluate", prompt, "--data", str(FIXTURE / "test.csv")]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = json.loads((cli_run / "results.json").read_text())["test"]
    assert result["examples"] == 40 and result["pearson"] == pytest.approx(expected["pearson"], abs=1e-6)
    assert main(["-q", "predict", prompt, "--text", *TWEETS]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == TWEETS
    assert all(set(line) == {"text", "score"} and isinstance(line["score"], float) for line in lines)
    reference = predict(load_prompt(prompt, minilm), [TextExample(t) for t in TWEETS])
    assert [line["score"] for line in lines] == pytest.approx(reference, abs=1e-6)


# -- serving --------------------------------------------------------------------------------------
def request(port: int, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as response:
        return response.status, json.loads(response.read())


@pytest.mark.slow
def test_server_answers_a_score_and_a_label_in_one_request(cli_run, minilm, tmp_path):
    folder = tmp_path / "prompts"
    folder.mkdir()
    shutil.copy(cli_run / "prompt.safetensors", folder / "tweets.safetensors")
    sentiment = PromptModel(minilm, MethodConfig(method="deep", length=4), ["negative", "positive"])
    sentiment.initialise(seed=1)
    save_prompt(folder / "sentiment.safetensors", sentiment, task_name="sentiment", metric="accuracy")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "ptune.cli", "serve", str(folder), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if request(port, "/health")[0] == 200:
                    break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    process.kill()
                    pytest.fail("server did not start: " + process.stdout.read())
                time.sleep(0.5)
        kinds = {t["task"]: t["kind"] for t in request(port, "/tasks")[1]["tasks"]}
        assert kinds == {"tweets": "regression", "sentiment": "classification"}
        items = [{"task": "tweets", "text": TWEETS[0]}, {"task": "sentiment", "text": TWEETS[1]},
                 {"task": "tweets", "text": TWEETS[1]}]
        status, body = request(port, "/predict", {"items": items})
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert status == 200
    got = body["predictions"]
    assert set(got[0]) == {"text", "score"} and set(got[1]) == {"text", "label", "probability", "probabilities"}
    tweets = load_prompt(folder / "tweets.safetensors", minilm)
    assert [got[0]["score"], got[2]["score"]] == pytest.approx(predict(tweets, [TextExample(TWEETS[0]),
                                                                                 TextExample(TWEETS[1])]), abs=1e-5)
    assert got[1]["label"] == predict(sentiment, [TextExample(TWEETS[1])])[0]
