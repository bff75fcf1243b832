"""Language-model side: verbalizer classification on a causal LM (smollm2) for prompt vs ptuning
vs deep, plus the zero-shot manual template (the same verbalizer, nothing trained) and deep prompts
with a linear head on the last token (deep-linear) beside them.

The first TRAIN_LIMIT rotten_tomatoes training examples, --epochs epochs, dev and test limited to the
first EVAL_LIMIT examples of the fixed split, one run per seed (mean and std over seeds). Writes key
"verbalizer" of benchmarks/results/lm.json and the "lm_verbalizer" section of docs/RESULTS.md.

    python benchmarks/lm.py --train-limit 400 --eval-limit 200   # about 30 minutes on 2 shared cores
    python benchmarks/lm.py --train-limit 200 --eval-limit 100 --methods deep
    python benchmarks/lm.py --train-limit 2000 --eval-limit 500 --epochs 3 --seeds 0 1 2 --threads 1 \
        --methods prompt ptuning deep deep-linear --sweep benchmarks/results/sweeps/smollm2_verbalizer_deep/best.json

Runs go seed by seed (every row of seed 0, then seed 1, ...), each recorded as it ends; ``--resume`` skips
the runs the record already holds at this budget, so a long confirmation builds up over several sessions.
``--sweep FILE`` adds the row ``deep-sweep``: a `ptune sweep` winner's searched settings (its best.json) at
this budget. A budget other than the recorded one starts lm.json's verbalizer record afresh.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, versions, write_atomic, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "lm.json"
VERBALIZER = "negative=bad,terrible;positive=good,great"
# Templates and learning rates per method; prompt methods need high rates (config.DEFAULT_LR).
SETTINGS = {
    "zero-shot": {"method": "finetune", "template": "{text} It was {label}"},
    "prompt": {"method": "prompt", "template": "[P]*10 {text} It was {label}", "init": "labels", "lr": 3e-2},
    "ptuning": {"method": "ptuning", "template": "[P]*3 {text} [P] It was [P]*2 {label}", "encoder": "lstm", "lr": 1e-2},
    "deep": {"method": "deep", "template": "{text} It was {label}", "length": 16, "lr": 3e-2},
    # The encoders' prefix init (the default there, and on every backbone before 2026-12-02) set against it.
    "deep-std1": {"method": "deep", "template": "{text} It was {label}", "length": 16, "lr": 3e-2, "prefix_std": 1.0},
    # Deep prompts with a linear head on the last token instead of the verbalizer: what the LM head adds.
    "deep-linear": {"method": "deep", "head": "linear", "length": 16, "lr": 3e-2},
}
SWEPT = ("lr", "length", "layers", "reparam")  # the settings of a ptune sweep winner a deep-sweep row takes


def run(name: str, setting: dict, backbone, task, budget: dict, seed: int) -> dict:
    from ptune.config import MethodConfig
    from ptune.infer.predict import evaluate
    from ptune.model.prompt_model import PromptModel
    from ptune.training.loop import TrainConfig, train

    options = dict(setting)
    lr, head = options.pop("lr", None), options.pop("head", "verbalizer")
    options.pop("swept_from", None)
    config = MethodConfig(head=head, verbalizer=VERBALIZER if head == "verbalizer" else None, **options)
    model = PromptModel.for_task(backbone, task, config)
    test = task.test[:budget["eval_limit"]]
    started = time.perf_counter()
    record = {"name": name, **setting, "head": head, "seed": seed,
              "trainable_params": 0 if name == "zero-shot" else model.num_trainable()}
    if model.deep_prompt is not None:
        record["prefix_std"] = config.prefix_init_std(encoder_only=False)  # smollm2 is a decoder
    if name == "zero-shot":
        model.initialise(seed=seed)
        record["dev"] = evaluate(model, task.dev[:budget["eval_limit"]], "accuracy")["accuracy"]
    else:
        result = train(model, task, TrainConfig(epochs=budget["epochs"], lr=lr, batch_size=budget["batch_size"],
                                                train_limit=budget["train_limit"], eval_limit=budget["eval_limit"],
                                                progress=False, seed=seed),
                       out_dir=Path(tempfile.mkdtemp(prefix=f"lm-{name}-")))
        record["dev"] = result.dev["accuracy"]
        record["train_seconds"] = round(result.seconds, 1)
    record["test"] = evaluate(model, test, "accuracy")["accuracy"]
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def same_budget(v: dict, budget: dict) -> bool:
    return all(v.get(key, 1 if key == "epochs" else None) == value for key, value in budget.items())


def swept(path: Path) -> dict:
    """A deep-sweep setting from a `ptune sweep` best.json: its searched settings, the verbalizer template."""
    best = json.loads(path.read_text())
    if best.get("method") != "deep" or best.get("head") != "verbalizer":
        raise SystemExit(f"{path}: not a deep verbalizer sweep (method {best.get('method')}, head {best.get('head')})")
    return {"method": "deep", "template": best.get("template") or SETTINGS["deep"]["template"],
            **{key: best[key] for key in SWEPT if key in best}, "swept_from": str(path.relative_to(ROOT))}


SECTION = "lm_verbalizer"
# The 2026-11-22 runs predate recording the command and machine in lm.json.
FIRST_COMMAND = "python benchmarks/lm.py --train-limit 400 --eval-limit 200"


def commands(v: dict) -> str:
    """The commands that made the runs shown (a rerun of some methods replaces only theirs)."""
    found = dict.fromkeys(r.get("command", v.get("command", FIRST_COMMAND)) for r in v["runs"])
    return ", then ".join(f"`{command}`" for command in found)


def dates(v: dict) -> str:
    found = sorted({r.get("date", v["date"]) for r in v["runs"]})
    return found[0] if len(found) == 1 else f"{found[0]} to {found[-1]}"


def spread(values: list[float]) -> str:
    """Percent: the mean, with ± the standard deviation and n over several seeds."""
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f} (n={len(values)})"


def render(data: dict) -> str:
    """The section: the runs at the current budget, then those of each earlier budget (kept, not rerun)."""
    earlier = data.get("verbalizer_earlier", [])
    parts = [table(data["verbalizer"], "## Verbalizer on a causal LM (issue: language-model side)")]
    parts += [table(v, f"### At an earlier budget: {v['train_limit']} training examples, {v['epochs']} epoch"
                       f"{'s' if v['epochs'] > 1 else ''}, {v['eval_limit']} evaluation examples") for v in earlier]
    return "\n\n".join(parts)


def table(v: dict, title: str) -> str:
    """One budget's runs: how they were made, then a row per method (mean and std over its seeds)."""
    machine = v.get("machine", "not recorded with these runs; 2 CPU threads shared with other work")
    by_name: dict[str, list[dict]] = {}
    for r in v["runs"]:
        by_name.setdefault(r["name"], []).append(r)
    seeds = sorted({r.get("seed", 0) for r in v["runs"]})
    epochs = v["epochs"]
    lines = [
        title,
        "",
        f"Command: {commands(v)} · machine: {machine} · date: {dates(v)} · "
        "backbone: smollm2 (SmolLM2-135M-Instruct, frozen, LM head tied).",
        f"rotten_tomatoes, first {v['train_limit']} training examples, {epochs} epoch{'s' if epochs > 1 else ''}, "
        f"batch {v['batch_size']}; dev and test = the first {v['eval_limit']} examples of each split. Verbalizer "
        f"`{VERBALIZER}` (a label's logit is the log-sum-exp of its words' first-token logits for the next token); "
        "deep-linear: a linear head on the last token instead. Zero-shot: the same template and verbalizer with "
        f"nothing trained. Seeds: {', '.join(map(str, seeds))} (a row with one figure is one run; with "
        f"{v['eval_limit']} test examples one standard error is at most {50 / v['eval_limit'] ** 0.5:.1f} points). "
        "Times are upper bounds: the cores were shared with other jobs. Learning rates are the method defaults "
        "unless a row came from a sweep (deep-sweep).",
        "",
        "| method | head | template | lr | trainable params | dev acc | test acc | time per run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in by_name.items():
        r = runs[0]
        std = f" (prefix std {r['prefix_std']:g})" if "prefix_std" in r else ""
        template = f"`{r['template']}`" if r.get("template") else "–"
        lines.append(f"| {name}{std} | {r.get('head', 'verbalizer')} | {template} | {r.get('lr', '–')} | "
                     f"{r['trainable_params']:,} | {spread([x['dev'] for x in runs])} | "
                     f"{spread([x['test'] for x in runs])} | {statistics.mean(x['seconds'] for x in runs) / 60:.1f} min |")
    return "\n".join(lines)


def section() -> str:
    """The docs/RESULTS.md section, rendered from lm.json."""
    return render(json.loads(RESULTS.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--train-limit", type=int, default=1000)
    parser.add_argument("--eval-limit", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one run per seed (default: 0)")
    parser.add_argument("--sweep", type=Path, metavar="BEST_JSON", help="add the row deep-sweep: this sweep winner")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 where another job shares 2 cores)")
    parser.add_argument("--resume", action="store_true",
                        help="skip the (method, seed) runs this budget's record already holds (a stopped run goes on)")
    parser.add_argument("--report-only", action="store_true", help="rewrite docs/RESULTS.md from lm.json")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    settings = {name: SETTINGS[name] for name in args.methods}
    if args.sweep:
        settings["deep-sweep"] = swept(args.sweep.resolve())
    import torch

    from ptune.model.backbones import load_backbone
    from ptune.data import get_task

    torch.set_num_threads(args.threads)
    backbone, task = load_backbone("smollm2"), get_task("rotten_tomatoes")
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    budget = {"train_limit": args.train_limit, "eval_limit": args.eval_limit, "batch_size": args.batch_size,
              "epochs": args.epochs}
    kept = data.get("verbalizer", {})
    for r in kept.get("runs", []):  # runs from before commands, dates and seeds were recorded per run
        r.setdefault("command", kept.get("command", FIRST_COMMAND))
        r.setdefault("date", kept["date"])
        r.setdefault("seed", 0)
    if kept and not same_budget(kept, budget):
        # another budget: its runs are not comparable with these, so they are kept apart (and still shown)
        earlier = data.get("verbalizer_earlier", [])
        data["verbalizer_earlier"] = [kept, *(v for v in earlier if not same_budget(v, budget))]
        kept = next((v for v in earlier if same_budget(v, budget)), {})  # this budget's own runs, resumed
    command = " ".join(["python benchmarks/lm.py", *map(shlex.quote, sys.argv[1:])])
    order = [*SETTINGS, "deep-sweep"]
    held = {(r["name"], r["seed"]) for r in kept.get("runs", [])} if args.resume else set()
    for seed in args.seeds:  # every row of a seed before the next seed: a stopped run leaves whole comparisons
        for name, setting in settings.items():
            if (name, seed) in held:
                print(f"{name} seed {seed}: held at this budget: skipped (--resume)", flush=True)
                continue
            record = {**run(name, setting, backbone, task, budget, seed), "command": command,
                      "date": date.today().isoformat()}
            print(json.dumps(record), flush=True)
            runs = [r for r in kept.get("runs", []) if (r["name"], r["seed"]) != (name, seed)] + [record]
            runs.sort(key=lambda r: (order.index(r["name"]) if r["name"] in order else len(order), r["seed"]))
            kept = data["verbalizer"] = {
                **budget, "date": date.today().isoformat(), "backbone": "smollm2", "task": "rotten_tomatoes",
                "verbalizer": VERBALIZER, "runs": runs, "command": command, "machine": machine(args.threads),
                "versions": versions("torch", "transformers")}
            write_atomic(RESULTS, json.dumps(data, indent=2) + "\n")  # after every run: a stopped benchmark keeps them
            write_section(SECTION, render(data))


if __name__ == "__main__":
    main()
