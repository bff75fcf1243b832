"""The served folder's prompt files, and their headers read ahead by a child process.

A server with thousands of prompt files spends its startup importing torch and transformers and loading
the backbone, then reading every header. ``ReadAhead.start`` forks a child first, while the process still
holds only the standard library: the child reads and validates the headers while the parent loads, and
hands back only what indexing needs (per file: when it was written, how many bytes, its checksum and a
group number; per group of equal headers: one header). ``TaskRegistry`` then checks each group against the backbone and
builds its Entries without reading a file; a file added or changed since the child read it is read
again. Where there is no ``fork`` (Windows), the child fails, or the folder is small, the registry reads
the headers itself.
"""

from __future__ import annotations

import json
import marshal
import os
import re
import time
from pathlib import Path

TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Below this many files the headers are read in the server process: a child costs an import of the task
# kinds (torch, ~4 s of CPU here) to save at most ~50 ms.
MIN_FILES = 256


def listing(folder: str | os.PathLike) -> dict[str, tuple[str, int]]:
    """The prompt files in ``folder`` by task name (the file's stem): path and modification time."""
    files = {}
    with os.scandir(folder) as found:
        for item in found:
            stem, dot, suffix = item.name.rpartition(".")
            if dot and suffix == "safetensors" and TASK_NAME.match(stem) and item.is_file():
                files[stem] = (item.path, item.stat().st_mtime_ns)
    return files


def shape_key(header: dict) -> str:
    """What decides a served model's shape (the method, the task's kind, labels, pairing and metric): files with
    equal keys share one ``lazy_prompts.Shape`` and prototype model."""
    task = header["task"]
    return json.dumps([header["method"], task["kind"], task["labels"], task.get("pair", False), task["metric"]],
                      sort_keys=True)


def group_key(header: dict) -> str:
    """Files whose headers agree on all a server checks against its backbone share a group: their shape and
    the backbone's fingerprint."""
    return json.dumps([shape_key(header), header["backbone"]], sort_keys=True)


def read_headers(files: dict[str, tuple[str, int]]) -> dict:
    """Every file's header, read and validated: {"files": {name: (listed mtime, mtime_ns, data bytes, checksum,
    group, error)}, "groups": [one header per group], "seconds": s}; plain data, so marshal carries it. Groups
    travel as numbers: a group's key is a few hundred bytes, and 10,000 copies of it freed in the server after
    indexing left 7 MiB of its heap fragmented."""
    from ptune.errors import PtuneError
    from ptune.storage.headers import read_raw_header

    started = time.perf_counter()
    out: dict[str, tuple] = {}
    numbers: dict[str, int] = {}
    groups: list[dict] = []
    for name, (path, listed) in files.items():
        try:
            header, mtime_ns, data = read_raw_header(path)
            key = group_key(header)
        except (PtuneError, OSError) as problem:
            out[name] = (listed, None, None, None, None, str(problem))
            continue
        if key not in numbers:
            numbers[key] = len(groups)
            groups.append(header)
        out[name] = (listed, mtime_ns, data, header.get("tensors_sha256"), numbers[key], None)
    return {"files": out, "groups": groups, "seconds": time.perf_counter() - started}


class ReadAhead:
    """A child process reading a folder's headers; ``result()`` waits for it."""

    def __init__(self, pid: int, fd: int, count: int):
        self.pid, self.fd, self.count = pid, fd, count

    @classmethod
    def start(cls, folder: str | os.PathLike, min_files: int = MIN_FILES) -> ReadAhead | None:
        """Fork the reader (call before importing torch or starting threads); None where the folder holds
        fewer than ``min_files`` prompt files or the system cannot fork."""
        if not hasattr(os, "fork"):
            return None
        files = listing(Path(folder))
        if len(files) < min_files:
            return None
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: write the result and leave without running the parent's exit handlers
            status = 1
            try:
                os.close(read)
                with os.fdopen(write, "wb") as out:
                    out.write(marshal.dumps(read_headers(files)))
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        return cls(pid, read, len(files))

    def result(self) -> dict | None:
        """The child's ``read_headers`` result, or None if it failed (the caller then reads the headers)."""
        with os.fdopen(self.fd, "rb") as handle:
            payload = handle.read()
        _, status = os.waitpid(self.pid, 0)
        if status != 0 or not payload:
            return None
        try:
            return marshal.loads(payload)
        except (EOFError, ValueError, TypeError):
            return None
