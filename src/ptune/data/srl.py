"""Semantic role labelling data: CoNLL-2012 (OntoNotes) and CoNLL-2005 files as tagged examples.

One example per predicate, as P-tuning v2 trains SRL: BIO tags for that predicate's arguments.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ptune.data.examples import TaggedExample
from ptune.data.files import DOCUMENT_MARKERS, PathLike, count, read_lines
from ptune.errors import PtuneError

Format = Literal["auto", "conll2012", "conll2005"]
FORMATS: tuple[str, ...] = ("auto", "conll2012", "conll2005")

# One cell of an argument column: `*`, `(ARG0*`, `*)` or `(ARG0*)`; arguments never nest.
_CELL = re.compile(r"(?:\(([^()*]+))?\*(\))?")
_VERB = "V"
# OntoNotes: doc id, part, word index, word, POS, parse, lemma, frameset, sense, speaker, NE.
_CONLL2012_FIXED = 11


@dataclass(frozen=True)
class _Layout:
    """Where a format keeps the word, the predicate marker and the argument columns (0-based)."""

    name: str
    word: int
    predicate: int
    predicate_name: str  # what the predicate column holds, for messages
    first_argument: int
    trailing: int  # columns after the argument columns: CoNLL-2012's coreference column

    @property
    def min_columns(self) -> int:
        return self.first_argument + self.trailing


_Row = tuple[int, list[str]]  # (file line number, whitespace-separated fields)


def read_srl(
    path: PathLike, format: Format = "auto", *, predicate_column: int | None = None
) -> list[TaggedExample]:
    """One example per predicate: the sentence, BIO tags of its arguments, `predicate` its index.

    See `read_srl_sentences` for the formats; sentences without a predicate give no example.
    """
    sentences = read_srl_sentences(path, format, predicate_column=predicate_column)
    return [example for frames in sentences for example in frames]


def read_srl_sentences(
    path: PathLike, format: Format = "auto", *, predicate_column: int | None = None
) -> list[tuple[TaggedExample, ...]]:
    """Per sentence of the file, its examples (one per predicate, in order; none without one).

    "conll2012" is OntoNotes `.gold_conll`: the word in column 4, the frameset id in column 8
    marks predicates, one argument column per predicate from column 12, coreference last.
    "conll2005" is words/props pasted together: the word in column 1, the predicate lemma or `-`
    in `predicate_column` (0-based, default 1), then one argument column per predicate.
    "auto" picks conll2012 for `*_conll` / `*_skel` files or rows that look like OntoNotes.
    """
    path = Path(path)
    if format not in FORMATS:
        raise PtuneError(
            f"{path}: unknown SRL format {format!r} — use one of: {', '.join(FORMATS)}"
        )
    lines = read_lines(path)
    sentences = _sentences(lines)
    if not sentences:
        raise PtuneError(
            f"{path}: {'empty file' if not lines else 'no sentences found'} — expected one word"
            " per line with its predicate and argument columns, blank lines between sentences"
        )
    name = _detect_format(path, sentences[0][0][1]) if format == "auto" else format
    layout = _layout(path, name, predicate_column)
    return [_frames(path, rows, layout) for rows in sentences]


def spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """(label, start, end) of each span in BIO `tags`, `end` inclusive as in seqeval.

    Read by seqeval's rules (a stray I- starts a span), the ones `ptune.tasks.metrics.entity_f1`
    scores with: these are the spans of the with-`V` figure P-tuning v2 reports (`f1_with_v`).
    """
    from seqeval.metrics.sequence_labeling import get_entities

    return {(label, start, end) for label, start, end in get_entities(list(tags))}


Argument = tuple[str, tuple[tuple[int, int], ...]]  # (label, its pieces as (start, end) inclusive)


def arguments(tags: Sequence[str]) -> set[Argument]:
    """The arguments of one predicate's BIO `tags` as the CoNLL-2005 scorer (srl-eval.pl) reads
    them: a `C-X` span continues the latest `X` argument before it, as one more piece of that
    argument (a `C-X` with no `X` before it is an `X` argument of its own); `R-X` is a label of its
    own. The predicate's `V` is among them; `srl-eval.pl` leaves it out of its counts.
    """
    found: list[tuple[str, list[tuple[int, int]]]] = []
    latest: dict[str, list[tuple[int, int]]] = {}
    for label, start, end in sorted(spans(tags), key=lambda span: span[1]):
        base = label.removeprefix("C-")
        if base != label and base in latest:
            latest[base].append((start, end))
            continue
        pieces = [(start, end)]
        found.append((base, pieces))
        latest[base] = pieces
    return {(label, tuple(pieces)) for label, pieces in found}


def _sentences(lines: Sequence[str]) -> list[list[_Row]]:
    """The file's sentences as rows; blank lines and document markers end a sentence."""
    sentences: list[list[_Row]] = []
    rows: list[_Row] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or line.startswith(DOCUMENT_MARKERS):
            if rows:
                sentences.append(rows)
                rows = []
            continue
        rows.append((number, fields))
    if rows:
        sentences.append(rows)
    return sentences


def _detect_format(path: Path, first_row: Sequence[str]) -> str:
    """The format of a file: OntoNotes by its name, or by part and word index in columns 2-3."""
    if path.name.endswith(("_conll", "_skel")):
        return "conll2012"
    looks_like_ontonotes = (
        len(first_row) > _CONLL2012_FIXED and first_row[1].isdigit() and first_row[2].isdigit()
    )
    return "conll2012" if looks_like_ontonotes else "conll2005"


def _layout(path: Path, name: str, predicate_column: int | None) -> _Layout:
    if name == "conll2012":
        if predicate_column is not None:
            raise PtuneError(
                f"{path}: predicate_column applies to CoNLL-2005 files only; CoNLL-2012 marks"
                " predicates by the frameset id column — leave predicate_column unset"
            )
        # Not the lemma column: OntoNotes also fills it for words with only a word sense.
        return _Layout(name, 3, 7, "frameset id", first_argument=_CONLL2012_FIXED, trailing=1)
    column = 1 if predicate_column is None else predicate_column
    if column < 1:
        raise PtuneError(
            f"{path}: predicate_column {column} must come after the word column 0 — pass 1 or more"
        )
    return _Layout(name, 0, column, "predicate lemma", first_argument=column + 1, trailing=0)


def _frames(path: Path, rows: Sequence[_Row], layout: _Layout) -> tuple[TaggedExample, ...]:
    """The examples of one sentence: one per predicate row, tags from its argument column."""
    n_columns = _check_columns(path, rows, layout)
    tokens = tuple(fields[layout.word] for _, fields in rows)
    predicates = [i for i, (_, fields) in enumerate(rows) if fields[layout.predicate] != "-"]
    n_arguments = n_columns - layout.min_columns
    if n_arguments != len(predicates):
        raise PtuneError(
            f"{path}:{rows[0][0]}: this sentence has {count(len(predicates), 'predicate')}"
            f" (rows whose {layout.predicate_name}, column {layout.predicate + 1}, is not -) but"
            f" {count(n_arguments, 'argument column')} — give each predicate one argument column,"
            f" in the order of the predicate rows (read as {layout.name}; pass format= if it is not)"
        )
    examples = []
    for k, predicate in enumerate(predicates):
        column = layout.first_argument + k
        tags = _bio(path, [(line, fields[column]) for line, fields in rows], column)
        _check_verb(path, rows, column, tags, predicate)
        examples.append(TaggedExample(tokens, tags, predicate=predicate))
    return tuple(examples)


def _check_columns(path: Path, rows: Sequence[_Row], layout: _Layout) -> int:
    """The sentence's number of columns; an error names the first row that has another number."""
    counts = Counter(len(fields) for _, fields in rows)
    # The most common count (the first row's on a tie), so a single bad row is the one named.
    n_columns = max(counts, key=lambda n: (counts[n], n == len(rows[0][1])))
    for line, fields in rows:
        if len(fields) != n_columns:
            example = next(number for number, f in rows if len(f) == n_columns)
            raise PtuneError(
                f"{path}:{line}: expected {count(n_columns, 'column')} like line {example} of the"
                f" same sentence, found {len(fields)} — fix or remove this line"
            )
    if n_columns < layout.min_columns:
        raise PtuneError(
            f"{path}:{rows[0][0]}: {layout.name} rows need at least"
            f" {count(layout.min_columns, 'column')}, found {n_columns} — fix the file,"
            " or pass the right format"
        )
    return n_columns


def _bio(path: Path, cells: Sequence[tuple[int, str]], column: int) -> tuple[str, ...]:
    """BIO tags from one argument column's bracket cells, given with their line numbers."""
    tags: list[str] = []
    label: str | None = None
    opened = 0
    for line, cell in cells:
        match = _CELL.fullmatch(cell)
        if match is None:
            raise PtuneError(
                f"{path}:{line}: column {column + 1} holds {cell!r}, not an argument bracket"
                " — write *, (LABEL*, *) or (LABEL*)"
            )
        start, end = match.groups()
        if start is not None:
            if label is not None:
                raise PtuneError(
                    f"{path}:{line}: ({start}* in column {column + 1} opens inside ({label}* from"
                    f" line {opened} — close that span with *) first; arguments cannot nest"
                )
            label, opened = start, line
            tags.append(f"B-{start}")
        else:
            tags.append("O" if label is None else f"I-{label}")
        if end is not None:
            if label is None:
                raise PtuneError(
                    f"{path}:{line}: *) in column {column + 1} closes no span — open it with"
                    " (LABEL* on the span's first word, or write * here"
                )
            label = None
    if label is not None:
        raise PtuneError(
            f"{path}:{opened}: ({label}* in column {column + 1} is still open at the end of the"
            f" sentence (line {cells[-1][0]}) — add *) on the span's last word"
        )
    return tuple(tags)


def _check_verb(
    path: Path, rows: Sequence[_Row], column: int, tags: Sequence[str], predicate: int
) -> None:
    """Refuse an argument column whose (V*) is not on its predicate's row: columns out of order."""
    verb_rows = [i for i, tag in enumerate(tags) if tag == f"B-{_VERB}"]
    if verb_rows and tags[predicate] not in (f"B-{_VERB}", f"I-{_VERB}"):
        raise PtuneError(
            f"{path}:{rows[predicate][0]}: this predicate's argument column {column + 1} marks"
            f" (V*) on line {rows[verb_rows[0]][0]} instead — put the argument columns in the"
            " order of the predicate rows"
        )
