"""Which metric scores a task: each kind's metrics, the one chosen from the data (tags, unanswerable
questions), the check of one asked for with ``--metric``, and a binary task's positive class (F1)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ptune.data.examples import Example, GroupedTextExample
from ptune.data.tag_schemes import tag_scheme
from ptune.errors import PtuneError

log = logging.getLogger(__name__)

# The metrics each kind can be scored with (= its `TaskKind.metrics`, tested), the default first. Tagging
# tasks get theirs from their tags and qa tasks "squad_v2" when a question has no answer (`auto_metric`).
METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1", "macro_f1", "matthews", "multirc"),
    "tagging": ("entity_f1", "token_accuracy", "srl_f1"), "qa": ("squad", "squad_v2"), "regression": ("correlation",),
    "multiple_choice": ("choice_accuracy", "record"), "text_to_text": ("accuracy", "exact_match")}
METRIC_BY_KIND: dict[str, str] = {kind: metrics[0] for kind, metrics in METRICS_BY_KIND.items()}
# Label names that mark the negative class of a binary task (and "not_X" names); F1 scores the other one.
NEGATIVE_LABELS = frozenset({"0", "false", "no", "negative"})


def auto_metric(kind: str, labels: Sequence[str], examples: Sequence[Example] = ()) -> str:
    """The metric a task is scored with unless one is asked for. Tagging: "srl_f1" when the examples
    mark a predicate (SRL), "entity_f1" when the tags mark entities (`tag_scheme`: B-/I-, IOBES,
    BILOU), else "token_accuracy" (POS tags, chunk tags without prefixes). QA: "squad_v2" when a
    question has no answer, else "squad". Other kinds have one metric."""
    if kind == "tagging":
        scheme = tag_scheme(labels)
        if scheme == "IOB" and any(getattr(e, "predicate", None) is not None for e in examples):
            return "srl_f1"
        return "entity_f1" if scheme else "token_accuracy"
    if kind == "qa" and any(getattr(e, "is_impossible", False) for e in examples):
        return "squad_v2"
    return METRIC_BY_KIND[kind]


def is_negative(label: str) -> bool:
    """Whether `label` names the negative class of a binary task: 0, false, no, negative, not_X / not-X."""
    name = str(label).lower()
    return name in NEGATIVE_LABELS or name.startswith(("not_", "not-", "not "))


def positive_label(labels: Sequence[str]) -> str | None:
    """The positive class of a binary label set (the one label that does not name the negative class:
    ``equivalent`` of not_equivalent/equivalent, ``True`` of False/True), None if there is not exactly one."""
    positive = [label for label in labels if not is_negative(label)]
    return positive[0] if len(labels) == 2 and len(positive) == 1 else None


def check_metric(kind: str, labels: Sequence[str], metric: str, examples: Sequence[Example] = ()) -> None:
    """Refuse `metric` (`--metric`) where it cannot score a task of `kind` with these labels and examples."""
    choices = METRICS_BY_KIND[kind]
    if metric not in choices:
        raise PtuneError(f"--metric {metric!r} does not score {kind} tasks — use {' or '.join(choices)}")
    scheme = tag_scheme(labels) if kind == "tagging" else None
    if metric in ("entity_f1", "srl_f1") and scheme is None:
        raise PtuneError(f"--metric {metric} reads entities from B-/I- (or E-/S-, L-/U-) tags, but this task's "
                         f"tags ({_some(labels)}) have no such prefixes — use --metric token_accuracy")
    if metric == "srl_f1" and scheme != "IOB":
        raise PtuneError(f"--metric srl_f1 reads BIO argument tags, but this task's tags are {scheme} — use "
                         "--metric entity_f1 or token_accuracy")
    if metric in ("f1", "multirc") and positive_label(labels) is None:
        raise PtuneError(f"--metric {metric} scores the positive class of a binary task, and this task's labels "
                         f"({_some(labels)}) name none (as X/not_X, True/False, 1/0) — use --metric accuracy or macro_f1")
    if metric == "multirc" and not all(isinstance(e, GroupedTextExample) for e in examples):
        raise PtuneError("--metric multirc scores answer options per question, and these examples have no questions "
                         "— read MultiRC with --task superglue/multirc, or use --metric f1")
    if metric == "squad" and any(getattr(e, "is_impossible", False) for e in examples):
        raise PtuneError("--metric squad cannot score questions without an answer, and this task has some "
                         "— use --metric squad_v2")


# Why a metric was chosen automatically, and what else there is: logged by `choose_metric`.
_CHOSEN = {
    "entity_f1": "the tags mark entities ({scheme}): scored by entity_f1 (seqeval entity F1); pass "
                 "--metric token_accuracy to score each word's tag instead",
    "token_accuracy": "the tags ({tags}) mark no entities (no B-/I- prefixes): scored by token_accuracy "
                      "(accuracy per word, macro-F1 over tags alongside); --metric entity_f1 needs B-/I- entity tags",
    "srl_f1": "SRL, a predicate per example: scored by srl_f1, argument F1 as the CoNLL-2005 scorer counts it "
              "(without V; f1_with_v alongside, as P-tuning v2 reports it); pass --metric entity_f1 to select on "
              "F1 over every span, V included, or token_accuracy",
    "squad": "every question has an answer: scored by squad (SQuAD 1.1); pass --metric squad_v2 to allow "
             "\"no answer\" predictions",
    "squad_v2": "some questions have no answer: scored by squad_v2 (SQuAD 2.0)",
}


def choose_metric(kind: str, labels: Sequence[str], examples: Sequence[Example], asked: str | None = None, *,
                  source: str = "") -> str:
    """`asked` if it fits the task (`check_metric`), else `auto_metric`; logs the choice and the others."""
    if asked is not None:
        check_metric(kind, labels, asked, examples)
        if len(METRICS_BY_KIND[kind]) > 1:
            log.info("%s: scored by %s", source, asked)
        return asked
    metric = auto_metric(kind, labels, examples)
    if metric in _CHOSEN:
        log.info("%s: %s", source, _CHOSEN[metric].format(scheme=tag_scheme(labels), tags=_some(labels)))
    return metric


def _some(labels: Sequence[str]) -> str:
    return ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
