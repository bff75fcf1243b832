"""Readers that turn data files into examples: CoNLL columns here; tables (`tables.py`), HF datasets
(`hf.py`), SQuAD and SRL in their modules; `read_examples` picks one by the source.

A problem the user can fix is a one-line `PtuneError` naming the file, the line and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptune.data.columns import Columns, option
from ptune.data.examples import TaggedExample, TextExample
from ptune.data.files import DOCUMENT_MARKERS, PathLike, count, read_lines
from ptune.data.hf import is_dataset, read_hf
from ptune.data.squad import read_squad
from ptune.data.srl import read_srl
from ptune.data.tables import TABLE_SUFFIXES, read_table
from ptune.errors import PtuneError

__all__ = ["read_conll", "read_examples", "read_hf", "read_table"]

CONLL_SUFFIXES = (".txt", ".conll", ".iob", ".bio")
# Semantic role labelling (read_srl): OntoNotes `*_conll` (CoNLL-2012) and CoNLL-2005 props files.
SRL_SUFFIXES = (".gold_conll", ".props")


def read_conll(
    path: PathLike, *, token_column: int = 0, tag_column: int = -1
) -> list[TaggedExample]:
    """Sentences from a CoNLL column file: one token per line, blank lines between sentences.

    Columns are whitespace separated; `-DOCSTART-` lines are skipped. The first token line fixes
    the number of columns; a file with one column gives untagged sentences (`tags` None).
    """
    path = Path(path)
    sentences: list[TaggedExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    n_columns = 0
    first_line = 0
    token_index = tag_index = 0

    def end_sentence() -> None:
        if tokens:
            sentences.append(TaggedExample(tuple(tokens), tuple(tags) if n_columns > 1 else None))
            tokens.clear()
            tags.clear()

    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-" or line.startswith(DOCUMENT_MARKERS):
            end_sentence()
            continue
        if not n_columns:
            n_columns, first_line = len(fields), number
            token_index = _column_index(path, number, "token", token_column, n_columns)
            if n_columns > 1:
                tag_index = _column_index(path, number, "tag", tag_column, n_columns)
                if tag_index == token_index:
                    raise PtuneError(
                        f"{path}:{number}: token_column and tag_column both name column {tag_index}"
                        " — pass different columns"
                    )
        if len(fields) != n_columns:
            raise PtuneError(
                f"{path}:{number}: expected {count(n_columns, 'column')} like line {first_line},"
                f" found {len(fields)} — fix or remove this line"
            )
        tokens.append(fields[token_index])
        if n_columns > 1:
            tags.append(fields[tag_index])
    end_sentence()
    if not sentences:
        raise PtuneError(
            f"{path}: no sentences found — expected one token per line (tag in the last column)"
            " with blank lines between sentences"
        )
    return sentences


def _column_index(path: Path, line: int, what: str, column: int, n_columns: int) -> int:
    """`column` as a non-negative index, or an error if a line of `n_columns` has no such column."""
    if not -n_columns <= column < n_columns:
        raise PtuneError(
            f"{path}:{line}: {what} column {column} does not exist in a line of {n_columns} columns"
            f" — pass a {what} column between 0 and {n_columns - 1}"
        )
    return column % n_columns


def read_examples(path: PathLike, *, split: str | None = None, config: str | None = None,
                  columns: Columns | None = None, dataset: bool = False,
                  **kw: Any) -> list[TextExample] | list[TaggedExample] | list:
    """Examples from any supported source, chosen by suffix; a folder or a name without a suffix
    (``imdb``, ``owner/name``) is a `datasets` dataset (`config` its configuration). SRL files
    (``.gold_conll``, ``*_conll``, ``.props``) give one example per predicate; SQuAD JSON gives
    `QAExample`s; `columns` chooses the columns of tables and datasets (token and tag column numbers
    of CoNLL files).

    ``SOURCE@split`` picks a split of a dataset; otherwise `split` (default "train"; "dev" finds
    "validation"). `dataset` reads `path` as a dataset whatever its name (``--dataset``). Other keywords go
    to the reader.
    """
    text = str(path)
    if "@" in text and not Path(text).exists():
        text, split = text.rsplit("@", 1)
    path = Path(text)
    columns = columns or Columns()
    if dataset or is_dataset(path):
        return read_hf(text, split=split or "train", config=config, columns=columns)
    suffix = path.suffix.lower()
    if suffix in SRL_SUFFIXES or path.name.lower().endswith("_conll"):
        if columns.given():
            raise PtuneError(f"{path}: an SRL file has fixed columns — drop {', '.join(map(option, columns.given()))}")
        return read_srl(path, **kw)
    if suffix in CONLL_SUFFIXES:
        return read_conll(path, **_conll_columns(path, columns), **kw)
    if suffix in (".json", ".jsonl") and not columns.given() and _looks_like_squad(path):
        return read_squad(path)  # named columns mean a table, even with question/context fields
    if suffix in TABLE_SUFFIXES:
        return read_table(path, columns, **kw)
    if not path.exists():
        raise PtuneError(f"{path}: file not found — check the path")
    raise PtuneError(
        f"{path}: unsupported file type {suffix or '(no suffix)'!r}; supported:"
        f" {', '.join(CONLL_SUFFIXES + SRL_SUFFIXES + TABLE_SUFFIXES)}"
        " or a folder written by datasets' save_to_disk — rename or convert the file"
    )


def _conll_columns(path: Path, columns: Columns) -> dict[str, int]:
    """`columns` as `read_conll`'s token/tag column numbers."""
    named = [option(role) for role in ("text", "text_pair", "label") if getattr(columns, role)]
    if named:
        raise PtuneError(f"{path}: a CoNLL file holds tokens and tags, not {', '.join(named)}"
                         " — use --tokens-column N --tags-column N (column numbers, -1 the last)")
    out = {}
    for role, keyword in (("tokens", "token_column"), ("tags", "tag_column")):
        value = getattr(columns, role)
        if value is not None:
            try:
                out[keyword] = int(value)
            except ValueError:
                raise PtuneError(f"{path}: {option(role)} {value!r} — a CoNLL file's columns are numbers"
                                 " (0 the first, -1 the last)") from None
    return out


def _looks_like_squad(path: Path) -> bool:
    """Whether a JSON file's first 8 KB look like SQuAD: the official layout's paragraphs, or
    Hugging Face `squad` records (question, context, answers)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(8192).decode("utf-8", errors="ignore")
    except OSError:
        return False  # the table reader names the problem
    return '"qas"' in head or '"paragraphs"' in head or all(f'"{key}"' in head for key in ("question", "context", "answers"))
