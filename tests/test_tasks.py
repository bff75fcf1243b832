"""Tests for ptune.data.tasks: built-in splits, user-file tasks and label checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptune.data import (
    TaggedExample,
    Task,
    TextExample,
    check_labels,
    conll2003,
    from_files,
    get_task,
    rotten_tomatoes,
)
from ptune.errors import PtuneError


@pytest.fixture(scope="module")
def rt() -> Task:
    return rotten_tomatoes()


def test_conll2003_official_split_sizes() -> None:
    task = conll2003()
    assert (len(task.train), len(task.dev), len(task.test)) == (14_041, 3_250, 3_453)
    assert task.kind == "tagging" and task.metric == "entity_f1"
    assert task.labels[0] == "O"
    assert task.labels[1:] == sorted(
        f"{p}-{t}" for p in "BI" for t in ("LOC", "MISC", "ORG", "PER")
    )
    assert task.train[0] == TaggedExample(
        ("EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."),
        ("B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"),
    )
    for split, name in ((task.dev, "dev"), (task.test, "test")):
        check_labels(task, split, name)


def test_rotten_tomatoes_split_sizes_and_labels(rt: Task) -> None:
    assert (len(rt.train), len(rt.dev), len(rt.test)) == (10_201, 1_275, 1_276)
    assert rt.labels == ["negative", "positive"]
    assert rt.kind == "classification" and rt.metric == "accuracy"
    labels = [e.label for e in rt.train + rt.dev + rt.test]
    assert (labels.count("negative"), labels.count("positive")) == (5_384, 7_368)


def test_rotten_tomatoes_splits_are_disjoint(rt: Task) -> None:
    texts = [{e.text for e in split} for split in (rt.train, rt.dev, rt.test)]
    assert sum(map(len, texts)) == len(rt.train) + len(rt.dev) + len(rt.test)
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])


def test_rotten_tomatoes_is_deterministic(rt: Task) -> None:
    again = rotten_tomatoes()
    assert (again.train, again.dev, again.test) == (rt.train, rt.dev, rt.test)


def test_get_task() -> None:
    assert get_task("rotten_tomatoes").name == "rotten_tomatoes"
    with pytest.raises(
        PtuneError, match="unknown task 'sst2'; known tasks: conll2003, rotten_tomatoes"
    ):
        get_task("sst2")


def test_from_files_classification(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\na,pos\nb,neg\nc,pos\n")
    (tmp_path / "test.jsonl").write_text('{"text": "d", "label": "neg"}\n')
    task = from_files(tmp_path / "train.csv", test=tmp_path / "test.jsonl", name="mine")
    assert task.kind == "classification" and task.metric == "accuracy"
    assert task.labels == ["neg", "pos"]
    assert task.dev == [] and task.test == [TextExample("d", "neg")]
    (tmp_path / "test.jsonl").write_text('{"text": "d"}\n')  # a test file is scored: it needs its labels
    with pytest.raises(PtuneError, match="test.jsonl: example 1 of the test file .* has no label"):
        from_files(tmp_path / "train.csv", test=tmp_path / "test.jsonl", name="mine")


def test_from_files_tagging_puts_o_first(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a B-X\nb O\n\nc I-X\n")
    task = from_files(tmp_path / "train.txt")
    assert task.kind == "tagging" and task.metric == "entity_f1"
    assert task.labels == ["O", "B-X", "I-X"]


def test_from_files_kind_mismatch(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a O\n")
    with pytest.raises(PtuneError, match="holds tagging examples but the task is classification"):
        from_files(tmp_path / "train.txt", kind="classification")


def test_from_files_rejects_unseen_dev_label(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\na,pos\nb,neg\n")
    (tmp_path / "dev.csv").write_text("text,label\nc,pos\nd,meh\n")
    with pytest.raises(
        PtuneError, match=r"dev.csv: label 'meh' \(row 2\) was not seen in training"
    ):
        from_files(tmp_path / "train.csv", tmp_path / "dev.csv")


def test_check_labels_message() -> None:
    task = Task("t", "classification", ["negative", "positive"], [], [], [], "accuracy")
    examples = [TextExample("x", "positive")] * 3 + [TextExample("y", "neutral"), TextExample("z")]
    with pytest.raises(PtuneError) as excinfo:
        check_labels(task, examples, "dev.csv")
    assert str(excinfo.value) == (
        "dev.csv: label 'neutral' (row 4) was not seen in training;"
        " known labels: negative, positive — remove it or add it to the training data"
    )
    check_labels(task, [*examples[:3], TextExample("unlabelled")], "test.csv")


def test_check_labels_tags() -> None:
    task = Task("t", "tagging", ["O", "B-PER"], [], [], [], "entity_f1")
    with pytest.raises(PtuneError, match=r"test.txt: tag 'B-LOC' \(sentence 2, token 2\)"):
        check_labels(
            task,
            [TaggedExample(("a",), ("O",)), TaggedExample(("b", "c"), ("O", "B-LOC"))],
            "test.txt",
        )
