"""The inference server: one frozen backbone in memory, every prompt file in a folder a task.

Tasks are indexed by header and loaded on first use into a bounded set (``registry``). Requests
that arrive together are batched across tasks (``batcher``): one forward pass through a PromptBank
for the kinds that mix, each QA task's windows through its own scored prediction. New prompt files
are picked up without restart. Bad input is answered with a JSON error, never by dying. The
playground page (``/``) and the API docs (``/docs``, ``/redoc``) are served from the package.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError

from ptune.errors import PtuneError
from ptune.model.backbones import Backbone
from ptune.serve.batcher import Batcher
from ptune.serve.generation import add_generation_routes
from ptune.serve.pages import add_pages, offline_app
from ptune.serve.read_ahead import TASK_NAME, ReadAhead
from ptune.serve.registry import TaskRegistry
from ptune.serve.requests import ClientError, PredictRequest, example, items, json_error, parse, unknown, unservable

MAX_NEIGHBOURS = 50  # the most nearest tokens GET /tasks/{task}/neighbours lists per prompt position


@dataclass
class Limits:
    max_body_bytes: int = 1_000_000
    max_texts: int = 256
    max_text_chars: int = 4_000
    max_batch: int = 64
    window_ms: float = 5.0
    max_resident_mb: float | None = 1024.0  # prompts kept loaded (least recently used evicted); None: no bound
    loaders: int = 4  # threads that load cold tasks while the forward pass runs


def create_app(folder: str | Path, backbone: Backbone, limits: Limits | None = None,
               read_ahead: ReadAhead | None = None) -> FastAPI:
    """The FastAPI application serving every prompt file in ``folder`` on ``backbone``; ``read_ahead``: the
    folder's headers being read by a child process started before the backbone loaded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PtuneError(f"{folder}: not a folder of prompt files")
    limits = limits or Limits()
    registry = TaskRegistry(folder, backbone, limits.max_resident_mb, read_ahead)
    batcher = Batcher(registry, limits)
    loaders = ThreadPoolExecutor(max_workers=limits.loaders, thread_name_prefix="ptune-load")
    neighbours_seen: dict[tuple, dict] = {}  # (task, its file's mtime, k) -> the answer: a deep prompt's costs a pass

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        loaders.shutdown(wait=False)

    app = offline_app(title="ptune", description="Prompt-tuned tasks on one frozen backbone, batched across tasks.",
                      lifespan=lifespan)
    app.state.registry, app.state.batcher = registry, batcher
    add_generation_routes(app, registry, limits)  # /generate, /v1/completions, /v1/models
    add_pages(app)  # / (the playground) and its assets

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limits.max_body_bytes):
            return json_error(413, f"request body over {limits.max_body_bytes} bytes")
        if request.method == "POST":
            body = await request.body()  # also catches bodies sent without a length
            if len(body) > limits.max_body_bytes:
                return json_error(413, f"request body over {limits.max_body_bytes} bytes")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        if first.get("type") == "json_invalid":
            return json_error(400, f"malformed JSON: {first.get('ctx', {}).get('error', 'cannot parse the body')}")
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return json_error(422, f"invalid request{' at ' + where if where else ''}: "
                               f"{first.get('msg', 'check the fields')}")

    @app.exception_handler(ClientError)
    async def client_error(request: Request, error: ClientError):
        return json_error(error.status, error.message)

    async def served(names: list[str]) -> dict:
        """Each of ``names``' model, or the Future of its load where it is not resident (a loader thread maps
        and checks it while the request waits in the batch being formed); 404 for an unknown task (after a
        rescan for files added since)."""
        if any(name not in registry for name in names):
            await asyncio.get_running_loop().run_in_executor(None, registry.refresh)  # hot-added files
        missing = sorted({name for name in names if name not in registry})
        if missing:
            raise unknown(registry, missing)
        return {name: registry.resident(name) or loaders.submit(_load, registry, name) for name in set(names)}

    def kind_of(name: str, model):
        try:
            return registry.kind(name) if isinstance(model, Future) else model.kind
        except KeyError:  # removed by a rescan meanwhile
            raise ClientError(404, f"task {name!r} was removed from the folder") from None

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "backbone": backbone.name, "tasks": len(registry), "failed": registry.failed,
                "batches": batcher.batches, "mixed_batches": batcher.mixed_batches, "requests": batcher.requests,
                "trim_s": round(batcher.trim.seconds, 3), **registry.stats()}

    @app.get("/tasks")
    async def tasks() -> dict:
        await asyncio.get_running_loop().run_in_executor(None, registry.refresh)
        return {"tasks": registry.describe(), "failed": registry.failed}

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()}}}})
    async def predict(raw: Request) -> dict:
        request = parse(await raw.body())
        rows = items(request, max_texts=limits.max_texts, max_text_chars=limits.max_text_chars)
        models = await served([task for task, _ in rows])
        kinds = {task: kind_of(task, model) for task, model in models.items()}
        batch = [(task, example(kinds[task], task, row, i), models[task]) for i, (task, row) in enumerate(rows)]
        try:
            return {"predictions": await batcher.submit(batch, request.top_k)}
        except PtuneError as error:
            raise ClientError(422, str(error)) from error

    @app.get("/tasks/{task}/neighbours")
    async def neighbours(task: str, k: int = Query(5, ge=1, le=MAX_NEIGHBOURS,
                                                   description="nearest tokens per prompt position")) -> dict:
        """The ``k`` vocabulary tokens nearest (cosine) to each of the task's prompt vectors: input
        prompts against the input embeddings, deep prompts against layer 0's keys of every token."""
        if not TASK_NAME.match(task):
            raise ClientError(404, f"unknown task {task[:64]!r}; GET /tasks lists the loaded ones")
        model = (await served([task]))[task]
        if isinstance(model, Future):
            try:
                model = await asyncio.wrap_future(model)
            except PtuneError as error:
                raise unservable(task, error) from error
        key = (task, registry.entries[task].mtime_ns if task in registry else None, k)
        if key not in neighbours_seen:
            loop = asyncio.get_running_loop()
            try:  # a loader thread: a deep prompt runs the backbone over the vocabulary; predictions go on meanwhile
                found = await loop.run_in_executor(loaders, prompt_neighbours, model, k)
            except PtuneError as error:
                raise ClientError(422, f"task {task!r}: {error}") from error
            if len(neighbours_seen) >= 64:
                neighbours_seen.pop(next(iter(neighbours_seen)))
            neighbours_seen[key] = {"task": task, **found}
        return neighbours_seen[key]

    return app


def _load(registry: TaskRegistry, name: str):
    """Task ``name``'s model, loaded now (in a loader thread) if it is not resident."""
    try:
        return registry.model(name)
    except KeyError:  # removed by a rescan meanwhile
        raise PtuneError(f"task {name!r} was removed from the folder") from None


def prompt_neighbours(model, k: int) -> dict:
    from ptune.analysis.interpret import nearest_tokens

    found = nearest_tokens(model, k=min(k, model.backbone.tokenizer.vocab_size))
    return {"space": found.space, "k": k, "positions": [
        {"position": i, "tokens": tokens, "similarities": [round(s, 4) for s in sims]}
        for i, (tokens, sims) in enumerate(zip(found.tokens, found.similarities))]}
