"""Prompt files' safetensors headers read from their bytes, with the standard library alone.

``HeaderPrefetch`` reads every file of a folder on a thread that ``ptune serve`` starts before it imports
torch and loads the backbone: the two overlap, so a folder of 10,000 prompts starts about as fast as one.
Nothing here imports torch (a test checks it), so the thread never waits on the main thread's imports.
What the headers say is validated later, against the loaded backbone (``lazy_prompts.Indexer``).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass

MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
SUFFIX = ".safetensors"


class CutShort(Exception):
    """The layout's tensors need ``needed`` bytes of data but the file holds ``held``."""

    def __init__(self, needed: int, held: int):
        super().__init__(needed, held)
        self.needed, self.held = needed, held


@dataclass(frozen=True, slots=True)
class RawFile:
    """One file's tensor layout and metadata as its header bytes say, not yet validated."""

    metadata: dict
    mtime_ns: int
    data_bytes: int  # the size of the tensor data, checked against the layout
    ptune: object  # the metadata's "ptune" JSON parsed (None: absent), or the ValueError it raised


def read_raw(path: str) -> RawFile:
    """``path``'s header, read with one open. OSError, or ValueError / TypeError / KeyError / IndexError /
    AttributeError when its bytes do not make a safetensors header; CutShort when they do but the tensors
    do not fill the file exactly."""
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        length = int.from_bytes(handle.read(8), "little")
        if not 2 <= length <= min(MAX_HEADER, stat.st_size - 8):
            raise ValueError(f"header length {length} does not fit a file of {stat.st_size} bytes")
        layout = json.loads(handle.read(length))
    metadata = layout.pop("__metadata__", None) or {}
    end = max((info["data_offsets"][1] for info in layout.values()), default=0)
    data = stat.st_size - 8 - length
    if end != data:
        raise CutShort(end, data)
    try:
        ptune = json.loads(metadata["ptune"]) if "ptune" in metadata else None
    except ValueError as error:
        ptune = error
    return RawFile(metadata, stat.st_mtime_ns, data, ptune)


class HeaderPrefetch:
    """Reads the headers of every ``*.safetensors`` file in ``folder`` on a daemon thread, at once.

    ``take(path, mtime_ns)`` waits for the thread and hands over that file's RawFile, once; None when the
    file was not read, could not be read, or has changed since (the caller then reads it itself, and
    reports its own error).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = os.fspath(folder)
        self._read: dict[str, RawFile] = {}
        self._thread = threading.Thread(target=self._run, name="ptune-headers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with os.scandir(self.folder) as found:
                paths = [item.path for item in found if item.name.endswith(SUFFIX)]
        except OSError:
            return  # the registry's own scan reports it
        for path in paths:
            try:
                self._read[path] = read_raw(path)
            except Exception:  # noqa: BLE001  read again, and reported, by the registry's own scan
                continue

    def take(self, path: str, mtime_ns: int) -> RawFile | None:
        self._thread.join()
        found = self._read.pop(path, None)
        return found if found is not None and found.mtime_ns == mtime_ns else None

    def close(self) -> None:
        """Drop what was not taken (files the registry's scan did not list)."""
        self._thread.join()
        self._read.clear()
