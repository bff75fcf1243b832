"""Generation over HTTP: ``POST /generate`` (ptune's own shape) and the OpenAI-compatible
``POST /v1/completions`` and ``GET /v1/models``, where ``model`` names the task.

Requests that arrive together are generated as one mixed-task batch (``infer.mixed_generation``):
each text carries its own task's prompt and its own options, so a request gets what it would get alone.
Streams are server-sent events; ``/v1/completions`` streams OpenAI's chunks, ending with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ptune.errors import PtuneError
from ptune.infer.mixed_generation import MixedGeneration, Request as TextRequest, request as text_request
from ptune.serve.registry import TASK_NAME
from ptune.tasks import KINDS

log = logging.getLogger(__name__)
MAX_NEW_TOKENS = 2048  # the most new tokens one text may ask for
FINISH_REASON = {"eos": "stop", "stop": "stop", "length": "length"}  # ptune's finish -> OpenAI's finish_reason


class Refused(Exception):
    """A request the client can fix: its HTTP status, the message and (OpenAI shape) the parameter."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class Options(BaseModel):
    """Generation options of ``POST /generate`` (as ``ptune generate`` names them)."""

    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int = Field(40, description=f"most new tokens per text (1..{MAX_NEW_TOKENS})")
    min_new_tokens: int = 0
    temperature: float = Field(0.0, description="0: greedy; above 0: sampling")
    top_p: float = 1.0
    top_k: int | None = None
    repetition_penalty: float = 1.0
    stop: str | list[str] = Field(default_factory=list, description="the text ends before the first of these")
    seed: int = 0
    stream: bool = Field(False, description="server-sent events: {index, piece} as pieces are decided")


class GenerateRequest(Options):
    task: str | None = Field(None, description="task name (a prompt file's stem) for every text")
    texts: list[str] | None = Field(None, description="texts to continue")
    items: list[dict[str, str]] | None = Field(None, description="[{'task': ..., 'text': ...}] pairs, tasks mixed")


class CompletionRequest(BaseModel):
    """OpenAI's completions request; ``model`` is the task. ``top_k``, ``min_tokens`` and
    ``repetition_penalty`` are extensions (as vLLM takes them); other unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    prompt: str | list[str]
    max_tokens: int | None = 16
    temperature: float | None = 1.0
    top_p: float | None = 1.0
    n: int | None = 1
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: int | None = None
    echo: bool | None = False
    best_of: int | None = None
    suffix: str | None = None
    presence_penalty: float | None = 0.0
    frequency_penalty: float | None = 0.0
    logit_bias: dict[str, float] | None = None
    top_k: int | None = None
    min_tokens: int | None = 0
    repetition_penalty: float | None = 1.0


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

    @app.post("/generate", openapi_extra=_schema(GenerateRequest))
    async def generate(raw: Request):
        try:
            body = _validated(GenerateRequest, await raw.body())
            options = body.model_dump(exclude={"task", "texts", "items", "stream"})
            _check_max(options["max_new_tokens"], "max_new_tokens")
            pairs = _pairs(body)
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

    @app.post("/v1/completions", openapi_extra=_schema(CompletionRequest))
    async def completions(raw: Request):
        try:
            body = _validated(CompletionRequest, await raw.body())
            prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
            job = await batcher.submit(await requests_for([(body.model, p) for p in prompts], _openai_options(body)))
            ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
            head = {"id": ident, "object": "text_completion", "created": created, "model": body.model}
            if body.stream:
                usage = bool((body.stream_options or {}).get("include_usage"))
                return _sse(_completion_stream(job, head, usage), openai_error)
            async for event in events(job):
                if event[0] == "done":
                    return {**head, "choices": [_choice(i, found["generated"], found["finish"]) for i, found
                                                in enumerate(event[1])], "usage": _usage(event[1])}
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


def _validated(schema: type[BaseModel], body: bytes):
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise Refused(400, f"malformed JSON: {error}") from None
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise Refused(400, f"invalid request{' at ' + where if where else ''}: {first.get('msg', 'check the fields')}",
                      where or None) from None


def _check_max(value: int, name: str) -> None:
    if value > MAX_NEW_TOKENS:
        raise Refused(400, f"{name} is {value}; this server generates at most {MAX_NEW_TOKENS} tokens per text", name)


def _pairs(body: GenerateRequest) -> list[tuple[str, str]]:
    if body.items is not None:
        if body.task is not None or body.texts is not None:
            raise Refused(400, "give either items, or task with texts, not both")
        for i, item in enumerate(body.items):
            if set(item) != {"task", "text"}:
                raise Refused(400, f"items[{i}] must have exactly the fields task and text")
        return [(item["task"], item["text"]) for item in body.items]
    if body.task is None or body.texts is None:
        raise Refused(400, "give task and texts, or items: [{task, text}, ...]")
    return [(body.task, text) for text in body.texts]


def _openai_options(body: CompletionRequest) -> dict:
    """The request's options as ptune's (``generate.settings``); what ptune does not do is refused."""
    unsupported = [("n", body.n not in (None, 1), "n must be 1 (send the request again for more completions)"),
                   ("best_of", body.best_of not in (None, 1), "best_of must be 1"),
                   ("echo", bool(body.echo), "echo is not supported"),
                   ("logprobs", body.logprobs is not None, "logprobs are not supported"),
                   ("suffix", body.suffix is not None, "suffix (insertion) is not supported"),
                   ("presence_penalty", bool(body.presence_penalty), "presence_penalty is not supported; use "
                    "repetition_penalty"),
                   ("frequency_penalty", bool(body.frequency_penalty), "frequency_penalty is not supported; use "
                    "repetition_penalty"),
                   ("logit_bias", bool(body.logit_bias), "logit_bias is not supported")]
    for param, bad, message in unsupported:
        if bad:
            raise Refused(400, message, param)
    max_tokens = 16 if body.max_tokens is None else body.max_tokens
    _check_max(max_tokens, "max_tokens")
    given = lambda value, default: default if value is None else value  # noqa: E731 - null means the default
    return dict(max_new_tokens=max_tokens, min_new_tokens=body.min_tokens or 0,
                temperature=given(body.temperature, 1.0), top_p=given(body.top_p, 1.0), top_k=body.top_k,
                repetition_penalty=given(body.repetition_penalty, 1.0),
                stop=body.stop or [], seed=given(body.seed, secrets.randbelow(2**31)))


def _choice(index: int, text: str, finish: str | None) -> dict:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": FINISH_REASON.get(finish)}


def _usage(results: list[dict]) -> dict:
    prompt, completion = sum(r["prompt_tokens"] for r in results), sum(r["generated_tokens"] for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


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
            yield {**head, "choices": [_choice(event[1], event[2], None)]}
        else:
            for index, found in enumerate(event[1]):
                yield {**head, "choices": [_choice(index, "", found["finish"])]}
            if usage:
                yield {**head, "choices": [], "usage": _usage(event[1])}


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


def plain_error(error: Refused) -> JSONResponse:
    return JSONResponse(status_code=error.status, content={"error": error.message})


def openai_error(error: Refused) -> JSONResponse:
    kind = ("not_found_error" if error.status == 404 else "server_error" if error.status >= 500
            else "invalid_request_error")
    return JSONResponse(status_code=error.status, content={"error": {"message": error.message, "type": kind, "param":
                        error.param, "code": "model_not_found" if error.status == 404 else None}})


def _schema(model: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}
