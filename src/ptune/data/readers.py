"""Readers that turn data files into examples: CoNLL columns, CSV/TSV/JSONL tables, HF datasets.

A problem the user can fix is a one-line `PtuneError` naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ptune.data.examples import TaggedExample, TextExample
from ptune.errors import PtuneError

PathLike = str | os.PathLike[str]

CONLL_SUFFIXES = (".txt", ".conll", ".iob", ".bio")
# Semantic role labelling (read_srl): OntoNotes `*_conll` (CoNLL-2012) and CoNLL-2005 props files.
SRL_SUFFIXES = (".gold_conll", ".props")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")

_BOM = b"\xef\xbb\xbf"
# OntoNotes .gold_conll files wrap documents in these; like -DOCSTART- they carry no tokens.
_DOCUMENT_MARKERS = ("#begin document", "#end document")
# Files that `datasets.Dataset.save_to_disk` / `DatasetDict.save_to_disk` always write.
_SAVED_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")


def _read_lines(path: Path) -> list[str]:
    """The file's lines, decoded as UTF-8 line by line so a bad byte is reported with its line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PtuneError(f"{path}: file not found — check the path") from None
    except IsADirectoryError:
        raise PtuneError(f"{path}: is a folder, not a file — pass the data file itself") from None
    except OSError as e:
        raise PtuneError(
            f"{path}: cannot read the file ({e.strerror}) — check its permissions"
        ) from None
    if data.startswith(_BOM):  # Excel and Notepad write one; it would glue onto the first field
        data = data[len(_BOM) :]
    lines = []
    # bytes.splitlines breaks only on \n, \r and \r\n, which is how editors number lines.
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise PtuneError(
                f"{path}:{number}: not valid UTF-8 (byte 0x{raw[e.start]:02x}) — re-encode the"
                f" file to UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}`"
            ) from None
    return lines


def read_conll(
    path: PathLike, *, token_column: int = 0, tag_column: int = -1
) -> list[TaggedExample]:
    """Sentences from a CoNLL column file: one token per line, blank lines between sentences.

    Columns are whitespace separated; `-DOCSTART-` lines are skipped. The first token line fixes
    the number of columns; a file with one column gives untagged sentences (`tags` None).
    """
    path = Path(path)
    sentences: list[TaggedExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    n_columns = 0
    first_line = 0
    token_index = tag_index = 0

    def end_sentence() -> None:
        if tokens:
            sentences.append(TaggedExample(tuple(tokens), tuple(tags) if n_columns > 1 else None))
            tokens.clear()
            tags.clear()

    for number, line in enumerate(_read_lines(path), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-" or line.startswith(_DOCUMENT_MARKERS):
            end_sentence()
            continue
        if not n_columns:
            n_columns, first_line = len(fields), number
            token_index = _column_index(path, number, "token", token_column, n_columns)
            if n_columns > 1:
                tag_index = _column_index(path, number, "tag", tag_column, n_columns)
                if tag_index == token_index:
                    raise PtuneError(
                        f"{path}:{number}: token_column and tag_column both name column {tag_index}"
                        " — pass different columns"
                    )
        if len(fields) != n_columns:
            raise PtuneError(
                f"{path}:{number}: expected {_count(n_columns, 'column')} like line {first_line},"
                f" found {len(fields)} — fix or remove this line"
            )
        tokens.append(fields[token_index])
        if n_columns > 1:
            tags.append(fields[tag_index])
    end_sentence()
    if not sentences:
        raise PtuneError(
            f"{path}: no sentences found — expected one token per line (tag in the last column)"
            " with blank lines between sentences"
        )
    return sentences


def _column_index(path: Path, line: int, what: str, column: int, n_columns: int) -> int:
    """`column` as a non-negative index, or an error if a line of `n_columns` has no such column."""
    if not -n_columns <= column < n_columns:
        raise PtuneError(
            f"{path}:{line}: {what} column {column} does not exist in a line of {n_columns} columns"
            f" — pass a {what} column between 0 and {n_columns - 1}"
        )
    return column % n_columns


def read_table(
    path: PathLike,
    *,
    text_field: str = "text",
    text_pair_field: str = "text_pair",
    label_field: str = "label",
) -> list[TextExample]:
    """Text examples from `.csv`/`.tsv` with a header row, or `.jsonl`/`.json` (an object a line).

    `text_pair` and `label` are optional: a missing column gives None. TSV has no quoting, as in
    GLUE-style files. A `.json` file may also hold one JSON array of objects.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    header: list[str] | None = None
    if suffix in (".csv", ".tsv"):
        header, records = _csv_records(path, "\t" if suffix == ".tsv" else ",")
    elif suffix in (".jsonl", ".json"):
        records = _json_records(path)
    else:
        raise PtuneError(
            f"{path}: unsupported table type {suffix or '(no suffix)'!r} — use .csv, .tsv or .jsonl"
        )
    if header is not None and text_field not in header:
        raise PtuneError(
            f"{path}: no {text_field!r} column; found columns: {_names(header)}"
            " — rename the text column or choose it as the text field"
        )

    texts: list[str] = []
    pairs: list[str | None] = []
    labels: list[str | None] = []
    wheres: list[str] = []
    for where, record in records:
        if text_field not in record:
            raise PtuneError(
                f"{where}: no {text_field!r} field; found fields: {_names(record)}"
                " — add it or choose another text field"
            )
        text = record[text_field]
        if not isinstance(text, str) or not text.strip():
            raise PtuneError(
                f"{where}: {text_field!r} must be a non-empty string, found {_short(text)}"
                " — fill it in or remove this row"
            )
        texts.append(text)
        pairs.append(_optional_value(where, text_pair_field, record.get(text_pair_field)))
        labels.append(_optional_value(where, label_field, record.get(label_field)))
        wheres.append(where)
    _all_or_none(pairs, wheres, text_pair_field)
    _all_or_none(labels, wheres, label_field)
    return [
        TextExample(t, label, pair) for t, label, pair in zip(texts, labels, pairs, strict=True)
    ]


def _csv_records(path: Path, delimiter: str) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """The header and ("file:line", row) records of a CSV/TSV file."""
    tsv = delimiter == "\t"
    kind = "TSV" if tsv else "CSV"
    text = "\n".join(_read_lines(path))
    reader = csv.reader(
        io.StringIO(text),
        delimiter=delimiter,
        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
        strict=True,
    )
    header: list[str] | None = None
    header_line = 0
    records: list[tuple[str, dict[str, Any]]] = []
    consumed = 0
    try:
        for fields in reader:
            # A quoted field may span lines: report the line the row starts on.
            line, consumed = consumed + 1, reader.line_num
            if not fields:
                continue
            if header is None:
                header, header_line = fields, line
                continue
            if len(fields) != len(header):
                raise PtuneError(
                    f"{path}:{line}: expected {_count(len(header), 'field')} like the header on"
                    f" line {header_line}, found {len(fields)} — fix or remove this row"
                )
            records.append((f"{path}:{line}", dict(zip(header, fields, strict=True))))
    except csv.Error as e:
        raise PtuneError(
            f"{path}:{reader.line_num}: malformed {kind} ({e}) — fix the quoting on this line"
        ) from None
    if header is None:
        raise PtuneError(
            f"{path}: empty file — expected a header row naming the columns, then a row per example"
        )
    if not records:
        raise PtuneError(f"{path}: has a header but no rows — add one row per example")
    return header, records


def _json_records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """("file:line", object) records of a JSON-lines file (or a JSON array in a `.json` file)."""
    lines = _read_lines(path)
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise PtuneError(
            f"{path}: empty file — expected one JSON object per line,"
            ' e.g. {"text": ..., "label": ...}'
        )
    if path.suffix.lower() == ".json" and first.lstrip().startswith("["):
        items = _parse_json(path, 0, "\n".join(lines))
        if not isinstance(items, list):
            raise PtuneError(f"{path}: expected a JSON array of objects — fix the file")
        records = [(f"{path} (item {i})", item) for i, item in enumerate(items, start=1)]
    else:
        records = [
            (f"{path}:{number}", _parse_json(path, number, line))
            for number, line in enumerate(lines, start=1)
            if line.strip()
        ]
    for where, record in records:
        if not isinstance(record, dict):
            raise PtuneError(
                f'{where}: expected a JSON object like {{"text": ..., "label": ...}},'
                f" found {_json_type(record)} — fix or remove it"
            )
    if not records:
        raise PtuneError(f"{path}: holds an empty JSON array — add one object per example")
    return records


def _parse_json(path: Path, line: int, text: str) -> Any:
    """`text` parsed as JSON; `line` is the file line it starts on (0 for a whole file)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = f"{path}:{line or e.lineno}"
        raise PtuneError(f"{where}: invalid JSON ({e.msg}) — fix or remove this line") from None
    except RecursionError:  # the json module's answer to absurdly deep nesting
        raise PtuneError(f"{path}:{line or 1}: JSON nested too deeply — fix this line") from None


def _optional_value(where: str, field: str, value: Any) -> str | None:
    """A label/text_pair value as a string; None, "" and absent all mean "not given"."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)  # 0 -> "0", true -> "true": what the user wrote in the file
    raise PtuneError(
        f"{where}: {field!r} must be a string or a number, found {_json_type(value)} — fix this row"
    )


def _all_or_none(values: Sequence[str | None], wheres: Sequence[str], field: str) -> None:
    """Refuse a file where some rows give `field` and others leave it empty."""
    given = next((i for i, v in enumerate(values) if v is not None), None)
    missing = next((i for i, v in enumerate(values) if v is None), None)
    if given is not None and missing is not None:
        raise PtuneError(
            f"{wheres[missing]}: empty {field!r} while other rows have one (e.g. {wheres[given]})"
            " — fill it in or remove this row"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _names(fields: Iterable[Any]) -> str:
    return ", ".join(repr(f) for f in fields) or "none"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else f"the value {_short(value)}"


def read_hf(
    name_or_path: PathLike,
    *,
    split: str,
    text_field: str = "text",
    text_pair_field: str | None = None,
    label_field: str = "label",
    tokens_field: str = "tokens",
    tags_field: str = "ner_tags",
) -> list[TextExample] | list[TaggedExample]:
    """One split of a Hugging Face dataset, by hub name or a folder written by `save_to_disk`.

    A dataset with a `tokens_field` column gives tagged examples, otherwise text examples;
    ClassLabel ids become their names (id -1, HF's "no label", becomes None).
    """
    try:
        import datasets
    except ImportError:
        raise PtuneError(
            "reading Hugging Face datasets needs the `datasets` package — pip install datasets"
        ) from None
    source = str(name_or_path)
    where = f"{source} [{split}]"
    failures = (OSError, ValueError, datasets.exceptions.DatasetsError)
    folder = Path(source)
    if folder.is_dir() and any((folder / f).is_file() for f in _SAVED_DATASET_FILES):
        try:
            loaded = datasets.load_from_disk(source)
        # datasets reads damaged metadata without checks (KeyError, TypeError... surface from
        # deep inside); any failure here means the folder is not a loadable saved dataset.
        except Exception as e:  # noqa: BLE001
            raise PtuneError(
                f"{source}: cannot load the saved dataset ({_first_line(e)})"
                " — save it again with save_to_disk"
            ) from None
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise PtuneError(
                    f"{source}: no split {split!r}; available splits: {', '.join(loaded)}"
                    " — pick one of these"
                )
            dataset = loaded[split]
        else:
            dataset = loaded  # a single Dataset was saved: it is the split
    else:
        try:
            dataset = datasets.load_dataset(source, split=split)
        except failures as e:
            if isinstance(e, ValueError) and "split" in str(e).lower():
                try:
                    available = ", ".join(datasets.get_dataset_split_names(source))
                except failures:
                    available = "unknown"
                raise PtuneError(
                    f"{source}: no split {split!r}; available splits: {available}"
                    " — pick one of these"
                ) from None
            raise PtuneError(
                f"{source}: cannot load the Hugging Face dataset ({_first_line(e)})"
                " — check the name, or the path of a folder written by save_to_disk"
            ) from None

    features = dataset.features
    if len(dataset) == 0:
        raise PtuneError(f"{where}: the split has no examples — pick another split")
    if tokens_field in features:
        return _tagged_from_hf(where, dataset, features, tokens_field, tags_field)
    if text_field not in features:
        raise PtuneError(
            f"{where}: no {text_field!r} column (nor {tokens_field!r} for tagging); found columns:"
            f" {_names(features)} — choose the text field (or tokens field) among these"
        )
    if text_pair_field is not None and text_pair_field not in features:
        raise PtuneError(
            f"{where}: no {text_pair_field!r} column; found columns: {_names(features)}"
            " — choose the second text field among these"
        )
    columns = [
        c for c in (text_field, text_pair_field, label_field) if c is not None and c in features
    ]
    batch = dataset.with_format(None).select_columns(columns)[:]
    n = len(batch[text_field])
    pairs = batch[text_pair_field] if text_pair_field is not None else [None] * n
    if label_field in features:
        labels = _hf_labels(where, features[label_field], batch[label_field])
    else:
        labels = [None] * n
    examples = []
    for i, (text, pair, label) in enumerate(zip(batch[text_field], pairs, labels, strict=True)):
        if not isinstance(text, str) or not text.strip():
            raise PtuneError(
                f"{where}: example {i} has no text in {text_field!r} — filter it out of the dataset"
            )
        examples.append(TextExample(text, label, pair if isinstance(pair, str) and pair else None))
    return examples


def _tagged_from_hf(
    where: str, dataset: Any, features: Any, tokens_field: str, tags_field: str
) -> list[TaggedExample]:
    columns = [tokens_field] + ([tags_field] if tags_field in features else [])
    batch = dataset.with_format(None).select_columns(columns)[:]
    tags_col: list[tuple[str, ...] | None]
    if tags_field in features:
        # Sequence/List features keep the per-token feature (a ClassLabel or a Value) in `.feature`.
        tag_feature = getattr(features[tags_field], "feature", None)
        tags_col = [
            tuple(_hf_labels(f"{where} example {i}", tag_feature, tags or (), missing_ok=False))
            for i, tags in enumerate(batch[tags_field])
        ]
    else:
        tags_col = [None] * len(batch[tokens_field])
    examples = []
    for i, (tokens, tags) in enumerate(zip(batch[tokens_field], tags_col, strict=True)):
        tokens = tokens or ()
        if tags is not None and len(tags) != len(tokens):
            raise PtuneError(
                f"{where}: example {i} has {len(tokens)} tokens but {len(tags)} tags"
                " — fix the dataset so each token has one tag"
            )
        examples.append(TaggedExample(tuple(str(t) for t in tokens), tags))
    return examples


def _hf_labels(
    where: str, feature: Any, values: Iterable[Any], *, missing_ok: bool = True
) -> list[Any]:
    """Label values as strings, ClassLabel ids mapped to their names."""
    names = getattr(feature, "names", None)
    out: list[str | None] = []
    for value in values:
        if value is None or (names is not None and missing_ok and value == -1):
            out.append(None)
        elif names is not None:
            if not 0 <= value < len(names):
                raise PtuneError(
                    f"{where}: label id {value} is outside the dataset's {len(names)} label names"
                    " — fix the dataset's labels"
                )
            out.append(names[value])
        else:
            out.append(str(value) or None)
    if not missing_ok and any(v is None for v in out):
        raise PtuneError(f"{where}: a tag is missing — give every token a tag")
    return out


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_examples(path: PathLike, **kw: Any) -> list[TextExample] | list[TaggedExample] | list:
    """Examples from any supported source, chosen by suffix; a folder is a saved HF dataset and
    a name without a suffix (``glue`` style, ``owner/name``) a hub dataset. SRL files
    (``.gold_conll``, ``*_conll``, ``.props``) give one example per predicate; SQuAD JSON gives
    `QAExample`s.

    ``SOURCE@split`` picks a split of a folder or hub dataset; otherwise `split` (default
    "train") is used. Other keywords go to the reader.
    """
    split = kw.pop("split", None)
    text = str(path)
    if "@" in text and not Path(text).exists():
        text, split = text.rsplit("@", 1)
    path = Path(text)
    if path.is_dir() or (not path.exists() and not path.suffix):
        return read_hf(text, split=split or "train", **kw)
    suffix = path.suffix.lower()
    if suffix in SRL_SUFFIXES or path.name.lower().endswith("_conll"):
        from ptune.data.srl import read_srl  # srl builds on this module

        return read_srl(path, **kw)
    if suffix in CONLL_SUFFIXES:
        return read_conll(path, **kw)
    if suffix in (".json", ".jsonl") and _looks_like_squad(path):
        from ptune.data.squad import read_squad  # squad builds on this module

        return read_squad(path)
    if suffix in TABLE_SUFFIXES:
        return read_table(path, **kw)
    if not path.exists():
        raise PtuneError(f"{path}: file not found — check the path")
    raise PtuneError(
        f"{path}: unsupported file type {suffix or '(no suffix)'!r}; supported:"
        f" {', '.join(CONLL_SUFFIXES + SRL_SUFFIXES + TABLE_SUFFIXES)}"
        " or a folder written by datasets' save_to_disk — rename or convert the file"
    )


def _looks_like_squad(path: Path) -> bool:
    """Whether a JSON file's first 8 KB look like SQuAD: the official layout's paragraphs, or
    Hugging Face `squad` records (question, context, answers)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(8192).decode("utf-8", errors="ignore")
    except OSError:
        return False  # the table reader names the problem
    return '"qas"' in head or '"paragraphs"' in head or all(f'"{key}"' in head for key in ("question", "context", "answers"))
