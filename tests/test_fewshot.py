"""The few-shot setting (``ptune train --shots K``): the draw is seeded and stratified, cross-validation folds
never train on their own dev part, the dev split is never read, template selection prefers a template that
sees the text over one that truncates it away, results.json records every candidate's CV scores, and bad
requests are refused in one line naming the option. A tiny random BERT keeps each run to seconds."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from ptune.cli import main
from ptune.config import MethodConfig, TrainConfig
from ptune.data import Task, TextExample
from ptune.data.shots import Shots, draw, folds
from ptune.errors import PtuneError

GOOD, BAD = ["good", "great", "lovely", "superb"], ["bad", "awful", "dull", "poor"]
NOUNS = ["film", "show", "play", "book"]
# A bad candidate: filler words before the text and --max-length 12 cut the text down to "the" (the class word
# is last), so no fold can be learned; listed first, it wins only if the scores tie.
CUT = "so so so so so so so so so {text}"
SEES = "{text}"


def rows(count: int | None = None) -> list[TextExample]:
    """The class word is learnable: every adjective appears with several nouns, so a fold's dev part holds
    adjectives its train part has seen."""
    examples = [TextExample(f"the {noun} was {word}", label) for noun in NOUNS for i in range(4)
                for word, label in ((GOOD[i], "positive"), (BAD[i], "negative"))]
    return examples[:count] if count else examples


@pytest.fixture
def one_thread():
    """The shared CI machine runs these tiny models far faster on one thread than on two busy ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- the draw and the folds --------------------------------------------------------------------------
def test_the_draw_is_seeded_and_stratified_per_class():
    pool = ([TextExample(f"p{i}", "positive") for i in range(20)] + [TextExample(f"n{i}", "negative") for i in range(6)]
            + [TextExample(f"u{i}", "neutral") for i in range(4)] + [TextExample("unlabelled")])
    per_class = Shots(3, "class", 2)
    first = draw(pool, per_class, seed=1)
    assert first == draw(pool, per_class, seed=1)  # the same seed, the same K
    assert first != draw(pool, per_class, seed=2)
    assert Counter(e.label for e in first) == {"positive": 3, "negative": 3, "neutral": 3}
    assert all(e in pool and e.label is not None for e in first)
    total = draw(pool, Shots(8, "total", 4), seed=1)
    assert len(total) == 8 == len(set(total)) and total == draw(pool, Shots(8, "total", 4), seed=1)
    assert all(e.label is not None for e in total)  # only labelled examples are drawn


def test_no_fold_trains_on_its_own_dev_part():
    examples = rows()
    parts = folds(examples, 4, seed=3)
    assert len(parts) == 4
    seen = Counter()
    for train_part, dev_part in parts:
        assert not set(train_part) & set(dev_part)
        assert len(train_part) + len(dev_part) == len(examples)
        assert {e.label for e in dev_part} == {"positive", "negative"}  # stratified
        seen.update(dev_part)
    assert seen == Counter(examples)  # each example is scored exactly once
    assert parts == folds(examples, 4, seed=3) and parts != folds(examples, 4, seed=4)


# -- selection --------------------------------------------------------------------------------------
class Unreadable(list):
    """A dev split that fails the moment anything reads it."""

    def _refuse(self, *args):
        raise AssertionError("the full dev split was read")

    __iter__ = __len__ = __getitem__ = __bool__ = _refuse


@pytest.mark.slow
def test_selection_picks_the_template_that_sees_the_text_and_never_reads_dev(tiny_bert_dir, one_thread):
    from ptune.model.backbones import load_backbone
    from ptune.training.fewshot import select

    backbone = load_backbone(str(tiny_bert_dir))
    task = Task("tiny", "classification", ["negative", "positive"], rows(), Unreadable(), [], "accuracy")
    method = MethodConfig(method="finetune", max_length=12)  # the tiny random BERT learns little through a prompt
    config = TrainConfig(epochs=10, lr=0.003, batch_size=12, patience=0, progress=False, seed=0)
    small, chosen, chosen_config, record = select(backbone, task, method, config, Shots(32, "total", 4),
                                                  templates=[CUT, SEES])
    scores = {row["template"]: row["mean"] for row in record["candidates"]}
    assert scores[SEES] > scores[CUT] + 0.2, scores
    assert chosen.template == SEES == record["chosen"]["template"] and chosen_config.lr == 0.003
    assert small.dev == [] and len(small.train) == 32
    assert all(len(row["fold_scores"]) == 4 for row in record["candidates"])


# -- the command ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fewshot-data")
    lines = ["text,label", *(f"{e.text},{e.label}" for e in rows())]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    (folder / "test.csv").write_text("\n".join(lines[:9]) + "\n")
    (folder / "dev.csv").write_bytes(b"\x00\xff not a table \xfe")  # reading it fails
    return folder


def argv(data: Path, backbone: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "train", "--train", str(data / "train.csv"), "--test", str(data / "test.csv"),
            "--backbone", str(backbone), "--method", "finetune", "--max-length", "12",
            "--epochs", "2", "--batch-size", "8", "--lr", "0.003", "--out", str(out), *extra]


def refused(args: list[str], capsys, option: str) -> None:
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert option in err[0], err[0]


@pytest.mark.parametrize("extra, option", [
    (["--shots", "40"], "--shots 40"),  # K larger than the data (32 examples)
    (["--shots", "3", "--cv-folds", "4"], "--cv-folds 4"),  # fewer examples than folds
    (["--shots", "20", "--shots-per", "class"], "--shots-per class"),  # a class has 16
    (["--cv-folds", "3"], "--shots"),  # a few-shot option without --shots
    (["--shots", "8", "--templates", SEES, SEES], "--templates"),
    (["--shots", "8", "--lrs", "0.1", "0.2"], "--lr and --lrs"),  # argv gives --lr: one rate or candidates
])
def test_bad_requests_are_refused_in_one_line(data, tiny_bert_dir, tmp_path, capsys, extra, option):
    refused(argv(data, tiny_bert_dir, tmp_path / "run", *extra), capsys, option)
    assert not (tmp_path / "run" / "results.json").exists()


def test_shots_per_class_needs_class_labels():
    from ptune.data.examples import TaggedExample

    tagged = [TaggedExample(("a",), ("O",))] * 4
    with pytest.raises(PtuneError, match="--shots-per"):
        draw(tagged, Shots(2, "class", 2), seed=0)


@pytest.mark.slow
def test_a_few_shot_run_records_every_candidate_and_never_reads_dev(data, tiny_bert_dir, tmp_path, capsys,
                                                                     one_thread):
    out = tmp_path / "run"
    with pytest.raises(PtuneError):  # without --shots, the dev file is read, and it cannot be
        from ptune.data import from_files

        from_files(data / "train.csv", data / "dev.csv")
    args = argv(data, tiny_bert_dir, out, "--dev", str(data / "dev.csv"), "--shots", "4", "--shots-per", "class",
                "--cv-folds", "2", "--templates", CUT, SEES, "--seeds", "1", "2")
    args.remove("-q")
    assert main(args) == 0
    log = capsys.readouterr().err
    assert "is not read" in log and "cross-validation" in log
    results = {seed: json.loads((out / f"seed-{seed}" / "results.json").read_text()) for seed in (1, 2)}
    for seed, result in results.items():
        record = result["fewshot"]
        assert record["shots"] == 4 and record["shots_per"] == "class" and record["cv_folds"] == 2
        assert record["drawn"] == {"negative": 4, "positive": 4} and record["seed"] == seed
        assert [row["template"] for row in record["candidates"]] == [CUT, SEES]
        assert all(len(row["fold_scores"]) == 2 for row in record["candidates"])
        assert record["chosen"]["template"] in (CUT, SEES) and "not read" in record["dev_split"]
        assert result["dev"] == {} and "accuracy" in result["test"]  # no dev scores; the test split once
    assert results[1]["fewshot"]["drawn_sha256"] != results[2]["fewshot"]["drawn_sha256"]  # each seed its own K
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["fewshot"]["chosen"]) == {"seed-1", "seed-2"} and "accuracy" in summary["fewshot"]["cv"]
    config = json.loads((out / "config.json").read_text())  # a missing seed restarts with the same request
    assert config["shots"] == 4 and config["templates"] == [CUT, SEES]
