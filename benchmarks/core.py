"""The paper's comparison on the embedded encoder: finetune vs prompt vs ptuning vs deep.

Each (task, method) trains in its own process through the real `ptune train` command (so peak
memory is per run), selects its epoch on dev, and is scored once on test. Writes
benchmarks/results/core.json and the "Core comparison" section of docs/RESULTS.md.

    python benchmarks/core.py                      # everything (about 75 minutes on 2 cores)
    python benchmarks/core.py --tasks rotten_tomatoes --methods deep finetune
    python benchmarks/core.py --tasks rotten_tomatoes --methods deep --seeds 0 1 2
    python benchmarks/core.py --tasks rotten_tomatoes --methods deep --seeds 0 1 2 \
        --variant prefix_std_0.02 --extra '--prefix-std 0.02'   # a choice against the default, same budget

Records are keyed by (task, method, variant, seed); a rerun replaces only the runs it makes. The table
shows the default variant, mean ± standard deviation over its seeds; each other variant is set against
the default at the same budget (a gap larger than the larger standard deviation wins or loses, anything
else is a tie).
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, cpu_name, versions, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "core.json"
SECTION = "core"

# Epoch budgets fit 2 CPU cores; learning rates are the method defaults unless listed.
SETTINGS = {
    ("rotten_tomatoes", "finetune"): ["--epochs", "3"],
    ("rotten_tomatoes", "prompt"): ["--epochs", "4"],
    ("rotten_tomatoes", "ptuning"): ["--epochs", "4"],
    ("rotten_tomatoes", "deep"): ["--epochs", "8"],
    ("conll2003", "finetune"): ["--epochs", "3"],
    ("conll2003", "prompt"): ["--epochs", "3"],
    ("conll2003", "ptuning"): ["--epochs", "3"],
    # Pinned to the generic deep defaults, so that this row reruns as recorded: deep prompts on tagging tasks
    # have defaulted since to the conll2003 study's winner (config.KIND_DEFAULTS), which is variant `sweep`.
    ("conll2003", "deep"): ["--epochs", "8", "--length", "16", "--lr", "0.03"],
}
METRIC = {"rotten_tomatoes": "accuracy", "conll2003": "f1"}


def run_one(task: str, method: str, seed: int, variant: str, extra: list[str], threads: int = 2) -> dict:
    """Child process: train through the CLI, report results and own peak memory as JSON."""
    import torch

    from ptune.cli import main

    torch.set_num_threads(threads)
    out = Path(tempfile.mkdtemp(prefix=f"core-{task}-{method}-"))
    args = ["-q", "train", "--task", task, "--method", method, "--patience", "3", "--seed", str(seed), "--out", str(out), *extra]
    started = time.perf_counter()
    if main(args) != 0:
        raise SystemExit(f"training failed: {args}")
    seconds = time.perf_counter() - started
    results = json.loads((out / "results.json").read_text())
    return {
        "task": task,
        "method": method,
        "variant": variant,
        "seed": seed,
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
        "threads": threads,
    }


def key(r: dict) -> tuple:
    """Records made before seeds and variants were recorded ran seed 0 with the defaults."""
    return r["task"], r["method"], r.get("variant", "default"), r.get("seed", 0)


SUMMED = ("trainable_params", "trainable_percent", "prompt_file_bytes", "metric")


def load() -> list[dict]:
    """Every run in core.json, one record per seed (the file holds one summary per task, method and variant)."""
    if not RESULTS.exists():
        return []
    return [run for r in json.loads(RESULTS.read_text()) for run in r.get("runs", [r])]


def summarise(records: list[dict]) -> list[dict]:
    """One record per (task, method, variant), in the record shape of a single run: test and dev are the
    means over its seeds, with test_std/dev_std (0.0 for one seed), seeds, and each run under runs."""
    out = []
    for (task, method, variant), runs in group(records).items():
        test, dev = [r["test"] for r in runs], [r["dev"] for r in runs]
        out.append({"task": task, "method": method, "variant": variant, **{k: runs[0][k] for k in SUMMED},
                    "test": statistics.mean(test), "test_std": statistics.stdev(test) if len(runs) > 1 else 0.0,
                    "dev": statistics.mean(dev), "dev_std": statistics.stdev(dev) if len(runs) > 1 else 0.0,
                    "seeds": [r.get("seed", 0) for r in runs], "runs": runs})
    return out


def dates(records: list[dict]) -> str:
    """The day the runs were made, or the first and last day when they span several."""
    days = sorted({r.get("date", "2026-11-22") for r in records})  # records before this field: 2026-11-22
    return days[0] if len(days) == 1 else f"{days[0]} to {days[-1]} (each run's date is in core.json)"


def spread(values: list[float]) -> str:
    """Mean, and ± the standard deviation with the number of seeds when there are several."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


def group(records: list[dict]) -> dict[tuple, list[dict]]:
    """(task, method, variant) -> its runs, one per seed."""
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(records, key=key):
        groups.setdefault(key(r)[:3], []).append(r)
    return groups


def verdict(base: list[dict], other: list[dict]) -> str:
    """win / loss / tie of ``other`` against ``base`` on mean dev, by more than the larger seed spread."""
    if len(base) < 2 or len(other) < 2:
        return "needs 2+ seeds each"
    a, b = [100 * r["dev"] for r in base], [100 * r["dev"] for r in other]
    gap, band = statistics.mean(b) - statistics.mean(a), max(statistics.stdev(a), statistics.stdev(b))
    return "win" if gap > band else "loss" if gap < -band else "tie"


def machines(records: list[dict]) -> str:
    """The CPUs and Python versions the runs name (runs before these fields were recorded say so)."""
    seen = dict.fromkeys(f"{r['cpu']}, Python {r['versions']['python']}" if "cpu" in r else "not recorded (2026-11-22 runs)"
                         for r in sorted(records, key=key))
    return "; ".join(seen)


def threads(records: list[dict]) -> str:
    """The torch threads the runs used (records before the field ran 2)."""
    used = sorted({r.get("threads", 2) for r in records})
    return " or ".join(map(str, used)) + " CPU thread" + ("s" if used != [1] else "") + " per run"


def render(records: list[dict]) -> str:
    groups = group(records)
    lines = [
        "## Core comparison (issue: ptune core)",
        "",
        "Command: `python benchmarks/core.py` (each run's own command is listed below) · machine: "
        f"{machines(records)}, {threads(records)} · date: {dates(records)} · "
        "backbone: minilm (all-MiniLM-L6-v2, 22.7M parameters, frozen except finetune).",
        "Test-set scores of the epoch chosen on dev; nothing tuned on test. Where a row has several seeds it shows "
        "mean ± standard deviation and n; a row with one figure is a single run (seed 0). Train times include "
        "per-epoch dev evaluation and were taken while other work shared the same 2 cores: read them as upper bounds. "
        "The per-method learning rates in src/ptune/config.py came from short calibration runs on 2026-11-22 whose "
        "table was typed here by hand; it is withdrawn until a script re-measures it. conll2003 / deep / default "
        "runs at length 16 and lr 3e-2, the generic deep defaults; `ptune train` now gives deep prompts on tagging "
        "tasks the conll2003 study's settings (variant `sweep` below) by default.",
        "",
        "| task | method | test | dev | % of finetune | trainable params | trainable % | prompt file | train time | peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task in dict.fromkeys(k[0] for k in groups):
        finetune = groups.get((task, "finetune", "default"))
        base = statistics.mean(r["test"] for r in finetune) if finetune else None
        for method in ("finetune", "prompt", "ptuning", "deep"):
            runs = groups.get((task, method, "default"))
            if not runs:
                continue
            r, test = runs[0], statistics.mean(r["test"] for r in runs)
            share = f"{100 * test / base:.1f}%" if base else "–"
            lines.append(
                f"| {task} | {method} | {spread([100 * r['test'] for r in runs])} | {spread([100 * r['dev'] for r in runs])} | "
                f"{share} | {r['trainable_params']:,} | {r['trainable_percent']:.3f}% | {r['prompt_file_bytes'] / 1024:,.0f} KiB | "
                f"{statistics.mean(r['train_seconds'] for r in runs) / 60:.1f} min | {max(r['peak_rss_mb'] for r in runs):,.0f} MB |"
            )
    variants = [k for k in groups if k[2] != "default"]
    if variants:
        lines += ["", "Choices set against the default at the same budget (dev decides; test is shown, not used):", "",
                  "| task | method | variant (flags) | default dev | variant dev | default test | variant test | verdict |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for task, method, variant in variants:
            base, other = groups.get((task, method, "default"), []), groups[(task, method, variant)]
            flags = other[0]["variant_flags"]
            lines.append(
                f"| {task} | {method} | {variant} (`{flags}`) | {spread([100 * r['dev'] for r in base]) if base else '–'} | "
                f"{spread([100 * r['dev'] for r in other])} | {spread([100 * r['test'] for r in base]) if base else '–'} | "
                f"{spread([100 * r['test'] for r in other])} | {verdict(base, other)} |")
    lines += ["", "Per-run commands (`OUT` is a temporary folder; records without a seed ran seed 0):", ""]
    lines += [f"- {r['task']} / {r['method']} / {r.get('variant', 'default')}: `{r['command']}`" for r in sorted(records, key=key)]
    return "\n".join(lines)


def section() -> str:
    """The docs/RESULTS.md section, rendered from core.json."""
    return render(load())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["rotten_tomatoes", "conll2003"])
    parser.add_argument("--methods", nargs="+", default=["finetune", "prompt", "ptuning", "deep"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one run per seed (default: seed 0)")
    parser.add_argument("--variant", default="default", help="name of the choice --extra makes, set against the default")
    parser.add_argument("--extra", default="", help="extra `ptune train` flags for every run, e.g. '--prefix-std 0.02'")
    parser.add_argument("--one", nargs=3, metavar=("TASK", "METHOD", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads per run (1 lets two benchmarks share 2 cores; scores differ only by float rounding)")
    parser.add_argument("--report-only", action="store_true", help="rewrite docs/RESULTS.md from core.json")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    if args.extra and args.variant == "default":
        parser.error("--extra changes the runs: name the choice with --variant")
    extra = shlex.split(args.extra)
    if args.one:
        task, method, seed = args.one
        record = run_one(task, method, int(seed), args.variant, SETTINGS.get((task, method), []) + extra,
                         args.threads)
        print(json.dumps({**record, "variant_flags": args.extra}))
        return
    for task in args.tasks:
        for method in args.methods:
            for seed in args.seeds:
                child = [sys.executable, __file__, "--one", task, method, str(seed), "--variant", args.variant, "--extra", args.extra,
                         "--threads", str(args.threads)]
                done = subprocess.run(child, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.stderr.write(done.stderr[-3000:])
                    raise SystemExit(f"{task}/{method}/seed {seed} failed")
                record = json.loads(done.stdout.strip().splitlines()[-1])
                previous = {key(r): r for r in load()}  # another core.py may have written meanwhile
                previous[key(record)] = record
                print(json.dumps(record), flush=True)
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                records = sorted(previous.values(), key=key)
                RESULTS.write_text(json.dumps(summarise(records), indent=2) + "\n")
                write_section(SECTION, render(records))


if __name__ == "__main__":
    main()
