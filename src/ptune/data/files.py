"""Reading data files the way every reader needs: UTF-8 checked line by line (BOM dropped),
JSON parsed with its location, and short descriptions of values for one-line error messages."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ptune.errors import PtuneError

PathLike = str | os.PathLike[str]

BOM = b"\xef\xbb\xbf"
# OntoNotes .gold_conll files wrap documents in these; like -DOCSTART- they carry no tokens.
DOCUMENT_MARKERS = ("#begin document", "#end document")


def read_lines(path: Path) -> list[str]:
    """The file's lines, decoded as UTF-8 line by line so a bad byte is reported with its line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PtuneError(f"{path}: file not found — check the path") from None
    except IsADirectoryError:
        raise PtuneError(f"{path}: is a folder, not a file — pass the data file itself") from None
    except OSError as e:
        raise PtuneError(
            f"{path}: cannot read the file ({e.strerror}) — check its permissions"
        ) from None
    if data.startswith(BOM):  # Excel and Notepad write one; it would glue onto the first field
        data = data[len(BOM) :]
    lines = []
    # bytes.splitlines breaks only on \n, \r and \r\n, which is how editors number lines.
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise PtuneError(
                f"{path}:{number}: not valid UTF-8 (byte 0x{raw[e.start]:02x}) — re-encode the"
                f" file to UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}`"
            ) from None
    return lines


def parse_json(path: Path, line: int, text: str) -> Any:
    """`text` parsed as JSON; `line` is the file line it starts on (0 for a whole file)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = f"{path}:{line or e.lineno}"
        raise PtuneError(f"{where}: invalid JSON ({e.msg}) — fix or remove this line") from None
    except RecursionError:  # the json module's answer to absurdly deep nesting
        raise PtuneError(f"{path}:{line or 1}: JSON nested too deeply — fix this line") from None


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def names(fields: Iterable[Any]) -> str:
    return ", ".join(repr(f) for f in fields) or "none"


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def json_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else f"the value {short(value)}"
