"""Hugging Face datasets as examples: a hub name (with a config, ``glue/sst2``) or a folder written by
``save_to_disk``; label ids become the dataset's label names."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterable
from typing import Any

from ptune.data.examples import TaggedExample, TextExample
from ptune.data.files import PathLike, names
from ptune.errors import PtuneError

# Files that `datasets.Dataset.save_to_disk` / `DatasetDict.save_to_disk` always write.
SAVED_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")


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
    if folder.is_dir() and any((folder / f).is_file() for f in SAVED_DATASET_FILES):
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
            f" {names(features)} — choose the text field (or tokens field) among these"
        )
    if text_pair_field is not None and text_pair_field not in features:
        raise PtuneError(
            f"{where}: no {text_pair_field!r} column; found columns: {names(features)}"
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
