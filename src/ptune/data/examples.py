"""The examples every reader produces and every task holds.

Plain frozen records: readers build them from files, the tokenisation step consumes them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextExample:
    """One sentence (or sentence pair) to classify; `label` is None for unlabelled input."""

    text: str
    label: str | None = None
    text_pair: str | None = None


@dataclass(frozen=True)
class TaggedExample:
    """One tokenised sentence with a tag per token (NER etc.); `tags` is None when unlabelled."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None = None
    predicate: int | None = None
    """Index in `tokens` of the predicate word whose arguments `tags` mark (SRL); None otherwise."""


Example = TextExample | TaggedExample
