"""Named benchmark tasks, one spelling across ptune: ``glue/<task>`` and ``superglue/<task>``, read from
their released files (``--task glue/sst2 --train train.tsv``) or from the hub, where ``--dataset glue
--dataset-config sst2`` names the same task; each knows its kind, label names and metric."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptune.data import glue, superglue
from ptune.data.columns import Columns, option
from ptune.data.files import PathLike
from ptune.data.hf import SPLIT_NAMES, DatasetSplits, load_splits, pick_split
from ptune.errors import PtuneError

# The hub's names of each benchmark (the last part of a local folder laid out as its repository counts too).
HUB_NAMES = {"glue": ("glue", "nyu-mll/glue"), "superglue": ("super_glue", "aps/super_glue", "superglue")}


@dataclass(frozen=True)
class NamedTask:
    """A benchmark task: its name (``glue/sst2``), kind, label names (the hub's, in id order; none for
    scores and choices), metric and configuration on the hub."""

    benchmark: str  # "glue" or "superglue"
    config: str  # the task's name within it: "sst2", "copa"
    kind: str
    labels: tuple[str, ...]
    metric: str
    hub_config: str

    @property
    def name(self) -> str:
        return f"{self.benchmark}/{self.config}"

    @property
    def hub_options(self) -> str:
        """The `ptune train` options that read the task from the hub."""
        return f"--dataset {HUB_NAMES[self.benchmark][0]} --dataset-config {self.hub_config}"

    def read(self, path: PathLike) -> list:
        """The examples of one released file (GLUE: TSV, SuperGLUE: JSONL)."""
        if self.benchmark == "glue":
            return glue.read_glue(self.config, path)
        return superglue.read_superglue(self.config, path)

    def from_rows(self, rows: list[dict[str, Any]], where: str) -> list:
        """The examples of one hub split's rows (label ids, -1 for a withheld label)."""
        if self.benchmark == "glue":
            return glue.glue_rows(self.config, rows, where)
        return superglue.superglue_rows(self.config, [(f"{where} example {i}", row) for i, row in enumerate(rows)])

    def hub_split(self, role: str) -> tuple[str, ...]:
        """The hub's split names that serve `role` (train/dev/test), the first present wins."""
        special = glue.HUB_SPLITS.get(self.config, {}) if self.benchmark == "glue" else {}
        return (special[role],) if role in special else SPLIT_NAMES[role]


def _glue(config: str, spec: glue.GlueFormat) -> NamedTask:
    return NamedTask("glue", config, "regression" if not spec.labels else "classification", spec.labels, spec.metric,
                     config)


def _superglue(config: str) -> NamedTask:
    kind = "multiple_choice" if config in ("copa", "record") else "classification"
    return NamedTask("superglue", config, kind, superglue.LABELS[config], superglue.METRICS[config],
                     superglue.HUB_CONFIGS.get(config, config))


NAMED: dict[str, NamedTask] = {task.name: task for task in (
    *(_glue(config, spec) for config, spec in glue.FORMATS.items()), *map(_superglue, superglue.LABELS))}


def named_task(name: str) -> NamedTask:
    """The named task `name`; an unknown one is refused with the names there are."""
    if name not in NAMED:
        raise PtuneError(f"unknown task {name!r}; named tasks: {', '.join(NAMED)}")
    return NAMED[name]


def named_dataset(source: PathLike, config: str | None) -> NamedTask | None:
    """The named task a hub dataset and configuration are (``glue`` + ``sst2``: glue/sst2), or None."""
    last = Path(str(source)).name.lower()
    for benchmark, hub_names in HUB_NAMES.items():
        if str(source).lower() in hub_names or last in hub_names:
            return next((t for t in NAMED.values() if t.benchmark == benchmark and config in (t.config, t.hub_config)),
                        None)
    return None


def check_columns(task: NamedTask, columns: Columns) -> None:
    """Refuse column options other than the task's own columns (a named task knows where its data is)."""
    own = dict(zip(("text", "text_pair"), glue.FORMATS[task.config].hub)) if task.benchmark == "glue" else {}
    own["label"] = "label"
    wrong = {role: name for role, name in columns.given().items() if own.get(role) != name}
    if wrong:
        flags = ", ".join(f"{option(role)} {name}" for role, name in wrong.items())
        raise PtuneError(f"{flags}: {task.name} reads its own columns; drop the column options")


def read_named_splits(task: NamedTask, source: PathLike) -> DatasetSplits:
    """Every split of the hub dataset `source` that serves a role (MNLI: dev validation_matched, test
    validation_mismatched), as the task's examples."""
    splits = load_splits(str(source), task.hub_config)
    out = DatasetSplits(labels=list(task.labels) or None)
    for role in SPLIT_NAMES:
        name = next((n for n in task.hub_split(role) if n in splits), None)
        if name is not None and len(splits[name]):
            out.split_of[role] = name
            out.examples[role] = task.from_rows(_rows(splits[name]), f"{source}@{name}")
    return out


def read_named(task: NamedTask, source: PathLike, *, split: str | None = None, dataset: bool = False) -> list:
    """One released file of the task, or with `dataset` one split of the hub dataset `source` (`split`: a
    split name or a role, "dev" its dev split)."""
    if not dataset:
        return task.read(source)
    splits = load_splits(str(source), task.hub_config)
    role = split or "test"
    name = next((n for n in task.hub_split(role) if n in splits), None) if role in SPLIT_NAMES else None
    name = name or pick_split(splits, role, str(source))
    return task.from_rows(_rows(splits[name]), f"{source}@{name}")


def _rows(dataset: Any) -> list[dict[str, Any]]:
    """A `datasets` split's rows as plain dicts (label ids left as ids)."""
    columns = dataset.with_format(None)[:]
    return [dict(zip(columns, values)) for values in zip(*columns.values())]
