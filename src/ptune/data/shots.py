"""The few-shot setting (FewGLUE, FewNLU): a seeded draw of K labelled training examples (K in all, or K per
class, stratified) and the cross-validation folds of those K that model selection uses instead of a dev set."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ptune.errors import PtuneError

if TYPE_CHECKING:
    from ptune.data.tasks import Task

PER = ("total", "class")


@dataclass(frozen=True)
class Shots:
    """What ``ptune train --shots K [--shots-per class|total] [--cv-folds F]`` asks for."""

    k: int
    per: str = "total"
    folds: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise PtuneError(f"--shots is {self.k!r}: give a whole number of at least 1 (e.g. --shots 32)")
        if self.per not in PER:
            raise PtuneError(f"--shots-per is {self.per!r}: give class (K per label) or total (K in all)")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise PtuneError(f"--cv-folds is {self.folds!r}: give a whole number of at least 2 (e.g. --cv-folds 4)")
        if self.per == "total" and self.k < self.folds:
            raise PtuneError(f"--shots {self.k} is fewer than --cv-folds {self.folds}: each fold needs at least one "
                             f"example to score; give --shots {self.folds} or more, or fewer --cv-folds")

    def to_dict(self) -> dict:
        return {"shots": self.k, "shots_per": self.per, "cv_folds": self.folds}


def label_of(example) -> str | int | None:
    """The class an example belongs to (TextExample and ChoiceExample labels); None for other kinds."""
    label = getattr(example, "label", None)
    return label if isinstance(label, (str, int)) and not isinstance(label, bool) else None


def draw(examples: Sequence, shots: Shots, seed: int) -> list:
    """K labelled examples of ``examples``, drawn with ``random.Random(seed)``: K in all, or K of every class
    (``per="class"``, in the classes' sorted order). The same seed and data give the same draw; the result keeps
    the examples' order in ``examples``."""
    labelled = [i for i, e in enumerate(examples) if _labelled(e)]
    rng = random.Random(seed)
    if shots.per == "total":
        if shots.k > len(labelled):
            raise PtuneError(f"--shots {shots.k}: the training data has only {len(labelled)} labelled examples; "
                             f"give --shots {len(labelled)} or fewer")
        return [examples[i] for i in sorted(rng.sample(labelled, shots.k))]
    by_class: dict = {}
    for i in labelled:
        label = label_of(examples[i])
        if label is None:
            raise PtuneError("--shots-per class draws K examples of every label: the data's examples have no class "
                             "labels (tagging, QA or regression); use --shots-per total")
        by_class.setdefault(label, []).append(i)
    if not by_class:
        raise PtuneError(f"--shots {shots.k} --shots-per class: the training data has no labelled examples")
    short = {label: len(rows) for label, rows in by_class.items() if len(rows) < shots.k}
    if short:
        listed = ", ".join(f"{label!s} has {n}" for label, n in sorted(short.items(), key=str))
        raise PtuneError(f"--shots {shots.k} --shots-per class: {listed} training example(s); give --shots "
                         f"{min(short.values())} or fewer, or --shots-per total")
    if shots.k * len(by_class) < shots.folds:
        raise PtuneError(f"--shots {shots.k} per class x {len(by_class)} classes is fewer than --cv-folds "
                         f"{shots.folds}; give more --shots or fewer --cv-folds")
    chosen = [i for label in sorted(by_class, key=str) for i in rng.sample(by_class[label], shots.k)]
    return [examples[i] for i in sorted(chosen)]


def folds(examples: Sequence, count: int, seed: int) -> list[tuple[list, list]]:
    """``count`` (train part, dev part) partitions of ``examples``: each example is in exactly one dev part,
    and never in the train part of its own fold. Stratified: every class is dealt round-robin over the folds
    after a seeded shuffle, so each dev part holds the classes in the proportions of the whole."""
    if count < 2 or count > len(examples):
        raise PtuneError(f"--cv-folds {count}: needs from 2 to {len(examples)} (the number of drawn examples) folds")
    rng = random.Random(seed)
    by_class: dict = {}
    for i, example in enumerate(examples):
        by_class.setdefault(str(label_of(example)), []).append(i)
    fold_of = {}
    dealt = 0
    for label in sorted(by_class):
        rows = by_class[label]
        rng.shuffle(rows)
        for row in rows:  # continue the deal where the last class stopped: folds stay near-equal in size
            fold_of[row] = dealt % count
            dealt += 1
    return [([e for i, e in enumerate(examples) if fold_of[i] != f], [e for i, e in enumerate(examples) if fold_of[i] == f])
            for f in range(count)]


def counts(examples: Sequence) -> dict[str, int]:
    """How many examples of each class (``"-"`` for examples without one), for the log and results.json."""
    out: dict[str, int] = {}
    for example in examples:
        label = label_of(example)
        key = "-" if label is None else str(label)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def _labelled(example) -> bool:
    return getattr(example, "tags", None) is not None or getattr(example, "label", None) is not None \
        or bool(getattr(example, "answers", None)) or getattr(example, "is_impossible", False)


def few_shot_task(task: "Task", shots: Shots, seed: int) -> "Task":
    """``task`` with K drawn training examples (`draw`, seeded by ``seed``) and no dev split (its examples are
    dropped unread); the test split is kept, to be scored once at the end."""
    return dataclasses.replace(task, train=draw(task.train, shots, seed), dev=[])
