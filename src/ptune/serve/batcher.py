"""Requests that arrive together, run together: a collector waits a short window (or until a maximum
batch) and answers everything it gathered in one pass on one worker thread.

Tasks whose kind can share a batch (``TaskKind.mixable``) go through one ``PromptBank`` forward pass
whatever their tasks; the others (QA: an example is several strided windows) through the ordinary
scored prediction of their own task, on the same worker. Answers keep each request's order.

An item's model may still be loading (a ``concurrent.futures.Future`` from the server's loader threads):
the request joins the batch being formed at once and its load runs meanwhile. When the window closes, the
collector keeps gathering arrivals while unfinished loads end, for at most one more window; a request whose
load is still running then rejoins the queue when it ends (only it waits), one whose load failed is answered 404.

Measured (10,000 tasks, 8 clients, 2 cores, short A/B runs against loading small files on the event
loop, where each ~1 ms load held back the handlers behind it): mixed-task passes hold about one request
more (5.3 against 4.3-4.6), but mixed/single moved within noise (0.787 against 0.798 with a third of the
files in the page cache; 0.906 against 0.905 with all of them): what decides it is whether loads read
from disk. Tried and not kept: a window that slides (closing
half a window after the last arrival, at most four windows): it filled the passes (7.9) but mixed
req/s stayed where it was (median 54.5 against 53.7) while single-task req/s fell (59.8 against 64.3);
and loading in a thread before joining the queue: the load waits for the GIL behind the forward pass
and its request misses the batch being formed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ptune.errors import PtuneError
from ptune.infer.bank import PromptBank
from ptune.infer.predict import predict
from ptune.serve.malloc import Trim
from ptune.serve.requests import unservable

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    items: list[tuple[str, Any, Any]]  # (task, example, its model or the Future of its load)
    top_k: int | None
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    """Collects requests for ``limits.window_ms`` (up to ``limits.max_batch`` items) and answers them as
    one mixed-task pass; ``run`` is the collector, started with the server."""

    def __init__(self, registry, limits):
        self.registry, self.limits = registry, limits
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1)  # one forward pass at a time
        self.batches = 0  # passes run
        self.requests = 0  # requests answered through them
        self.mixed_batches = 0  # passes that held more than one task
        self._rejoining: set[asyncio.Task] = set()  # requests waiting for their loads (held: the loop keeps weak refs)
        self.trim = Trim()  # the heap's free pages handed back on the worker: every few seconds, and when idle

    async def submit(self, items: list[tuple[str, Any, Any]], top_k: int | None = None) -> list[dict]:
        """The JSON record of each (task, example, model) item, as ``ptune predict`` prints it; a model may be
        the Future of its load (a PtuneError it raises answers the request 404)."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(items, top_k, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = self._loaded(await self._collect(loop))
            if not group:
                continue
            self.requests += len(group)
            try:
                await self._answer(loop, group)
            except PtuneError:  # one request's input failed the pass: answer each alone, so only it fails
                for pending in group:
                    await self._answer(loop, [pending])

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[_Pending]:
        """The next batch: the first request waiting and whatever arrives within the window (up to
        ``max_batch`` items). Where its requests' loads are still running when the window ends, arrivals
        keep joining until they end, for at most one more window."""
        group = [await self._next(loop)]
        size, window = len(group[0].items), self.limits.window_ms / 1000
        deadline, extended = loop.time() + window, False
        while size < self.limits.max_batch:
            running = [f for pending in group for *_, f in pending.items if isinstance(f, Future) and not f.done()]
            if loop.time() >= deadline and running and not extended:
                deadline, extended = deadline + window, True
            if loop.time() >= deadline or (extended and not running):
                break
            loads = [asyncio.wrap_future(f) for f in running] if extended else []
            if (arrived := await self._get(max(0.0, deadline - loop.time()), loads)) is not None:
                group.append(arrived)
                size += len(arrived.items)
        return group

    async def _next(self, loop: asyncio.AbstractEventLoop) -> _Pending:
        """The next request to arrive. Where passes have run since the last trim and none arrives within a trim's
        interval, the heap is trimmed meanwhile (on the worker), so that an idle server holds its live memory."""
        if self.trim.available and self.trim.pending:
            if (arrived := await self._get(self.trim.every)) is not None:
                return arrived
            await loop.run_in_executor(self.executor, self.trim, True)
        return await self.queue.get()

    async def _get(self, timeout: float, loads: list = ()) -> _Pending | None:
        """The next request if one arrives within ``timeout`` seconds (and before any of ``loads`` ends), else None."""
        getter = asyncio.ensure_future(self.queue.get())
        await asyncio.wait({getter, *loads}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()  # the queue keeps what it holds: a cancelled get takes nothing
            with contextlib.suppress(asyncio.CancelledError):
                await getter
        return getter.result() if getter.done() and not getter.cancelled() else None

    def _loaded(self, group: list[_Pending]) -> list[_Pending]:
        """The requests of ``group`` whose models have all loaded, each load's Future replaced by its model;
        a request whose load is still running rejoins the queue when it ends (only it waits), one whose
        load failed is answered 404."""
        ready = []
        for pending in group:
            loads = [f for *_, f in pending.items if isinstance(f, Future)]
            if any(not f.done() for f in loads):
                waiter = asyncio.ensure_future(self._rejoin(pending, loads))
                self._rejoining.add(waiter)
                waiter.add_done_callback(self._rejoining.discard)
            elif failed := next(((task, f.exception()) for task, _, f in pending.items
                                 if isinstance(f, Future) and f.exception() is not None), None):
                if not pending.future.done():
                    pending.future.set_exception(unservable(*failed))
            else:
                pending.items = [(task, example, m.result() if isinstance(m, Future) else m)
                                 for task, example, m in pending.items]
                ready.append(pending)
        return ready

    async def _rejoin(self, pending: _Pending, loads: list[Future]) -> None:
        await asyncio.wait([asyncio.wrap_future(f) for f in loads])
        await self.queue.put(pending)

    async def _answer(self, loop: asyncio.AbstractEventLoop, group: list[_Pending]) -> None:
        """Run ``group`` as one pass and settle its futures; a PtuneError of a group of several is raised
        for the caller to retry each alone, any other error is every request's answer."""
        rows = [(task, example, model, pending.top_k) for pending in group for task, example, model in pending.items]
        try:
            records = await loop.run_in_executor(self.executor, self.records, rows)
        except Exception as error:  # noqa: BLE001 - report to every waiting client, keep serving
            if isinstance(error, PtuneError) and len(group) > 1:
                raise
            if not isinstance(error, PtuneError):
                log.exception("batch failed")
            for pending in group:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        cursor = 0
        for pending in group:
            if not pending.future.done():
                pending.future.set_result(records[cursor : cursor + len(pending.items)])
            cursor += len(pending.items)
        self.trim.pending = True
        if self.trim.due():  # after the answers, before the next pass (the one worker runs them in turn)
            loop.run_in_executor(self.executor, self.trim)

    def records(self, rows: list[tuple[str, Any, Any, int | None]]) -> list[dict]:
        """One pass over (task, example, model, top_k) rows: the mixable ones through a bank of the models
        they hold, the others per task through ``infer.predict``; a record per row, in order."""
        self.batches += 1
        self.mixed_batches += len({task for task, *_ in rows}) > 1
        out: list[dict | None] = [None] * len(rows)
        models: dict[str, Any] = {}
        banked, alone = [], {}
        for i, (task, _, model, top_k) in enumerate(rows):
            if not model.kind.mixable:
                alone.setdefault((id(model), top_k), []).append(i)
                continue
            key = task if models.setdefault(task, model) is model else f"{task}@{id(model)}"  # reloaded meanwhile
            models.setdefault(key, model)
            banked.append((i, key))
        size = max(self.limits.max_batch, len(rows))
        if banked:
            found = PromptBank(models).predict_scored([(key, rows[i][1]) for i, key in banked], batch_size=size)
            for (i, _), (prediction, scores, feature) in zip(banked, found):
                _, example, model, top_k = rows[i]
                out[i] = {**model.kind.record(example, prediction, scores, top_k=top_k),
                          **model.kind.marks([example], [feature])[0]}
        for indices in alone.values():
            _, _, model, top_k = rows[indices[0]]
            records = predict(model, [rows[i][1] for i in indices], batch_size=size, scores=True, top_k=top_k)
            for i, record in zip(indices, records):
                out[i] = record
        return out  # type: ignore[return-value]
