"""Readers that turn data files into examples: CoNLL columns, CSV/TSV/JSONL tables, HF datasets.

A problem the user can fix is a one-line `PtuneError` naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptune.data.examples import TaggedExample, TextExample
from ptune.data.files import DOCUMENT_MARKERS, PathLike, count, json_type, names, parse_json, read_lines, short
from ptune.data.hf import read_hf
from ptune.data.squad import read_squad
from ptune.data.srl import read_srl
from ptune.errors import PtuneError


CONLL_SUFFIXES = (".txt", ".conll", ".iob", ".bio")
# Semantic role labelling (read_srl): OntoNotes `*_conll` (CoNLL-2012) and CoNLL-2005 props files.
SRL_SUFFIXES = (".gold_conll", ".props")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")



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


def read_table(
    path: PathLike,
    *,
    text_field: str = "text",
    text_pair_field: str = "text_pair",
    label_field: str = "label",
) -> list[TextExample]:
    """Text examples from `.csv`/`.tsv` with a header row, or `.jsonl`/`.json` (an object a line).

    `text_pair` and `label` are optional: a missing column gives None. TSV has no quoting, as in
    GLUE-style files. A `.json` file may also hold one JSON array of objects.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    header: list[str] | None = None
    if suffix in (".csv", ".tsv"):
        header, records = _csv_records(path, "\t" if suffix == ".tsv" else ",")
    elif suffix in (".jsonl", ".json"):
        records = _json_records(path)
    else:
        raise PtuneError(
            f"{path}: unsupported table type {suffix or '(no suffix)'!r} — use .csv, .tsv or .jsonl"
        )
    if header is not None and text_field not in header:
        raise PtuneError(
            f"{path}: no {text_field!r} column; found columns: {names(header)}"
            " — rename the text column or choose it as the text field"
        )

    texts: list[str] = []
    pairs: list[str | None] = []
    labels: list[str | None] = []
    wheres: list[str] = []
    for where, record in records:
        if text_field not in record:
            raise PtuneError(
                f"{where}: no {text_field!r} field; found fields: {names(record)}"
                " — add it or choose another text field"
            )
        text = record[text_field]
        if not isinstance(text, str) or not text.strip():
            raise PtuneError(
                f"{where}: {text_field!r} must be a non-empty string, found {short(text)}"
                " — fill it in or remove this row"
            )
        texts.append(text)
        pairs.append(_optional_value(where, text_pair_field, record.get(text_pair_field)))
        labels.append(_optional_value(where, label_field, record.get(label_field)))
        wheres.append(where)
    _all_or_none(pairs, wheres, text_pair_field)
    _all_or_none(labels, wheres, label_field)
    return [
        TextExample(t, label, pair) for t, label, pair in zip(texts, labels, pairs, strict=True)
    ]


def _csv_records(path: Path, delimiter: str) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """The header and ("file:line", row) records of a CSV/TSV file."""
    tsv = delimiter == "\t"
    kind = "TSV" if tsv else "CSV"
    text = "\n".join(read_lines(path))
    reader = csv.reader(
        io.StringIO(text),
        delimiter=delimiter,
        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
        strict=True,
    )
    header: list[str] | None = None
    header_line = 0
    records: list[tuple[str, dict[str, Any]]] = []
    consumed = 0
    try:
        for fields in reader:
            # A quoted field may span lines: report the line the row starts on.
            line, consumed = consumed + 1, reader.line_num
            if not fields:
                continue
            if header is None:
                header, header_line = fields, line
                continue
            if len(fields) != len(header):
                raise PtuneError(
                    f"{path}:{line}: expected {count(len(header), 'field')} like the header on"
                    f" line {header_line}, found {len(fields)} — fix or remove this row"
                )
            records.append((f"{path}:{line}", dict(zip(header, fields, strict=True))))
    except csv.Error as e:
        raise PtuneError(
            f"{path}:{reader.line_num}: malformed {kind} ({e}) — fix the quoting on this line"
        ) from None
    if header is None:
        raise PtuneError(
            f"{path}: empty file — expected a header row naming the columns, then a row per example"
        )
    if not records:
        raise PtuneError(f"{path}: has a header but no rows — add one row per example")
    return header, records


def _json_records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """("file:line", object) records of a JSON-lines file (or a JSON array in a `.json` file)."""
    lines = read_lines(path)
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise PtuneError(
            f"{path}: empty file — expected one JSON object per line,"
            ' e.g. {"text": ..., "label": ...}'
        )
    if path.suffix.lower() == ".json" and first.lstrip().startswith("["):
        items = parse_json(path, 0, "\n".join(lines))
        if not isinstance(items, list):
            raise PtuneError(f"{path}: expected a JSON array of objects — fix the file")
        records = [(f"{path} (item {i})", item) for i, item in enumerate(items, start=1)]
    else:
        records = [
            (f"{path}:{number}", parse_json(path, number, line))
            for number, line in enumerate(lines, start=1)
            if line.strip()
        ]
    for where, record in records:
        if not isinstance(record, dict):
            raise PtuneError(
                f'{where}: expected a JSON object like {{"text": ..., "label": ...}},'
                f" found {json_type(record)} — fix or remove it"
            )
    if not records:
        raise PtuneError(f"{path}: holds an empty JSON array — add one object per example")
    return records


def _optional_value(where: str, field: str, value: Any) -> str | None:
    """A label/text_pair value as a string; None, "" and absent all mean "not given"."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)  # 0 -> "0", true -> "true": what the user wrote in the file
    raise PtuneError(
        f"{where}: {field!r} must be a string or a number, found {json_type(value)} — fix this row"
    )


def _all_or_none(values: Sequence[str | None], wheres: Sequence[str], field: str) -> None:
    """Refuse a file where some rows give `field` and others leave it empty."""
    given = next((i for i, v in enumerate(values) if v is not None), None)
    missing = next((i for i, v in enumerate(values) if v is None), None)
    if given is not None and missing is not None:
        raise PtuneError(
            f"{wheres[missing]}: empty {field!r} while other rows have one (e.g. {wheres[given]})"
            " — fill it in or remove this row"
        )


def read_examples(path: PathLike, **kw: Any) -> list[TextExample] | list[TaggedExample] | list:
    """Examples from any supported source, chosen by suffix; a folder is a saved HF dataset and
    a name without a suffix (``glue`` style, ``owner/name``) a hub dataset. SRL files
    (``.gold_conll``, ``*_conll``, ``.props``) give one example per predicate; SQuAD JSON gives
    `QAExample`s.

    ``SOURCE@split`` picks a split of a folder or hub dataset; otherwise `split` (default
    "train") is used. Other keywords go to the reader.
    """
    split = kw.pop("split", None)
    text = str(path)
    if "@" in text and not Path(text).exists():
        text, split = text.rsplit("@", 1)
    path = Path(text)
    if path.is_dir() or (not path.exists() and not path.suffix):
        return read_hf(text, split=split or "train", **kw)
    suffix = path.suffix.lower()
    if suffix in SRL_SUFFIXES or path.name.lower().endswith("_conll"):
        return read_srl(path, **kw)
    if suffix in CONLL_SUFFIXES:
        return read_conll(path, **kw)
    if suffix in (".json", ".jsonl") and _looks_like_squad(path):
        return read_squad(path)
    if suffix in TABLE_SUFFIXES:
        return read_table(path, **kw)
    if not path.exists():
        raise PtuneError(f"{path}: file not found — check the path")
    raise PtuneError(
        f"{path}: unsupported file type {suffix or '(no suffix)'!r}; supported:"
        f" {', '.join(CONLL_SUFFIXES + SRL_SUFFIXES + TABLE_SUFFIXES)}"
        " or a folder written by datasets' save_to_disk — rename or convert the file"
    )


def _looks_like_squad(path: Path) -> bool:
    """Whether a JSON file's first 8 KB look like SQuAD: the official layout's paragraphs, or
    Hugging Face `squad` records (question, context, answers)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(8192).decode("utf-8", errors="ignore")
    except OSError:
        return False  # the table reader names the problem
    return '"qas"' in head or '"paragraphs"' in head or all(f'"{key}"' in head for key in ("question", "context", "answers"))
