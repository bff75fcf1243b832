"""One frozen model, many tasks: multi-task vs single-task, prompt ensembles, prompt depth, and
what a prompt learned, on real data with the embedded MiniLM encoder.

Budgets are cut to fit 2 CPU cores (first --train-limit examples of each training set, few
epochs); each section says what it used. Writes benchmarks/results/many_tasks.json, the PNGs in
docs/, and the "many tasks" section of docs/RESULTS.md.

    python benchmarks/many_tasks.py [--train-limit 3000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, write_section  # noqa: E402

from ptune.model.backbones import load_backbone  # noqa: E402
from ptune.config import MethodConfig  # noqa: E402
from ptune.data import Task, get_task  # noqa: E402
from ptune.infer.predict import evaluate  # noqa: E402
from ptune.analysis.interpret import nearest_tokens, plot_neighbours  # noqa: E402
from ptune.tasks.metrics import MAIN_KEY, score  # noqa: E402
from ptune.infer.bank import ensemble_predict  # noqa: E402
from ptune.model.prompt_model import PromptModel  # noqa: E402
from ptune.training.multitask import shared_prompt_bank, train_multitask  # noqa: E402
from ptune.training.loop import TrainConfig, train  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "many_tasks.json"
SECTION = "many_tasks"
DOCS = ROOT / "docs"


def limited(name: str, limit: int) -> Task:
    task = get_task(name)
    return Task(task.name, task.kind, task.labels, task.train[:limit], task.dev, task.test, task.metric)


def test_score(model, task) -> float:
    return evaluate(model, task.test, task.metric)[MAIN_KEY[task.metric]]


def multitask_vs_single(backbone, tasks, config) -> dict:
    out = {}
    for task in tasks:
        model = PromptModel.for_task(backbone, task, MethodConfig(method="deep"))
        train(model, task, config)
        out[task.name] = {"single": test_score(model, task)}
    bank = shared_prompt_bank(backbone, tasks, MethodConfig(method="deep"))
    train_multitask(bank, tasks, config)
    for task in tasks:
        out[task.name]["multitask"] = test_score(bank.models[task.name], task)
    return out


def ensemble(backbone, task, config, members: int) -> dict:
    models = []
    for seed in range(members):
        model = PromptModel.for_task(backbone, task, MethodConfig(method="deep"))
        train(model, task, TrainConfig(**{**config.__dict__, "seed": seed}))
        models.append(model)
    singles = [test_score(m, task) for m in models]
    gold = models[0].kind.gold(task.test)
    key = MAIN_KEY[task.metric]
    calls = []
    hook = backbone.model.register_forward_hook(lambda *_: calls.append(1))
    mean = score(task.metric, gold, ensemble_predict(models, task.test, combine="mean", batch_size=64 * members))[key]
    hook.remove()
    vote = score(task.metric, gold, ensemble_predict(models, task.test, combine="vote", batch_size=64 * members))[key]
    return {"members": singles, "single_mean": statistics.mean(singles), "single_best": max(singles),
            "ensemble_mean_prob": mean, "ensemble_vote": vote, "backbone_passes": len(calls),
            "test_examples": len(task.test)}


def depth(backbone, task, config, layers: int) -> dict:
    out = {"ascending": {}, "descending": {}}
    for k in range(1, layers + 1):
        for order, spec in (("ascending", f"bottom:{k}"), ("descending", f"top:{k}")):
            if k == layers and order == "descending":
                out[order][k] = out["ascending"][k]  # all layers: the same run
                continue
            model = PromptModel.for_task(backbone, task, MethodConfig(method="deep", layers=spec))
            train(model, task, config)
            out[order][k] = test_score(model, task)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for order, marker in (("ascending", "o"), ("descending", "s")):
        ks = sorted(out[order])
        ax.plot(ks, [100 * out[order][k] for k in ks], marker=marker, label=f"{order} ({'bottom' if order == 'ascending' else 'top'} k layers)")
    ax.set(xlabel="number of prompted layers k", ylabel=f"{task.name} test {MAIN_KEY[task.metric]} (%)",
           title="deep prompt depth (minilm)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(DOCS / "depth.png", dpi=100)
    plt.close(fig)
    return out


def neighbours(backbone, task, config) -> dict:
    model = PromptModel.for_task(backbone, task, MethodConfig(method="prompt", init="labels", length=10))
    train(model, task, config)
    found = nearest_tokens(model, 5)
    plot_neighbours(found, DOCS / "neighbours_rotten_tomatoes.png", title="rotten_tomatoes soft prompt (labels init)")
    return {"test": test_score(model, task), "tokens": found.tokens,
            "similarities": [[round(s, 3) for s in row] for row in found.similarities]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-limit", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--depth-epochs", type=int, default=1)
    parser.add_argument("--only", nargs="+", default=["multitask", "ensemble", "depth", "neighbours"])
    parser.add_argument("--report-only", action="store_true", help="rewrite docs/RESULTS.md from many_tasks.json")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    torch.set_num_threads(2)
    backbone = load_backbone("minilm")
    config = TrainConfig(epochs=args.epochs, patience=0, progress=False)
    rt, ner = limited("rotten_tomatoes", args.train_limit), limited("conll2003", args.train_limit)
    record = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    record.update({"command": " ".join(["python benchmarks/many_tasks.py", *map(shlex.quote, sys.argv[1:])]),
                   "machine": f"{platform.machine()}, 2 CPU threads", "date": date.today().isoformat(),
                   "train_limit": args.train_limit, "epochs": args.epochs, "depth_epochs": args.depth_epochs})
    steps = {"multitask": lambda: multitask_vs_single(backbone, [ner, rt], config),
             "ensemble": lambda: ensemble(backbone, rt, config, args.members),
             "depth": lambda: depth(backbone, rt, TrainConfig(epochs=args.depth_epochs, patience=0, progress=False),
                                    backbone.num_layers),
             "neighbours": lambda: neighbours(backbone, rt, config)}
    for name in args.only:
        started = time.perf_counter()
        record[name] = steps[name]()
        record[name + "_seconds"] = round(time.perf_counter() - started, 1)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(record, indent=2) + "\n")
        print(name, json.dumps(record[name]), flush=True)
    write_section(SECTION, render(record))


def render(r: dict) -> str:
    pct = lambda x: f"{100 * x:.2f}"  # noqa: E731
    lines = ["## One frozen model, many tasks (issue: multi-task, ensembles, depth, interpretability)", "",
             f"Command: `{r['command']}` · machine: {r['machine']} · date: {r['date']} · backbone: minilm (frozen) · "
             f"deep prompts (length 16) unless said · first {r['train_limit']} training examples of each task, "
             f"{r['epochs']} epochs, full dev/test sets.", ""]
    if "multitask" in r:
        lines += ["### Multi-task vs single-task (test)", "", "| task | single-task deep | multi-task deep (shared prompt, own head) |",
                  "| --- | --- | --- |"]
        lines += [f"| {t} | {pct(v['single'])} | {pct(v['multitask'])} |" for t, v in r["multitask"].items()]
        lines.append("")
    if "ensemble" in r:
        e = r["ensemble"]
        lines += [f"### Prompt ensemble (rotten_tomatoes test, {len(e['members'])} deep prompts, seeds 0-{len(e['members']) - 1})", "",
                  "| single mean | single best | ensemble, mean probability | ensemble, majority vote |",
                  "| --- | --- | --- | --- |",
                  f"| {pct(e['single_mean'])} | {pct(e['single_best'])} | {pct(e['ensemble_mean_prob'])} | {pct(e['ensemble_vote'])} |", "",
                  f"Members: {', '.join(pct(m) for m in e['members'])}. The ensemble ran {e['backbone_passes']} backbone passes "
                  f"for {e['test_examples']} test examples x {len(e['members'])} prompts (examples repeated, prompts varied in one batch).", ""]
    if "depth" in r:
        d = r["depth"]
        d = {order: {str(k): v for k, v in scores.items()} for order, scores in d.items()}  # JSON keys are strings
        ks = sorted(d["ascending"], key=int)
        lines += [f"### Prompt depth: same number of prompted layers, ascending vs descending (rotten_tomatoes test, "
                  f"{r.get('depth_epochs', 1)} epoch per run)", "",
                  "![depth](depth.png)", "", "| k | " + " | ".join(ks) + " |", "| --- |" + " --- |" * len(ks),
                  "| ascending (bottom k) | " + " | ".join(pct(d["ascending"][k]) for k in ks) + " |",
                  "| descending (top k) | " + " | ".join(pct(d["descending"][k]) for k in ks) + " |", ""]
    if "neighbours" in r:
        n = r["neighbours"]
        lines += [f"### What a trained rotten_tomatoes soft prompt is near (prompt method, length 10, labels init; test {pct(n['test'])})", "",
                  "![neighbours](neighbours_rotten_tomatoes.png)", "", "| vector | nearest tokens (cosine) |", "| --- | --- |"]
        lines += [f"| {i} | " + ", ".join(f"{t} ({s})" for t, s in zip(toks, sims)) + " |"
                  for i, (toks, sims) in enumerate(zip(n["tokens"], n["similarities"]))]
    return "\n".join(lines)


def section() -> str:
    """The docs/RESULTS.md section, rendered from many_tasks.json."""
    return render(json.loads(RESULTS.read_text()))


if __name__ == "__main__":
    main()
