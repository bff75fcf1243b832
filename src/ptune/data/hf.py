"""Hugging Face datasets as examples: a hub name with an optional config (``load_dataset("glue", "sst2")``)
or a folder written by ``save_to_disk``; splits map onto train/dev/test, ClassLabel ids become names."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptune.data.columns import Columns, class_name, examples_from_records
from ptune.data.files import PathLike
from ptune.errors import PtuneError

log = logging.getLogger(__name__)

# Files that `datasets.Dataset.save_to_disk` / `DatasetDict.save_to_disk` always write.
SAVED_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")
# A task's splits and the dataset split names that serve them, the first present wins.
SPLIT_NAMES = {"train": ("train",), "dev": ("validation", "dev", "valid", "val"), "test": ("test",)}


@dataclass
class DatasetSplits:
    """A dataset read for a task: examples by role (train/dev/test), the split each came from, and the
    label names of a ClassLabel label (or tags) column, in id order (None when the labels are plain values)."""

    examples: dict[str, list] = field(default_factory=dict)
    split_of: dict[str, str] = field(default_factory=dict)
    labels: list[str] | None = None


def read_hf(name_or_path: PathLike, *, split: str = "train", config: str | None = None,
            columns: Columns | None = None) -> list:
    """One split of a Hugging Face dataset, by hub name (`config` its configuration) or a folder written
    by `save_to_disk`. `split` is a split name or a role: "dev" finds "validation" (`SPLIT_NAMES`).

    Tokens (+ tags) columns give tagged examples, otherwise text examples (`Columns`); ClassLabel ids
    become their names (id -1, HF's "no label", becomes None).
    """
    source = str(name_or_path)
    splits = load_splits(source, config)
    name = pick_split(splits, split, source)
    return _examples(splits[name], f"{source}@{name}", columns or Columns())


def read_hf_splits(name_or_path: PathLike, *, config: str | None = None,
                   columns: Columns | None = None) -> DatasetSplits:
    """Every split of a dataset that serves a task role (`SPLIT_NAMES`), read once, and its label names."""
    source = str(name_or_path)
    splits = load_splits(source, config)
    out = DatasetSplits()
    for role, candidates in SPLIT_NAMES.items():
        name = next((n for n in candidates if n in splits), None)
        if name is not None and len(splits[name]):
            out.split_of[role] = name
            out.examples[role] = _examples(splits[name], f"{source}@{name}", columns or Columns())
    unused = [n for n in splits if n not in out.split_of.values()]
    if unused:
        log.info("%s: split(s) %s not used (train/dev/test read %s)", source, ", ".join(unused),
                 ", ".join(SPLIT_NAMES["train"] + SPLIT_NAMES["dev"] + SPLIT_NAMES["test"]))
    if "train" in out.split_of:
        out.labels = _label_names(splits[out.split_of["train"]], columns or Columns(), source)
    return out


def is_dataset(path: PathLike) -> bool:
    """Whether `path` names a dataset rather than a file: a folder, or a name without a suffix that is no
    file (``imdb``, ``owner/name``)."""
    path = Path(path)
    return path.is_dir() or (not path.exists() and not path.suffix)


def load_splits(source: str, config: str | None = None) -> dict[str, Any]:
    """The dataset's splits by name: a saved folder (a single saved Dataset is its only split, "train"), or
    ``datasets.load_dataset(source, config)``, the hub's call (a local data folder works the same)."""
    try:
        import datasets
    except ImportError:
        raise PtuneError("reading Hugging Face datasets needs the `datasets` package — pip install datasets") from None
    folder = Path(source)
    if folder.is_dir() and any((folder / f).is_file() for f in SAVED_DATASET_FILES):
        if config is not None:
            raise PtuneError(f"{source}: a folder written by save_to_disk has no configurations"
                             f" — drop --dataset-config {config}")
        try:
            loaded = datasets.load_from_disk(source)
        # datasets reads damaged metadata without checks (KeyError, TypeError... surface from
        # deep inside); any failure here means the folder is not a loadable saved dataset.
        except Exception as e:  # noqa: BLE001
            raise PtuneError(f"{source}: cannot load the saved dataset ({_first_line(e)})"
                             " — save it again with save_to_disk") from None
        return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    try:
        loaded = datasets.load_dataset(source, config)
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as e:
        if isinstance(e, ValueError) and "config" in str(e).lower():
            raise PtuneError(f"{source}: {_first_line(e)} — pass --dataset-config with one of its configurations"
                             ) from None
        raise PtuneError(f"{source}: cannot load the Hugging Face dataset ({_first_line(e)})"
                         " — check the name, or the path of a folder written by save_to_disk") from None
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}


def pick_split(splits: dict[str, Any], split: str, source: str) -> str:
    """`split` if the dataset has it, else the split that serves that role ("dev" -> "validation")."""
    if split in splits:
        return split
    role = next((r for r, candidates in SPLIT_NAMES.items() if split == r or split in candidates), None)
    found = next((n for n in SPLIT_NAMES.get(role, ()) if n in splits), None)
    if found is None:
        raise PtuneError(f"{source}: no split {split!r}; available splits: {', '.join(splits)} — pick one of these")
    return found


def _examples(dataset: Any, where: str, columns: Columns) -> list:
    """A split's rows as examples, ClassLabel ids as names."""
    if len(dataset) == 0:
        raise PtuneError(f"{where}: the split has no examples — pick another split")
    features = dataset.features
    tagged = columns.tagged(list(features), where)
    roles = ("tokens", "tags") if tagged else ("text", "text_pair", "label")
    wanted = {role: columns.find(role, list(features), where) for role in roles}
    kept = [c for c in wanted.values() if c is not None]
    batch = dataset.with_format(None).select_columns(kept)[:]
    for column in kept:
        label_names = _names_of(features[column])
        if label_names is not None:
            batch[column] = [class_name(f"{where} example {i}", column, value, label_names)
                             for i, value in enumerate(batch[column])]
    rows = [dict(zip(kept, values, strict=True)) for values in zip(*(batch[c] for c in kept), strict=True)]
    return examples_from_records([(f"{where} example {i}", row) for i, row in enumerate(rows)], columns, kept, where)


def _label_names(dataset: Any, columns: Columns, source: str) -> list[str] | None:
    """The ClassLabel names of the label (or tags) column, in id order; None for plain values."""
    available = list(dataset.features)
    role = "tags" if columns.tagged(available, source) else "label"
    column = columns.find(role, available, source)
    return _names_of(dataset.features[column]) if column else None


def _names_of(feature: Any) -> list[str] | None:
    """A ClassLabel's names, also as the item feature of a Sequence/List (tags)."""
    label_names = getattr(feature, "names", None)
    if label_names is None and getattr(feature, "feature", None) is not None:
        label_names = getattr(feature.feature, "names", None)
    return [str(n) for n in label_names] if label_names is not None else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

