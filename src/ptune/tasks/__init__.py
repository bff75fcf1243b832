"""Task kinds: what a task asks of the model. Each kind turns examples into features, builds its
head, computes its loss, decodes outputs into predictions and names its metrics.

Adding a kind: one module with a ``TaskKind`` subclass, and one line in ``KINDS`` below.
"""

from __future__ import annotations

from ptune.errors import PtuneError
from ptune.tasks.base import TaskKind
from ptune.tasks.classification import Classification
from ptune.tasks.multiple_choice import MultipleChoice
from ptune.tasks.qa import SpanQA
from ptune.tasks.regression import Regression
from ptune.tasks.tagging import Tagging
from ptune.tasks.text_to_text import TextToText

KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (Classification(), Tagging(), SpanQA(), Regression(),
                                                             MultipleChoice(), TextToText())}


def get_kind(name: str | TaskKind) -> TaskKind:
    """The kind called ``name`` (a kind object is returned as is)."""
    if isinstance(name, TaskKind):
        return name
    if name not in KINDS:
        raise PtuneError(f"unknown task kind {name!r}; use one of: {', '.join(KINDS)}")
    return KINDS[name]


def kind_of_metric(metric: str) -> TaskKind:
    """The kind that reports ``metric``."""
    return next(kind for kind in KINDS.values() if metric in kind.metrics)


__all__ = ["KINDS", "TaskKind", "get_kind", "kind_of_metric"]
