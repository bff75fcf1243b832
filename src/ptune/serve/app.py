"""The inference server: one frozen backbone in memory, every prompt file in a folder a task.

Requests that arrive together are batched across tasks into one forward pass: a collector waits
a short window (or until a maximum batch) and runs everything it gathered through a PromptBank.
New prompt files are picked up without restart. Bad input is answered with a JSON error, never
by dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
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
from ptune.storage.prompt_files import load_prompt
from ptune.errors import PtuneError
from ptune.infer.bank import PromptBank

log = logging.getLogger(__name__)
TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass
class Limits:
    max_body_bytes: int = 1_000_000
    max_texts: int = 256
    max_text_chars: int = 4_000
    max_batch: int = 64
    window_ms: float = 5.0


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


class TaskRegistry:
    """Prompt files in ``folder`` loaded on one backbone; rescanned to pick up new files."""

    def __init__(self, folder: Path, backbone: Backbone):
        self.folder, self.backbone = folder, backbone
        self.models: dict = {}
        self.failed: dict[str, str] = {}
        self._seen: dict[str, float] = {}
        self.bank: PromptBank | None = None
        self.lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Load new or changed files; drop removed ones. A bad file is reported, never fatal."""
        with self.lock:
            files = {p.stem: p for p in sorted(self.folder.glob("*.safetensors")) if TASK_NAME.match(p.stem)}
            changed = False
            for name in list(self.models):
                if name not in files:
                    del self.models[name], self._seen[name]
                    changed = True
            for name, path in files.items():
                mtime = path.stat().st_mtime
                if self._seen.get(name) == mtime:
                    continue
                self._seen[name] = mtime
                try:
                    model = load_prompt(path, self.backbone)
                    if not model.kind.mixable:  # e.g. a span head answers question/context pairs, not texts
                        raise PtuneError(f"{path}: {model.kind.name} prompts are not served yet; "
                                         "use `ptune predict` with this prompt file")
                    self.models[name] = model
                    self.failed.pop(name, None)
                    log.info("loaded task %s from %s", name, path)
                except PtuneError as error:
                    self.models.pop(name, None)
                    self.failed[name] = str(error)
                    log.warning("skipped %s: %s", path, error)
                changed = True
            if changed:
                self.bank = PromptBank(dict(self.models)) if self.models else None

    def describe(self) -> list[dict[str, Any]]:
        return [{"task": name, "method": m.config.method, "kind": m.kind.name,
                 "labels": m.labels} for name, m in self.models.items()]


@dataclass
class _Pending:
    items: list[tuple[str, Any]]
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

    async def submit(self, items: list[tuple[str, Any]]) -> list:
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

    def _predict(self, items: list[tuple[str, Any]]) -> list:
        self.batches += 1
        bank = self.registry.bank
        return bank.predict_scored(items, batch_size=max(self.limits.max_batch, len(items)))


def create_app(folder: str | Path, backbone: Backbone, limits: Limits | None = None) -> FastAPI:
    """The FastAPI application serving every prompt file in ``folder`` on ``backbone``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PtuneError(f"{folder}: not a folder of prompt files")
    limits = limits or Limits()
    registry = TaskRegistry(folder, backbone)
    batcher = Batcher(registry, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title="ptune", description="Prompt-tuned tasks on one frozen backbone, batched across tasks.",
                  lifespan=lifespan)
    app.state.registry, app.state.batcher = registry, batcher

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
        return {"status": "ok", "backbone": backbone.name, "tasks": len(registry.models), "failed": registry.failed,
                "batches": batcher.batches, "requests": batcher.requests}

    @app.get("/tasks")
    async def tasks() -> dict:
        await asyncio.get_running_loop().run_in_executor(None, registry.refresh)
        return {"tasks": registry.describe(), "failed": registry.failed}

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()}}}})
    async def predict(raw: Request) -> dict:
        request = _parse(await raw.body())
        pairs = _items(request, limits)
        missing = sorted({task for task, _ in pairs if task not in registry.models})
        if missing:
            await asyncio.get_running_loop().run_in_executor(None, registry.refresh)  # hot-added files
            missing = sorted({task for task, _ in pairs if task not in registry.models})
        if missing:
            raise ClientError(404, f"unknown task(s) {', '.join(map(repr, missing))}; GET /tasks lists the loaded ones")
        items = [(task, _example(registry.models[task], text)) for task, text in pairs]
        try:
            results = await batcher.submit(items)
        except PtuneError as error:
            raise ClientError(422, str(error)) from error
        return {"predictions": [_record(registry.models[task], example, found, request.top_k)
                                for (task, example), found in zip(items, results)]}

    return app


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
