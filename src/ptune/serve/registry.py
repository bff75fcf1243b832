"""The served tasks: every prompt file in a folder indexed by its header, loaded on first use into a
bounded least-recently-used set.

Startup reads headers only; a file that cannot be served (corrupt, another backbone, a kind the
server cannot serve) is listed in ``failed`` and never stops the others. ``model(name)`` returns a
resident task at once; a cold one is loaded under that task's own lock, so concurrent first requests
load it once and requests for other tasks never wait for it. Loading past the budget evicts the
least recently used tasks (a request already holding one keeps it until it is answered). The budget
covers the index as well (``INDEX_BYTES`` a file, resident or not), so that it bounds all the memory the
number of tasks adds to the server.

``ptune serve`` hands it a ``ReadAhead``: the headers read by a child process forked before torch loads.
Measured with 10,000 deep prompt files on 2 cores, startup to the first answer (the parent's own
indexing falls from about 2.8 s to 0.15 s): page cache dropped, 8.0-8.6 s against 9.9-11.0 s reading
them here (3 pairs; 1 file: 7.5-8.8 s); files cached, 0.5 s sooner at the median of 7 pairs (-0.3 to
+1.4 s), but 1.5 s later with another job busy on the machine (the child's own imports, about 4 s of
CPU, then take the core the loading needs). A thread instead of a child made startup slower: it
contends with the imports for the GIL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ptune.errors import PtuneError
from ptune.model.backbones import Backbone
from ptune.model.prompt_model import PromptModel
from ptune.serve.lazy_prompts import INDEX_BYTES, Entry, Indexer, Loader
from ptune.serve.read_ahead import ReadAhead, listing, shape_key

log = logging.getLogger(__name__)
MB = 1024 * 1024


class TaskRegistry:
    """Prompt files in ``folder`` served on ``backbone``; at most ``max_resident_mb`` MiB for the index of every
    file and the resident prompts together (None: no bound). ``refresh`` rescans the folder: new files are indexed, changed ones re-read.
    ``read_ahead``: the headers a child process has been reading since before the backbone loaded."""

    def __init__(self, folder: Path, backbone: Backbone, max_resident_mb: float | None = None,
                 read_ahead: ReadAhead | None = None):
        self.folder, self.backbone = Path(folder), backbone
        self.budget = None if max_resident_mb is None else int(max_resident_mb * MB)
        self.indexer, self.loader = Indexer(backbone), Loader(backbone)
        self.entries: dict[str, Entry] = {}
        self.failed: dict[str, str] = {}
        self._seen: dict[str, int] = {}  # name -> mtime of the file as last read, served or failed
        self._resident: OrderedDict[str, tuple[Entry, PromptModel]] = OrderedDict()
        self.resident_bytes = 0
        self.loads = self.evictions = 0
        self._lock = threading.Lock()  # guards the tables above; never held while a file is read
        self._scan = threading.Lock()
        started = time.perf_counter()
        ahead = read_ahead.result() if read_ahead is not None else None
        self.read_ahead_s = None if ahead is None else ahead["seconds"]  # the child's time, beside the loading
        self.refresh(ahead)
        self.index_s = time.perf_counter() - started  # how long indexing held up startup (reading it all, if alone)

    # -- the index ------------------------------------------------------------------------------
    def refresh(self, ahead: dict | None = None) -> None:
        """Index new or changed files (headers only); drop removed ones. A bad file is listed, never fatal.
        ``ahead``: ``read_ahead.read_headers``'s result; a file it read as it still is is not read again."""
        with self._scan:
            files = listing(self.folder)
            for name in [name for name in self._seen if name not in files]:
                with self._lock:
                    self._seen.pop(name, None)
                    self.entries.pop(name, None)
                    self.failed.pop(name, None)
                    self._drop(name)
            keys: dict[int, str] = {}  # a read-ahead group -> its shape key
            for name in sorted(files):
                path, mtime = files[name]
                if self._seen.get(name) == mtime:
                    continue
                try:
                    entry, error = self._index(name, path, mtime, ahead, keys), None
                except (PtuneError, OSError) as problem:
                    entry, error = None, str(problem)
                with self._lock:
                    self._seen[name] = mtime
                    self._drop(name)
                    if entry is not None:
                        self.entries[name] = entry
                        self.failed.pop(name, None)
                    else:
                        self.entries.pop(name, None)
                        self.failed[name] = error
                if error:
                    log.warning("skipped %s: %s", path, error)
            if self.budget is not None and self.index_bytes > self.budget / 2:
                log.warning("the index of %d prompt files takes %.1f of the %.1f MiB budget (%d B a file), leaving "
                            "%.1f MiB for resident prompts; raise --max-resident-mb", len(self._seen),
                            self.index_bytes / MB, self.budget / MB, INDEX_BYTES,
                            max(0, self.budget - self.index_bytes) / MB)
            with self._lock:
                self._shrink()

    def _index(self, name: str, path: str, mtime: int, ahead: dict | None, keys: dict[int, str]) -> Entry:
        """``name``'s Entry: from the read-ahead where it read the file as it is now, else from the file."""
        known = ahead["files"].get(name) if ahead else None
        if known is None or known[0] != mtime:
            return self.indexer.index_file(name, path)
        _, mtime_ns, data, digest, group, error = known
        if error is not None:
            raise PtuneError(error)
        header = ahead["groups"][group]
        if group not in keys:
            keys[group] = shape_key(header)
        return self.indexer.index_header(name, path, header, mtime_ns, data, digest, key=keys[group])

    @property
    def index_bytes(self) -> int:
        """What the index holds, charged against the budget: every file seen, servable or failed."""
        return len(self._seen) * INDEX_BYTES

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def describe(self) -> list[dict[str, Any]]:
        """What GET /tasks lists for each servable task."""
        with self._lock:
            entries, resident = list(self.entries.values()), set(self._resident)
        return [{"task": e.name, **e.shape.describe(), "resident": e.name in resident} for e in entries]

    def stats(self) -> dict[str, Any]:
        """The resident set's numbers, for GET /health."""
        return {"index_s": round(self.index_s, 3),
                "read_ahead_s": None if self.read_ahead_s is None else round(self.read_ahead_s, 3),
                "resident": len(self._resident), "resident_mb": round(self.resident_bytes / MB, 3),
                "index_mb": round(self.index_bytes / MB, 3),
                "max_resident_mb": None if self.budget is None else round(self.budget / MB, 3),
                "loads": self.loads, "evictions": self.evictions}

    @property
    def models(self) -> Mapping[str, PromptModel]:
        """Every servable task by name; looking one up loads it (blocking) if it is not resident."""
        return _Models(self)

    def kind(self, name: str):
        """Task ``name``'s ``TaskKind``, from its header alone (its file is not read); KeyError: not served."""
        return self.loader.prototype(self.entries[name].shape)[0].kind

    # -- the resident set -----------------------------------------------------------------------
    def model(self, name: str) -> PromptModel:
        """Task ``name``'s model, loaded now if it is not resident. KeyError: not a servable task;
        PtuneError: its file turned out damaged (it is then listed as failed)."""
        with self._lock:
            entry = self.entries[name]
            if (found := self._hit(name, entry)) is not None:
                return found
        with entry.lock:  # one load per task; other tasks load and serve meanwhile
            with self._lock:
                if (found := self._hit(name, entry)) is not None:
                    return found
            try:
                model = self.loader.load(entry)
            except (PtuneError, OSError) as error:
                with self._lock:
                    if self.entries.get(name) is entry:
                        del self.entries[name]
                        self.failed[name] = str(error)
                log.warning("cannot load %s: %s", entry.path, error)
                raise PtuneError(str(error)) from None
            with self._lock:
                self.loads += 1
                if self.entries.get(name) is entry:  # not replaced by a rescan meanwhile
                    self._admit(name, entry, model)
            return model

    def resident(self, name: str) -> PromptModel | None:
        """Task ``name``'s model if it is resident (marked as just used), else None; never loads."""
        with self._lock:
            entry = self.entries.get(name)
            return None if entry is None else self._hit(name, entry)

    def _hit(self, name: str, entry: Entry) -> PromptModel | None:
        found = self._resident.get(name)
        if found is None or found[0] is not entry:
            return None
        self._resident.move_to_end(name)
        return found[1]

    def _admit(self, name: str, entry: Entry, model: PromptModel) -> None:
        self._drop(name)
        self._resident[name] = (entry, model)
        self.resident_bytes += entry.cost
        self._shrink()

    def _shrink(self) -> None:
        """Evict the least recently used tasks until the index and the resident set fit the budget (the most
        recent one always stays)."""
        while (self.budget is not None and self.index_bytes + self.resident_bytes > self.budget
               and len(self._resident) > 1):
            self._drop(next(iter(self._resident)))
            self.evictions += 1

    def _drop(self, name: str) -> None:
        found = self._resident.pop(name, None)
        if found is not None:
            self.resident_bytes -= found[0].cost


class _Models(Mapping):
    """``TaskRegistry.models``: a read-only mapping that loads on lookup."""

    def __init__(self, registry: TaskRegistry):
        self.registry = registry

    def __getitem__(self, name: str) -> PromptModel:
        return self.registry.model(name)

    def __contains__(self, name: object) -> bool:
        return name in self.registry

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.registry.entries))

    def __len__(self) -> int:
        return len(self.registry)
