"""``ptune benchmark``: side-by-side training-step times of ptune's deep prompts, PEFT and fine-tuning."""

from __future__ import annotations

import argparse

from ptune.cli.options import add_device_options, device_from
from ptune.cli.output import out, print_json
from ptune.bounds import COUNT
from ptune.errors import PtuneError


def add_parser(sub) -> None:
    bench = sub.add_parser("benchmark", help="side-by-side training step times: ptune vs PEFT vs fine-tuning")
    bench.add_argument("--task", default="conll2003", help="a built-in tagging task")
    bench.add_argument("--backbone", default="minilm", help="minilm, smollm2, a hub id or a local folder")
    bench.add_argument("--batch-size", type=COUNT, default=32, help="examples per step")
    bench.add_argument("--prompt-length", type=COUNT, default=16, help="prompt vectors (per layer for deep prompts)")
    bench.add_argument("--batches", type=COUNT, default=12, help="distinct real batches")
    bench.add_argument("--rounds", type=COUNT, default=4, help="passes over the batches (median taken over all)")
    bench.add_argument("--top-k", type=COUNT, default=3, help="layers for the top:k deep configurations")
    bench.add_argument("--examples", type=COUNT, default=4000, help="training examples to draw batches from")
    bench.add_argument("--configs", nargs="+", help="only these configurations (default: all)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_device_options(bench)
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ptune.analysis.benchmark import FLOOR, Setting
    from ptune.analysis.benchmark import run as run_benchmark
    from ptune.data import get_task
    from ptune.model.backbones import load_backbone

    task = get_task(args.task)
    if task.kind != "tagging":
        raise PtuneError(f"ptune benchmark compares token-classification steps; {args.task} is not a tagging task")
    backbone = load_backbone(args.backbone, trust_remote_code=args.trust_remote_code, **device_from(args))
    setting = Setting(batch_size=args.batch_size, prompt_length=args.prompt_length, batches=args.batches,
                      rounds=args.rounds, top_k=args.top_k, configs=args.configs or [])
    result = run_benchmark(backbone, task.train[: args.examples], task.labels, setting, progress=not args.quiet)
    if args.json:
        print_json(result)
        return 0
    table = Table(title=escape(f"training step, {backbone.name}, {task.name}, batch {args.batch_size}, "
                        f"prompt {args.prompt_length}"))
    for column in ("configuration", "step (s)", "examples/s", "vs PEFT prefix", "vs finetune", "vs floor"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for name, r in result["configs"].items():
        table.add_row(name, f"{r['median_step_s']:.3f}", f"{r['examples_per_s']:.1f}",
                      *(_ratio(r, key) for key in ("vs peft prefix", "vs finetune", f"vs {FLOOR}")))
    out().print(table)
    return 0


def _ratio(record: dict, key: str) -> str:
    """A ratio with the 2.5-97.5% range of its paired per-step ratios: 0.97 (0.91-1.04)."""
    if key not in record:
        return ""
    low, high = record[f"{key} interval"]
    return f"{record[key]:.2f} ({low:.2f}-{high:.2f})"
