"""The ``ptune`` command: train, evaluate, predict, inspect, export, import-peft, benchmark, serve.

Every user-fixable problem surfaces as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from .config import MethodConfig
from .errors import PtuneError
from .training import TrainConfig

console = Console(stderr=True)
out = Console()


# -- argument plumbing ----------------------------------------------------------------------------
def _add_dataclass_options(parser: argparse.ArgumentParser, cls, skip: Sequence[str] = ()) -> None:
    """One ``--option`` per dataclass field; help text from the field's metadata."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" |")[0], str)
            parser.add_argument(flag, type=kind, default=None, help=help_text, choices=f.metadata.get("choices"))


def _dataclass_from(cls, args: argparse.Namespace, config_file: dict, skip: Sequence[str] = ()):
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        cli_value = getattr(args, f.name, None)
        if cli_value is not None:
            values[f.name] = cli_value
        elif f.name in config_file:
            values[f.name] = config_file[f.name]
    try:
        return cls(**values)
    except PtuneError as error:
        source = config_file.get("__source__")
        raise PtuneError(f"{source}: {error}" if source else str(error)) from None


def _read_config(path: str | None) -> dict:
    """A JSON config file whose keys are option names (``lr``, ``method``...); CLI flags win."""
    if not path:
        return {}
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PtuneError(f"{file}: config file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PtuneError(f"{file}: not valid JSON ({error}); fix the file") from None
    if not isinstance(data, dict):
        raise PtuneError(f"{file}: a config file must be a JSON object of option names to values")
    known = {f.name for f in dataclasses.fields(MethodConfig)} | {f.name for f in dataclasses.fields(TrainConfig)}
    known |= {"task", "train", "dev", "test", "backbone", "out"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PtuneError(f"{file}: unknown option(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")
    for key in ("train", "dev", "test", "backbone", "out"):
        if key in data and not isinstance(data[key], str):
            raise PtuneError(f"{file}: option {key!r} must be a string (a path or name), got {data[key]!r}")
    task = data.get("task")
    if task is not None and not (isinstance(task, str) or (isinstance(task, list) and task
                                                          and all(isinstance(t, str) for t in task))):
        raise PtuneError(f"{file}: option 'task' must be a task name or a list of names, got {task!r}")
    return {**data, "__source__": str(file)}


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, show_time=False)])
    logging.getLogger("ptune").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _load_task(args: argparse.Namespace, config_file: dict):
    from .data import from_files, get_task
    from .data.tasks import FILE_TASKS, file_task

    name = args.task[0] if args.task else config_file.get("task")
    train_file = args.train or config_file.get("train")
    if name in FILE_TASKS:  # a task kind whose data are the user's files
        if not train_file:
            raise PtuneError(f"--task {name} reads your data: give --train FILE [--dev FILE] [--test FILE]")
        return file_task(name, train_file, args.dev or config_file.get("dev"), args.test or config_file.get("test"))
    if name and train_file:
        raise PtuneError("give either --task NAME or --train FILE (with --dev/--test), not both")
    if name:
        return get_task(name)
    if not train_file:
        raise PtuneError("no data: give --task conll2003|rotten_tomatoes, or --train FILE [--dev FILE] [--test FILE] "
                         "(with --task squad|squad_v2|srl for those file formats)")
    return from_files(train_file, args.dev or config_file.get("dev"), args.test or config_file.get("test"))


# -- commands -------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from .backbones import load_backbone
    from .model import PromptModel
    from .training import train

    if args.resume:
        return _resume_run(args)
    config_file = _read_config(args.config)
    method = _dataclass_from(MethodConfig, args, config_file)
    train_config = _dataclass_from(TrainConfig, args, config_file, skip=("progress",))
    train_config.progress = not args.quiet
    names = args.task or ([config_file["task"]] if isinstance(config_file.get("task"), str) else config_file.get("task"))
    if names and len(names) > 1:
        return _train_multitask(args, names, method, train_config, config_file)
    task = _load_task(args, config_file)
    out_dir = Path(args.out or config_file.get("out") or f"runs/{task.name}-{method.method}")
    _check_out_dir(out_dir, args.overwrite)
    backbone_name = args.backbone or config_file.get("backbone", "minilm")
    backbone = load_backbone(backbone_name, trust_remote_code=args.trust_remote_code)
    model = PromptModel.for_task(backbone, task, method)
    if args.init_from:
        _continue_from(model, Path(args.init_from))
    console.log(f"{method.method} on {task.name} with {backbone.name}: {model.num_trainable():,} trainable parameters "
                f"({100 * model.num_trainable() / backbone.num_parameters():.3f}% of the backbone)")
    run = {"backbone": backbone_name, "trust_remote_code": args.trust_remote_code, "data": _data_spec(args, config_file)}
    result = train(model, task, train_config, out_dir=out_dir, run=run)
    return _finish(args, model, task, result, out_dir)


def _finish(args, model, task, result, out_dir: Path) -> int:
    from .evaluation import evaluate

    if not result.is_main:  # another process of `accelerate launch`: the main one reports
        return 0
    backbone = model.backbone
    summary = {"task": task.name, "method": model.config.method, "backbone": backbone.name,
               "best_epoch": result.best_epoch, "dev": result.dev, "train_seconds": round(result.seconds, 1),
               "prompt": str(result.prompt_path), "trainable_params": model.num_trainable(),
               "trainable_percent": 100 * model.num_trainable() / backbone.num_parameters(),
               "processes": len(result.process_digests), "prompt_sha256_per_process": result.process_digests}
    if task.test:
        summary["test"] = evaluate(model, task.test, task.metric, progress=not args.quiet)
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    out.print_json(json.dumps(summary))
    return 0


def _data_spec(args: argparse.Namespace, config_file: dict) -> dict:
    """Where the data came from, with absolute paths, so ``--resume`` can find it again."""
    from .data.tasks import FILE_TASKS

    name = args.task[0] if args.task else config_file.get("task")
    if name and name not in FILE_TASKS:
        return {"task": name}
    files = {key: args.__dict__.get(key) or config_file.get(key) for key in ("train", "dev", "test")}
    spec = {key: str(Path(value).resolve()) if value else None for key, value in files.items()}
    return {**spec, "file_task": name} if name else spec


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """A finished or interrupted run is never overwritten by accident."""
    from .resume import CHECKPOINT

    for name, what in ((CHECKPOINT, "an interrupted run"), ("prompt.safetensors", "a finished run")):
        if (out_dir / name).exists() and not overwrite:
            resume = f"`ptune train --resume {out_dir}` to continue it, " if name == CHECKPOINT else ""
            raise PtuneError(f"{out_dir}: holds {what} ({name}); use {resume}--overwrite to replace it, "
                             "or choose another --out")
    if overwrite:
        (out_dir / CHECKPOINT).unlink(missing_ok=True)


def _resume_run(args: argparse.Namespace) -> int:
    """``ptune train --resume DIR``: every option comes from the checkpoint."""
    from .backbones import load_backbone
    from .data import from_files, get_task
    from .model import PromptModel
    from .resume import read_checkpoint
    from .training import train

    given = [f"--{f.name.replace('_', '-')}" for cls in (MethodConfig, TrainConfig) for f in dataclasses.fields(cls)
             if getattr(args, f.name, None) is not None and f.name != "progress"]
    given += [f"--{name.replace('_', '-')}" for name in ("config", "task", "train", "dev", "test", "backbone", "out",
                                                         "init_from") if getattr(args, name, None)]
    if given:
        raise PtuneError(f"--resume takes every option from the interrupted run; drop {', '.join(given)}")
    out_dir = Path(args.resume)
    run = read_checkpoint(out_dir).run
    method = MethodConfig.from_dict(run["method"], source=f"{out_dir} checkpoint")
    train_config = TrainConfig(**run["train"])
    train_config.progress = not args.quiet
    data = run["data"]
    if data.get("file_task"):
        from .data.tasks import file_task

        task = file_task(data["file_task"], data["train"], data.get("dev"), data.get("test"))
    else:
        task = get_task(data["task"]) if data.get("task") else from_files(data["train"], data.get("dev"), data.get("test"))
    backbone = load_backbone(run["backbone"], trust_remote_code=run.get("trust_remote_code", False))
    model = PromptModel.for_task(backbone, task, method)
    result = train(model, task, train_config, out_dir=out_dir, resume=True,
                   run={k: run[k] for k in ("backbone", "trust_remote_code", "data")})
    return _finish(args, model, task, result, out_dir)


def _continue_from(model, path: Path) -> None:
    """Start from a saved prompt (e.g. a multi-task one) instead of a fresh initialisation."""
    from .checkpoint import load_prompt

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


def _train_multitask(args, names, method, train_config, config_file) -> int:
    from .backbones import load_backbone
    from .data import get_task
    from .evaluation import evaluate
    from .multitask import shared_prompt_bank, train_multitask

    if args.resume:
        raise PtuneError("--resume continues single-task runs; multi-task runs cannot be resumed yet")
    if args.train or args.init_from:
        raise PtuneError("multi-task training takes built-in tasks (--task A B ...); --train/--init-from apply to one task")
    tasks = [get_task(name) for name in names]
    out_dir = Path(args.out or config_file.get("out") or f"runs/{'+'.join(names)}-{method.method}")
    backbone = load_backbone(args.backbone or config_file.get("backbone", "minilm"), trust_remote_code=args.trust_remote_code)
    bank = shared_prompt_bank(backbone, tasks, method)
    results = train_multitask(bank, tasks, train_config, out_dir=out_dir)
    summary = {"tasks": names, "method": method.method, "backbone": backbone.name, "per_task": {}}
    for task in tasks:
        model, result = bank.models[task.name], results[task.name]
        summary["per_task"][task.name] = {
            "dev": result.dev, "prompt": str(result.prompt_path), "best_epoch": result.best_epoch,
            "test": evaluate(model, task.test, task.metric) if task.test else None,
        }
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    out.print_json(json.dumps(summary))
    return 0


def _load_prompt_and_backbone(args: argparse.Namespace):
    from .backbones import load_backbone
    from .checkpoint import load_prompt, read_header

    header = read_header(args.prompt)
    backbone = load_backbone(args.backbone or header["backbone"]["name"], trust_remote_code=args.trust_remote_code)
    return load_prompt(args.prompt, backbone)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .backbones import load_backbone
    from .checkpoint import load_prompt, read_header
    from .data import check_labels, get_task
    from .data.squad import QAExample
    from .data.tasks import FILE_TASKS, Task
    from .evaluation import evaluate, gold_labels
    from .metrics import score
    from .mixed import ensemble_predict

    paths = ([args.prompt] if args.prompt else []) + list(args.ensemble or [])
    if not paths:
        raise PtuneError("give a prompt file to evaluate, or several with --ensemble A B C")
    header = read_header(paths[0])
    backbone = load_backbone(args.backbone or header["backbone"]["name"], trust_remote_code=args.trust_remote_code)
    models = [load_prompt(path, backbone) for path in paths]
    if args.data:
        examples, source = _read_labelled(args.data, header), args.data
    elif header["task"]["name"] in FILE_TASKS and not args.task:
        raise PtuneError(f"{paths[0]}: trained on {header['task']['name']} files; give the data to score with --data FILE")
    else:
        task = get_task(args.task or header["task"]["name"])
        examples, source = getattr(task, args.split), f"{task.name}/{args.split}"
    if not examples:
        raise PtuneError(f"{source}: no examples to evaluate")
    unlabelled = next((i for i, e in enumerate(examples, 1) if not isinstance(e, QAExample)  # always scored
                       and getattr(e, "label", getattr(e, "tags", None)) is None), None)
    if unlabelled is not None:
        raise PtuneError(f"{source}: example {unlabelled} has no label; evaluate needs labelled data (use predict for unlabelled)")
    if args.label_map:
        from .data.relabel import parse_label_map, relabel

        examples = relabel(examples, parse_label_map(args.label_map), header["task"]["labels"], source)
    trained = Task(header["task"]["name"], header["task"]["kind"], header["task"]["labels"], [], [], [], header["task"]["metric"])
    check_labels(trained, examples, source)
    metric = header["task"]["metric"]
    if len(models) == 1:
        scores = evaluate(models[0], examples, metric, batch_size=args.batch_size, progress=not args.quiet)
        out.print_json(json.dumps({"prompt": paths[0], "data": source, "examples": len(examples), **scores}))
        return 0
    combined = score(metric, gold_labels(examples), ensemble_predict(models, examples, combine=args.combine,
                                                                     batch_size=args.batch_size))
    members = {path: evaluate(model, examples, metric, batch_size=args.batch_size) for path, model in zip(paths, models)}
    out.print_json(json.dumps({"ensemble": paths, "combine": args.combine, "data": source, "examples": len(examples),
                               **combined, "members": members}))
    return 0


def _read_labelled(path: str, header: dict) -> list:
    """Labelled data to score a prompt on, read as the prompt's task reads it."""
    from .data import read_examples
    from .data.squad import read_squad
    from .data.srl import read_srl

    if header["task"]["kind"] == "qa":
        return read_squad(path)
    return read_srl(path) if header["task"]["name"] == "srl" else read_examples(path)


def _read_inputs(args: argparse.Namespace, tagging: bool, qa: bool = False) -> list:
    from .data import TaggedExample, TextExample
    from .data.squad import QAExample

    rows: list = []
    if qa and (args.question or args.context or args.text):
        if not (args.question and args.context):
            raise PtuneError("give both --question and --context (or JSONL lines with 'question' and 'context')")
        rows = [{"question": args.question, "context": args.context}]
    elif args.text:
        rows = [{"text": text} for text in args.text]
    else:
        source = sys.stdin if args.input in (None, "-") else None
        name = "stdin" if source else args.input
        try:
            lines = source.read().splitlines() if source else Path(args.input).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise PtuneError(f"{name}: input file not found") from None
        except UnicodeDecodeError as error:
            raise PtuneError(f"{name}: not UTF-8 ({error.reason} at byte {error.start}); re-encode it as UTF-8") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = {"text": line}  # plain text lines are accepted too
            if isinstance(row, str):
                row = {"text": row}
            if qa:
                if not (isinstance(row, dict) and isinstance(row.get("question"), str) and isinstance(row.get("context"), str)):
                    raise PtuneError(f"{name}:{number}: expected a JSON object with 'question' and 'context' strings")
                rows.append(row)
                continue
            if not isinstance(row, dict) or not isinstance(row.get("text", row.get("tokens")), (str, list)):
                raise PtuneError(f"{name}:{number}: expected a JSON object with a 'text' (or 'tokens') field, or plain text")
            rows.append(row)
    if not rows:
        raise PtuneError("nothing to predict: give --text, or JSONL / plain-text lines on --input or stdin")
    if qa:
        return [QAExample(str(row.get("id", i)), row["question"], row["context"]) for i, row in enumerate(rows, 1)]
    if tagging:
        # SRL: the predicate's word index, from the row or --predicate
        return [TaggedExample(tuple(row["tokens"]) if "tokens" in row else tuple(row["text"].split()),
                              predicate=row.get("predicate", args.predicate)) for row in rows]
    return [TextExample(row["text"], text_pair=row.get("text_pair")) for row in rows]


def cmd_predict(args: argparse.Namespace) -> int:
    from .evaluation import entities, predict

    model = _load_prompt_and_backbone(args)
    examples = _read_inputs(args, model.tagging, model.qa)
    for example, prediction in zip(examples, predict(model, examples, batch_size=args.batch_size)):
        if model.qa:
            record = {"id": example.id, "question": example.question, "answer": prediction}
        elif model.tagging:
            record = {"tokens": list(example.tokens), "tags": prediction, "entities": entities(example.tokens, prediction)}
        else:
            record = {"text": example.text, "label": prediction}
        out.print(json.dumps(record, ensure_ascii=False), soft_wrap=True, highlight=False)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .generation import generate

    model = _load_prompt_and_backbone(args)
    outputs = generate(model, args.text, max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    for text, continuation in zip(args.text, outputs):
        out.print(json.dumps({"text": text, "generated": continuation}, ensure_ascii=False), soft_wrap=True, highlight=False)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .checkpoint import read_header

    header = read_header(args.prompt)
    size = Path(args.prompt).stat().st_size
    trainable, total = header.get("trainable_params", 0), header.get("backbone_params", 0)
    if args.json:
        out.print_json(json.dumps({**header, "file_bytes": size}))
        return 0
    table = Table(show_header=False, box=None)
    method = header["method"]
    rows = [
        ("file", f"{args.prompt} ({size:,} bytes)"),
        ("method", method["method"] + _method_detail(method)),
        ("task", f"{header['task']['name']} ({header['task']['kind']}, {len(header['task']['labels'])} labels)"),
        ("backbone", f"{header['backbone']['name']} ({header['backbone']['model_type']}, "
                     f"{header['backbone']['num_layers']} layers, hidden {header['backbone']['hidden_size']})"),
        ("trainable", f"{trainable:,} parameters = {100 * trainable / max(total, 1):.3f}% of {total:,}"),
        ("metrics", json.dumps(header.get("metrics", {}))),
        ("created", header.get("created", "?")),
    ]
    for key, value in rows:
        table.add_row(f"[bold]{key}", value)
    out.print(table)
    if args.neighbours:
        _print_neighbours(args)
    return 0


def _print_neighbours(args: argparse.Namespace) -> None:
    from .interpret import nearest_tokens, plot_neighbours

    model = _load_prompt_and_backbone(args)
    found = nearest_tokens(model, args.neighbours)
    table = Table(title=f"nearest vocabulary tokens ({found.space}, cosine)")
    table.add_column("prompt vector", justify="right")
    for rank in range(args.neighbours):
        table.add_column(f"#{rank + 1}")
    for index, (tokens, sims) in enumerate(zip(found.tokens, found.similarities)):
        table.add_row(str(index), *(f"{t} ({s:.2f})" for t, s in zip(tokens, sims)))
    out.print(table)
    png = Path(args.png) if args.png else Path(args.prompt).with_suffix(".neighbours.png")
    plot_neighbours(found, png, title=f"{args.prompt}")
    out.print(f"plot: {png}")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .backbones import load_backbone
    from .checkpoint import read_header
    from .server import Limits, create_app

    folder = Path(args.folder)
    if not folder.is_dir():
        raise PtuneError(f"{folder}: not a folder; give the folder that holds the prompt files (*.safetensors)")
    name = args.backbone
    if name is None:
        first = next(iter(sorted(folder.glob("*.safetensors"))), None)
        name = read_header(first)["backbone"]["name"] if first else "minilm"
    backbone = load_backbone(name, trust_remote_code=args.trust_remote_code)
    limits = Limits(max_body_bytes=args.max_body_bytes, max_texts=args.max_texts, max_text_chars=args.max_text_chars,
                    max_batch=args.max_batch, window_ms=args.window_ms)
    app = create_app(folder, backbone, limits)
    console.log(f"serving {len(app.state.registry.models)} task(s) from {folder} on {backbone.name} at "
                f"http://{args.host}:{args.port} (docs at /docs)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .backbones import load_backbone
    from .checkpoint import read_header
    from .peft_adapters import export_peft

    header = read_header(args.prompt)
    backbone = load_backbone(args.backbone or header["backbone"]["name"], trust_remote_code=args.trust_remote_code)
    folder = export_peft(args.prompt, args.peft, backbone)
    out.print_json(json.dumps({"prompt": args.prompt, "peft_adapter": str(folder),
                               "files": sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))}))
    return 0


def cmd_import_peft(args: argparse.Namespace) -> int:
    from .backbones import load_backbone
    from .peft_adapters import import_peft

    labels = [label.strip() for label in args.labels.split(",") if label.strip()] if args.labels else None
    target = Path(args.out)
    if target.exists() and not args.overwrite:
        raise PtuneError(f"{target}: exists; choose another --out or pass --overwrite")
    backbone = load_backbone(args.backbone, trust_remote_code=args.trust_remote_code)
    model = import_peft(args.adapter, backbone, out=target, labels=labels, tagging=args.tagging, task_name=args.task)
    out.print_json(json.dumps({"adapter": args.adapter, "prompt": str(target), "method": model.config.method,
                               "length": model.config.length, "labels": model.labels}))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .backbones import load_backbone
    from .benchmark import Setting, run
    from .data import get_task

    task = get_task(args.task)
    if task.kind != "tagging":
        raise PtuneError(f"ptune benchmark compares token-classification steps; {args.task} is not a tagging task")
    backbone = load_backbone(args.backbone, trust_remote_code=args.trust_remote_code)
    setting = Setting(batch_size=args.batch_size, prompt_length=args.prompt_length, batches=args.batches,
                      rounds=args.rounds, top_k=args.top_k, configs=args.configs or [])
    result = run(backbone, task.train[: args.examples], task.labels, setting, progress=not args.quiet)
    if args.json:
        out.print_json(json.dumps(result))
        return 0
    table = Table(title=f"training step, {backbone.name}, {task.name}, batch {args.batch_size}, prompt {args.prompt_length}")
    for column in ("configuration", "step (s)", "examples/s", "vs PEFT prefix", "vs finetune", "vs floor"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for name, r in result["configs"].items():
        table.add_row(name, f"{r['median_step_s']:.3f}", f"{r['examples_per_s']:.1f}",
                      *(f"{r[key]:.2f}" if key in r else "" for key in ("vs peft prefix", "vs finetune",
                                                                         "vs floor (2 forwards)")))
    out.print(table)
    return 0


def _method_detail(method: dict) -> str:
    if method.get("head") == "verbalizer":
        words = method.get("verbalizer") or "label names"
        return _method_detail({**method, "head": "linear"}) + f" · verbalizer head ({words})"
    if method["method"] == "deep":
        return f" (length {method['length']}, layers {method['layers']}, reparam {method['reparam']})"
    if method["method"] in ("prompt", "ptuning"):
        detail = f" (init {method['init']}" + (f", encoder {method['encoder']}" if method["method"] == "ptuning" else "")
        return detail + (f", template {method['template']!r})" if method.get("template") else f", length {method['length']})")
    return ""


# -- entry point ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptune", description="Prompt tuning of frozen Hugging Face transformers.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a prompt (or fine-tune) on a task")
    train.add_argument("--config", help="JSON file of options (flags override it)")
    train.add_argument("--task", nargs="+", help="built-in task: conll2003 or rotten_tomatoes; several: multi-task "
                                                 "training with one shared prompt and a head per task; squad, "
                                                 "squad_v2 or srl: that kind of task from --train/--dev/--test files")
    train.add_argument("--init-from", help="start from this prompt file (continue a run or a multi-task prompt)")
    train.add_argument("--train", "--data", dest="train",
                       help="your training file (CoNLL columns, CSV/TSV/JSONL, SQuAD JSON, SRL columns, or a datasets "
                            "folder); --data is the same option")
    train.add_argument("--dev", help="your dev file (model selection, early stopping)")
    train.add_argument("--test", help="your test file (scored once at the end)")
    train.add_argument("--backbone", help="minilm, smollm2, a hub id or a local folder (default minilm)")
    train.add_argument("--out", help="output folder (default runs/TASK-METHOD)")
    train.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR from its last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace a finished or interrupted run in --out")
    _add_dataclass_options(train, MethodConfig)
    _add_dataclass_options(train, TrainConfig, skip=("progress",))
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="score a prompt file on a task split or a data file")
    evaluate.add_argument("prompt", nargs="?", help="prompt file (.safetensors)")
    evaluate.add_argument("--ensemble", nargs="+", metavar="PROMPT",
                          help="prompt files for one task, evaluated together in one batched pass")
    evaluate.add_argument("--combine", choices=("mean", "vote"), default="mean",
                          help="ensemble: mean of probabilities or majority vote")
    evaluate.add_argument("--task", help="built-in task (default: the one it was trained on)")
    evaluate.add_argument("--split", default="test", choices=("train", "dev", "test"))
    evaluate.add_argument("--data", help="a labelled data file instead of a task (domain shift)")
    evaluate.add_argument("--label-map", metavar="THEIRS=OURS,...",
                          help="rename the data's labels onto the prompt's, e.g. 'pos=positive,neg=negative'")
    evaluate.add_argument("--backbone", help="override the backbone recorded in the prompt file")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.set_defaults(func=cmd_evaluate)

    gen = sub.add_parser("generate", help="continue texts with a causal LM and a trained prompt (or deep prompt)")
    gen.add_argument("prompt", help="prompt file (.safetensors) trained on a causal LM, e.g. smollm2")
    gen.add_argument("--text", nargs="+", required=True, help="texts to continue (several run as one batch)")
    gen.add_argument("--max-new-tokens", type=int, default=40)
    gen.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default); above 0: sampling")
    gen.add_argument("--seed", type=int, default=0, help="sampling seed")
    gen.add_argument("--backbone", help="override the backbone recorded in the prompt file")
    gen.set_defaults(func=cmd_generate)

    predict = sub.add_parser("predict", help="label texts (or tag sentences) with a prompt file; JSON lines out")
    predict.add_argument("prompt", help="prompt file (.safetensors)")
    predict.add_argument("--text", nargs="+", help="texts to label (tagging: words split on spaces)")
    predict.add_argument("--input", help="JSONL ({'text': ...}; QA: {'question': ..., 'context': ...}) or plain-text "
                                         "file; '-' or absent reads stdin")
    predict.add_argument("--question", help="QA prompts: the question (with --context)")
    predict.add_argument("--context", help="QA prompts: the passage to answer from")
    predict.add_argument("--predicate", type=int, help="SRL prompts: 0-based index of the predicate word in each --text")
    predict.add_argument("--backbone", help="override the backbone recorded in the prompt file")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.set_defaults(func=cmd_predict)

    inspect = sub.add_parser("inspect", help="describe a prompt file: method, parameters, size")
    inspect.add_argument("prompt", help="prompt file (.safetensors)")
    inspect.add_argument("--json", action="store_true", help="print the full header as JSON")
    inspect.add_argument("--neighbours", type=int, metavar="K", help="list the K nearest vocabulary tokens of each prompt vector")
    inspect.add_argument("--png", help="where to draw the neighbours (default: next to the prompt file)")
    inspect.add_argument("--backbone", help="override the backbone recorded in the prompt file")
    inspect.set_defaults(func=cmd_inspect)

    export = sub.add_parser("export", help="write a prompt file as a Hugging Face PEFT adapter folder")
    export.add_argument("prompt", help="prompt file (.safetensors), trained with --peft-layout")
    export.add_argument("--peft", required=True, metavar="DIR", help="adapter folder to write")
    export.add_argument("--backbone", help="override the backbone recorded in the prompt file")
    export.set_defaults(func=cmd_export)

    imp = sub.add_parser("import-peft", help="read a PEFT prompt/P-tuning/prefix adapter folder as a prompt file")
    imp.add_argument("adapter", help="folder written by PEFT's save_pretrained (adapter_model.safetensors)")
    imp.add_argument("--out", required=True, help="prompt file to write (.safetensors)")
    imp.add_argument("--backbone", default="minilm", help="the adapter's base model (default minilm)")
    imp.add_argument("--labels", help="the task's labels, comma separated (needed unless the folder has ptune's head)")
    imp.add_argument("--tagging", action="store_true", help="a per-token task (the labels are tags)")
    imp.add_argument("--task", help="task name to record (default: the folder name)")
    imp.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    imp.set_defaults(func=cmd_import_peft)

    bench = sub.add_parser("benchmark", help="side-by-side training step times: ptune vs PEFT vs fine-tuning")
    bench.add_argument("--task", default="conll2003", help="a built-in tagging task (default conll2003)")
    bench.add_argument("--backbone", default="minilm")
    bench.add_argument("--batch-size", type=int, default=32)
    bench.add_argument("--prompt-length", type=int, default=16)
    bench.add_argument("--batches", type=int, default=12, help="distinct real batches")
    bench.add_argument("--rounds", type=int, default=4, help="passes over the batches (median taken over all)")
    bench.add_argument("--top-k", type=int, default=3, help="layers for the top:k deep configurations")
    bench.add_argument("--examples", type=int, default=4000, help="training examples to draw batches from")
    bench.add_argument("--configs", nargs="+", help="only these configurations (default: all)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(func=cmd_benchmark)

    serve = sub.add_parser("serve", help="HTTP server: every prompt file in a folder is a task, one backbone")
    serve.add_argument("folder", help="folder of prompt files; each file's stem is a task name")
    serve.add_argument("--backbone", help="backbone (default: the one the first prompt file names)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-batch", type=int, default=64, help="most texts in one forward pass")
    serve.add_argument("--window-ms", type=float, default=5.0, help="how long to gather requests into a batch")
    serve.add_argument("--max-body-bytes", type=int, default=1_000_000)
    serve.add_argument("--max-texts", type=int, default=256, help="most texts in one request")
    serve.add_argument("--max-text-chars", type=int, default=4000, help="longest text accepted")
    serve.set_defaults(func=cmd_serve)

    from .probing.command import add_probe_parser

    add_probe_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose or args.command == "train")
    try:
        return args.func(args)
    except PtuneError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
