"""What generation requests look like over HTTP, and what goes back: the bodies of ``POST /generate`` and
OpenAI's ``POST /v1/completions`` checked into ptune's options (``Refused`` when a client must fix them), the
OpenAI pieces of an answer (choices, usage) and the error bodies of both shapes."""

from __future__ import annotations

import json
import secrets
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


def validated(schema: type[BaseModel], body: bytes):
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


def check_max(value: int, name: str) -> None:
    if value > MAX_NEW_TOKENS:
        raise Refused(400, f"{name} is {value}; this server generates at most {MAX_NEW_TOKENS} tokens per text", name)


def task_texts(body: GenerateRequest) -> list[tuple[str, str]]:
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


def openai_options(body: CompletionRequest) -> dict:
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
    check_max(max_tokens, "max_tokens")
    given = lambda value, default: default if value is None else value  # noqa: E731 - null means the default
    return dict(max_new_tokens=max_tokens, min_new_tokens=body.min_tokens or 0,
                temperature=given(body.temperature, 1.0), top_p=given(body.top_p, 1.0), top_k=body.top_k,
                repetition_penalty=given(body.repetition_penalty, 1.0),
                stop=body.stop or [], seed=given(body.seed, secrets.randbelow(2**31)))


def choice(index: int, text: str, finish: str | None) -> dict:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": FINISH_REASON.get(finish)}


def token_usage(results: list[dict]) -> dict:
    prompt, completion = sum(r["prompt_tokens"] for r in results), sum(r["generated_tokens"] for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def plain_error(error: Refused) -> JSONResponse:
    return JSONResponse(status_code=error.status, content={"error": error.message})


def openai_error(error: Refused) -> JSONResponse:
    kind = ("not_found_error" if error.status == 404 else "server_error" if error.status >= 500
            else "invalid_request_error")
    return JSONResponse(status_code=error.status, content={"error": {"message": error.message, "type": kind, "param":
                        error.param, "code": "model_not_found" if error.status == 404 else None}})


def schema(model: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}
