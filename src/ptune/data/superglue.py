"""SuperGLUE's eight tasks as released: the JSON lines of each (MultiRC's passages with their questions
and answer options, ReCoRD's passages with entity spans...) and the hub's rows, read as examples with
the hub's label names: text pairs (BoolQ, CB, RTE, WiC, WSC, MultiRC), choices (COPA, ReCoRD)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ptune.data.choices import copa_row, read_jsonl_rows, record_rows
from ptune.data.examples import Example, GroupedTextExample, TextExample
from ptune.data.files import PathLike, names, short
from ptune.errors import PtuneError

_TRUTH = ("False", "True")
# The hub's ClassLabel names, in id order (a JSONL label true/false reads as "True"/"False").
LABELS: dict[str, tuple[str, ...]] = {
    "boolq": _TRUTH, "cb": ("entailment", "contradiction", "neutral"), "rte": ("entailment", "not_entailment"),
    "wic": _TRUTH, "wsc": _TRUTH, "multirc": _TRUTH, "copa": (), "record": (),
}
# What each task is scored by (tasks/metrics.py), as SuperGLUE reports it.
METRICS = {"boolq": "accuracy", "cb": "macro_f1", "copa": "choice_accuracy", "rte": "accuracy", "wic": "accuracy",
           "wsc": "accuracy", "multirc": "multirc", "record": "record"}
# The hub's configuration of each task where its name differs (WSC: the corrected release).
HUB_CONFIGS = {"wsc": "wsc.fixed"}


def read_superglue(config: str, path: PathLike) -> list[Example]:
    """A SuperGLUE JSONL file of task `config` (train, val, or test without labels)."""
    return superglue_rows(config, read_jsonl_rows(Path(path)))


def superglue_rows(config: str, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Example]:
    """("where", row) pairs of task `config`, from its JSONL file or the hub (``load_dataset("super_glue",
    config)``, label ids as names, -1 as None), as examples."""
    convert = _ROWS[config]
    out: list[Example] = []
    for where, row in rows:
        try:
            made = convert(where, row)
        except (AttributeError, KeyError, TypeError, IndexError) as error:  # a field of another shape
            raise PtuneError(f"{where}: not a SuperGLUE {config} row as released ({type(error).__name__}: {error})"
                             " — fix this row") from None
        out.extend(made if isinstance(made, list) else [made])
    return out


def _text(where: str, row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PtuneError(f"{where}: {key!r} must be a non-empty string, found {short(value)}; found fields: "
                         f"{names(row)} — is this the task's file as released?")
    return value


def _label(where: str, value: Any, labels: Sequence[str]) -> str | None:
    """A label as its name: true/false as "True"/"False", a hub id by its position, -1 or absent as None."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value == -1):
        return None
    if isinstance(value, bool):
        name = str(value)
    elif isinstance(value, int):
        name = labels[value] if 0 <= value < len(labels) else None
    else:
        name = value
    if name not in labels:
        raise PtuneError(f"{where}: label {short(value)} is not one of {', '.join(labels)} — fix this row")
    return name


def _pair(first: str, second: str, config: str) -> Callable[[str, Mapping[str, Any]], TextExample]:
    def convert(where: str, row: Mapping[str, Any]) -> TextExample:
        return TextExample(_text(where, row, first), _label(where, row.get("label"), LABELS[config]),
                           _text(where, row, second))
    return convert


def _wic(where: str, row: Mapping[str, Any]) -> TextExample:
    """The two sentences with the target word marked (*word*) by its character offsets."""
    marked = [_mark(_text(where, row, f"sentence{i}"), row.get(f"start{i}"), row.get(f"end{i}")) for i in (1, 2)]
    return TextExample(marked[0], _label(where, row.get("label"), LABELS["wic"]), marked[1])


def _mark(sentence: str, start: Any, end: Any) -> str:
    if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(sentence):
        return f"{sentence[:start]}*{sentence[start:end]}*{sentence[end:]}"
    return sentence


def _wsc(where: str, row: Mapping[str, Any]) -> TextExample:
    """The text with the pronoun (span 2) marked by its word index, paired with "<pronoun> refers to <span 1>"."""
    target = row.get("target", row)  # JSONL nests the spans under "target"; the hub's rows hold them
    text = _text(where, row, "text")
    span1, span2 = _text(where, target, "span1_text"), _text(where, target, "span2_text")
    words, index = text.split(" "), target.get("span2_index")
    if isinstance(index, int) and 0 <= index < len(words):
        words[index] = f"*{words[index]}*"
    return TextExample(" ".join(words), _label(where, row.get("label"), LABELS["wsc"]), f"{span2} refers to {span1}")


def _multirc(where: str, row: Mapping[str, Any]) -> list[GroupedTextExample]:
    """Every answer option as (passage, question + answer), labelled True/False, grouped by its question.
    JSONL nests questions and answers in each passage; the hub gives one answer option a row."""
    if "passage" not in row:  # the hub: paragraph, question, answer, idx {paragraph, question, answer}
        idx = row.get("idx") or {}
        group = f"{idx.get('paragraph')}-{idx.get('question')}"
        return [GroupedTextExample(_text(where, row, "paragraph"), _label(where, row.get("label"), _TRUTH),
                                   f"{_text(where, row, 'question')} {_text(where, row, 'answer')}", group)]
    passage = row["passage"] if isinstance(row["passage"], Mapping) else {}
    text, out = _text(where, passage, "text"), []
    for question in passage.get("questions", []):
        asked = _text(where, question, "question")
        group = f"{row.get('idx')}-{question.get('idx')}"
        out.extend(GroupedTextExample(text, _label(where, answer.get("label"), _TRUTH),
                                      f"{asked} {_text(where, answer, 'text')}", group)
                   for answer in question.get("answers", []))
    if not out:
        raise PtuneError(f"{where}: a MultiRC passage without questions and answers — fix or remove this row")
    return out


_ROWS: dict[str, Callable[[str, Mapping[str, Any]], Example | list[Example]]] = {
    "boolq": _pair("question", "passage", "boolq"), "cb": _pair("premise", "hypothesis", "cb"),
    "rte": _pair("premise", "hypothesis", "rte"), "wic": _wic, "wsc": _wsc, "multirc": _multirc,
    "copa": copa_row, "record": record_rows,
}
