"""Prediction records written to a file: JSON lines (``.jsonl``), a JSON array (``.json``) or CSV
(``.csv``, nested fields flattened into columns), always atomically."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from ptune.errors import PtuneError

FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}


def output_format(path: str | Path) -> str:
    """The format a file's suffix asks for; refuses any other suffix (checked before predicting)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise PtuneError(f"--output {path}: write to a .jsonl, .json or .csv file")
    if Path(path).is_dir():
        raise PtuneError(f"--output {path}: is a folder; give a file name, e.g. {Path(path) / 'predictions'}{suffix}")
    return FORMATS[suffix]


def write_records(path: str | Path, records: Sequence[dict], *, labels: Sequence[str] = ()) -> None:
    """``records`` to ``path`` in the format of its suffix, atomically. In CSV, a dict field becomes
    one column per key (``probabilities.positive``, keys in ``labels`` order first), a list field
    one column of JSON."""
    from ptune.storage.atomic import atomic_write

    form = output_format(path)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            if form == "jsonl":
                handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
            elif form == "json":
                json.dump(list(records), handle, ensure_ascii=False, indent=1)
                handle.write("\n")
            else:
                rows = [flatten(record) for record in records]
                writer = csv.DictWriter(handle, fieldnames=columns(records, labels), restval="")
                writer.writeheader()
                writer.writerows(rows)

    try:
        atomic_write(path, write)
    except OSError as error:
        raise PtuneError(f"--output {path}: cannot write it ({error.strerror}); choose a writable path") from None


def flatten(record: dict) -> dict:
    """One CSV row: ``{"probabilities": {"a": 0.9}}`` -> ``{"probabilities.a": 0.9}``; lists (tokens,
    tags, entities) as JSON; None as an empty cell."""
    row = {}
    for key, value in record.items():
        if isinstance(value, dict):
            row.update({f"{key}.{sub}": "" if v is None else v for sub, v in value.items()})
        elif isinstance(value, list):
            row[key] = json.dumps(value, ensure_ascii=False)
        else:
            row[key] = "" if value is None else value
    return row


def columns(records: Sequence[dict], labels: Sequence[str]) -> list[str]:
    """Every record's keys, in the order first seen; a dict field's keys in ``labels`` order, then
    in the order first seen (probabilities are ranked per record, their columns are not)."""
    order: dict[str, dict[str, None]] = {}
    for record in records:
        for key, value in record.items():
            subs = order.setdefault(key, {})
            if isinstance(value, dict):
                subs.update(dict.fromkeys(value))
    rank = {label: i for i, label in enumerate(labels)}
    out = []
    for key, subs in order.items():
        if not subs:
            out.append(key)
            continue
        out.extend(f"{key}.{sub}" for sub in sorted(subs, key=lambda sub: rank.get(sub, len(rank))))  # stable
    return out
