"""GLUE's nine tasks as released: the TSV files of each (CoLA's without a header, MRPC's "Quality" and
"#1 String" columns...) and the hub's rows, read as text (pair) examples with the hub's label names."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptune.data.examples import TextExample
from ptune.data.files import PathLike, names, read_lines
from ptune.errors import PtuneError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlueFormat:
    """Where a GLUE task's TSV files keep the text, the second text and the label (header names; CoLA,
    which has no header, by position), what the label values mean, and the hub's column names."""

    text: str | int
    pair: str | int | None
    label: str | int
    labels: tuple[str, ...]  # the hub's ClassLabel names, in id order (empty: a score, STS-B)
    values: Mapping[str, str] = field(default_factory=dict)  # a TSV label value -> its name ("0" -> "negative")
    hub: tuple[str, str | None] = ("sentence", None)  # the hub's text and text-pair columns
    metric: str = "accuracy"


_BINARY = ("0", "1")
FORMATS: dict[str, GlueFormat] = {
    "cola": GlueFormat(3, None, 1, ("unacceptable", "acceptable"), dict(zip(_BINARY, ("unacceptable", "acceptable"))),
                       metric="matthews"),
    "sst2": GlueFormat("sentence", None, "label", ("negative", "positive"), dict(zip(_BINARY, ("negative", "positive")))),
    "mrpc": GlueFormat("#1 String", "#2 String", "Quality", ("not_equivalent", "equivalent"),
                       dict(zip(_BINARY, ("not_equivalent", "equivalent"))), ("sentence1", "sentence2"), "f1"),
    "qqp": GlueFormat("question1", "question2", "is_duplicate", ("not_duplicate", "duplicate"),
                      dict(zip(_BINARY, ("not_duplicate", "duplicate"))), ("question1", "question2"), "f1"),
    "stsb": GlueFormat("sentence1", "sentence2", "score", (), hub=("sentence1", "sentence2"), metric="correlation"),
    "mnli": GlueFormat("sentence1", "sentence2", "gold_label", ("entailment", "neutral", "contradiction"),
                       hub=("premise", "hypothesis")),
    "qnli": GlueFormat("question", "sentence", "label", ("entailment", "not_entailment"), hub=("question", "sentence")),
    "rte": GlueFormat("sentence1", "sentence2", "label", ("entailment", "not_entailment"), hub=("sentence1", "sentence2")),
    "wnli": GlueFormat("sentence1", "sentence2", "label", ("not_entailment", "entailment"),
                       dict(zip(_BINARY, ("not_entailment", "entailment"))), ("sentence1", "sentence2")),
}
# The hub's splits for dev and test where they are not "validation" and "test" (whose labels GLUE withholds).
HUB_SPLITS: dict[str, dict[str, str]] = {"mnli": {"dev": "validation_matched", "test": "validation_mismatched"}}


def read_glue(config: str, path: PathLike) -> list[TextExample]:
    """A GLUE TSV file of task `config` (train, dev, or test without labels), as released: tab-separated,
    no quoting, a header row naming the columns (CoLA's train and dev files have none). MNLI rows whose
    annotators agreed on no label ("-") are left out, with a log line."""
    path, spec = Path(path), FORMATS[config]
    # No quoting: a quote mark is text (as csv.QUOTE_NONE reads it), so each line is one row.
    rows = [(number, line.split("\t")) for number, line in enumerate(read_lines(path), start=1) if line.strip()]
    if not rows:
        raise PtuneError(f"{path}: no rows — give a GLUE {config} TSV file")
    if config == "cola" and rows[0][1] != ["index", "sentence"]:  # CoLA's train and dev files: no header
        columns = {"text": spec.text, "label": spec.label}
    else:
        header, rows = rows[0][1], rows[1:]
        text = "sentence" if config == "cola" else spec.text  # CoLA's test file names its columns
        columns = {"text": _column(path, header, text, config)}
        if spec.pair is not None:
            columns["pair"] = _column(path, header, spec.pair, config)
        if spec.label in header:  # else a test file: no labels
            columns["label"] = header.index(spec.label)
    out, skipped = [], 0
    for number, fields in rows:
        where = f"{path}:{number}"
        if len(fields) <= max(columns.values()):
            raise PtuneError(f"{where}: {len(fields)} tab-separated fields, expected at least {max(columns.values()) + 1}"
                             f" (GLUE {config}) — fix or remove this line")
        value = fields[columns["label"]].strip() if "label" in columns else None
        if config == "mnli" and value == "-":
            skipped += 1
            continue
        pair = fields[columns["pair"]] if "pair" in columns else None
        out.append(TextExample(fields[columns["text"]], _label(where, config, value), pair))
    if skipped:
        log.info("%s: %d rows without a gold label ('-') left out", path, skipped)
    return out


def _column(path: Path, header: Sequence[str], name: str | int, config: str) -> int:
    if name not in header:
        raise PtuneError(f"{path}: no {name!r} column in the header; found columns: {names(header)} — give GLUE "
                         f"{config}'s file as released (other data: name its columns with --text-column...)")
    return header.index(name)


def _label(where: str, config: str, value: str | None) -> str | float | None:
    """A TSV label value as the task's label name (STS-B: the score)."""
    spec = FORMATS[config]
    if value is None or value == "":
        return None
    if not spec.labels:
        try:
            return float(value)
        except ValueError:
            raise PtuneError(f"{where}: score {value!r} is not a number — fix this line") from None
    name = spec.values.get(value, value)
    if name not in spec.labels:
        known = sorted(spec.values) or spec.labels
        raise PtuneError(f"{where}: label {value!r} is not one of GLUE {config}'s ({', '.join(known)}) — fix this line")
    return name


def glue_rows(config: str, rows: Sequence[Mapping[str, Any]], where: str) -> list[TextExample]:
    """The hub's rows of GLUE task `config` (``load_dataset("glue", config)``): label ids as names
    (-1, a withheld test label, as None), STS-B's score as is."""
    spec = FORMATS[config]
    text, pair = spec.hub
    out = []
    for i, row in enumerate(rows):
        label = row.get("label")
        if label is not None and spec.labels:
            label = spec.labels[label] if 0 <= label < len(spec.labels) else None
        elif label is not None and label < 0:
            label = None
        if text not in row:
            raise PtuneError(f"{where} example {i}: no {text!r} column; found columns: {names(row)} — is this "
                             f"GLUE's {config} configuration?")
        out.append(TextExample(row[text], label if label is None or spec.labels else float(label),
                               row[pair] if pair else None))
    return out
