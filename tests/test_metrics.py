"""Tests for ptune.tasks.metrics on values computed by hand."""

from __future__ import annotations

import pytest

from ptune.errors import PtuneError
from ptune.tasks.metrics import MAIN_KEY, accuracy, entity_f1, score


def test_accuracy() -> None:
    assert accuracy(["a", "b", "a", "b"], ["a", "a", "a", "b"]) == 0.75
    with pytest.raises(ValueError):
        accuracy(["a"], ["a", "b"])


def test_entity_f1_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "O"]]
    # gold entities: PER(0-1), LOC(3), ORG(0); predicted: PER(0-1), ORG(3); one match.
    # precision 1/2, recall 1/3, f1 = 2 * (1/2 * 1/3) / (1/2 + 1/3) = 0.4
    result = entity_f1(gold, predicted)
    assert result == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4})


def test_entity_f1_counts_only_whole_spans() -> None:
    # A predicted span that is one token short is a miss, not a partial hit.
    result = entity_f1([["B-PER", "I-PER"]], [["B-PER", "O"]])
    assert result == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_entity_f1_conlleval_mode_accepts_leading_i() -> None:
    # conlleval treats I-PER after O as the start of an entity: strict IOB2 would score 0 here.
    assert entity_f1([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]])["f1"] == 1.0


def test_entity_f1_no_entities_is_zero_without_warning() -> None:
    assert entity_f1([["O"]], [["O"]]) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_score_and_main_key() -> None:
    result = score("accuracy", ["x", "y"], ["x", "x"])
    assert result == {"accuracy": 0.5} and result[MAIN_KEY["accuracy"]] == 0.5
    f1 = score("entity_f1", [["B-X"]], [["B-X"]])
    assert f1[MAIN_KEY["entity_f1"]] == 1.0 and set(f1) == {"f1", "precision", "recall"}
    tokens = score("token_accuracy", [["NN", "VB"]], [["NN", "NN"]])
    assert tokens[MAIN_KEY["token_accuracy"]] == 0.5 and set(tokens) == {"accuracy", "macro_f1"}
    srl = score("srl_f1", [["B-ARG0", "B-V"]], [["B-ARG0", "B-V"]])
    assert srl[MAIN_KEY["srl_f1"]] == 1.0 and set(srl) == {"f1", "precision", "recall", "f1_with_v"}
    with pytest.raises(PtuneError, match="unknown metric 'bleu'"):
        score("bleu", [], [])
