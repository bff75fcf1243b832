"""The GLUE and SuperGLUE metrics, as their official scorers compute them: F1 of the positive class
(MRPC, QQP), macro-F1 (CB), Matthews correlation (CoLA), MultiRC's F1a over every answer option and
exact match per question, ReCoRD's max-over-answers token F1 and EM, accuracy over choices (COPA).

All are fractions in [0, 1] (Matthews correlation in [-1, 1]).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from ptune.data.choices import choice_text
from ptune.data.examples import ChoiceExample
from ptune.data.metric_choice import is_negative, positive_label
from ptune.errors import PtuneError


class GroupedLabels(list):
    """Gold labels that also say which group each belongs to (MultiRC: the question an answer option
    answers), for metrics scored per group; to every other metric a plain list of labels."""

    def __init__(self, labels: Iterable[str], groups: Iterable[str]):
        super().__init__(labels)
        self.groups = list(groups)


def _check(gold: Sequence, predicted: Sequence) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold items but {len(predicted)} predictions")
    if not gold:
        raise ValueError("nothing to score: no gold items")


def _accuracy(gold: Sequence, predicted: Sequence) -> float:
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


def _positive(gold: Sequence[str], predicted: Sequence[str]) -> str | None:
    """The positive class among the labels seen (None when only the negative one is)."""
    seen = sorted(set(gold) | set(predicted))
    if len(seen) == 1:
        return None if is_negative(seen[0]) else seen[0]
    positive = positive_label(seen)
    if positive is None:
        raise PtuneError(f"F1 scores the positive class of a binary task; labels {', '.join(map(str, seen))} name none "
                         "(as X/not_X, True/False, 1/0); score with accuracy or macro_f1")
    return positive


def binary_f1(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Accuracy, and F1 of the positive class (``equivalent``, ``duplicate``, ``True``; 0.0 when no
    example is positive in gold or predicted), as GLUE reports MRPC and QQP."""
    _check(gold, predicted)
    positive = _positive(gold, predicted)
    hits = sum(g == p == positive for g, p in zip(gold, predicted, strict=True))
    wanted, chosen = list(gold).count(positive), list(predicted).count(positive)
    return {"accuracy": _accuracy(gold, predicted), "f1": 2 * hits / (wanted + chosen) if wanted + chosen else 0.0}


def macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Accuracy, and the unweighted mean of each label's F1 over the labels in gold or predicted (CB)."""
    _check(gold, predicted)
    right = Counter(g for g, p in zip(gold, predicted, strict=True) if g == p)
    wanted, chosen = Counter(gold), Counter(predicted)
    labels = wanted.keys() | chosen.keys()
    return {"accuracy": _accuracy(gold, predicted),
            "macro_f1": sum(2 * right[label] / (wanted[label] + chosen[label]) for label in labels) / len(labels)}


def matthews(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Matthews correlation of gold and predicted labels (CoLA; several classes: Gorodkin's R_K, as
    scikit-learn computes it), 0.0 where it is undefined (one class only on a side); and accuracy."""
    _check(gold, predicted)
    n, correct = len(gold), sum(g == p for g, p in zip(gold, predicted, strict=True))
    wanted, chosen = Counter(gold), Counter(predicted)
    labels = wanted.keys() | chosen.keys()
    covariance = correct * n - sum(wanted[k] * chosen[k] for k in labels)
    spread = (n * n - sum(c * c for c in chosen.values())) * (n * n - sum(c * c for c in wanted.values()))
    return {"matthews": covariance / math.sqrt(spread) if spread else 0.0, "accuracy": correct / n}


def multirc(gold: GroupedLabels, predicted: Sequence[str]) -> dict[str, float]:
    """MultiRC: "f1a", F1 of the True class over every answer option, and "em", the fraction of questions
    whose every answer option is labelled right."""
    _check(gold, predicted)
    if not isinstance(gold, GroupedLabels):
        raise PtuneError("multirc scores answer options per question, and these examples have no questions; read "
                         "MultiRC with --task superglue/multirc, or score with f1")
    right: dict[str, bool] = {}
    for group, g, p in zip(gold.groups, gold, predicted, strict=True):
        right[group] = right.get(group, True) and g == p
    return {"f1a": binary_f1(gold, predicted)["f1"], "em": sum(right.values()) / len(right)}


def choice_accuracy(gold: Sequence[ChoiceExample], predicted: Sequence[int]) -> dict[str, float]:
    """The fraction of examples whose chosen index is the right choice's (COPA)."""
    _check(gold, predicted)
    return {"accuracy": sum(e.label == p for e, p in zip(gold, predicted, strict=True)) / len(gold)}


def record(gold: Sequence[ChoiceExample], predicted: Sequence[int]) -> dict[str, float]:
    """ReCoRD: "f1" and "em", the chosen entity's token F1 and exact match (SQuAD's normalisation) against
    the best of the gold answers, averaged over queries (examples without `answers`: the right choice)."""
    from ptune.tasks.squad_metrics import exact_match, f1

    _check(gold, predicted)
    f1s, ems = [], []
    for example, index in zip(gold, predicted, strict=True):
        chosen = choice_text(example, index)
        answers = example.answers or (choice_text(example, example.label),)
        f1s.append(max(f1(chosen, answer) for answer in answers))
        ems.append(max(exact_match(chosen, answer) for answer in answers))
    return {"f1": sum(f1s) / len(f1s), "em": sum(ems) / len(ems)}
