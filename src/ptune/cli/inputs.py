"""The input of ``ptune predict``: rows from JSON lines, CSV/TSV (columns chosen by the ``--*-column``
options) or plain-text lines, in a file or on stdin; each row keeps its ``file:line`` for error messages."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ptune.data.columns import Columns
from ptune.data.files import parse_json, read_lines
from ptune.data.tables import line_records
from ptune.errors import PtuneError

FORMATS = ("jsonl", "csv", "tsv", "text")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
                  ".txt": "text"}
# The parts of an input row a prompt reads: text kinds, tagging, question answering.
INPUT_ROLES = ("text", "text_pair", "tokens")
TEXT_FIELDS = ("text", "text_pair", "question", "context")

Row = tuple[str, dict[str, Any]]


def input_format(path: str | None, asked: str | None = None) -> str:
    """`asked` (--format), else the suffix's format; stdin and other suffixes are JSON lines, where a line
    that is not JSON is a plain text."""
    if asked:
        return asked
    if path in (None, "-"):
        return "jsonl"
    return SUFFIX_FORMATS.get(Path(path).suffix.lower(), "jsonl")


def read_rows(path: str | None, fmt: str | None = None, columns: Columns | None = None) -> list[Row]:
    """(``file:line``, row) for each input of `path` (stdin for None or '-'), the row's keys the ones a
    task kind reads ("text", "text_pair", "tokens", "question", "context"); blank lines are skipped."""
    name = "stdin" if path in (None, "-") else path
    fmt = input_format(path, fmt)
    if fmt not in FORMATS:
        raise PtuneError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    lines = _stdin_lines() if name == "stdin" else read_lines(Path(path))
    columns = columns or Columns()
    if fmt == "text":
        return [(f"{name}:{n}", {"text": line}) for n, line in enumerate(lines, start=1) if line.strip()]
    if fmt == "jsonl":
        return [_json_line(name, n, line, columns) for n, line in enumerate(lines, start=1) if line.strip()]
    return [(where, input_row(where, row, columns)) for where, row in line_records(lines, name, fmt)[1]]


def input_row(where: str, row: dict[str, Any], columns: Columns) -> dict[str, Any]:
    """`row` with the columns the options name under the keys a task kind reads, tokens as a list;
    an empty text is refused (it would get a label)."""
    row = dict(row)
    column_of = {key: key for key in TEXT_FIELDS}
    for role in INPUT_ROLES:
        column = columns.find(role, row, where)
        if column is not None:
            row[role], column_of[role] = row[column], column
    if isinstance(row.get("tokens"), str):
        row["tokens"] = row["tokens"].split()
    for key in (*TEXT_FIELDS, "tokens"):
        value = row.get(key)
        if (isinstance(value, str) and not value.strip()) or value == []:
            raise PtuneError(f"{where}: {column_of.get(key, key)!r} is empty — fill it in or remove this line")
    return row


def _json_line(name: str, number: int, line: str, columns: Columns) -> Row:
    """A JSON object line, read through `columns`; a JSON string, a list of words, or a line that is not
    JSON is a plain text (or the words) as it stands."""
    where = f"{name}:{number}"
    if line.lstrip().startswith("{"):  # meant as an object: broken JSON is an error, not a text
        return where, input_row(where, parse_json(Path(name), number, line), columns)
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        value = line
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return where, {"tokens": value}
    return where, input_row(where, {"text": value if isinstance(value, str) else line}, Columns())


def _stdin_lines() -> list[str]:
    try:
        return sys.stdin.read().splitlines()
    except UnicodeDecodeError as error:
        raise PtuneError(f"stdin: not UTF-8 ({error.reason} at byte {error.start}); re-encode it as UTF-8") from None
