"""What a ``POST /predict`` body may hold, read and checked before any model runs: the request's schema,
its items (a text; a text and a predicate word; a question and a context) and the JSON errors it gets.

Shared by the single-process server (``app.py``) and the Ray Serve router (``ray_app.py``).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from ptune.serve.read_ahead import TASK_NAME

# The fields an item may carry besides its task: one of these sets exactly.
ITEM_FIELDS = ({"text"}, {"text", "predicate"}, {"question", "context"})


class PredictRequest(BaseModel):
    task: str | None = Field(None, description="task name (a prompt file's stem) for every text")
    texts: list[str] | None = Field(None, description="texts to label; for tagging tasks, words split on spaces")
    items: list[dict[str, Any]] | None = Field(
        None, description="tasks mixed: [{'task', 'text'}], tagging with a predicate word (SRL): "
                          "[{'task', 'text', 'predicate': 0-based word index}], QA: [{'task', 'question', 'context'}]")
    top_k: int | None = Field(None, ge=1, description="classification: only the k likeliest labels in "
                                                      "'probabilities' (default: every label)")


class ClientError(Exception):
    """A request the client can fix: the HTTP status and the message of its ``{"error": ...}`` body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def json_error(status: int, message: str) -> JSONResponse:
    """The server's error body: ``{"error": message}`` with ``status``."""
    return JSONResponse(status_code=status, content={"error": message})


def parse(body: bytes) -> PredictRequest:
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


def items(request: PredictRequest, *, max_texts: int, max_text_chars: int) -> list[tuple[str, dict]]:
    """(task, row) per item in request order; a row holds ``text`` (and ``predicate``) or ``question`` and
    ``context``, as ``TaskKind.example`` reads them. Refuses what no task could take, naming the item."""
    if request.items is not None:
        if request.task is not None or request.texts is not None:
            raise ClientError(422, "give either items, or task with texts, not both")
        pairs = [_item(i, item) for i, item in enumerate(request.items)]
    elif request.task is not None and request.texts is not None:
        pairs = [(request.task, {"text": text}) for text in request.texts]
    else:
        raise ClientError(422, "give task and texts, or items: [{task, text}, ...]")
    if not pairs:
        raise ClientError(422, "nothing to predict: the list of texts is empty")
    if len(pairs) > max_texts:
        raise ClientError(413, f"{len(pairs)} texts in one request; the limit is {max_texts}")
    for i, (task, row) in enumerate(pairs):
        if not TASK_NAME.match(task):
            raise ClientError(404, f"unknown task {task[:64]!r}; GET /tasks lists the loaded ones")
        for name in ("text", "question", "context"):
            value = row.get(name)
            if value is None:
                continue
            if len(value) > max_text_chars:
                raise ClientError(413, f"{name} {i} has {len(value)} characters; the limit is {max_text_chars}")
            if not value.strip():
                raise ClientError(422, f"{name} {i} is empty")
    return pairs


def _item(i: int, item: dict[str, Any]) -> tuple[str, dict]:
    fields = set(item) - {"task"}
    if "task" not in item or fields not in ITEM_FIELDS:
        raise ClientError(422, f"items[{i}] must have exactly the fields task and text (tagging: also predicate, "
                               "a word index; QA: task, question and context)")
    if not isinstance(item["task"], str):
        raise ClientError(422, f"items[{i}].task must be a string, got {type(item['task']).__name__}")
    for name in fields - {"predicate"}:
        if not isinstance(item[name], str):
            raise ClientError(422, f"items[{i}].{name} must be a string, got {type(item[name]).__name__}")
    predicate = item.get("predicate")
    if "predicate" in item and (isinstance(predicate, bool) or not isinstance(predicate, int) or predicate < 0):
        raise ClientError(422, f"items[{i}].predicate must be a word index (0 or more), got {predicate!r}")
    return item["task"], {name: item[name] for name in fields}


def example(kind, task: str, row: dict, index: int):
    """Item ``index``'s example for a task of ``kind`` (a ``TaskKind``); 422 naming the task when the row does
    not fit it (a text for a QA task, a predicate for a kind without words, a predicate past the last word)."""
    if "predicate" in row and not kind.word_level:
        raise ClientError(422, f"items[{index}]: a predicate marks a word of a tagging task; task {task!r} is "
                               f"{kind.name}")
    try:
        return kind.example(row)
    except ValueError as error:
        raise ClientError(422, f"items[{index}] for task {task!r} ({kind.name}): {error}") from None


def unknown(registry, missing: list[str]) -> ClientError:
    """The 404 for task names ``registry`` does not serve: why a failed file failed, else the unknown names."""
    failed = [name for name in missing if name in registry.failed]
    if failed:
        return ClientError(404, f"task {failed[0]!r} cannot be served: {registry.failed[failed[0]]}")
    return ClientError(404, f"unknown task(s) {', '.join(map(repr, missing))}; GET /tasks lists the loaded ones")


def unservable(task: str, error: BaseException) -> ClientError:
    """The 404 for ``task``, whose file failed to load on first use (damaged, changed or removed since it was
    indexed); a ClientError already said is kept."""
    return error if isinstance(error, ClientError) else ClientError(404, f"task {task!r} cannot be served: {error}")
