"""The few-shot setting (P-tuning paper, FewGLUE/FewNLU protocol) on rotten_tomatoes at K = 32: a manual
PET-style pattern read zero-shot vs Prompt Tuning vs P-tuning, each trained method selected by cross-validation on
its own K drawn examples (``ptune.training.fewshot.select``, what ``ptune train --shots`` runs), never on dev.

The manual pattern needs an LM head: SmolLM2-135M (causal; the label word is the next token), nothing trained,
so it does not depend on the seed. minilm has no MLM head, so Prompt Tuning and P-tuning train a linear head on
[CLS] over the frozen minilm (what PET trains besides the pattern, the whole LM, is not run here: see the
section's text). Every method is scored on the same first --test-limit examples of the fixed test split.
Writes benchmarks/results/fewshot.json (after every run) and the "fewshot" section of docs/RESULTS.md.

    python benchmarks/fewshot.py --seeds 1 2 3 --cv-folds 2 --epochs 20 --test-limit 400
    python benchmarks/fewshot.py --report-only [--note "prose about the recorded runs"]
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, versions, write_section  # noqa: E402

SECTION = "fewshot"
RESULTS = ROOT / "benchmarks" / "results" / "fewshot.json"
VERBALIZER = "negative=bad;positive=good"
MANUAL = "{text} It was {label}"  # PET's pattern for sentiment (Schick & Schütze: "It was ___.")
# What each trained method may choose between; the cross-validation on the K examples picks.
TRAINED = {
    "prompt": {"backbone": "minilm", "method": {"method": "prompt", "init": "vocab"},
               "templates": ["[P]*20 {text}"], "lrs": [3e-2]},
    "ptuning": {"backbone": "minilm", "method": {"method": "ptuning", "encoder": "lstm"},
                "templates": ["[P]*2 {text} [P] It was [P]*2", "[P]*3 {text} [P]*3"], "lrs": [1e-2]},
}
NAMES = {"manual": "manual pattern, zero-shot (smollm2, verbalizer)", "prompt": "Prompt Tuning (minilm, linear head)",
         "ptuning": "P-tuning (minilm, LSTM encoder, linear head)"}


def manual(test: list, test_limit: int) -> dict:
    """The manual pattern with the verbalizer on smollm2, nothing trained: accuracy on ``test``."""
    from ptune.config import MethodConfig
    from ptune.data import Task
    from ptune.infer.predict import evaluate
    from ptune.model.backbones import load_backbone
    from ptune.model.prompt_model import PromptModel

    started = time.perf_counter()
    task = Task("rotten_tomatoes", "classification", ["negative", "positive"], test[:1], [], test, "accuracy")
    model = PromptModel.for_task(load_backbone("smollm2"), task,
                                 MethodConfig(method="finetune", template=MANUAL, head="verbalizer",
                                              verbalizer=VERBALIZER))
    model.initialise(seed=0)  # nothing to initialise but the flag: no prompt, the LM head reads the label word
    test_acc = evaluate(model, test, "accuracy")["accuracy"]
    return {"name": "manual", "backbone": "smollm2", "template": MANUAL, "verbalizer": VERBALIZER,
            "trainable_params": 0, "test": test_acc, "seconds": round(time.perf_counter() - started, 1)}


def trained(name: str, backbone, task, seed: int, args) -> dict:
    """One seed of a trained method: draw K, cross-validate the candidates, retrain the chosen one on all K."""
    from ptune.config import MethodConfig, TrainConfig
    from ptune.data.shots import Shots
    from ptune.infer.predict import evaluate
    from ptune.model.prompt_model import PromptModel
    from ptune.training.fewshot import select
    from ptune.training.loop import train

    spec = TRAINED[name]
    started = time.perf_counter()
    config = TrainConfig(epochs=args.epochs, batch_size=32, patience=0, seed=seed, progress=False)
    small, method, config, record = select(backbone, task, MethodConfig(**spec["method"]), config,
                                           Shots(args.shots, args.shots_per, args.cv_folds),
                                           templates=spec["templates"], lrs=spec["lrs"])
    model = PromptModel.for_task(backbone, small, method)
    train(model, small, config)
    return {"name": name, "seed": seed, "backbone": spec["backbone"], "trainable_params": model.num_trainable(),
            "chosen": record["chosen"], "candidates": record["candidates"], "drawn": record["drawn"],
            "test": evaluate(model, small.test, "accuracy")["accuracy"],
            "seconds": round(time.perf_counter() - started, 1)}


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = math.fsum(values) / len(values)
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))


def section() -> str:
    """The docs/RESULTS.md section, rendered from fewshot.json alone."""
    data = json.loads(RESULTS.read_text())
    v = data["versions"]
    lines = [
        "## Few-shot setting: K = 32 on rotten_tomatoes (issue 17)",
        "",
        f"Command: `{data['command']}` · machine: {data['machine']} · date: {data['date']} · ptune {v['ptune']}, "
        f"torch {v['torch']}, transformers {v['transformers']}.",
        f"Each seed draws its own K = {data['shots']} training examples ({data['shots_per']}) from the fixed train "
        f"split; the trained methods choose their template (and learning rate) by {data['cv_folds']}-fold "
        f"cross-validation on those {data['shots']} examples and are retrained on all of them for "
        f"{data['epochs']} epochs (no early stopping; the dev split is never read). Test: the first "
        f"{data['test_limit']} examples of the fixed test split, the same for every method. The manual pattern "
        f"`{MANUAL}` with verbalizer `{VERBALIZER}` is read zero-shot by smollm2 (no training, so one value for "
        "every seed); minilm has no MLM head, so Prompt Tuning and P-tuning train a linear head on [CLS] of the "
        "frozen minilm: the two backbones differ, and the comparison is of what each setting reaches at K = 32, "
        "not of the templates alone. PET proper (fine-tuning the whole LM through the pattern, then distilling) "
        "was not run: its CPU cost on smollm2 did not fit the budget.",
        "",
        "| method | trainable params | seeds | test accuracy, mean ± std | per seed | chosen by CV |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("manual", "prompt", "ptuning"):
        runs = [r for r in data["runs"] if r["name"] == name]
        if not runs:
            lines.append(f"| {NAMES[name]} | – | 0 | not run | – | – |")
            continue
        mean, std = mean_std([r["test"] for r in runs])
        seeds = "–" if name == "manual" else ", ".join(str(r["seed"]) for r in runs)
        per_seed = ", ".join(f"{100 * r['test']:.1f}" for r in runs)
        chosen = "–" if name == "manual" else "; ".join(
            f"`{r['chosen']['template']}` (CV {100 * r['chosen']['cv_mean']:.1f})" for r in runs)
        spread = f" ± {100 * std:.1f}" if len(runs) > 1 else ""
        lines.append(f"| {NAMES[name]} | {runs[0]['trainable_params']:,} | {seeds} | {100 * mean:.1f}{spread} | "
                     f"{per_seed} | {chosen} |")
    cv = [(r["seed"], c) for r in data["runs"] if r["name"] == "ptuning" for c in r["candidates"]]
    if cv:
        lines += ["", "P-tuning's cross-validated accuracy per candidate template (mean over folds):", ""]
        lines += [f"- seed {seed}: `{c['template']}` {100 * c['mean']:.1f} (folds "
                  + ", ".join(f"{100 * s:.1f}" for s in c["fold_scores"]) + ")" for seed, c in cv]
    lines += ["", data["note"]] if data.get("note") else []
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["manual", *TRAINED], choices=["manual", *TRAINED])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--shots", type=int, default=32)
    parser.add_argument("--shots-per", default="total", choices=("total", "class"))
    parser.add_argument("--cv-folds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--test-limit", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--note", help="a sentence of prose for the section (what was cut, and why)")
    parser.add_argument("--report-only", action="store_true", help="rewrite docs/RESULTS.md from fewshot.json")
    args = parser.parse_args()
    if args.report_only:
        if args.note is not None:  # prose about the recorded runs (what was cut, and why)
            data = json.loads(RESULTS.read_text())
            RESULTS.write_text(json.dumps({**data, "note": args.note}, indent=2) + "\n")
        write_section(SECTION, section())
        return
    import dataclasses

    import torch

    from ptune.data import get_task
    from ptune.model.backbones import load_backbone

    torch.set_num_threads(args.threads)
    task = get_task("rotten_tomatoes")
    task = dataclasses.replace(task, test=task.test[: args.test_limit])
    data = {"command": " ".join(["python benchmarks/fewshot.py", *map(shlex.quote, sys.argv[1:])]),
            "machine": machine(args.threads), "date": date.today().isoformat(),
            "versions": versions("ptune", "torch", "transformers"), "task": "rotten_tomatoes",
            "shots": args.shots, "shots_per": args.shots_per, "cv_folds": args.cv_folds, "epochs": args.epochs,
            "test_limit": args.test_limit, "seeds": args.seeds, "note": args.note, "runs": []}

    def save(run: dict) -> None:
        data["runs"].append(run)
        print(json.dumps({k: run[k] for k in ("name", "test", "seconds")} | {"seed": run.get("seed")}), flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")
        write_section(SECTION, section())

    minilm = None
    for name in args.methods:
        if name == "manual":
            save(manual(task.test, args.test_limit))
            continue
        minilm = minilm or load_backbone(TRAINED[name]["backbone"])
        for seed in args.seeds:
            save(trained(name, minilm, task, seed, args))


if __name__ == "__main__":
    main()
