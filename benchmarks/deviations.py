"""Where ptune's defaults differ from the papers' reference code: each choice against the reference's,
deep prompts on the embedded encoder, 3 seeds, decided on dev.

Every run is a real `ptune train --method deep` process at a small budget (first 3,000 training
examples, 3 epochs, first 1,000 dev examples, epoch chosen on dev). A variant beats the default on a
task when its mean dev score is higher by more than the seeds' spread (the larger of the two standard
deviations); it becomes the default only if it wins on one task and loses on none. Everything else is
a tie or a loss and keeps today's default. Writes benchmarks/results/deviations.json and the
"Deviations" section of docs/RESULTS.md.

    python benchmarks/deviations.py                 # 33 runs, about 45 minutes on 2 cores (2 jobs)
    python benchmarks/deviations.py --report-only
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, cpu_name, save, versions  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "deviations.json"
SECTION = "deviations"
TASKS = {"rotten_tomatoes": "accuracy", "conll2003": "f1"}
BUDGET = ["--method", "deep", "--train-limit", "3000", "--epochs", "3", "--eval-limit", "1000", "--patience", "0"]
SEEDS = (0, 1, 2)
# The defaults these runs compared against, pinned now that one of them has changed (prefix_std was 0.02
# when the runs were made; the recorded commands predate the pin and ran with it as the default).
BASELINE = ["--prefix-std", "0.02"]
# name -> (what the reference code does, the flags that do it, tasks it applies to)
VARIANTS = {
    "default": ("ptune's defaults when measured", [], tuple(TASKS)),
    "positions": ("deep-prompt position ids shifted by the prefix length (PEFT, P-tuning v2 via past_key_values)",
                  ["--peft-layout"], tuple(TASKS)),
    "prefix_std": ("prefixes initialised N(0, 1) (nn.Embedding's default, P-tuning v2 and PEFT)",
                   ["--prefix-std", "1.0"], tuple(TASKS)),
    "prefix_dropout": ("one prefix dropout mask per example (P-tuning v2)", ["--prefix-dropout", "example"], tuple(TASKS)),
    "backbone_dropout": ("the frozen backbone's dropout on in training (P-tuning v2, the Trainer)",
                         ["--backbone-dropout"], tuple(TASKS)),
    "pooler": ("classification through the backbone's pooler (BERT-style classifiers, P-tuning v2)",
               ["--pool", "pooler"], ("rotten_tomatoes",)),
}
DEFAULTS = {"positions": "ids from 0 after the prefix", "prefix_std": "N(0, 0.02) (until this comparison)", "prefix_dropout": "one mask per batch",
            "backbone_dropout": "eval mode (no dropout)", "pooler": "the first token's hidden state"}


def run_one(task: str, variant: str, seed: int, threads: int) -> dict:
    """Child process: one training run through the CLI."""
    import torch

    from ptune.cli import main

    torch.set_num_threads(threads)
    out = Path(tempfile.mkdtemp(prefix=f"dev-{task}-{variant}-{seed}-"))
    args = ["-q", "train", "--task", task, *BUDGET, "--seed", str(seed), *BASELINE, *VARIANTS[variant][1], "--out", str(out)]
    if main(args) != 0:
        raise SystemExit(f"training failed: {args}")
    results = json.loads((out / "results.json").read_text())
    metric = TASKS[task]
    return {"task": task, "variant": variant, "seed": seed, "metric": metric,
            "dev": results["dev"][metric], "test": results["test"][metric], "best_epoch": results["best_epoch"],
            "train_seconds": round(results["train_seconds"], 1),
            "command": "ptune " + shlex.join(args[1:]).replace(str(out), "OUT")}


def summary(records: list[dict], task: str, variant: str) -> dict | None:
    runs = [r for r in records if r["task"] == task and r["variant"] == variant]
    if len(runs) < 2:
        return None
    dev = [100 * r["dev"] for r in runs]
    test = [100 * r["test"] for r in runs]
    return {"n": len(runs), "dev": statistics.mean(dev), "dev_std": statistics.stdev(dev),
            "test": statistics.mean(test), "test_std": statistics.stdev(test)}


def verdicts(records: list[dict]) -> dict:
    """{variant: {task: "win" | "tie" | "loss", ..., "decision": ...}} from the dev means and spreads."""
    out = {}
    for variant in VARIANTS:
        if variant == "default":
            continue
        row = {}
        for task in VARIANTS[variant][2]:
            base, other = summary(records, task, "default"), summary(records, task, variant)
            if base is None or other is None:
                continue
            spread = max(base["dev_std"], other["dev_std"])
            gap = other["dev"] - base["dev"]
            row[task] = "win" if gap > spread else "loss" if gap < -spread else "tie"
        if row:
            outcomes = set(row.values())
            row["decision"] = ("reference becomes the default" if "win" in outcomes and "loss" not in outcomes
                               else "ptune's default kept")
            out[variant] = row
    return out


def render(data: dict) -> str:
    records, command = data["records"], data["command"]
    first = records[0]["command"] if records else ""
    lines = [
        "## Deviations from the reference code (issue: families, deviations)",
        "",
        f"Command: `{command}` · CPU: {data['cpu']}, 2 cores, two runs at a time (1 thread each) · date: {data['date']} "
        "· backbone: minilm.",
        "Each run: `ptune train --task TASK " + " ".join(BUDGET) + " --seed S [variant]` (the first 3,000 training "
        "examples, 3 epochs, the epoch chosen on the first 1,000 dev examples), seeds " + ", ".join(map(str, SEEDS)) + ". "
        "Mean ± standard deviation over the seeds; rotten_tomatoes accuracy, conll2003 entity F1. A variant wins or "
        "loses only by more than the spread (the larger standard deviation of the two), and becomes the default only "
        "if it wins on one task and loses on none; the test column is shown, not used. The runs were made with "
        "prefix_std 0.02 as the default; the script now passes `" + " ".join(BASELINE) + "` to every run so a rerun "
        "compares the same settings.",
        "",
        "| choice | ptune's default | reference code (option) | task | default dev | reference dev | default test | reference test | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    decided = verdicts(records)
    for variant, row in decided.items():
        text, flags, tasks = VARIANTS[variant]
        for task in tasks:
            base, other = summary(records, task, "default"), summary(records, task, variant)
            if base is None or other is None or task not in row:
                continue
            lines.append(f"| {variant} | {DEFAULTS[variant]} | {text} (`{' '.join(flags)}`) | {task} | "
                         f"{base['dev']:.2f} ± {base['dev_std']:.2f} | {other['dev']:.2f} ± {other['dev_std']:.2f} | "
                         f"{base['test']:.2f} ± {base['test_std']:.2f} | {other['test']:.2f} ± {other['test_std']:.2f} | "
                         f"{row[task]} |")
    lines += ["", "Decisions:", ""]
    lines += [f"- {variant}: {row['decision']} ({', '.join(f'{t}: {v}' for t, v in row.items() if t != 'decision')})"
              for variant, row in decided.items()]
    if first:
        lines += ["", f"One run's command, as run (`OUT` is a temporary folder): `{first}`"]
    return "\n".join(lines)


def section() -> str:
    """The docs/RESULTS.md section, rendered from deviations.json."""
    return render(json.loads(RESULTS.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each gets 2 // jobs threads, at least 1)")
    parser.add_argument("--one", nargs=3, metavar=("TASK", "VARIANT", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--report-only", action="store_true", help="rewrite docs/RESULTS.md from deviations.json")
    args = parser.parse_args()
    command = " ".join(["python benchmarks/deviations.py", *map(shlex.quote, sys.argv[1:])])
    if args.one:
        task, variant, seed = args.one
        print(json.dumps(run_one(task, variant, int(seed), args.threads)))
        return
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"records": []}
    if args.report_only:
        save(RESULTS, data, SECTION, render(data))
        return
    done = {(r["task"], r["variant"], r["seed"]) for r in data["records"]}
    todo = [(task, variant, seed) for variant in args.variants for task in args.tasks
            if task in VARIANTS[variant][2] for seed in SEEDS if (task, variant, seed) not in done]
    threads = max(1, 2 // args.jobs)
    data.update(command=command, versions=versions("torch", "transformers"), cpu=cpu_name(), budget=BUDGET,
                seeds=list(SEEDS), date=date.today().isoformat())

    def child(job: tuple[str, str, int]) -> dict:
        task, variant, seed = job
        result = subprocess.run([sys.executable, __file__, "--one", task, variant, str(seed), "--threads", str(threads)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stderr[-3000:])
            raise SystemExit(f"{task}/{variant}/seed {seed} failed")
        return json.loads(result.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(args.jobs) as pool:
        for record in pool.map(child, todo):
            data["records"].append(record)
            data["records"].sort(key=lambda r: (r["task"], r["variant"], r["seed"]))
            print(json.dumps(record), flush=True)
            data["verdicts"] = verdicts(data["records"])
            save(RESULTS, data, SECTION, render(data))


if __name__ == "__main__":
    main()
