"""End to end against Hugging Face PEFT under one protocol (issue 16): each side at the learning rate its
own dev sweep picks, the same data, prompt length, encoder size, warmup and decay, 3 seeds, and the time
each needs to reach a dev target fixed from the seeds' final means. Writes benchmarks/results/e2e.json,
the "e2e" section of docs/RESULTS.md and docs/e2e_time_to_target.png.

Sides (their code: e2e_sides.py; this file holds the protocol's stages, summary and report), all on the
frozen minilm with the same head (dropout 0.1 + linear on [CLS], or on each word's first sub-token) and the
same AdamW (weight decay 0.01), linear warmup (6%) and decay, clipping at 1.0:
  ptune         ptune's own pieces (encode, length-bucketed batches, PromptModel.loss, make_optimiser,
                optimiser_step) composed step for step as ptune.training.loop.train composes them, with dev
                evaluated every few steps (train() evaluates per epoch); the `checks` stage verifies that
                this loop ends on the same prompt as train().
  peft_trainer  PEFT (PromptTuning / PromptEncoder / PrefixTuning) on the bare model (FEATURE_EXTRACTION),
                trained by the Hugging Face Trainer as its users run it: train_sampling_strategy=
                "group_by_length" (the Trainer's option for length grouping), the backbone's dropout on.
  peft_loop     the same PEFT model in a plain PyTorch loop fed ptune's batch plan (same grouping, same
                seed), the backbone's dropout off as in ptune: only the method's implementation differs.

Stages (each run is one record keyed by stage, task, method, side, lr, seed and variant, written to the
JSON as soon as it finishes; a rerun skips the records it finds, so the protocol builds up over runs):
  checks     PEFT prefix tuning on Bert*For{Sequence,Token}Classification (the exception, with versions),
             and ptune's benchmark loop against train() on the same data and seed.
  sweep      seed 0 at each learning rate of LRS, dev scored once at the end; the best is chosen on dev. A
             grid whose best sits at its edge gets the next rate of LADDER beyond it, once, on every side.
  seeds      seeds 0, 1, 2 at each side's chosen rate, sides alternated (A B C A B C), dev every
             1/EVALS of the run, wall-clock without evaluation; test scored once at the end.
  factorial  FACTORIAL's task and method on ptune and peft_loop: bucketing on/off x backbone dropout
             on/off, 3 seeds, the cells and sides alternated.
  profile    where a training step's time goes on each side (torch.profiler, operators by self CPU time).
Time to target is computed, not run: target = 0.95 x the lowest final 3-seed dev mean of the sides of
a (task, method), each run's time = its first evaluation at or above it; ratios are paired by seed.

Budget. On this machine (2 CPUs, x86_64) the old e2e_peft runs measured, per epoch over the full
training sets, ptune deep 66.5 s on conll2003 (439 steps: 0.15 s/step) and 72.0 s on rotten_tomatoes
(319 steps: 0.23 s/step), PEFT + Trainer ~0.5 s/step. BUDGET trains on 2,000 examples for 3 epochs
(189 steps); a dev evaluation of 500 examples costs about as much as 5 steps (~1.5 s). Taking 0.25 s/step
for ptune and peft_loop (prompt tokens lengthen the inputs) and 0.5 s/step for the Trainer, a run is
~50 s (ptune, peft_loop) or ~95 s (Trainer) of training, ~65 s on average with setup:
  sweep      2 tasks x 3 methods x 3 sides x 3 rates = 54 runs x ~67 s (1 evaluation)        = ~60 min
  seeds      2 x 3 x 3 sides x 3 seeds               = 54 runs x ~83 s (11 evaluations, test) = ~75 min
  factorial  4 cells x 2 sides x 3 seeds             = 24 runs x ~55 s                        = ~22 min
  checks, profile                                                                             = ~3 min
about 2.7 hours on 2 otherwise idle cores. The smoke runs could not time it: the machine was shared at a
load of 10-14, where 2 torch threads slow ~10x from oversubscription (use --threads 1 there). Each stage
runs on its own (--stages) and resumes where it stopped.

    python benchmarks/e2e.py                                   # every stage, resuming
    python benchmarks/e2e.py --stages sweep --tasks conll2003 --methods deep
    python benchmarks/e2e.py --report-only                     # section and figure from e2e.json
    python benchmarks/e2e.py --stages seeds --redo rotten_tomatoes prompt 0   # that triple again, every side
    python benchmarks/e2e.py --train-limit 64 --dev-limit 64 --epochs 1 --methods deep \\
        --tasks rotten_tomatoes --seeds 0 --results /tmp/e2e_smoke.json   # a smoke run, docs untouched
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import warnings
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, versions, write_atomic, write_section
from e2e_sides import (BATCH, HEAD_DROPOUT, LENGTH, THREADS, _TASKS, backbone, ptune_model, run_peft,  # noqa: E402
                       run_ptune, task_of)

RESULTS = ROOT / "benchmarks" / "results" / "e2e.json"
SECTION = "e2e"
FIGURE = ROOT / "docs" / "e2e_time_to_target.png"

TASKS = ("rotten_tomatoes", "conll2003")
METHODS = ("prompt", "ptuning", "deep")
SIDES = ("ptune", "peft_trainer", "peft_loop")
STAGES = ("checks", "sweep", "seeds", "factorial", "profile")
# Dev sweeps spanning each side's documented range. ptune: its defaults (config.DEFAULT_LR: prompt 3e-2,
# ptuning 1e-2, deep 3e-2) with one step of ~3x either side. PEFT: its sequence-classification examples use
# 1e-3 for prompt tuning and P-tuning (examples/sequence_classification/Prompt_Tuning.ipynb, P_Tuning.ipynb,
# the P-tuning task guide), its prompt-tuning guides up to 3e-2, prefix tuning 1e-2 (prefix_tuning.ipynb).
LRS = {
    ("ptune", "prompt"): (1e-2, 3e-2, 1e-1), ("ptune", "ptuning"): (3e-3, 1e-2, 3e-2),
    ("ptune", "deep"): (1e-2, 3e-2, 1e-1),
    ("peft", "prompt"): (1e-3, 1e-2, 3e-2), ("peft", "ptuning"): (1e-3, 3e-3, 1e-2),
    ("peft", "deep"): (3e-3, 1e-2, 3e-2),
}
# The ladder the grids are cut from (~3x a step): a grid whose best dev score sits at its edge gets one more rate,
# the next step beyond that edge, once, on every side alike (a best at the edge may lie past it).
LADDER = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
# The subset every run trains on, sized so that the whole protocol fits about 2-3 CPU-hours (docstring).
BUDGET = {"train_limit": 2000, "dev_limit": 500, "test_limit": 1000, "epochs": 3}
SEEDS = (0, 1, 2)
EVALS = 10  # dev evaluations of a seeds run after step 0: the points of its curve
TARGET_SHARE = 0.95
FACTORIAL = ("conll2003", "deep")
CELLS = {"bucket+nodrop": (True, False), "bucket+drop": (True, True), "random+nodrop": (False, False),
         "random+drop": (False, True)}  # variant -> (length bucketing, backbone dropout)
PROFILE_STEPS = 20


# -- records ----------------------------------------------------------------------------------------------------
def key(r: dict) -> tuple:
    return r["stage"], r["task"], r["method"], r["side"], r["lr"], r["seed"], r["variant"]


def load(path: Path) -> dict:
    if not path.exists():
        return {"runs": [], "checks": {}, "summary": [], "ratios": [], "profile": {}}
    return json.loads(path.read_text())


def store(path: Path, data: dict) -> None:
    data["summary"], data["ratios"] = summarise(data)
    write_atomic(path, json.dumps(data, indent=1) + "\n")


def provenance(command: str) -> dict:
    import torch

    return {"command": command, "machine": machine(torch.get_num_threads()), "date": date.today().isoformat(),
            "versions": versions("ptune", "torch", "transformers", "peft")}


def owed_again(r: dict, redo: list[list[str]]) -> bool:
    """Whether ``--redo`` asks for this seeds record again: named by it and not already remade by a --redo."""
    return (r["stage"] == "seeds" and not r.get("redone")
            and [r["task"], r["method"], str(r["seed"])] in [[task, method, str(int(seed))] for task, method, seed in redo])


# -- stages -----------------------------------------------------------------------------------------------------
def run(spec: dict, budget: dict, evals: int) -> dict:
    measured = (run_ptune if spec["side"] == "ptune" else run_peft)(spec, budget, evals)
    return {**spec, **measured}


def best_lr(data: dict, task: str, method: str, side: str) -> float | None:
    runs = swept(data, task, method, side)
    return max(runs, key=lambda r: (r["dev"], -r["lr"]))["lr"] if runs else None


def grid(side: str, method: str) -> tuple[float, ...]:
    """The learning rates a side's sweep of ``method`` starts from (LRS)."""
    return LRS["ptune" if side == "ptune" else "peft", method]


def swept(data: dict, task: str, method: str, side: str) -> list[dict]:
    return [r for r in data["runs"] if r["stage"] == "sweep" and (r["task"], r["method"], r["side"]) == (task, method, side)]


def edge_lr(data: dict, task: str, method: str, side: str) -> float | None:
    """The rate one step past the edge of a finished grid whose best dev score sits at that edge (LADDER),
    unless it has run already; None while the grid is unfinished or its best is inside it."""
    rates = grid(side, method)
    runs = swept(data, task, method, side)
    if not set(rates) <= {r["lr"] for r in runs}:
        return None
    best = best_lr(data, task, method, side)
    step = {rates[-1]: 1, rates[0]: -1}.get(best)
    if step is None or not 0 <= LADDER.index(best) + step < len(LADDER):
        return None
    beyond = LADDER[LADDER.index(best) + step]
    return None if any(r["lr"] == beyond for r in runs) else beyond


def settled_lr(data: dict, task: str, method: str, side: str) -> float | None:
    """The chosen rate once the side's sweep is over (grid done, no edge step left), else None."""
    if not set(grid(side, method)) <= {r["lr"] for r in swept(data, task, method, side)} or edge_lr(data, task, method, side):
        return None
    return best_lr(data, task, method, side)


def specs(stage: str, data: dict, args) -> list[dict]:
    """The runs a stage makes, in order (sides alternated)."""
    base = {"stage": stage, "variant": "default"}
    pipeline = {"ptune": (True, False), "peft_trainer": (True, True), "peft_loop": (True, False)}
    out = []
    if stage == "sweep":
        for task in args.tasks:
            for method in args.methods:
                for i in range(3):
                    for side in args.sides:
                        lrs = grid(side, method)
                        bucketing, dropout = pipeline[side]
                        out.append({**base, "task": task, "method": method, "side": side, "lr": lrs[i], "seed": 0,
                                    "bucketing": bucketing, "dropout": dropout})
                for side in args.sides:
                    if (beyond := edge_lr(data, task, method, side)) is not None:
                        bucketing, dropout = pipeline[side]
                        out.append({**base, "task": task, "method": method, "side": side, "lr": beyond, "seed": 0,
                                    "bucketing": bucketing, "dropout": dropout})
    elif stage == "seeds":
        for task in args.tasks:
            for method in args.methods:
                for seed in args.seeds:
                    for side in args.sides:
                        lr = settled_lr(data, task, method, side)
                        if lr is None:
                            print(f"seeds: {task}/{method}/{side}: its sweep is not over: skipped", flush=True)
                            continue
                        bucketing, dropout = pipeline[side]
                        out.append({**base, "task": task, "method": method, "side": side, "lr": lr, "seed": seed,
                                    "bucketing": bucketing, "dropout": dropout})
    elif stage == "factorial":
        task, method = args.factorial
        for seed in args.seeds:
            for variant, (bucketing, dropout) in CELLS.items():
                for side in ("ptune", "peft_loop"):
                    lr = settled_lr(data, task, method, side)
                    if lr is None:
                        print(f"factorial: {task}/{method}/{side}: its sweep is not over: skipped", flush=True)
                        continue
                    out.append({**base, "variant": variant, "task": task, "method": method, "side": side, "lr": lr,
                                "seed": seed, "bucketing": bucketing, "dropout": dropout})
    return out


def check_prefix_on_task_models() -> dict:
    """PEFT prefix tuning on BertFor{Sequence,Token}Classification: does a forward pass run?"""
    import peft
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    path = backbone().path
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["a small check"], return_tensors="pt")
    found = {}
    for auto, task_type in ((AutoModelForSequenceClassification, "SEQ_CLS"), (AutoModelForTokenClassification, "TOKEN_CLS")):
        model = auto.from_pretrained(path, num_labels=2)
        name = type(model).__name__
        try:
            wrapped = peft.get_peft_model(model, peft.PrefixTuningConfig(task_type=task_type, num_virtual_tokens=4))
            with torch.no_grad():
                wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            found[name] = {"task_type": task_type, "works": True, "error": None}
        except (ValueError, TypeError, AttributeError, RuntimeError) as error:  # the message is the measurement
            found[name] = {"task_type": task_type, "works": False, "error": f"{type(error).__name__}: {error}"}
    return found


def check_loop_matches_train(budget: dict) -> dict:
    """ptune's benchmark loop and ptune.training.loop.train on the same 64 examples, 1 epoch, seed 0: the
    largest difference between their final trainable tensors."""
    from dataclasses import replace

    from ptune.config import TrainConfig
    from ptune.training.loop import train

    small = {**budget, "train_limit": 64, "dev_limit": 32, "epochs": 1}
    task = task_of("rotten_tomatoes", budget)
    task = replace(task, train=task.train[:64], dev=task.dev[:32])
    found = {}
    for method in METHODS:
        lr = LRS["ptune", method][1]
        reference = ptune_model(task, method, False)
        train(reference, task, TrainConfig(epochs=1, batch_size=BATCH, lr=lr, seed=0, patience=0, progress=False,
                                           checkpoint_every=0))
        _TASKS["_check"] = task
        spec = {"stage": "check", "task": "_check", "method": method, "side": "ptune", "lr": lr, "seed": 0,
                "variant": "default", "bucketing": True, "dropout": False}
        kept: list = []
        run_ptune(spec, small, 1, keep=kept)
        ours = kept[0].trainable_state()
        theirs = reference.trainable_state()
        found[method] = max(float((ours[k] - theirs[k]).abs().max()) for k in theirs)
    _TASKS.pop("_check", None)
    return found


def profile_steps(task_name: str, method: str, budget: dict) -> dict:
    """torch.profiler tables of PROFILE_STEPS training steps of ptune and of peft_loop (same batch plan)."""
    tables = {}
    for side in ("ptune", "peft_loop"):
        spec = {"stage": "profile", "task": task_name, "method": method, "side": side, "seed": 0, "variant": "default",
                "lr": grid(side, method)[1], "bucketing": True, "dropout": False}
        tables[side] = (run_ptune if side == "ptune" else run_peft)(spec, budget, 1, profile=PROFILE_STEPS)["table"]
    return {"task": task_name, "method": method, "steps": PROFILE_STEPS, "tables": tables}


# -- summary ----------------------------------------------------------------------------------------------------
def time_to(curve: list, target: float) -> float | None:
    """Training seconds at the first evaluation after training began at or above ``target`` (None: never
    reached; the untrained model's score at step 0 does not count)."""
    return next((seconds for step, seconds, score in curve if step > 0 and score >= target), None)


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _ratio(peft_s: float | None, ptune_s: float | None) -> float | None:
    """PEFT's time over ptune's for one seed: inf when only ptune reached the target, 0 when only PEFT did,
    None when neither did or ptune's untrained start already met it."""
    if ptune_s is None:
        return 0.0 if peft_s is not None else None
    if peft_s is None:
        return math.inf
    return peft_s / ptune_s if ptune_s > 0 else None


def summarise(data: dict) -> tuple[list[dict], list[dict]]:
    """Per (task, method, side) of the seeds stage: lr, seeds, dev mean/std, test, the target and the time
    to reach it; and per (task, method, PEFT side) the time ratio PEFT / ptune, paired by seed."""
    groups: dict[tuple, list[dict]] = {}
    for r in data["runs"]:
        if r["stage"] == "seeds":
            groups.setdefault((r["task"], r["method"], r["side"]), []).append(r)
    rows, ratios = [], []
    pairs = dict.fromkeys((t, m) for t, m, _ in groups)
    for task, method in pairs:
        sides = {s: sorted(groups[task, method, s], key=lambda r: r["seed"]) for s in SIDES if (task, method, s) in groups}
        target = TARGET_SHARE * min(statistics.mean(r["dev"] for r in runs) for runs in sides.values())
        times = {}
        for side, runs in sides.items():
            devs = [r["dev"] for r in runs]
            times[side] = {r["seed"]: time_to(r["curve"], target) for r in runs}
            reached = sorted(t for t in times[side].values() if t is not None)
            rows.append({
                "method": method, "task": task, "side": side, "lr": runs[0]["lr"], "seeds": [r["seed"] for r in runs],
                "dev_mean": statistics.mean(devs), "dev_std": _std(devs),
                "test_mean": statistics.mean(r["test"] for r in runs), "test_std": _std([r["test"] for r in runs]),
                "time_to_target_s": [times[side][r["seed"]] for r in runs],
                "time_to_target_s_median": statistics.median(reached) if len(reached) == len(runs) else None,
                "train_s_median": statistics.median(r["train_s"] for r in runs),
                "target": target, "command": runs[0]["command"], "machine": runs[0]["machine"],
                "date": runs[-1]["date"], "versions": runs[0]["versions"]})
        for side in ("peft_trainer", "peft_loop"):
            if side not in times or "ptune" not in times:
                continue
            per_seed = {seed: _ratio(times[side][seed], times["ptune"][seed]) for seed in times["ptune"]
                        if seed in times[side]}
            values = sorted(v for v in per_seed.values() if v is not None)
            finite = lambda v: v if v is None or math.isfinite(v) else None  # JSON has no infinity
            ratios.append({"task": task, "method": method, "baseline": side, "seeds": len(values),
                           "per_seed": {str(seed): finite(v) for seed, v in per_seed.items()},
                           "peft_never_reached": sum(v == math.inf for v in values),
                           "median": finite(statistics.median(values)) if values else None,
                           "min": finite(values[0]) if values else None, "max": finite(values[-1]) if values else None})
    return rows, ratios


# -- rendering --------------------------------------------------------------------------------------------------
def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def seconds(t: float) -> str:
    return f"{t:.1f} s" if t < 10 else f"{t:.0f} s"


def spread(values: list[float]) -> str:
    values = [100 * v for v in values]
    return f"{values[0]:.1f}" if len(values) == 1 else f"{statistics.mean(values):.1f} ± {_std(values):.1f} (n={len(values)})"


def render(data: dict) -> str:
    runs, budget = data["runs"], data.get("budget", BUDGET)
    first = next(iter(runs), None) or {"command": "python benchmarks/e2e.py", "machine": "?", "date": "?",
                                       "versions": {}}
    v = first["versions"]
    days = sorted({r["date"] for r in runs}) or ["?"]
    cpus = {}  # each machine's part of the runs (its load at each record is in e2e.json)
    for r in runs:
        cpu = r["machine"].split(", load")[0].removesuffix(", shared")
        cpus[cpu] = cpus.get(cpu, 0) + 1
    machines = " and ".join(f"{cpu} ({n} run{'s' if n != 1 else ''})" for cpu, n in cpus.items()) or first["machine"]
    lines = [
        "## End to end: ptune vs PEFT (prompt, P-tuning, deep/prefix) under one protocol (issue 16)", "",
        (f"Command: `{first['command']}` (resumable; each record in e2e.json has its own) · machines: {machines} · "
        f"date: {days[0] if len(days) == 1 else days[0] + ' to ' + days[-1]} · ptune {v.get('ptune')}, torch {v.get('torch')}, "
        f"transformers {v.get('transformers')}, peft {v.get('peft')} · backbone minilm (frozen), batch {BATCH}, "
        f"{budget['epochs']} epoch{'s' if budget['epochs'] != 1 else ''} over the first {budget['train_limit']:,} training examples; dev: the first "
        f"{budget['dev_limit']:,}, test: the first {budget['test_limit']:,}."), "",
        ("Sides: **ptune** (its training step: length-bucketed batches, the frozen backbone without dropout); "
        "**PEFT + Trainer** (PEFT on the bare model, Hugging Face Trainer with `train_sampling_strategy="
        "\"group_by_length\"`, backbone dropout on as the Trainer runs it); **PEFT loop** (the same PEFT model in a "
        "plain PyTorch loop fed ptune's batch plan, backbone dropout off). All three: the same head (dropout "
        f"{HEAD_DROPOUT} + linear on [CLS] or each word's first sub-token), AdamW with weight decay 0.01, 6% linear "
        f"warmup then linear decay, gradient clipping 1.0, prompt lengths {LENGTH['prompt']} (prompt), "
        f"{LENGTH['ptuning']} (P-tuning, LSTM encoder of hidden/2 per direction) and {LENGTH['deep']} (deep / prefix, "
        "no reparametrisation). Learning rates: each side's best on dev (seed 0) of a sweep over its documented range."),
    ]
    checks = data.get("checks", {})
    if "prefix_on_task_models" in checks:
        c = checks["prefix_on_task_models"]
        v = c["versions"]
        lines += ["", f"Measured (transformers {v['transformers']}, PEFT {v['peft']}, torch {v['torch']}): PEFT prefix "
                  "tuning on the task models "
                  + "; ".join(f"`{name}` ({x['task_type']}): " + ("works" if x["works"] else f"fails with `{x['error']}`")
                              for name, x in c["result"].items())
                  + ". On the bare model (`FEATURE_EXTRACTION`) it runs, so every PEFT side here is the bare model "
                    "with ptune's head."]
    if "loop_matches_train" in checks:
        c = checks["loop_matches_train"]
        lines += ["", "ptune's side is its training step composed as `ptune.training.loop.train` composes it, with "
                  "dev scored every few steps; against `train()` on the same 64 examples and seed the largest "
                  "difference of the final trainable tensors is "
                  + ", ".join(f"{m} {d:.1e}" for m, d in c["result"].items()) + "."]
    sweep_runs = [r for r in runs if r["stage"] == "sweep"]
    planned = {"sweep": sum(len(grid(side, method))
                            + (edge_lr(data, task, method, side) is not None)
                            + sum(r["lr"] not in grid(side, method)
                                  for r in swept(data, task, method, side))
                            for task in TASKS for method in METHODS for side in SIDES),
               "seeds": len(TASKS) * len(METHODS) * len(SIDES) * len(SEEDS),
               "factorial": len(CELLS) * 2 * len(SEEDS)}
    done = {stage: sum(r["stage"] == stage for r in runs) for stage in planned}
    if any(done[stage] < count for stage, count in planned.items()):
        lines += ["", "**Incomplete:** " + ", ".join(f"{stage} {done[stage]} of {count} runs"
                                                     for stage, count in planned.items())
                  + ". The script resumes from the records here; figures below cover what has run."]
    if sweep_runs:
        lines += ["", "### Learning-rate sweep (seed 0, dev at the end of training; **bold**: chosen)", "",
                  "| task | method | side | dev at each learning rate |", "| --- | --- | --- | --- |"]
        groups: dict[tuple, list[dict]] = {}
        for r in sweep_runs:
            groups.setdefault((r["task"], r["method"], r["side"]), []).append(r)
        for (task, method, side), rs in groups.items():
            best = best_lr(data, task, method, side)
            cells = [(f"**{r['lr']:g}: {pct(r['dev'])}**" if r["lr"] == best else f"{r['lr']:g}: {pct(r['dev'])}")
                     for r in sorted(rs, key=lambda r: r["lr"])]
            if (beyond := edge_lr(data, task, method, side)) is not None:
                cells.append(f"{beyond:g}: owed (the best is at the grid's edge)")
            lines.append(f"| {task} | {method} | {side} | {' · '.join(cells)} |")
    if data["summary"]:
        lines += ["", "### Three seeds at the chosen rate, and time to target", "",
                  (f"Target: {int(TARGET_SHARE * 100)}% of the lowest final 3-seed dev mean among the sides of a task "
                  "and method, fixed by that rule before any time is read off; a run's time is its training "
                  f"wall-clock (dev evaluation excluded) at the first of its {EVALS} evenly spaced dev evaluations "
                  "at or above the target. Sides ran alternated (A B C A B C) in one process."), "",
                  "| task | method | side | lr | dev | test | target | time to target, median (per seed) | training time |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        by_key = {(r["task"], r["method"], r["side"], r["seed"]): r for r in runs if r["stage"] == "seeds"}
        for row in data["summary"]:
            devs = [by_key[row["task"], row["method"], row["side"], s]["dev"] for s in row["seeds"]]
            tests = [by_key[row["task"], row["method"], row["side"], s]["test"] for s in row["seeds"]]
            each = ", ".join("not reached" if t is None else seconds(t) for t in row["time_to_target_s"])
            median = "not reached" if row["time_to_target_s_median"] is None else seconds(row["time_to_target_s_median"])
            lines.append(f"| {row['task']} | {row['method']} | {row['side']} | {row['lr']:g} | {spread(devs)} | "
                         f"{spread(tests)} | {pct(row['target'])} | {median} ({each}) | {seconds(row['train_s_median'])} |")
    if data["ratios"]:
        lines += ["", ("Time to target, PEFT over ptune (paired by seed; above 1: ptune reaches it sooner). Goal: 1.5x "
                  "sooner than the best PEFT baseline with dev no worse (a dev gap within the larger std is a tie):"), "",
                  "| task | method | baseline | ratio, median [min–max] (n) | dev, ptune vs baseline | goal (best baseline) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        summary = {(r["task"], r["method"], r["side"]): r for r in data["summary"]}
        best = {}  # (task, method) -> the PEFT side that reached the target soonest (lowest ratio; never: last)
        for r in data["ratios"]:
            rank = r["median"] if r["median"] is not None else math.inf
            if rank <= best.get((r["task"], r["method"]), (math.inf, None))[0]:
                best[r["task"], r["method"]] = (rank, r["baseline"])
        for r in data["ratios"]:
            ours, theirs = summary[r["task"], r["method"], "ptune"], summary[r["task"], r["method"], r["baseline"]]
            gap, band = ours["dev_mean"] - theirs["dev_mean"], max(ours["dev_std"], theirs["dev_std"])
            dev = "win" if gap > band else "loss" if gap < -band else "tie"
            bound = lambda v: "never" if v is None else f"{v:.2f}"  # None: PEFT never reached it
            ratio = ("PEFT never reached it" if r["median"] is None else
                     f"{r['median']:.2f}x [{bound(r['min'])}–{bound(r['max'])}] (n={r['seeds']})")
            met = r["median"] is None or r["median"] >= 1.5
            goal = ("met" if met and dev != "loss" else "missed") if best[r["task"], r["method"]][1] == r["baseline"] else "–"
            lines.append(f"| {r['task']} | {r['method']} | {r['baseline']} | {ratio} | {dev} | {goal} |")
        trap = [r["trainer_predict"] for r in runs if r.get("trainer_predict")]
        if trap:
            lines += ["", ("PEFT + Trainer is scored by ptune's metric code on its predictions in dataset order. "
                      "`Trainer.predict` with group_by_length reorders its rows: scored against its own `label_ids` "
                      f"it agrees with that within {max(abs(t['with_label_ids'] - t['dev']) for t in trap) * 100:.2f} points "
                      f"over {len(trap)} runs; scored against the dataset's order it would read "
                      f"{statistics.mean(t['with_dataset_order'] for t in trap) * 100:.1f} on average.")]
        lines += ["", "![dev score against training wall-clock](e2e_time_to_target.png)"]
    factorial = [r for r in runs if r["stage"] == "factorial"]
    if factorial:
        task, method = factorial[0]["task"], factorial[0]["method"]
        lines += ["", (f"### Pipeline factorial: {task}, {method}, {budget['epochs']} epoch{'s' if budget['epochs'] != 1 else ''}, "
                  "each side at its chosen rate"),
                  "", ("Bucketing: ptune's length-grouped batch plan, or random batches (ptune has no switch to turn it "
                  "off: the benchmark feeds its own random plan); PEFT + Trainer users get grouping with "
                  "`train_sampling_strategy=\"group_by_length\"`. Dropout: the frozen backbone's own (ptune: "
                  "`--backbone-dropout`; Trainer users turn it off with `hidden_dropout_prob=0, "
                  "attention_probs_dropout_prob=0` in `from_pretrained`). Training time is the median over seeds, "
                  "cells and sides alternated; speed-up is against the same side's random batches with dropout on."), "",
                  "| side | batches | backbone dropout | dev | training time | speed-up |", "| --- | --- | --- | --- | --- | --- |"]
        for side in ("ptune", "peft_loop"):
            cells = {v: [r for r in factorial if r["side"] == side and r["variant"] == v] for v in CELLS}
            base = cells["random+drop"]
            base_s = statistics.median(r["train_s"] for r in base) if base else None
            for variant, (bucketing, dropout) in CELLS.items():
                rs = cells[variant]
                if not rs:
                    continue
                median_s = statistics.median(r["train_s"] for r in rs)
                speedup = f"{base_s / median_s:.2f}x" if base_s else "–"
                lines.append(f"| {side} | {'bucketed' if bucketing else 'random'} | {'on' if dropout else 'off'} | "
                             f"{spread([r['dev'] for r in rs])} | {seconds(median_s)} | {speedup} |")
    if data.get("profile"):
        p = data["profile"]
        lines += ["", (f"### Where a step's time goes ({p['task']}, {p['method']}, {p['steps']} steps after "
                  f"{p['steps']} of warm-up, torch.profiler, operators by self CPU time)"), ""]
        for side, table in p["tables"].items():
            lines += [f"{side}:", "", "```", table.rstrip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def section() -> str:
    """The docs/RESULTS.md section, rendered from e2e.json."""
    return render(load(RESULTS))


def figure(data: dict, path: Path) -> None:
    """Dev score against training wall-clock, one panel per (task, method), each seed a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = [r for r in data["runs"] if r["stage"] == "seeds"]
    tasks = list(dict.fromkeys(r["task"] for r in seeds))
    methods = [m for m in METHODS if any(r["method"] == m for r in seeds)]
    if not seeds:
        return
    targets = {(r["task"], r["method"]): r["target"] for r in data["summary"]}
    colours = {"ptune": "tab:blue", "peft_trainer": "tab:red", "peft_loop": "tab:orange"}
    fig, axes = plt.subplots(len(tasks), len(methods), figsize=(4.2 * len(methods), 3.4 * len(tasks)), squeeze=False)
    for ax, (task, method) in zip(axes.flat, [(t, m) for t in tasks for m in methods]):
        for side in SIDES:
            for i, r in enumerate(x for x in seeds if (x["task"], x["method"], x["side"]) == (task, method, side)):
                xs, ys = [p[1] for p in r["curve"]], [100 * p[2] for p in r["curve"]]
                ax.plot(xs, ys, color=colours[side], alpha=0.8, lw=1.2, label=side if i == 0 else None)
        if (task, method) in targets:
            ax.axhline(100 * targets[task, method], color="grey", ls="--", lw=1, label="target")
        ax.set_title(f"{task} · {method}", fontsize=10)
        ax.set_xlabel("training wall-clock (s, evaluation excluded)")
        ax.set_ylabel("dev score (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def publish(data: dict, path: Path) -> None:
    """Docs section and figure for the real results file; a scratch file (--results) gets its figure beside it."""
    if path.resolve() == RESULTS.resolve():
        write_section(SECTION, render(data))
        figure(data, FIGURE)
    else:
        figure(data, path.with_suffix(".png"))


# -- main -------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--train-limit", type=int, default=BUDGET["train_limit"])
    parser.add_argument("--dev-limit", type=int, default=BUDGET["dev_limit"])
    parser.add_argument("--test-limit", type=int, default=BUDGET["test_limit"])
    parser.add_argument("--epochs", type=int, default=BUDGET["epochs"])
    parser.add_argument("--evals", type=int, default=EVALS, help="dev evaluations per seeds run (curve points)")
    parser.add_argument("--factorial", nargs=2, default=list(FACTORIAL), metavar=("TASK", "METHOD"))
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (the protocol: 2)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results file (another path: docs untouched)")
    parser.add_argument("--redo", nargs=3, action="append", default=[], metavar=("TASK", "METHOD", "SEED"),
                        help="run the seeds stage's records of TASK, METHOD and SEED again, every side (e.g. a triple "
                             "timed under uneven load); each new record replaces its old one, once")
    parser.add_argument("--report-only", action="store_true", help="rewrite the section and figure from the JSON")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    data = load(args.results)
    if args.report_only:
        data["summary"], data["ratios"] = summarise(data)
        publish(data, args.results)
        return
    warnings.filterwarnings("ignore", message=".*[Tt]oken type ids.*")
    import torch

    torch.set_num_threads(args.threads)
    budget = {"train_limit": args.train_limit, "dev_limit": args.dev_limit, "test_limit": args.test_limit,
              "epochs": args.epochs}
    if data["runs"] and data.get("budget") != budget:
        raise SystemExit(f"{args.results} holds runs made with {data.get('budget')}; give the same limits and epochs, "
                         "or another --results")
    data["budget"] = budget
    command = "python benchmarks/e2e.py " + " ".join(sys.argv[1:])
    done = {key(r) for r in data["runs"] if not owed_again(r, args.redo)}
    for stage in args.stages:
        if stage == "checks":
            if "prefix_on_task_models" not in data["checks"]:
                data["checks"]["prefix_on_task_models"] = {"result": check_prefix_on_task_models(), **provenance(command)}
            if "loop_matches_train" not in data["checks"]:
                data["checks"]["loop_matches_train"] = {"result": check_loop_matches_train(budget), **provenance(command)}
            store(args.results, data)
            print(json.dumps(data["checks"], indent=1), flush=True)
            continue
        if stage == "profile":
            if not data.get("profile"):
                data["profile"] = {**profile_steps(*args.factorial, budget), **provenance(command)}
                store(args.results, data)
            continue
        while todo := [spec for spec in specs(stage, data, args) if key(spec) not in done]:  # a finished grid can
            for spec in todo:                                                              # add its edge step
                record = {**run(spec, budget, args.evals if stage == "seeds" else 1), **provenance(command)}
                if owed_again(spec, args.redo):
                    record["redone"] = True  # a later --redo of the same triple keeps it
                data["runs"] = [r for r in data["runs"] if key(r) != key(record)] + [record]
                done.add(key(record))
                store(args.results, data)
                print(json.dumps({k: record[k] for k in ("stage", "task", "method", "side", "lr", "seed", "variant",
                                                         "dev", "train_s", "setup_s", "cpu_s", "steps", "test")}), flush=True)
    store(args.results, data)
    publish(data, args.results)



if __name__ == "__main__":
    main()
