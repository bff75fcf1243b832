"""The examples every reader produces and every task holds.

Plain frozen records: readers build them from files, the tokenisation step consumes them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextExample:
    """One sentence (or sentence pair) to classify; `label` is None for unlabelled input."""

    text: str
    label: str | float | None = None  # a class name, or a score (regression)
    text_pair: str | None = None


@dataclass(frozen=True)
class GroupedTextExample(TextExample):
    """A text (pair) example scored together with the others of its `group`: MultiRC's answer options,
    grouped by the question they answer (exact match counts a question right when all its options are)."""

    group: str = ""


@dataclass(frozen=True)
class ChoiceExample:
    """A text with answer choices, each scored as the pair (text, choice): COPA, ReCoRD. `label` is the
    index of the right choice, None when unlabelled. ReCoRD: `entities[i]` is the entity choice i puts
    into the query, and `answers` the gold answer texts the chosen entity is scored against (token F1)."""

    text: str
    choices: tuple[str, ...]
    label: int | None = None
    answers: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaggedExample:
    """One tokenised sentence with a tag per token (NER etc.); `tags` is None when unlabelled."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None = None
    predicate: int | None = None
    """Index in `tokens` of the predicate word whose arguments `tags` mark (SRL); None otherwise."""


@dataclass(frozen=True)
class QAExample:
    """One question about one context.

    `answers[i]` is a gold answer text found at character offset `answer_starts[i]` of `context`
    (dev sets give several); both are empty when `is_impossible` (SQuAD 2.0) or unlabelled.
    """

    id: str
    question: str
    context: str
    answers: tuple[str, ...] = ()
    answer_starts: tuple[int, ...] = ()
    is_impossible: bool = False


Example = TextExample | TaggedExample | QAExample | ChoiceExample
