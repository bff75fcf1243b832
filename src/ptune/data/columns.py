"""Which column of a table or dataset holds what (`Columns`, the ``--*-column`` options), and rows read
as examples through them: CSV/TSV/JSONL/Parquet files and `datasets` splits all end here."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ptune.data.examples import TaggedExample, TextExample
from ptune.data.files import json_type, names, short
from ptune.errors import PtuneError

ROLES = ("text", "text_pair", "label", "tokens", "tags")
# The names looked for when a role's column is not given, first found wins.
DEFAULTS: dict[str, tuple[str, ...]] = {
    "text": ("text",), "text_pair": ("text_pair",), "label": ("label",), "tokens": ("tokens",),
    "tags": ("tags", "ner_tags"),
}
Record = tuple[str, Mapping[str, Any]]  # ("file:line" or "dataset [split] row n", the row by column name)


def option(role: str) -> str:
    """The command-line option that names `role`'s column: ``--text-pair-column`` for "text_pair"."""
    return f"--{role.replace('_', '-')}-column"


@dataclass(frozen=True)
class Columns:
    """The column holding each part of an example; None looks for the usual name (`DEFAULTS`).

    Text examples read `text` (+ `text_pair`) and `label`; tagged examples read `tokens` and `tags`
    (lists, or strings split on whitespace). For CoNLL files, `tokens`/`tags` are column numbers.
    """

    text: str | None = None
    text_pair: str | None = None
    label: str | None = None
    tokens: str | None = None
    tags: str | None = None
    usual: Mapping[str, str] = field(default_factory=dict)
    """Names looked for first where a role is not given, but not required (the columns a prompt was
    trained with, for data that may name them otherwise)."""

    def __post_init__(self) -> None:
        for role in ROLES:
            value = getattr(self, role)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise PtuneError(f"{option(role)}: expected a column name, got {value!r} — name a column")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str = "columns") -> Columns:
        """Columns from ``{"text": "review", ...}`` (as `given` writes and prompt files record)."""
        data = data or {}
        unknown = sorted(set(data) - set(ROLES))
        if unknown:
            raise PtuneError(f"{source}: unknown column role(s) {names(unknown)} — use {names(ROLES)}")
        return cls(**{role: data[role] for role in ROLES if data.get(role) is not None})

    def given(self) -> dict[str, str]:
        """The columns named explicitly, by role."""
        return {role: getattr(self, role) for role in ROLES if getattr(self, role) is not None}

    def over(self, other: Columns) -> Columns:
        """These columns where given, `other`'s elsewhere."""
        return Columns(**(other.given() | self.given()), usual={**other.usual, **self.usual})

    def find(self, role: str, available: Collection[str], where: str) -> str | None:
        """The column for `role` among `available`: the given name (refused if absent), else the first
        default present, else None."""
        name = getattr(self, role)
        if name is None:
            candidates = ((self.usual[role],) if role in self.usual else ()) + DEFAULTS[role]
            return next((c for c in candidates if c in available), None)
        if name not in available:
            raise PtuneError(f"{where}: no {name!r} column (from {option(role)}); found columns: {names(available)}"
                             f" — pass {option(role)} with one of these")
        return name

    def tagged(self, available: Collection[str], where: str) -> bool:
        """Whether rows with these columns are tagged sentences (tokens + tags) rather than texts: a tokens
        or tags column named, else a tokens column found and no text column named. Named columns must be there."""
        for role in self.given():
            self.find(role, available, where)
        if self.tokens is not None or self.tags is not None:
            if self.find("tokens", available, where) is None:
                raise PtuneError(f"{where}: no 'tokens' column; found columns: {names(available)}"
                                 " — pass --tokens-column with the column holding the words")
            return True
        named_text = self.text is not None or self.text_pair is not None or self.label is not None
        if not named_text and self.find("tokens", available, where):
            return True
        if self.find("text", available, where) is None:
            raise PtuneError(f"{where}: no 'text' column (nor 'tokens' for tagging); found columns: {names(available)}"
                             " — pass --text-column with the column holding the text (--tokens-column for tagging)")
        return False


def examples_from_records(records: Sequence[Record], columns: Columns, available: Collection[str],
                          source: str) -> list[TextExample] | list[TaggedExample]:
    """`records` as text or tagged examples; `available` (a header, a schema, the first JSON object) decides
    which, and every record is checked for the columns it must have."""
    if not records:
        raise PtuneError(f"{source}: no rows — add one row per example")
    if columns.tagged(available, source):
        return _tagged(records, columns, available, source)
    return _texts(records, columns, available, source)


def _texts(records: Sequence[Record], columns: Columns, available: Collection[str], source: str) -> list[TextExample]:
    text_col = columns.find("text", available, source)
    pair_col = columns.find("text_pair", available, source)
    label_col = columns.find("label", available, source)
    texts, pairs, labels = [], [], []
    for where, row in records:
        text = _field(where, row, "text", text_col, columns)
        if not isinstance(text, str) or not text.strip():
            raise PtuneError(f"{where}: {text_col!r} must be a non-empty string, found {short(text)}"
                             " — fill it in or remove this row")
        texts.append(text)
        pairs.append(_scalar(where, pair_col, _field(where, row, "text_pair", pair_col, columns)))
        labels.append(_scalar(where, label_col, _field(where, row, "label", label_col, columns)))
    wheres = [where for where, _ in records]
    _all_or_none(pairs, wheres, pair_col)
    _all_or_none(labels, wheres, label_col)
    return [TextExample(t, label, pair) for t, label, pair in zip(texts, labels, pairs, strict=True)]


def _tagged(records: Sequence[Record], columns: Columns, available: Collection[str],
            source: str) -> list[TaggedExample]:
    tokens_col = columns.find("tokens", available, source)
    tags_col = columns.find("tags", available, source)
    sentences: list[tuple[str, ...]] = []
    tag_rows: list[tuple[str, ...] | None] = []
    for where, row in records:
        tokens = _sequence(where, tokens_col, _field(where, row, "tokens", tokens_col, columns))
        if not tokens:
            raise PtuneError(f"{where}: {tokens_col!r} holds no tokens — fill it in or remove this row")
        tags = _sequence(where, tags_col, _field(where, row, "tags", tags_col, columns))
        if tags is not None and len(tags) != len(tokens):
            raise PtuneError(f"{where}: {len(tokens)} tokens in {tokens_col!r} but {len(tags)} tags in {tags_col!r}"
                             " — give each token one tag")
        sentences.append(tokens)
        tag_rows.append(tags or None)
    _all_or_none(tag_rows, [where for where, _ in records], tags_col)
    return [TaggedExample(tokens, tags) for tokens, tags in zip(sentences, tag_rows, strict=True)]


def _field(where: str, row: Mapping[str, Any], role: str, column: str | None, columns: Columns) -> Any:
    """The row's value in `column`; a column named by an option must be in every row (JSON lines vary)."""
    if column is None:
        return None
    if column not in row and getattr(columns, role) is not None:
        raise PtuneError(f"{where}: no {column!r} field (from {option(role)}); found fields: {names(row)}"
                         f" — add it, or pass {option(role)} with one of these")
    if column not in row and role in ("text", "tokens"):
        raise PtuneError(f"{where}: no {column!r} field; found fields: {names(row)}"
                         f" — add it, or pass {option(role)} with one of these")
    return row.get(column)


def _scalar(where: str, column: str | None, value: Any) -> str | None:
    """A label/text_pair value as a string; None, "" and absent all mean "not given"."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)  # 0 -> "0", true -> "true": what the user wrote in the file
    raise PtuneError(f"{where}: {column!r} must be a string or a number, found {json_type(value)} — fix this row")


def _sequence(where: str, column: str | None, value: Any) -> tuple[str, ...] | None:
    """Tokens or tags: a list, or a string split on whitespace; None when not given."""
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        return tuple(str(v) for v in value)
    raise PtuneError(f"{where}: {column!r} must be a list of strings or a space-separated string,"
                     f" found {short(value)} — fix this row")


def _all_or_none(values: Sequence[Any], wheres: Sequence[str], column: str | None) -> None:
    """Refuse rows where some give `column` and others leave it empty."""
    given = next((i for i, v in enumerate(values) if v is not None), None)
    missing = next((i for i, v in enumerate(values) if v is None), None)
    if given is not None and missing is not None:
        raise PtuneError(f"{wheres[missing]}: empty {column!r} while other rows have one (e.g. {wheres[given]})"
                         " — fill it in or remove this row")



def class_name(where: str, column: str, value: Any, label_names: Sequence[str]) -> Any:
    """A ClassLabel id (or a list of ids) as its name; -1, `datasets`' "no label", as None; other values
    pass unchanged."""
    if isinstance(value, list):
        return [class_name(where, column, v, label_names) for v in value]
    if not isinstance(value, int) or isinstance(value, bool):
        return value
    if value == -1:
        return None
    if not 0 <= value < len(label_names):
        raise PtuneError(f"{where}: {column!r} id {value} is outside its {len(label_names)} label names"
                         " — fix the labels")
    return label_names[value]
