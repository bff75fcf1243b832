"""Prompt file headers: ptune's JSON description in a safetensors file's metadata, read and validated.

Kept apart from ``prompt_files`` (which loads backbones and so imports transformers): the server's
read-ahead child (``serve.read_ahead``) reads thousands of headers with only this module and the
task kinds loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ptune.errors import PtuneError
from ptune.tasks import KINDS

FORMAT = "ptune-prompt"
VERSION = 1
HEADER_KEY = "ptune"
REQUIRED = ("format", "version", "method", "task", "backbone")
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def header_of(path: Path, metadata: dict) -> dict:
    """The validated ptune header in the safetensors ``metadata`` of the file at ``path`` (read by the
    caller: the server reads many files' raw headers without opening them as safetensors)."""
    if HEADER_KEY not in metadata:
        raise PtuneError(f"{path}: safetensors file without a ptune header; was it written by `ptune train`?")
    try:
        header = json.loads(metadata[HEADER_KEY])
    except json.JSONDecodeError as error:
        raise PtuneError(f"{path}: ptune header is not valid JSON ({error})") from error
    missing = [key for key in REQUIRED if key not in header]
    if missing or header.get("format") != FORMAT:
        raise PtuneError(f"{path}: ptune header lacks {', '.join(missing) or 'the format tag'}; re-save the prompt")
    if not isinstance(header["version"], int):
        raise PtuneError(f"{path}: ptune header field 'version' must be a whole number; re-save the prompt")
    if header["version"] > VERSION:
        raise PtuneError(f"{path}: prompt format version {header['version']} is newer than this ptune; upgrade ptune")
    _check_fields(path, header)
    return header


def _check_fields(path: Path, header: dict) -> None:
    """The header's nested fields have the types the loader relies on."""
    def need(ok: bool, field: str, what: str) -> None:
        if not ok:
            raise PtuneError(f"{path}: ptune header field {field!r} must be {what}; re-save or re-train the prompt")

    task, backbone = header["task"], header["backbone"]
    need(isinstance(header["method"], dict), "method", "an object of method options")
    need(isinstance(task, dict), "task", "an object")
    need(task.get("kind") in KINDS, "task.kind", " or ".join(map(repr, KINDS)))
    labels = task.get("labels")
    need(isinstance(labels, list) and (bool(labels) or not KINDS[task["kind"]].has_labels)  # spans, scores: none
         and all(isinstance(x, str) for x in labels) and len(set(labels)) == len(labels),
         "task.labels", "a list of distinct label strings")
    need(isinstance(task.get("name"), str), "task.name", "a string")
    need(task.get("metric") in KINDS[task["kind"]].metrics, "task.metric", " or ".join(map(repr, KINDS[task["kind"]].metrics)))
    need(isinstance(task.get("pair", False), bool), "task.pair", "true or false")
    need(isinstance(task.get("source", {}), dict), "task.source", "an object")
    need(isinstance(backbone, dict) and isinstance(backbone.get("name"), str), "backbone", "an object with a name")
    need(isinstance(header.get("metrics", {}), dict), "metrics", "an object")



def read_raw_header(path: str) -> tuple[dict, int, int]:
    """A safetensors file's validated ptune header, read from its bytes (no tensor is touched), with the
    file's modification time and the size of its tensor data; PtuneError when the layout does not add up."""
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            length = int.from_bytes(handle.read(8), "little")
            if not 2 <= length <= min(MAX_HEADER, stat.st_size - 8):
                raise ValueError(f"header length {length} does not fit a file of {stat.st_size} bytes")
            layout = json.loads(handle.read(length))
        metadata = layout.pop("__metadata__", None) or {}
        ends = [info["data_offsets"][1] for info in layout.values()]
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise PtuneError(f"{path}: not a readable safetensors prompt file ({error}); re-save or re-train it") from None
    data = stat.st_size - 8 - length
    if max(ends, default=0) != data:
        raise PtuneError(f"{path}: its tensors need {max(ends, default=0)} bytes of data but the file holds {data}; "
                         "the file is cut short or damaged — re-train or restore it")
    return header_of(path, metadata), stat.st_mtime_ns, data
