"""The paper's comparison on the embedded encoder: finetune vs prompt vs ptuning vs deep.

Each (task, method) trains in its own process through the real `ptune train` command (so peak
memory is per run), selects its epoch on dev, and is scored once on test. Writes
benchmarks/results/core.json and the "Core comparison" section of docs/RESULTS.md.

    python benchmarks/core.py                      # everything (about 75 minutes on 2 cores)
    python benchmarks/core.py --tasks rotten_tomatoes --methods deep finetune
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, cpu_name, versions, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "core.json"

# Epoch budgets fit 2 CPU cores; learning rates are the method defaults unless listed.
SETTINGS = {
    ("rotten_tomatoes", "finetune"): ["--epochs", "3"],
    ("rotten_tomatoes", "prompt"): ["--epochs", "4"],
    ("rotten_tomatoes", "ptuning"): ["--epochs", "4"],
    ("rotten_tomatoes", "deep"): ["--epochs", "8"],
    ("conll2003", "finetune"): ["--epochs", "3"],
    ("conll2003", "prompt"): ["--epochs", "3"],
    ("conll2003", "ptuning"): ["--epochs", "3"],
    ("conll2003", "deep"): ["--epochs", "8"],
}
METRIC = {"rotten_tomatoes": "accuracy", "conll2003": "f1"}


def run_one(task: str, method: str, extra: list[str]) -> dict:
    """Child process: train through the CLI, report results and own peak memory as JSON."""
    import torch

    from ptune.cli import main

    torch.set_num_threads(2)
    out = Path(tempfile.mkdtemp(prefix=f"core-{task}-{method}-"))
    args = ["-q", "train", "--task", task, "--method", method, "--patience", "3", "--out", str(out), *extra]
    started = time.perf_counter()
    if main(args) != 0:
        raise SystemExit(f"training failed: {args}")
    seconds = time.perf_counter() - started
    results = json.loads((out / "results.json").read_text())
    return {
        "task": task,
        "method": method,
        "metric": METRIC[task],
        "test": results["test"][METRIC[task]],
        "dev": results["dev"][METRIC[task]],
        "best_epoch": results["best_epoch"],
        "trainable_params": results["trainable_params"],
        "trainable_percent": round(results["trainable_percent"], 4),
        "prompt_file_bytes": (out / "prompt.safetensors").stat().st_size,
        "train_seconds": round(results["train_seconds"], 1),
        "total_seconds": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "command": "ptune " + shlex.join(args[1:]).replace(str(out), "OUT"),
        "date": date.today().isoformat(),
        "versions": versions("torch", "transformers"),
        "cpu": cpu_name(),
    }


def dates(records: list[dict]) -> str:
    """The day the runs were made, or the first and last day when they span several."""
    days = sorted({r.get("date", "2026-11-22") for r in records})  # records before this field: 2026-11-22
    return days[0] if len(days) == 1 else f"{days[0]} to {days[-1]} (each run's date is in core.json)"


def write_report(records: list[dict], command: str) -> None:
    by_task: dict[str, dict[str, dict]] = {}
    for r in records:
        by_task.setdefault(r["task"], {})[r["method"]] = r
    lines = [
        "## Core comparison (issue: ptune core)",
        "",
        f"Command: `{command}` · machine: {platform.machine()}, 2 CPU threads, {platform.python_version()} · "
        f"date: {dates(records)} · backbone: minilm (all-MiniLM-L6-v2, 22.7M parameters, frozen except finetune).",
        "Test-set scores of the epoch chosen on dev; nothing tuned on test. Train times include per-epoch dev "
        "evaluation and were taken while other work shared the same 2 cores: read them as upper bounds.",
        "",
        "| task | method | test | dev | % of finetune | trainable params | trainable % | prompt file | train time | peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, methods in by_task.items():
        base = methods.get("finetune", {}).get("test")
        for method in ("finetune", "prompt", "ptuning", "deep"):
            if method not in methods:
                continue
            r = methods[method]
            share = f"{100 * r['test'] / base:.1f}%" if base else "–"
            lines.append(
                f"| {task} | {method} | {100 * r['test']:.2f} | {100 * r['dev']:.2f} | {share} | {r['trainable_params']:,} | "
                f"{r['trainable_percent']:.3f}% | {r['prompt_file_bytes'] / 1024:,.0f} KiB | {r['train_seconds'] / 60:.1f} min | "
                f"{r['peak_rss_mb']:,.0f} MB |"
            )
    lines += ["", "Per-run commands (`OUT` is a temporary folder):", ""]
    lines += [f"- {r['task']} / {r['method']}: `{r['command']}`" for r in records]
    write_section("core", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["rotten_tomatoes", "conll2003"])
    parser.add_argument("--methods", nargs="+", default=["finetune", "prompt", "ptuning", "deep"])
    parser.add_argument("--extra", default="", help="extra `ptune train` flags for every run, e.g. '--train-limit 500'")
    parser.add_argument("--one", nargs=2, metavar=("TASK", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--report-only", action="store_true", help="rewrite docs/RESULTS.md from core.json")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads(RESULTS.read_text()), "python benchmarks/core.py")
        return
    extra = shlex.split(args.extra)
    if args.one:
        task, method = args.one
        print(json.dumps(run_one(task, method, SETTINGS.get((task, method), []) + extra)))
        return
    previous = {(r["task"], r["method"]): r for r in json.loads(RESULTS.read_text())} if RESULTS.exists() else {}
    for task in args.tasks:
        for method in args.methods:
            child = [sys.executable, __file__, "--one", task, method, "--extra", args.extra]
            done = subprocess.run(child, capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-3000:])
                raise SystemExit(f"{task}/{method} failed")
            record = json.loads(done.stdout.strip().splitlines()[-1])
            previous[(task, method)] = record
            print(json.dumps(record), flush=True)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            records = sorted(previous.values(), key=lambda r: (r["task"], r["method"]))
            RESULTS.write_text(json.dumps(records, indent=2) + "\n")
            write_report(records, " ".join(["python benchmarks/core.py", *map(shlex.quote, sys.argv[1:])]))


if __name__ == "__main__":
    main()
