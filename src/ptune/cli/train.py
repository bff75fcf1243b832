"""``ptune train``: one task, several tasks with one shared prompt, or ``--resume DIR`` of an interrupted run;
options from flags, then a JSON config file, then the method's defaults."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
from pathlib import Path

from ptune.cli import fewshot
from ptune.cli.options import (add_data_options, add_dataclass_options, add_device_options, columns_from,
                               dataclass_from, device_from, read_config)
from ptune.cli.output import err, print_json
from ptune.bounds import SEED
from ptune.config import MethodConfig, TrainConfig, with_kind_defaults
from ptune.data.columns import ROLES, option
from ptune.errors import PtuneError


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train a prompt (or fine-tune) on a task")
    add_options(train)
    train.add_argument("--out", help="output folder (default: runs/TASK-METHOD)")
    train.add_argument("--seeds", nargs="+", type=SEED, metavar="SEED",
                       help="one run per seed, each in --out/seed-N/, and --out/results.json with the mean, standard "
                            "deviation and per-seed values of every dev and test score (instead of --seed; one task)")
    train.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR from its last checkpoint "
                                                       "(a --seeds folder: finish its unfinished seeds)")
    train.add_argument("--overwrite", action="store_true", help="replace a finished or interrupted run in --out")
    fewshot.add_options(train)
    train.set_defaults(func=run)


def add_options(train, *, skip: tuple[str, ...] = ()) -> None:
    """What a run is made of (data, backbone, method and training options); ``ptune sweep`` shares them, less
    the options it searches (``skip``)."""
    train.add_argument("--config", help="JSON file of options (flags override it)")
    train.add_argument("--task", nargs="+", help="built-in task: conll2003 or rotten_tomatoes; several: multi-task "
                                                 "training with one shared prompt and a head per task; squad, "
                                                 "squad_v2 or srl: that kind of task from --train/--dev/--test files; "
                                                 "glue/NAME, superglue/NAME: that task from its released files")
    train.add_argument("--init-from", help="start from this prompt file (continue a run or a multi-task prompt)")
    train.add_argument("--train", "--data", dest="train",
                       help="your training file (CoNLL columns, CSV/TSV/JSONL/Parquet, SQuAD JSON, SRL columns, or a "
                            "datasets folder, which also gives dev and test from its splits); --data is the same option")
    train.add_argument("--dev", help="your dev file (model selection, early stopping)")
    train.add_argument("--test", help="your test file (scored once at the end)")
    train.add_argument("--target", choices=("label", "text"),
                       help="text: train the task text-to-text through the LM head (targets are strings: the label "
                            "names, ranked by log-likelihood; QA: the answer text, generated), e.g. on T5 or BART "
                            "(default: label, the kind's own head)")
    train.add_argument("--kind", choices=("classification", "tagging", "qa", "regression", "multiple_choice",
                                          "text_to_text"),
                       # = tasks.KINDS (tested)
                       help="what your files' labels are (default: from the data; numeric labels with fractions "
                            "make a regression task, whole numbers such as 0/1 stay classes; multiple_choice: JSON "
                            "lines with text, choices and label, the right choice's index)")
    add_data_options(train)
    train.add_argument("--metric", help="what dev selection and the scores use (default: from the data): tagging: "
                                        "entity_f1 (B-/I- tags), token_accuracy (also macro-F1; POS and other plain "
                                        "tags) or srl_f1 (SRL without V, as CoNLL-2005 scores it); qa: squad or "
                                        "squad_v2; classification: accuracy, f1, macro_f1, matthews or multirc; "
                                        "multiple_choice: choice_accuracy or record")
    train.add_argument("--backbone", help="minilm, smollm2, a hub id or a local folder (default: minilm)")
    add_dataclass_options(train.add_argument_group("method options"), MethodConfig, skip=skip)
    add_dataclass_options(train.add_argument_group("training options"), TrainConfig, skip=("progress", *skip))
    add_device_options(train)


def run(args: argparse.Namespace, *, on_epoch=None) -> int:
    """``ptune train``; ``on_epoch`` goes to the training loop (``ptune sweep`` reports and prunes through it)."""
    from ptune.model.backbones import load_backbone
    from ptune.model.prompt_model import PromptModel
    from ptune.data.shots import few_shot_task
    from ptune.training.loop import train
    from ptune.training.resume import CHECKPOINT

    if args.resume:
        return _resume(args)
    config_file = read_config(args.config)
    method = dataclass_from(MethodConfig, args, config_file)
    train_config = dataclass_from(TrainConfig, args, config_file, skip=("progress",))
    train_config.progress = not args.quiet
    _preflight(args, config_file, method)
    shots = fewshot.check(args, config_file, method)
    from_file = config_file.get("task")
    names = args.task or ([from_file] if isinstance(from_file, str) else from_file)
    if names and len(names) > 1:
        return _multitask(args, names, method, train_config, config_file)
    task = load_task(args, config_file)
    given = {name for name in ("length", "lr") if getattr(args, name, None) is not None or name in config_file}
    before = (method.length, train_config.lr)
    method, train_config = with_kind_defaults(method, train_config, task.kind, given)
    if (method.length, train_config.lr) != before:
        err().log(f"{method.method} on a {task.kind} task: length {method.length}, lr {train_config.resolved(method).lr} "
                  "(the defaults for this kind of task; --length and --lr change them)", markup=False)
    out_dir = Path(args.out or config_file.get("out") or f"runs/{task.name}-{method.method}")
    if args.seeds:  # one run per seed, each through this function
        from ptune.cli.seeds import train_seeds

        return train_seeds(args, config_file, out_dir, run_one=run)
    _check_out_dir(out_dir, args.overwrite)
    if shots:  # refuse a K the data cannot give before the backbone loads
        few_shot_task(task, shots, train_config.seed)
    backbone_name = args.backbone or config_file.get("backbone", "minilm")
    backbone = load_backbone(backbone_name, trust_remote_code=args.trust_remote_code, **device_from(args, config_file))
    selection = None
    if shots:  # K drawn examples; the candidates cross-validated on them; the chosen one retrained on all K
        from ptune.training.fewshot import select

        task, method, train_config, selection = select(backbone, task, method, train_config, shots,
                                                       *fewshot.candidates_of(args, config_file))
        err().log(fewshot.log_line(task.name, shots, selection), markup=False)
    model = PromptModel.for_task(backbone, task, method)
    if args.init_from:
        _continue_from(model, Path(args.init_from))
    err().log(f"{method.method} on {task.name} with {backbone.name}: {model.num_trainable():,} trainable parameters "
              f"({100 * model.num_trainable() / backbone.num_parameters():.3f}% of the backbone)", markup=False)
    run_spec = {"backbone": backbone.name, "trust_remote_code": args.trust_remote_code,
                "data": _data_spec(args, config_file, task.metric)}
    if shots:  # the record goes with the checkpoint: a resumed run draws the same K and reports the selection
        run_spec["fewshot"] = selection
        run_spec["data"] = {**run_spec["data"], **({"dev": None} if "dev" in run_spec["data"] else {})}
    if args.overwrite:  # only now, when the new run is about to start
        (out_dir / CHECKPOINT).unlink(missing_ok=True)
    result = train(model, task, train_config, out_dir=out_dir, run=run_spec, on_epoch=on_epoch)
    return _finish(args, model, task, result, out_dir, fewshot=selection, seed=train_config.seed,
                   lr=train_config.resolved(method).lr)


# -- data --------------------------------------------------------------------------------------------
def load_task(args: argparse.Namespace, config_file: dict):
    """The task from --task, or from the user's --train/--dev/--test files (flags win over the config file);
    with --target text, as a text-to-text task (``data.text_targets``)."""
    if (getattr(args, "target", None) or config_file.get("target")) != "text":
        return _load_task(args, config_file)
    from ptune.data.metric_choice import check_metric
    from ptune.data.text_targets import as_text_to_text

    # The data are read as their own kind, scored as text (accuracy of ranked labels, exact match of answers).
    metric = _metric(args, config_file)
    task = as_text_to_text(_load_task(argparse.Namespace(**{**vars(args), "metric": None}), {**config_file, "metric": None}))
    if metric is not None:
        check_metric("text_to_text", task.labels, metric)
        task = dataclasses.replace(task, metric=metric)
    return task


def _load_task(args: argparse.Namespace, config_file: dict):
    from ptune.data import from_dataset, from_files, get_task
    from ptune.data.tasks import FILE_TASKS, file_task, with_metric

    name = args.task[0] if args.task else config_file.get("task")
    train_file = args.train or config_file.get("train")
    dev_file = fewshot.dev_file(args, config_file)  # None with --shots: the dev split is not read
    metric = _metric(args, config_file)
    kind = getattr(args, "kind", None) or config_file.get("kind")
    dataset, dataset_config = _dataset(args, config_file)
    columns = columns_from(args, config_file)
    if dataset:
        if name or train_file or args.dev or args.test:
            raise PtuneError("give either --dataset NAME or --task/--train, not both (a dataset gives every split)")
        return from_dataset(dataset, dataset_config, kind=kind, metric=metric, columns=columns)
    if columns.given() and (name or not train_file):
        flags = ", ".join(map(option, columns.given()))
        raise PtuneError(f"{flags}: column options are for your own files — give --train FILE or --dataset NAME"
                         + (f" (--task {name} reads its own format)" if name else ""))
    if name in FILE_TASKS:  # a task kind whose data are the user's files
        if not train_file:
            from ptune.data.named import NAMED

            hub = f", or the hub's copy: {NAMED[name].hub_options}" if name in NAMED else ""
            raise PtuneError(f"--task {name} reads your data: give --train FILE [--dev FILE] [--test FILE]{hub}")
        return file_task(name, train_file, dev_file, args.test or config_file.get("test"), metric=metric)
    if name and train_file:
        raise PtuneError("give either --task NAME or --train FILE (with --dev/--test), not both")
    if name:
        return with_metric(get_task(name), metric)
    if not train_file:
        raise PtuneError("no data: give --task conll2003|rotten_tomatoes, --train FILE [--dev FILE] [--test FILE] "
                         "(with --task squad|squad_v2|srl for those file formats), or --dataset NAME")
    return from_files(train_file, dev_file, args.test or config_file.get("test"), kind=kind, metric=metric,
                      columns=columns)


def _dataset(args: argparse.Namespace, config_file: dict) -> tuple[str | None, str | None]:
    """--dataset and --dataset-config (or the config file's "dataset" and "dataset_config")."""
    dataset = getattr(args, "dataset", None) or config_file.get("dataset")
    config = getattr(args, "dataset_config", None) or config_file.get("dataset_config")
    if config and not dataset:
        raise PtuneError(f"--dataset-config {config} is a configuration of a dataset: give --dataset NAME too")
    return dataset, config


def _metric(args: argparse.Namespace, config_file: dict) -> str | None:
    """The metric asked for with --metric or the config file's "metric" (None: chosen from the data)."""
    return getattr(args, "metric", None) or config_file.get("metric")


def _data_spec(args: argparse.Namespace, config_file: dict, metric: str) -> dict:
    """Where the data came from, with absolute paths, and the metric chosen, so ``--resume`` can find
    them again."""
    from ptune.data.tasks import FILE_TASKS

    name = args.task[0] if args.task else config_file.get("task")
    if (getattr(args, "target", None) or config_file.get("target")) == "text":  # read as their kind, then as text
        return {**_data_spec(argparse.Namespace(**{**vars(args), "target": None}), {**config_file, "target": None},
                             None), "target": "text", "metric": metric}
    if name and name not in FILE_TASKS:
        return {"task": name, "metric": metric}
    kind = getattr(args, "kind", None) or config_file.get("kind")
    columns = columns_from(args, config_file).given()
    extra = ({"kind": kind} if kind else {}) | ({"columns": columns} if columns else {})
    dataset, dataset_config = _dataset(args, config_file)
    if dataset:
        local = Path(dataset)
        return {"dataset": str(local.resolve()) if local.exists() else dataset, "config": dataset_config,
                "metric": metric, **extra}
    files = {key: args.__dict__.get(key) or config_file.get(key) for key in ("train", "dev", "test")}
    spec = {key: str(Path(value).resolve()) if value else None for key, value in files.items()} | {"metric": metric}
    spec |= extra
    return {**spec, "file_task": name} if name else spec


def _task_from_spec(data: dict):
    """The task a checkpoint's ``data`` record names (see ``_data_spec``)."""
    from ptune.data import Columns, from_dataset, from_files, get_task
    from ptune.data.tasks import file_task, with_metric

    if data.get("target") == "text":
        from ptune.data.text_targets import as_text_to_text

        task = as_text_to_text(_task_from_spec({**data, "target": None, "metric": None}))
        return dataclasses.replace(task, metric=data.get("metric") or task.metric)
    metric = data.get("metric")
    columns = Columns.from_dict(data.get("columns"), "the checkpoint's columns")
    if data.get("file_task"):
        task = file_task(data["file_task"], data["train"], data.get("dev"), data.get("test"), metric=metric)
    elif data.get("task"):
        task = with_metric(get_task(data["task"]), metric)
    elif data.get("dataset"):
        task = from_dataset(data["dataset"], data.get("config"), kind=data.get("kind"), metric=metric, columns=columns)
    else:
        task = from_files(data["train"], data.get("dev"), data.get("test"), kind=data.get("kind"), metric=metric,
                          columns=columns)
    if metric is None and task.kind == "tagging":  # a run from before the metric was chosen by the tags
        task = dataclasses.replace(task, metric="entity_f1")
    return task


# -- the run folder ----------------------------------------------------------------------------------
def _preflight(args: argparse.Namespace, config_file: dict, method: MethodConfig) -> None:
    """What can be refused before any data or model loads: the template, the --init-from file, --out."""
    from ptune.batch.templates import parse_template
    from ptune.storage.prompt_files import read_header

    if method.template:
        parse_template(method.template)
    if args.init_from:
        read_header(args.init_from)
    out = args.out or config_file.get("out")
    if out:
        _check_out_dir(Path(out), args.overwrite)
    if args.seeds:
        from ptune.cli.seeds import check_seeds

        check_seeds(args, config_file)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """A finished or interrupted run is never overwritten by accident; --out is a folder."""
    from ptune.training.resume import CHECKPOINT

    if out_dir.exists() and not out_dir.is_dir():
        raise PtuneError(f"--out {out_dir}: is a file, not a folder; choose a folder for the run's files")
    for name, what in ((CHECKPOINT, "an interrupted run"), ("prompt.safetensors", "a finished run")):
        if (out_dir / name).exists() and not overwrite:
            resume = f"`ptune train --resume {out_dir}` to continue it, " if name == CHECKPOINT else ""
            raise PtuneError(f"{out_dir}: holds {what} ({name}); use {resume}--overwrite to replace it, "
                             "or choose another --out")


def _continue_from(model, path: Path) -> None:
    """Start from a saved prompt (e.g. a multi-task one) instead of a fresh initialisation."""
    from ptune.storage.prompt_files import load_prompt

    start = load_prompt(path, model.backbone)
    if start.config.method != model.config.method or start.labels != model.labels:
        raise PtuneError(f"{path}: a {start.config.method} prompt for labels {start.labels} cannot start a "
                         f"{model.config.method} run on labels {model.labels}; pass matching --method and task")
    mine = model.trainable_state()
    for name, tensor in start.trainable_state().items():
        if name not in mine or mine[name].shape != tensor.shape:
            raise PtuneError(f"{path}: tensor {name} does not fit this run's options (length, layers, template?)")
    model.load_state_dict(start.trainable_state(), strict=False)
    model.initialised = True


def _finish(args, model, task, result, out_dir: Path, fewshot: dict | None = None, seed: int | None = None,
            lr: float | None = None) -> int:
    """Score the test split, write results.json (with ``fewshot``, the few-shot selection record; the run's
    ``seed``, learning rate and command line) and print it."""
    from ptune.batch.encoding import truncation_counts
    from ptune.infer.predict import evaluate

    if not result.is_main:  # another process of `accelerate launch`: the main one reports
        return 0
    backbone = model.backbone
    summary = {"task": task.name, "method": model.config.method, "backbone": backbone.name,
               "best_epoch": result.best_epoch, "dev": result.dev, "train_seconds": round(result.seconds, 1),
               "prompt": str(result.prompt_path), "trainable_params": model.num_trainable(),
               "trainable_percent": 100 * model.num_trainable() / backbone.num_parameters(),
               "processes": len(result.process_digests), "prompt_sha256_per_process": result.process_digests}
    if result.sharded:
        summary["backbone_sharded"] = result.sharded
    truncated = dict(result.truncated)
    if task.test:
        features = model.encode(task.test)
        summary["test"] = evaluate(model, task.test, task.metric, progress=not args.quiet, features=features)
        truncated["test"] = truncation_counts(features)
    summary["truncated"] = truncated  # per split: examples cut to max_length, tokens lost
    if fewshot:
        summary["fewshot"] = fewshot
    if seed is not None:
        summary["seed"] = seed
    if lr is not None:  # the rate the run trained at, a default included
        summary["lr"] = lr
    if getattr(args, "argv", None) is not None:  # the command line that ran (a model card quotes it)
        summary["command"] = shlex.join(["ptune", *args.argv])
    _write_results(out_dir, summary)
    print_json(summary)
    return 0


def _write_results(out_dir: Path, summary: dict) -> None:
    """``out_dir/results.json``, written atomically."""
    from ptune.storage.atomic import atomic_write

    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(out_dir / "results.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))


# -- resume and multi-task ---------------------------------------------------------------------------
def _resume(args: argparse.Namespace) -> int:
    """``ptune train --resume DIR``: every option comes from the checkpoint."""
    from ptune.model.backbones import load_backbone
    from ptune.model.prompt_model import PromptModel
    from ptune.training.loop import train
    from ptune.training.resume import read_checkpoint
    from ptune.training.seeds import is_multi_seed

    given = [f"--{f.name.replace('_', '-')}" for cls in (MethodConfig, TrainConfig) for f in dataclasses.fields(cls)
             if getattr(args, f.name, None) is not None and f.name != "progress"]
    given += [f"--{name.replace('_', '-')}" for name in ("config", "task", "train", "dev", "test", "backbone", "out",
                                                         "seeds", "init_from", "metric", "dataset", "dataset_config",
                                                         *(f"{role}_column" for role in ROLES), *fewshot.KEYS)
              if getattr(args, name, None)]
    if given:
        raise PtuneError(f"--resume takes every option from the interrupted run; drop {', '.join(given)}")
    out_dir = Path(args.resume)
    if is_multi_seed(out_dir):
        from ptune.cli.seeds import resume_seeds

        return resume_seeds(args, run_one=run)
    run_spec = read_checkpoint(out_dir).run
    method = MethodConfig.from_dict(run_spec["method"], source=f"{out_dir} checkpoint")
    train_config = TrainConfig(**run_spec["train"])
    train_config.progress = not args.quiet
    task = _task_from_spec(run_spec["data"])
    if run_spec.get("fewshot"):  # the same K examples as the interrupted run drew
        task = fewshot.redraw(task, run_spec["fewshot"], train_config.seed)
    # Where to run is not part of the run: a run interrupted on one machine may finish on another.
    backbone = load_backbone(run_spec["backbone"], trust_remote_code=run_spec.get("trust_remote_code", False),
                             **device_from(args))
    model = PromptModel.for_task(backbone, task, method)
    result = train(model, task, train_config, out_dir=out_dir, resume=True,
                   run={k: run_spec[k] for k in ("backbone", "trust_remote_code", "data", "fewshot") if k in run_spec})
    return _finish(args, model, task, result, out_dir, fewshot=run_spec.get("fewshot"), seed=train_config.seed,
                   lr=train_config.resolved(method).lr)


def _multitask(args, names, method, train_config, config_file) -> int:
    """``ptune train --task A B ...``: one shared prompt, a head per task."""
    from ptune.batch.encoding import truncation_counts
    from ptune.data import get_task
    from ptune.infer.predict import evaluate
    from ptune.model.backbones import load_backbone
    from ptune.training.multitask import shared_prompt_bank, train_multitask

    if (args.train or args.init_from or _metric(args, config_file) or _dataset(args, config_file)[0]
            or columns_from(args, config_file).given()):
        raise PtuneError("multi-task training takes built-in tasks (--task A B ...), each scored by its own metric; "
                         "--train/--dataset/--*-column/--init-from/--metric apply to one task")
    if train_config.trackers:
        raise PtuneError(f"--report-to {train_config.report_to}: experiment trackers follow one-task runs; multi-task "
                         "training logs to metrics.jsonl only (drop --report-to)")
    tasks = [get_task(name) for name in names]
    out_dir = Path(args.out or config_file.get("out") or f"runs/{'+'.join(names)}-{method.method}")
    backbone = load_backbone(args.backbone or config_file.get("backbone", "minilm"),
                             trust_remote_code=args.trust_remote_code, **device_from(args, config_file))
    bank = shared_prompt_bank(backbone, tasks, method)
    results = train_multitask(bank, tasks, train_config, out_dir=out_dir)
    summary = {"tasks": names, "method": method.method, "backbone": backbone.name, "per_task": {}}
    for task in tasks:
        model, result = bank.models[task.name], results[task.name]
        truncated, test = dict(result.truncated), None
        if task.test:
            features = model.encode(task.test)
            test = evaluate(model, task.test, task.metric, progress=not args.quiet, features=features)
            truncated["test"] = truncation_counts(features)
        summary["per_task"][task.name] = {
            "dev": result.dev, "prompt": str(result.prompt_path), "best_epoch": result.best_epoch, "test": test,
            "truncated": truncated,  # per split: examples cut to max_length, tokens lost
        }
    _write_results(out_dir, summary)
    print_json(summary)
    return 0
