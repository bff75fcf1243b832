"""Generation over HTTP: ``POST /generate`` (ptune's own shape) and the OpenAI-compatible
``POST /v1/completions`` and ``GET /v1/models``, where ``model`` names the task.

Requests that arrive together are generated as one mixed-task batch (``infer.mixed_generation``):
each text carries its own task's prompt and its own options, so a request gets what it would get alone.
Streams are server-sent events; ``/v1/completions`` streams OpenAI's chunks, ending with ``data: [DONE]``.
The request bodies, their checks and the answer's pieces are in ``generation_requests.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ptune.errors import PtuneError
from ptune.infer.mixed_generation import MixedGeneration, Request as TextRequest, request as text_request
from ptune.serve.generation_requests import (CompletionRequest, GenerateRequest, Refused, check_max, choice,
                                             openai_error, openai_options, plain_error, schema, task_texts,
                                             token_usage, validated)
from ptune.serve.read_ahead import TASK_NAME
from ptune.tasks import KINDS

log = logging.getLogger(__name__)


@dataclass
class _Job:
    """One HTTP request's texts, and where their pieces and results go (read on the event loop)."""

    requests: list[TextRequest]
    events: asyncio.Queue = field(default_factory=asyncio.Queue)


class GenerationBatcher:
    """Gathers generation requests for a short window (or up to ``max_batch`` texts) and runs them as one
    mixed-task generation on a worker thread; pieces reach each request's queue as they are decided."""

    def __init__(self, max_batch: int, window_ms: float):
        self.max_batch, self.window_ms = max_batch, window_ms
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptune-generate")
        self.batches = self.requests = 0  # generation batches run, requests answered through them

    async def submit(self, requests: list[TextRequest]) -> _Job:
        job = _Job(requests)
        await self.queue.put(job)
        return job

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = [await self.queue.get()]
            size, deadline = len(group[0].requests), loop.time() + self.window_ms / 1000
            while size < self.max_batch:
                try:
                    job = await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
                group.append(job)
                size += len(job.requests)
            self.requests += len(group)
            self.batches += 1
            await loop.run_in_executor(self.executor, self._generate, group, loop)

    def _generate(self, group: list[_Job], loop: asyncio.AbstractEventLoop) -> None:
        """On the worker thread: every event is handed to the loop with ``call_soon_threadsafe``."""
        owners = [(job, index) for job in group for index in range(len(job.requests))]
        tasks = len({id(r.model) for job in group for r in job.requests})
        send = lambda job, event: loop.call_soon_threadsafe(job.events.put_nowait, event)  # noqa: E731
        try:
            generation = MixedGeneration([r for job in group for r in job.requests])
            for row, piece in generation.pieces():
                job, index = owners[row]
                send(job, ("piece", index, piece))
        except Exception as error:  # noqa: BLE001 - reported to every waiting request; the server keeps serving
            if not isinstance(error, PtuneError):
                log.exception("generation batch failed")
            for job in group:
                send(job, ("error", error))
            return
        row = 0
        for job in group:
            count = len(job.requests)
            results = [{"generated": generation.texts[i], "finish": generation.finish[i],
                        "prompt_tokens": generation.prompt_tokens[i], "generated_tokens": len(generation.ids[i])}
                       for i in range(row, row + count)]
            send(job, ("done", results, {"texts": len(owners), "tasks": tasks}))
            row += count


async def events(job: _Job) -> AsyncIterator[tuple]:
    """A job's events in order: ("piece", index, text)..., then ("done", results, batch); raises its error."""
    while True:
        event = await job.events.get()
        if event[0] == "error":
            raise event[1]
        yield event
        if event[0] == "done":
            return


def add_generation_routes(app: FastAPI, registry, limits) -> GenerationBatcher:
    """Register ``/generate``, ``/v1/completions`` and ``/v1/models`` on ``app``, serving the tasks of
    ``registry`` (a ``serve.registry.TaskRegistry``) within ``limits`` (``max_texts``, ``max_text_chars``,
    ``max_batch``, ``window_ms``); the batcher runs with the app."""
    batcher = GenerationBatcher(limits.max_batch, limits.window_ms)
    app.state.generation = batcher
    outer = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application):
        worker = asyncio.create_task(batcher.run())
        try:
            async with outer(application) as state:
                yield state
        finally:
            worker.cancel()

    app.router.lifespan_context = lifespan

    async def requests_for(pairs: list[tuple[str, str]], options: dict) -> list[TextRequest]:
        if not pairs:
            raise Refused(400, "nothing to generate: the list of texts is empty", "prompt")
        if len(pairs) > limits.max_texts:
            raise Refused(413, f"{len(pairs)} texts in one request; the limit is {limits.max_texts}", "prompt")
        models = await _models(registry, sorted({task for task, _ in pairs}))
        out = []
        for i, (task, text) in enumerate(pairs):
            if not isinstance(text, str) or not text.strip():
                raise Refused(400, f"text {i} is empty", "prompt")
            if len(text) > limits.max_text_chars:
                raise Refused(413, f"text {i} has {len(text)} characters; the limit is {limits.max_text_chars}",
                              "prompt")
            try:
                out.append(text_request(models[task], text, **options))
            except PtuneError as error:
                raise Refused(400, str(error)) from None
        return out

    @app.post("/generate", openapi_extra=schema(GenerateRequest))
    async def generate(raw: Request):
        try:
            body = validated(GenerateRequest, await raw.body())
            options = body.model_dump(exclude={"task", "texts", "items", "stream"})
            check_max(options["max_new_tokens"], "max_new_tokens")
            pairs = task_texts(body)
            job = await batcher.submit(await requests_for(pairs, options))
            if body.stream:
                return _sse(_generate_stream(job, pairs), plain_error)
            async for event in events(job):
                if event[0] == "done":
                    return {"generations": [{"task": task, "text": text, **found} for (task, text), found
                                            in zip(pairs, event[1])], "batch": event[2]}
        except Refused as error:
            return plain_error(error)
        except PtuneError as error:
            return plain_error(Refused(400, str(error)))

    @app.post("/v1/completions", openapi_extra=schema(CompletionRequest))
    async def completions(raw: Request):
        try:
            body = validated(CompletionRequest, await raw.body())
            prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
            job = await batcher.submit(await requests_for([(body.model, p) for p in prompts], openai_options(body)))
            ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
            head = {"id": ident, "object": "text_completion", "created": created, "model": body.model}
            if body.stream:
                usage = bool((body.stream_options or {}).get("include_usage"))
                return _sse(_completion_stream(job, head, usage), openai_error)
            async for event in events(job):
                if event[0] == "done":
                    return {**head, "choices": [choice(i, found["generated"], found["finish"]) for i, found
                                                in enumerate(event[1])], "usage": token_usage(event[1])}
        except Refused as error:
            return openai_error(error)
        except PtuneError as error:
            return openai_error(Refused(400, str(error)))

    @app.get("/v1/models")
    async def models() -> dict:
        """The tasks that can generate (all but per-word and question/context kinds, on a causal LM backbone), as
        OpenAI lists models."""
        backbone = registry.backbone
        causal = backbone.is_decoder and not getattr(backbone.config, "is_encoder_decoder", False)
        names = sorted(name for name, entry in list(registry.entries.items())
                       if causal and not KINDS[entry.shape.kind].word_level and _takes_text(KINDS[entry.shape.kind]))
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "ptune",
                                            "root": backbone.name} for name in names]}

    return batcher


async def _models(registry, tasks: list[str]) -> dict:
    """The PromptModel of each task, loaded if it is not resident: 404 for an unknown one (after a rescan
    for files added since) or one whose file fails to load, 400 for one that cannot generate."""
    listed = "GET /tasks (or /v1/models) lists the loaded ones"
    bad = [task for task in tasks if not isinstance(task, str) or not TASK_NAME.match(task)]
    if bad:
        raise Refused(404, f"unknown task {str(bad[0])[:64]!r}; {listed}", "model")
    loop = asyncio.get_running_loop()
    if any(task not in registry for task in tasks):
        await loop.run_in_executor(None, registry.refresh)
    found = {}
    for task in tasks:
        if task in registry.failed:
            raise Refused(404, f"task {task!r} cannot be served: {registry.failed[task]}", "model")
        try:
            model = registry.resident(task) or await loop.run_in_executor(None, registry.model, task)
        except KeyError:
            raise Refused(404, f"unknown task {task!r}; {listed}", "model") from None
        except PtuneError as error:  # its file turned out damaged: listed as failed from now on
            raise Refused(404, f"task {task!r} cannot be served: {error}", "model") from None
        if (problem := _cannot_generate(model)) is not None:
            raise Refused(400, f"task {task!r} cannot generate: {problem}", "model")
        found[task] = model
    return found


def _cannot_generate(model) -> str | None:
    """Why a loaded task's prompt cannot continue text (None when it can)."""
    backbone = model.backbone
    if not backbone.is_decoder or getattr(backbone.config, "is_encoder_decoder", False):
        return (f"its backbone {backbone.name!r} ({backbone.config.model_type}) is not a causal LM; serve a decoder "
                "(e.g. --backbone smollm2) to generate, and use POST /predict for this task")
    if model.transformer is not backbone.model:
        return f"its {model.config.method} prompt tunes its own backbone copy; use `ptune generate` with its file"
    if model.kind.word_level:
        return f"it is a {model.kind.name} task (labels per word); use POST /predict for it"
    if not _takes_text(model.kind):
        return (f"a {model.kind.name} task reads {model.kind.input_help}, not a text to continue; use POST /predict "
                "for it")
    return None


def _takes_text(kind) -> bool:
    """Whether ``kind``'s examples are a text alone (a QA example is a question and a context)."""
    try:
        kind.example({"text": "a text"})
    except ValueError:
        return False
    return True


async def _generate_stream(job: _Job, pairs) -> AsyncIterator[dict]:
    async for event in events(job):
        if event[0] == "piece":
            yield {"index": event[1], "piece": event[2]}
        else:
            for index, ((task, text), found) in enumerate(zip(pairs, event[1])):
                yield {"index": index, "task": task, "text": text, **found}


async def _completion_stream(job: _Job, head: dict, usage: bool) -> AsyncIterator[dict]:
    async for event in events(job):
        if event[0] == "piece":
            yield {**head, "choices": [choice(event[1], event[2], None)]}
        else:
            for index, found in enumerate(event[1]):
                yield {**head, "choices": [choice(index, "", found["finish"])]}
            if usage:
                yield {**head, "choices": [], "usage": token_usage(event[1])}


def _sse(chunks: AsyncIterator[dict], on_error: Callable[[Refused], JSONResponse]) -> StreamingResponse:
    """Server-sent events: ``data: {json}`` per chunk, then ``data: [DONE]``; an error mid-stream is sent as
    a last ``data: {"error": ...}`` event (the status line has gone out already)."""

    async def body():
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk)}\n\n"
        except PtuneError as error:
            yield f"data: {on_error(Refused(400, str(error))).body.decode()}\n\n"
        except Exception as error:  # noqa: BLE001 - the client learns the stream failed; the log has the rest
            yield f"data: {on_error(Refused(500, f'generation failed: {type(error).__name__}')).body.decode()}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


