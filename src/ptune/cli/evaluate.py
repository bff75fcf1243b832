"""``ptune evaluate``: score a prompt file (or an ensemble of them) on a task split or a labelled data file."""

from __future__ import annotations

import argparse

from ptune.cli.options import add_backbone_override
from ptune.cli.output import print_json
from ptune.errors import PtuneError


def add_parser(sub) -> None:
    evaluate = sub.add_parser("evaluate", help="score a prompt file on a task split or a data file")
    evaluate.add_argument("prompt", nargs="?", help="prompt file (.safetensors)")
    evaluate.add_argument("--ensemble", nargs="+", metavar="PROMPT",
                          help="prompt files for one task, evaluated together in one batched pass")
    evaluate.add_argument("--combine", choices=("mean", "vote"), default="mean",
                          help="ensemble: mean of probabilities or majority vote")
    evaluate.add_argument("--task", help="built-in task (default: the one it was trained on)")
    evaluate.add_argument("--split", default="test", choices=("train", "dev", "test"), help="the task's split to score")
    evaluate.add_argument("--data", help="a labelled data file instead of a task (domain shift)")
    evaluate.add_argument("--metric", help="score with another of the task kind's metrics (default: the one the prompt "
                                           "was trained with; tagging: entity_f1, token_accuracy or srl_f1)")
    evaluate.add_argument("--label-map", metavar="THEIRS=OURS,...",
                          help="rename the data's labels onto the prompt's, e.g. 'pos=positive,neg=negative'")
    add_backbone_override(evaluate)
    evaluate.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    evaluate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptune.batch.encoding import truncation_counts
    from ptune.data import check_labels, get_task
    from ptune.data.tasks import FILE_TASKS, Task, check_metric, read_for_task
    from ptune.infer.bank import ensemble_predict
    from ptune.infer.predict import evaluate
    from ptune.model.backbones import load_backbone
    from ptune.storage.prompt_files import load_prompt, read_header
    from ptune.tasks.metrics import score

    paths = ([args.prompt] if args.prompt else []) + list(args.ensemble or [])
    if not paths:
        raise PtuneError("give a prompt file to evaluate, or several with --ensemble A B C")
    header = read_header(paths[0])
    backbone = load_backbone(args.backbone or header["backbone"]["name"], trust_remote_code=args.trust_remote_code)
    models = [load_prompt(path, backbone) for path in paths]
    if args.data:
        examples, source = read_for_task(args.data, header["task"]["kind"], header["task"]["name"]), args.data
    elif header["task"]["name"] in FILE_TASKS and not args.task:
        raise PtuneError(f"{paths[0]}: trained on {header['task']['name']} files; "
                         "give the data to score with --data FILE")
    else:
        task = get_task(args.task or header["task"]["name"])
        examples, source = getattr(task, args.split), f"{task.name}/{args.split}"
    if not examples:
        raise PtuneError(f"{source}: no examples to evaluate")
    kind = models[0].kind
    unlabelled = next((i for i, e in enumerate(examples, 1) if not kind.labelled(e)), None)
    if unlabelled is not None:
        raise PtuneError(f"{source}: example {unlabelled} has no label; "
                         "evaluate needs labelled data (use predict for unlabelled)")
    if args.label_map:
        from ptune.data.relabel import parse_label_map, relabel

        examples = relabel(examples, parse_label_map(args.label_map), header["task"]["labels"], source)
    recorded = header["task"]
    trained = Task(recorded["name"], recorded["kind"], recorded["labels"], [], [], [], recorded["metric"])
    check_labels(trained, examples, source)
    metric = args.metric or recorded["metric"]
    if args.metric:
        check_metric(recorded["kind"], recorded["labels"], metric, examples)
    if len(models) == 1:
        features = models[0].encode(examples)
        scores = evaluate(models[0], examples, metric, batch_size=args.batch_size, progress=not args.quiet,
                          features=features)
        print_json({"prompt": paths[0], "data": source, "examples": len(examples), **scores,
                    "truncated": truncation_counts(features)})
        return 0
    combined = score(metric, kind.gold(examples), ensemble_predict(models, examples, combine=args.combine,
                                                                     batch_size=args.batch_size))
    members = {path: evaluate(model, examples, metric, batch_size=args.batch_size)
               for path, model in zip(paths, models)}
    print_json({"ensemble": paths, "combine": args.combine, "data": source, "examples": len(examples),
                **combined, "members": members})
    return 0
