"""The inference server: one frozen backbone in memory, every prompt file in a folder a task.

Tasks are indexed by header and loaded on first use into a bounded set (``registry``). Requests
that arrive together are batched across tasks into one forward pass: a collector waits a short
window (or until a maximum batch) and runs everything it gathered through a PromptBank of the
tasks it holds. New prompt files are picked up without restart. Bad input is answered with a JSON
error, never by dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from ptune.model.backbones import Backbone
from ptune.errors import PtuneError
from ptune.infer.bank import PromptBank
from ptune.serve.registry import TASK_NAME, TaskRegistry
from ptune.serve.generation import add_generation_routes

log = logging.getLogger(__name__)


@dataclass
class Limits:
    max_body_bytes: int = 1_000_000
    max_texts: int = 256
    max_text_chars: int = 4_000
    max_batch: int = 64
    window_ms: float = 5.0
    max_resident_mb: float | None = 1024.0  # prompts kept loaded (least recently used evicted); None: no bound
    loaders: int = 4  # threads that load cold tasks while the forward pass runs


class PredictRequest(BaseModel):
    task: str | None = Field(None, description="task name (a prompt file's stem) for every text")
    texts: list[str] | None = Field(None, description="texts to label; for tagging tasks, words split on spaces")
    items: list[dict[str, str]] | None = Field(None, description="[{'task': ..., 'text': ...}] pairs, tasks mixed")
    top_k: int | None = Field(None, ge=1, description="classification: only the k likeliest labels in "
                                                      "'probabilities' (default: every label)")


class ClientError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class _Pending:
    items: list[tuple[str, Any, Any]]  # (task, example, its model)
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    """Collects requests for a short window and runs them as one mixed-task batch."""

    def __init__(self, registry: TaskRegistry, limits: Limits):
        self.registry, self.limits = registry, limits
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1)  # one forward pass at a time
        self.batches = 0  # forward passes run
        self.requests = 0  # requests answered through them
        self.mixed_batches = 0  # passes that held more than one task

    async def submit(self, items: list[tuple[str, Any, Any]]) -> list:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(items, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = [await self.queue.get()]
            size = len(group[0].items)
            deadline = loop.time() + self.limits.window_ms / 1000
            while size < self.limits.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    pending = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                group.append(pending)
                size += len(pending.items)
            items = [item for pending in group for item in pending.items]
            self.requests += len(group)
            try:
                results = await loop.run_in_executor(self.executor, self._predict, items)
            except Exception as error:  # noqa: BLE001 - report to every waiting client, keep serving
                log.exception("batch failed")
                for pending in group:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            cursor = 0
            for pending in group:
                if not pending.future.done():
                    pending.future.set_result(results[cursor : cursor + len(pending.items)])
                cursor += len(pending.items)

    def _predict(self, items: list[tuple[str, Any, Any]]) -> list:
        """One pass over (task, example, model) triples through a bank of the models they hold."""
        self.batches += 1
        models: dict[str, Any] = {}
        keys = []
        for task, _, model in items:
            key = task if models.setdefault(task, model) is model else f"{task}@{id(model)}"  # reloaded meanwhile
            models.setdefault(key, model)
            keys.append(key)
        self.mixed_batches += len(models) > 1
        bank = PromptBank(models)
        return bank.predict_scored([(key, example) for key, (_, example, _) in zip(keys, items)],
                                   batch_size=max(self.limits.max_batch, len(items)))


def create_app(folder: str | Path, backbone: Backbone, limits: Limits | None = None) -> FastAPI:
    """The FastAPI application serving every prompt file in ``folder`` on ``backbone``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PtuneError(f"{folder}: not a folder of prompt files")
    limits = limits or Limits()
    registry = TaskRegistry(folder, backbone, limits.max_resident_mb)
    batcher = Batcher(registry, limits)
    loaders = ThreadPoolExecutor(max_workers=limits.loaders, thread_name_prefix="ptune-load")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        loaders.shutdown(wait=False)

    app = FastAPI(title="ptune", description="Prompt-tuned tasks on one frozen backbone, batched across tasks.",
                  lifespan=lifespan)
    app.state.registry, app.state.batcher = registry, batcher
    add_generation_routes(app, registry, limits)  # /generate, /v1/completions, /v1/models

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limits.max_body_bytes):
            return _error(413, f"request body over {limits.max_body_bytes} bytes")
        if request.method == "POST":
            body = await request.body()  # also catches bodies sent without a length
            if len(body) > limits.max_body_bytes:
                return _error(413, f"request body over {limits.max_body_bytes} bytes")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        if first.get("type") == "json_invalid":
            return _error(400, f"malformed JSON: {first.get('ctx', {}).get('error', 'cannot parse the body')}")
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return _error(422, f"invalid request{' at ' + where if where else ''}: {first.get('msg', 'check the fields')}")

    @app.exception_handler(ClientError)
    async def client_error(request: Request, error: ClientError):
        return _error(error.status, error.message)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "backbone": backbone.name, "tasks": len(registry), "failed": registry.failed,
                "batches": batcher.batches, "mixed_batches": batcher.mixed_batches, "requests": batcher.requests,
                **registry.stats()}

    @app.get("/tasks")
    async def tasks() -> dict:
        await asyncio.get_running_loop().run_in_executor(None, registry.refresh)
        return {"tasks": registry.describe(), "failed": registry.failed}

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()}}}})
    async def predict(raw: Request) -> dict:
        request = _parse(await raw.body())
        pairs = _items(request, limits)
        loop = asyncio.get_running_loop()
        missing = sorted({task for task, _ in pairs if task not in registry})
        if missing:
            await loop.run_in_executor(None, registry.refresh)  # hot-added files
            missing = sorted({task for task, _ in pairs if task not in registry})
        if missing:
            raise _unknown(registry, missing)
        names = sorted({task for task, _ in pairs})
        models = {name: model for name in names if (model := registry.resident(name)) is not None}
        try:
            if len(models) < len(names):
                models = await loop.run_in_executor(loaders, _load, registry, names)
        except PtuneError as error:  # a file found damaged on first use: listed as failed from now on
            raise ClientError(404, f"task cannot be served: {error}") from error
        items = [(task, _example(models[task], text), models[task]) for task, text in pairs]
        try:
            results = await batcher.submit(items)
        except PtuneError as error:
            raise ClientError(422, str(error)) from error
        return {"predictions": [_record(model, example, found, request.top_k)
                                for (_, example, model), found in zip(items, results)]}

    return app


def _load(registry: TaskRegistry, names: list[str]) -> dict:
    """The models of ``names``, loading the cold ones (in a loader thread; only this request waits)."""
    out = {}
    for name in names:
        try:
            out[name] = registry.model(name)
        except KeyError:  # removed by a rescan meanwhile
            raise PtuneError(f"task {name!r} was removed from the folder") from None
    return out


def _unknown(registry: TaskRegistry, missing: list[str]) -> ClientError:
    failed = [name for name in missing if name in registry.failed]
    if failed:
        return ClientError(404, f"task {failed[0]!r} cannot be served: {registry.failed[failed[0]]}")
    return ClientError(404, f"unknown task(s) {', '.join(map(repr, missing))}; GET /tasks lists the loaded ones")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _parse(body: bytes) -> PredictRequest:
    """The request in ``body``, read as JSON whatever the content type says (``curl -d`` sends a form type):
    400 with the parser's message when it is not JSON, 422 naming the field when a field is wrong."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ClientError(400, f"malformed JSON: the body is not UTF-8 ({error.reason} at byte {error.start})"
                          ) from None
    except json.JSONDecodeError as error:
        raise ClientError(400, f"malformed JSON: {error}") from None
    except RecursionError:
        raise ClientError(400, "malformed JSON: nested too deeply") from None
    try:
        return PredictRequest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = first.get("msg", "check the fields")
        raise ClientError(422, f"invalid request{' at ' + where if where else ''}: {message}") from None


def _items(request: PredictRequest, limits: Limits) -> list[tuple[str, str]]:
    if request.items is not None:
        if request.task is not None or request.texts is not None:
            raise ClientError(422, "give either items, or task with texts, not both")
        pairs = []
        for i, item in enumerate(request.items):
            if set(item) != {"task", "text"}:
                raise ClientError(422, f"items[{i}] must have exactly the fields task and text")
            pairs.append((item["task"], item["text"]))
    elif request.task is not None and request.texts is not None:
        pairs = [(request.task, text) for text in request.texts]
    else:
        raise ClientError(422, "give task and texts, or items: [{task, text}, ...]")
    if not pairs:
        raise ClientError(422, "nothing to predict: the list of texts is empty")
    if len(pairs) > limits.max_texts:
        raise ClientError(413, f"{len(pairs)} texts in one request; the limit is {limits.max_texts}")
    for i, (task, text) in enumerate(pairs):
        if not TASK_NAME.match(task):
            raise ClientError(404, f"unknown task {task[:64]!r}; GET /tasks lists the loaded ones")
        if len(text) > limits.max_text_chars:
            raise ClientError(413, f"text {i} has {len(text)} characters; the limit is {limits.max_text_chars}")
        if not text.strip():
            raise ClientError(422, f"text {i} is empty")
    return pairs


def _example(model, text: str):
    return model.kind.example({"text": text})


def _record(model, example, found: tuple, top_k: int | None) -> dict:
    """The JSON of one prediction: (prediction, scores, feature) as the bank's ``predict_scored`` gives it."""
    prediction, scores, feature = found
    return {**model.kind.record(example, prediction, scores, top_k=top_k), **model.kind.marks([example], [feature])[0]}
