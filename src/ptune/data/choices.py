"""Multiple-choice examples: a text and its answer choices. Rows of the generic JSON-lines format
(``{"text", "choices", "label"}``), COPA's and ReCoRD's (SuperGLUE JSONL and the hub's) become
`ChoiceExample`s, each choice later scored as a text pair with the text."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ptune.data.examples import ChoiceExample
from ptune.data.files import PathLike, names, parse_json, read_lines, short
from ptune.errors import PtuneError

log = logging.getLogger(__name__)

# COPA asks for the cause or the effect of its premise; the choice is read after this word.
COPA_LINKS = {"cause": "because", "effect": "so"}


def read_jsonl_rows(path: PathLike) -> list[tuple[str, dict]]:
    """("file:line", object) for each non-blank line of a JSON-lines file; refuses a line that is no object."""
    path = Path(path)
    rows = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        row = parse_json(path, number, line)
        if not isinstance(row, dict):
            raise PtuneError(f"{path}:{number}: expected a JSON object, found {short(row)} — one object a line")
        rows.append((f"{path}:{number}", row))
    if not rows:
        raise PtuneError(f"{path}: no rows — add one JSON object a line")
    return rows


def read_choices(path: PathLike) -> list[ChoiceExample]:
    """Multiple-choice examples from JSON lines: ``{"text": ..., "choices": [...], "label": ...}``, the
    label the right choice's index (0 the first) or its text, absent for unlabelled data."""
    return [choice_row(where, row) for where, row in read_jsonl_rows(path)]


def choice_row(where: str, row: Mapping[str, Any]) -> ChoiceExample:
    """One generic multiple-choice row as an example (see `read_choices`)."""
    text, choices = row.get("text"), row.get("choices")
    if not isinstance(text, str) or not text.strip():
        raise PtuneError(f"{where}: 'text' must be a non-empty string, found {short(text)}; found fields: "
                         f"{names(row)} — give the question or premise as 'text'")
    if (not isinstance(choices, list) or len(choices) < 2
            or not all(isinstance(c, str) and c.strip() for c in choices)):
        raise PtuneError(f"{where}: 'choices' must be a list of two or more non-empty strings, found "
                         f"{short(choices)} — give the answer choices as a list")
    return ChoiceExample(text, tuple(choices), _choice_index(where, row.get("label"), choices))


def _choice_index(where: str, label: Any, choices: Sequence[str]) -> int | None:
    if label is None or label == "":
        return None
    if isinstance(label, str) and label in choices:
        return choices.index(label)
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(choices):
        return label
    raise PtuneError(f"{where}: label {short(label)} is neither the index of one of the {len(choices)} choices "
                     "(0 the first) nor one of their texts — fix this row")


def copa_row(where: str, row: Mapping[str, Any]) -> ChoiceExample:
    """COPA (SuperGLUE JSONL or the hub's rows): the premise, and each choice read as its cause ("because
    ...") or its effect ("so ..."); label 0 picks choice1, 1 choice2, -1 or absent: unlabelled."""
    fields = {key: row.get(key) for key in ("premise", "choice1", "choice2", "question")}
    missing = [key for key, value in fields.items() if not isinstance(value, str) or not value.strip()]
    if missing:
        raise PtuneError(f"{where}: COPA needs string fields {names(missing)}; found fields: {names(row)}")
    if fields["question"] not in COPA_LINKS:
        raise PtuneError(f"{where}: COPA's 'question' is 'cause' or 'effect', found {short(fields['question'])}")
    link = COPA_LINKS[fields["question"]]
    choices = tuple(f"{link} {_lower_first(fields[key])}" for key in ("choice1", "choice2"))
    label = row.get("label")
    return ChoiceExample(fields["premise"], choices, None if label in (None, -1) else _choice_index(where, label, choices))


def _lower_first(sentence: str) -> str:
    """"The man fell." -> "the man fell." (read after "because"); "I", "I'm" and acronyms keep their case."""
    first = sentence.split(maxsplit=1)[0]
    return sentence if first.split("'")[0] == "I" or first.isupper() else sentence[:1].lower() + sentence[1:]


def record_rows(where: str, row: Mapping[str, Any]) -> list[ChoiceExample]:
    """ReCoRD: one example per query of a passage, its choices the query with ``@placeholder`` filled by
    each distinct entity of the passage, its label the first entity that is a gold answer. Reads the
    SuperGLUE JSONL (a passage with its entity spans and "qas") and the hub's rows (one query each, the
    entities and answers as texts)."""
    if "qas" in row:  # SuperGLUE JSONL: spans index the passage text, end inclusive
        passage = row.get("passage") or {}
        text = passage.get("text", "")
        entities = [text[e["start"]: e["end"] + 1] for e in passage.get("entities", [])]
        queries = [(q.get("query", ""), [a["text"] for a in q.get("answers", [])]) for q in row["qas"]]
    else:
        text, entities = row.get("passage", ""), list(row.get("entities", []))
        queries = [(row.get("query", ""), list(row.get("answers", [])))]
    if not isinstance(text, str) or not text.strip() or not entities:
        raise PtuneError(f"{where}: ReCoRD needs a passage with entities; found fields: {names(row)}")
    choices = tuple(dict.fromkeys(entities))
    out = []
    for query, answers in queries:
        if "@placeholder" not in query:
            raise PtuneError(f"{where}: ReCoRD query {short(query)} has no @placeholder to fill")
        right = next((i for i, entity in enumerate(choices) if entity in answers), None)
        if answers and right is None:
            log.warning("%s: no entity of the passage is a gold answer (%s); query left out", where, short(answers))
            continue
        filled = tuple(query.replace("@placeholder", entity) for entity in choices)
        out.append(ChoiceExample(_passage(text), filled, right, tuple(answers), choices))
    return out


def _passage(text: str) -> str:
    """ReCoRD's passage with its "@highlight" lines (the article's bullet points) as sentences."""
    pieces = [piece.strip() for piece in text.split("@highlight") if piece.strip()]
    return " ".join(piece if piece[-1] in ".!?\"'" else piece + "." for piece in pieces)


def choice_text(example: ChoiceExample, index: int) -> str:
    """What choice `index` answers: ReCoRD's entity (the filled query is what is scored), else the choice."""
    return example.entities[index] if example.entities else example.choices[index]
