"""Any labelled task as a text-to-text task (``--target text``): the target of each example is a string.

Classification keeps its texts and labels: the label names become the target strings, and the
text-to-text kind ranks them (rank classification). Extractive QA becomes "question: ... context: ..."
with the first gold answer as the target (unanswerable questions: "unanswerable"), scored by exact
match. Tagging, regression and multiple choice have no one-string target and are refused.
"""

from __future__ import annotations

import dataclasses

from ptune.data.examples import QAExample, TextExample
from ptune.errors import PtuneError

NO_ANSWER = "unanswerable"


def qa_as_text(example: QAExample) -> TextExample:
    """A SQuAD question as "question: Q context: C" -> its first answer ("unanswerable" when it has none)."""
    answer = example.answers[0] if example.answers else NO_ANSWER if example.is_impossible else None
    return TextExample(f"question: {example.question} context: {example.context}", answer)


def as_text_to_text(task):
    """``task`` (a data.tasks.Task) with text targets: kind ``text_to_text``; classification keeps its label set
    (rank classification, scored by accuracy), qa gets none (free generation, scored by exact match)."""
    if task.kind == "text_to_text":
        return task
    if task.kind == "classification":
        return dataclasses.replace(task, kind="text_to_text", metric="accuracy")
    if task.kind == "qa":
        splits = {name: [qa_as_text(e) for e in getattr(task, name)] for name in ("train", "dev", "test")}
        return dataclasses.replace(task, kind="text_to_text", labels=[], metric="exact_match", **splits)
    raise PtuneError(f"--target text needs one target string per example: classification labels or QA answers, "
                     f"not a {task.kind} task; drop --target text")
