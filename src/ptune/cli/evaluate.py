"""``ptune evaluate``: score a prompt file (or an ensemble of them) on a task split or a labelled data file;
several prompt files (or a ``ptune train --seeds`` folder): each one's scores, their mean and standard deviation."""

from __future__ import annotations

import argparse

from ptune.cli.options import add_backbone_override, add_data_options, backbone_for, columns_from
from ptune.cli.output import print_json
from ptune.bounds import COUNT
from ptune.errors import PtuneError


def add_parser(sub) -> None:
    evaluate = sub.add_parser("evaluate", help="score a prompt file on a task split or a data file")
    evaluate.add_argument("prompt", nargs="*", help="prompt file (.safetensors), run folder, a folder written by "
                                                    "`ptune save-pretrained` or a hub repo id user/name; several, or a "
                                                    "folder of `ptune train --seeds`: each one's scores and their mean, "
                                                    "standard deviation and per-prompt values")
    evaluate.add_argument("--ensemble", nargs="+", metavar="PROMPT",
                          help="prompt files for one task, evaluated together in one batched pass")
    evaluate.add_argument("--combine", choices=("mean", "vote"), default="mean",
                          help="ensemble: mean of probabilities or majority vote")
    evaluate.add_argument("--task", help="built-in task (default: the one it was trained on)")
    evaluate.add_argument("--split", default="test", choices=("train", "dev", "test"),
                          help="the split to score: of the task, or of a dataset (dev: its validation split)")
    evaluate.add_argument("--data", help="a labelled data file (or a datasets folder) instead of a task (domain shift)")
    add_data_options(evaluate)
    evaluate.add_argument("--metric", help="score with another of the task kind's metrics (default: the one the prompt "
                                           "was trained with; tagging: entity_f1, token_accuracy or srl_f1)")
    evaluate.add_argument("--label-map", metavar="THEIRS=OURS,...",
                          help="rename the data's labels onto the prompt's, e.g. 'pos=positive,neg=negative'")
    add_backbone_override(evaluate)
    evaluate.add_argument("--batch-size", type=COUNT, default=64, help="examples per forward pass")
    evaluate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptune.batch.encoding import truncation_counts
    from ptune.data import check_labels
    from ptune.data.tasks import Task, check_metric
    from ptune.infer.bank import ensemble_predict
    from ptune.infer.predict import evaluate
    from ptune.storage.prompt_files import load_prompt, read_header
    from ptune.tasks import get_kind
    from ptune.tasks.metrics import score
    from ptune.training.seeds import prompt_runs, summarise

    runs = prompt_runs(list(args.prompt or [])) + prompt_runs(list(args.ensemble or []))
    paths = [str(path) for _, path in runs]
    if not paths:
        raise PtuneError("give a prompt file to evaluate, or several with --ensemble A B C")
    headers = [read_header(path) for path in paths]
    header = headers[0]
    _same_task(paths, headers)  # every file, then the data, before the model loads
    examples, source = _examples(args, header, paths[0])
    if not examples:
        raise PtuneError(f"{source}: no examples to evaluate")
    kind = get_kind(header["task"]["kind"])
    unlabelled = next((i for i, e in enumerate(examples, 1) if not kind.labelled(e)), None)
    if unlabelled is not None:
        raise PtuneError(f"{source}: example {unlabelled} has no label; "
                         "evaluate needs labelled data (a labelled --split, or predict for unlabelled data)")
    if args.label_map:
        from ptune.data.relabel import parse_label_map, relabel

        examples = relabel(examples, parse_label_map(args.label_map), header["task"]["labels"], source)
    recorded = header["task"]
    trained = Task(recorded["name"], recorded["kind"], recorded["labels"], [], [], [], recorded["metric"])
    check_labels(trained, examples, source)
    metric = args.metric or recorded["metric"]
    if args.metric:
        check_metric(recorded["kind"], recorded["labels"], metric, examples)
    backbone = backbone_for(paths[0], header, args)
    models = [load_prompt(path, backbone) for path in paths]
    if len(models) == 1:
        features = models[0].encode(examples)
        scores = evaluate(models[0], examples, metric, batch_size=args.batch_size, progress=not args.quiet,
                          features=features)
        print_json({"prompt": paths[0], "data": source, "examples": len(examples), **scores,
                    "truncated": truncation_counts(features)})
        return 0
    if not args.ensemble:  # several prompts scored one by one: a summary, as `ptune train --seeds` writes
        per_run = {name: evaluate(model, examples, metric, batch_size=args.batch_size, progress=not args.quiet)
                   for (name, _), model in zip(runs, models)}
        print_json({"prompts": dict(zip(per_run, paths)), "data": source, "examples": len(examples),
                    "std": "sample standard deviation (n - 1)", "scores": summarise(per_run)})
        return 0
    combined = score(metric, kind.gold(examples), ensemble_predict(models, examples, combine=args.combine,
                                                                     batch_size=args.batch_size))
    members = {path: evaluate(model, examples, metric, batch_size=args.batch_size)
               for path, model in zip(paths, models)}
    print_json({"ensemble": paths, "combine": args.combine, "data": source, "examples": len(examples),
                **combined, "members": members})
    return 0


def _same_task(paths: list[str], headers: list[dict]) -> None:
    """Prompt files scored together must be trained for one task (same name, kind and labels)."""
    task = headers[0]["task"]
    for path, header in zip(paths[1:], headers[1:]):
        other = header["task"]
        if (other["name"], other["kind"], other["labels"]) != (task["name"], task["kind"], task["labels"]):
            raise PtuneError(f"{path}: trained for {other['name']!r} ({', '.join(map(str, other['labels']))}), "
                             f"{paths[0]} for {task['name']!r} ({', '.join(map(str, task['labels']))}); "
                             "evaluate prompt files of one task together")


def _examples(args: argparse.Namespace, header: dict, prompt: str) -> tuple[list, str]:
    """The examples to score and where they came from: --data, --dataset, the dataset the prompt was
    trained on, or a built-in task's split; read with the columns given or those the prompt recorded."""
    from ptune.data import BUILTIN, get_task
    from ptune.data.tasks import read_for_task

    recorded = header["task"]
    trained_on = recorded.get("source", {})
    columns = columns_from(args, recorded=trained_on)
    if args.dataset_config and not args.dataset:
        raise PtuneError(f"--dataset-config {args.dataset_config} is a configuration of a dataset: give --dataset NAME")
    if sum(map(bool, (args.data, args.dataset, args.task))) > 1:
        raise PtuneError("give one of --data FILE, --dataset NAME or --task NAME")
    dataset, config = args.dataset, args.dataset_config
    if not (args.data or args.dataset or args.task) and trained_on.get("dataset"):
        dataset, config = trained_on["dataset"], trained_on.get("config")
    if args.data or dataset:
        where = args.data or dataset
        examples = read_for_task(where, recorded["kind"], recorded["name"], split=args.split, config=config,
                                 columns=columns, dataset=not args.data)
        return examples, args.data or f"{dataset}@{args.split}"
    if args.task or recorded["name"] in BUILTIN:
        task = get_task(args.task or recorded["name"])
        return getattr(task, args.split), f"{task.name}/{args.split}"
    raise PtuneError(f"{prompt}: trained on your own data ({recorded['name']!r}), which a prompt file does not hold;"
                     " give the data to score with --data FILE (or --dataset NAME)")
