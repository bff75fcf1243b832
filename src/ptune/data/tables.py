"""Tables as examples: CSV/TSV with a header row, JSON lines (or a JSON array), Parquet; `Columns` says
which column holds what. Each row keeps its place ("file:line") for the error messages."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ptune.data.columns import Columns, Record, class_name, examples_from_records
from ptune.data.examples import TaggedExample, TextExample
from ptune.data.files import PathLike, count, json_type, parse_json, read_lines
from ptune.errors import PtuneError

# Suffix -> format; `.json` is JSON lines or one array of objects.
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
TABLE_SUFFIXES = tuple(FORMATS)


def read_table(path: PathLike, columns: Columns | None = None, *, text_field: str | None = None,
               text_pair_field: str | None = None, label_field: str | None = None,
               ) -> list[TextExample] | list[TaggedExample]:
    """Examples from a `.csv`/`.tsv` file with a header row, `.jsonl`/`.json` (an object a line, or one
    array) or `.parquet`: texts (`text`, optional `text_pair` and `label`), or tagged sentences when the
    table has `tokens` (+ `tags`) or `columns` names them. The ``*_field`` keywords name text columns.

    A missing optional column gives None. TSV has no quoting, as in GLUE-style files.
    """
    path = Path(path)
    named = Columns(text=text_field, text_pair=text_pair_field, label=label_field)
    columns = named.over(columns or Columns())
    available, records = table_records(path)
    return examples_from_records(records, columns, available, str(path))


def table_format(path: Path) -> str:
    """The format a table's suffix says, or an error naming the supported ones."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PtuneError(f"{path}: unsupported table type {path.suffix or '(no suffix)'!r}"
                         " — use .csv, .tsv, .jsonl or .parquet")
    return fmt


def table_records(path: Path, fmt: str | None = None) -> tuple[list[str], list[Record]]:
    """The columns and ("file:line", row) records of a table; `fmt` (csv, tsv, jsonl, parquet) overrides
    the suffix."""
    fmt = fmt or table_format(path)
    if fmt == "parquet":
        return _parquet_records(path)
    return line_records(read_lines(path), str(path), fmt, json_array=path.suffix.lower() == ".json")


def line_records(lines: list[str], name: str, fmt: str, *, json_array: bool = False
                 ) -> tuple[list[str], list[Record]]:
    """The columns and records of a CSV/TSV/JSONL text already split into lines (a file or stdin)."""
    if fmt in ("csv", "tsv"):
        return _csv_records(lines, name, "\t" if fmt == "tsv" else ",")
    records = _json_records(lines, name, json_array)
    return list(records[0][1]), records


def _csv_records(lines: list[str], name: str, delimiter: str) -> tuple[list[str], list[Record]]:
    """The header and ("file:line", row) records of CSV/TSV lines."""
    tsv = delimiter == "\t"
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter,
                        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL, strict=True)
    header: list[str] | None = None
    header_line = 0
    records: list[Record] = []
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
                raise PtuneError(f"{name}:{line}: expected {count(len(header), 'field')} like the header on"
                                 f" line {header_line}, found {len(fields)} — fix or remove this row")
            records.append((f"{name}:{line}", dict(zip(header, fields, strict=True))))
    except csv.Error as e:
        kind = "TSV" if tsv else "CSV"
        raise PtuneError(f"{name}:{reader.line_num}: malformed {kind} ({e}) — fix the quoting on this line") from None
    if header is None:
        raise PtuneError(f"{name}: empty file — expected a header row naming the columns, then a row per example")
    if not records:
        raise PtuneError(f"{name}: has a header but no rows — add one row per example")
    return header, records


def _json_records(lines: list[str], name: str, json_array: bool) -> list[Record]:
    """("file:line", object) records of JSON lines (or of one JSON array when `json_array`)."""
    path = Path(name)
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise PtuneError(f'{name}: empty file — expected one JSON object per line, e.g. {{"text": ..., "label": ...}}')
    if json_array and first.lstrip().startswith("["):
        items = parse_json(path, 0, "\n".join(lines))
        if not isinstance(items, list):
            raise PtuneError(f"{name}: expected a JSON array of objects — fix the file")
        records = [(f"{name} (item {i})", item) for i, item in enumerate(items, start=1)]
    else:
        records = [(f"{name}:{number}", parse_json(path, number, line))
                   for number, line in enumerate(lines, start=1) if line.strip()]
    for where, record in records:
        if not isinstance(record, dict):
            raise PtuneError(f'{where}: expected a JSON object like {{"text": ..., "label": ...}},'
                             f" found {json_type(record)} — fix or remove it")
    if not records:
        raise PtuneError(f"{name}: holds an empty JSON array — add one object per example")
    return records


def _parquet_records(path: Path) -> tuple[list[str], list[Record]]:
    """The columns and rows of a Parquet file; ClassLabel ids (in files written by `datasets`) become names."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise PtuneError(f"{path}: reading Parquet needs the `pyarrow` package — pip install pyarrow") from None
    if not path.is_file():
        raise PtuneError(f"{path}: file not found — check the path")
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several unrelated types for a damaged file
        raise PtuneError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0] if str(e) else e!r})"
                         " — write it again, e.g. with pandas' to_parquet") from None
    metadata = table.schema.metadata or {}
    try:
        features = json.loads(metadata.get(b"huggingface", b"{}")).get("info", {}).get("features", {})
    except (json.JSONDecodeError, AttributeError):
        features = {}
    rows = table.to_pylist()
    for column, feature in features.items() if isinstance(features, dict) else ():
        label_names = _class_names(feature)
        if label_names and column in table.column_names:
            for i, row in enumerate(rows, start=1):
                row[column] = class_name(f"{path} (row {i})", column, row[column], label_names)
    return list(table.column_names), [(f"{path} (row {i})", row) for i, row in enumerate(rows, start=1)]


def _class_names(feature: Any) -> list[str] | None:
    """The names of a ClassLabel feature as `datasets` writes it in JSON (directly or as a list's items)."""
    if not isinstance(feature, dict):
        return None
    if feature.get("_type") == "ClassLabel" and isinstance(feature.get("names"), list):
        return [str(n) for n in feature["names"]]
    return _class_names(feature.get("feature"))
