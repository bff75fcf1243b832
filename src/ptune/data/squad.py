"""Read extractive question answering data (SQuAD 1.1 and 2.0) into `QAExample`s.

Takes the official SQuAD JSON and the Hugging Face `squad`/`squad_v2` schema (JSON, JSONL, records).
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ptune.data.files import PathLike, json_type, parse_json, read_lines, short
from ptune.data.examples import QAExample
from ptune.errors import PtuneError

_HF_SHAPE = '{"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}'


def read_squad(path: PathLike) -> list[QAExample]:
    """Questions from an official SQuAD file (`{"data": [{"paragraphs": [{"context", "qas"}]}]}`),
    or Hugging Face schema records: a JSON array, or one object a line (`.jsonl`)."""
    path = Path(path)
    lines = read_lines(path)
    filled = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not filled:
        raise PtuneError(
            f'{path}: empty file — expected SQuAD JSON ({{"data": [...]}}) or one {_HF_SHAPE} a line'
        )
    if path.suffix.lower() == ".jsonl" or _is_json_lines(filled):
        records = ((f"{path}:{number}", parse_json(path, number, line)) for number, line in filled)
        return _checked(str(path), [_hf_example(where, record) for where, record in records])
    document = parse_json(path, 0, "\n".join(lines))
    if isinstance(document, dict) and "data" in document:
        return _checked(str(path), list(_official_examples(path, document["data"])))
    if isinstance(document, list):
        items = [(f"{path} (item {i})", item) for i, item in enumerate(document, start=1)]
        return _checked(str(path), [_hf_example(where, item) for where, item in items])
    if isinstance(document, dict) and "question" in document:
        return _checked(str(path), [_hf_example(str(path), document)])
    raise PtuneError(
        f'{path}: expected SQuAD JSON ({{"data": [...]}}) or Hugging Face records {_HF_SHAPE},'
        f" found {json_type(document)} — convert the file to one of these"
    )


def read_squad_records(records: Iterable[dict[str, Any]], source: str) -> list[QAExample]:
    """Questions from Hugging Face schema dicts (e.g. a `datasets` split of `squad`/`squad_v2`);
    `source` names them in error messages."""
    examples = [_hf_example(f"{source} (record {i})", r) for i, r in enumerate(records, start=1)]
    return _checked(source, examples)


def _is_json_lines(filled: list[tuple[int, str]]) -> bool:
    """Whether a `.json` file is really JSON lines (as `Dataset.to_json` writes by default)."""
    if len(filled) < 2:
        return False
    try:
        return isinstance(json.loads(filled[0][1]), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


def _official_examples(path: Path, data: Any) -> Iterator[QAExample]:
    """The questions of the official layout's `data` list, in file order."""
    for a, article in enumerate(_typed(str(path), "data", data, list)):
        where = f"{path}: data[{a}]"
        for p, paragraph in enumerate(_typed(where, "paragraphs", _field(where, article, "paragraphs"), list)):
            here = f"{where}.paragraphs[{p}]"
            context = _text(here, paragraph, "context")
            for q, qa in enumerate(_typed(here, "qas", _field(here, paragraph, "qas"), list)):
                qid = _question_id(f"{here}.qas[{q}]", qa)
                at = f"{path}: question {qid!r}"
                answers = _typed(at, "answers", _field(at, qa, "answers"), list)
                texts = [_text(f"{at} answers[{i}]", answer, "text") for i, answer in enumerate(answers)]
                starts = [
                    _offset(f"{at} answers[{i}]", _field(f"{at} answers[{i}]", answer, "answer_start"))
                    for i, answer in enumerate(answers)
                ]
                flag = _optional_flag(at, qa)
                yield _example(at, qid, _text(at, qa, "question"), context, texts, starts, flag)


def _hf_example(where: str, record: Any) -> QAExample:
    """One Hugging Face schema record; an empty answers list means the question has no answer."""
    qid = _question_id(where, record)
    at = f"{where}: question {qid!r}"
    answers = _typed(at, "answers", _field(at, record, "answers"), dict)
    texts = _typed(f"{at} answers", "text", _field(f"{at} answers", answers, "text"), list)
    starts = _typed(f"{at} answers", "answer_start", _field(f"{at} answers", answers, "answer_start"), list)
    if len(texts) != len(starts):
        raise PtuneError(
            f"{at}: {len(texts)} answer texts but {len(starts)} answer_start offsets"
            " — give each answer text one offset"
        )
    texts = [_string(f"{at} answers", "text", text) for text in texts]
    starts = [_offset(f"{at} answers", start) for start in starts]
    flag = _optional_flag(at, record)
    return _example(at, qid, _text(at, record, "question"), _text(at, record, "context"), texts, starts, flag)


def _example(
    where: str,
    qid: str,
    question: str,
    context: str,
    texts: list[str],
    starts: list[int],
    is_impossible: bool | None,
) -> QAExample:
    """A checked example: every answer is found at its offset; `is_impossible` agrees with them."""
    if is_impossible and texts:
        raise PtuneError(
            f"{where}: marked is_impossible but has {len(texts)} answers"
            " — empty its answers (keep them in plausible_answers) or set is_impossible to false"
        )
    if is_impossible is False and not texts:
        raise PtuneError(f"{where}: has no answers — add one or set is_impossible to true")
    for text, start in zip(texts, starts, strict=True):
        found = context[start : start + len(text)] if start >= 0 else ""
        if found != text:
            elsewhere = context.find(text)
            hint = f"; the text occurs at offset {elsewhere}" if elsewhere >= 0 else ""
            raise PtuneError(
                f"{where}: answer {short(text)} does not match the context at answer_start {start}"
                f" (found {short(found)}{hint}) — fix answer_start or the answer text"
            )
    return QAExample(qid, question, context, tuple(texts), tuple(starts), not texts)


def _field(where: str, record: Any, name: str) -> Any:
    """`record[name]`; `record` must be a JSON object holding it."""
    if not isinstance(record, dict):
        raise PtuneError(f"{where}: expected a JSON object, found {json_type(record)} — fix it")
    if name not in record:
        found = ", ".join(repr(key) for key in record) or "none"
        raise PtuneError(f"{where}: no {name!r} field (found: {found}) — add it")
    return record[name]


def _typed(where: str, name: str, value: Any, kind: type) -> Any:
    """`value` if it is a list / an object as the layout requires."""
    if not isinstance(value, kind):
        wanted = "a list" if kind is list else "an object"
        raise PtuneError(f"{where}: {name!r} must be {wanted}, found {json_type(value)} — fix it")
    return value


def _string(where: str, name: str, value: Any) -> str:
    """`value` if it is a non-blank string."""
    if not isinstance(value, str):
        raise PtuneError(f"{where}: {name!r} must be a string, found {json_type(value)} — fix it")
    if not value.strip():
        raise PtuneError(f"{where}: {name!r} is blank — fill it in or remove this question")
    return value


def _text(where: str, record: Any, name: str) -> str:
    """The non-blank string field `name` of `record`."""
    return _string(where, name, _field(where, record, name))


def _offset(where: str, value: Any) -> int:
    """An `answer_start`: a whole number of characters (numpy integers from `datasets` too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PtuneError(
            f"{where}: 'answer_start' must be a whole number of characters, found {json_type(value)} — fix it"
        )
    return int(value)


def _question_id(where: str, record: Any) -> str:
    """The question's `id` as a string (integer ids are accepted)."""
    value = _field(where, record, "id")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(value)
    return _string(where, "id", value)


def _optional_flag(where: str, record: dict[str, Any]) -> bool | None:
    """`is_impossible` if given (SQuAD 2.0), else None: then an empty answer list decides."""
    value = record.get("is_impossible")
    if value is not None and not isinstance(value, bool):
        raise PtuneError(f"{where}: 'is_impossible' must be true or false, found {json_type(value)} — fix it")
    return value


def _checked(source: str, examples: list[QAExample]) -> list[QAExample]:
    """`examples`, refused when there are none or two share an id (predictions are keyed by id)."""
    if not examples:
        raise PtuneError(f"{source}: no questions found — add questions with their contexts")
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise PtuneError(f"{source}: question id {example.id!r} appears twice — give every question its own id")
        seen.add(example.id)
    return examples
