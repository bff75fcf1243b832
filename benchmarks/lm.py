"""Language-model side: verbalizer classification on a causal LM (smollm2) for prompt vs ptuning
vs deep, plus the zero-shot manual template (the same verbalizer, nothing trained).

Small budget for 2 CPU cores: the first TRAIN_LIMIT rotten_tomatoes training examples, 1 epoch,
dev and test limited to the first EVAL_LIMIT examples of the fixed split. Writes key "verbalizer"
of benchmarks/results/lm.json and the "lm_verbalizer" section of docs/RESULTS.md.

    python benchmarks/lm.py --train-limit 400 --eval-limit 200   # about 30 minutes on 2 shared cores
    python benchmarks/lm.py --train-limit 200 --eval-limit 100 --methods deep
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, versions, write_section  # noqa: E402

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
}


def run(name: str, backbone, task, train_limit: int, eval_limit: int, batch_size: int) -> dict:
    from ptune.config import MethodConfig
    from ptune.infer.predict import evaluate
    from ptune.model.prompt_model import PromptModel
    from ptune.training.loop import TrainConfig, train

    options = dict(SETTINGS[name])
    lr = options.pop("lr", None)
    config = MethodConfig(head="verbalizer", verbalizer=VERBALIZER, **options)
    model = PromptModel.for_task(backbone, task, config)
    test = task.test[:eval_limit]
    started = time.perf_counter()
    record = {"name": name, **SETTINGS[name], "trainable_params": 0 if name == "zero-shot" else model.num_trainable()}
    if model.deep_prompt is not None:
        record["prefix_std"] = config.prefix_init_std(encoder_only=False)  # smollm2 is a decoder
    if name == "zero-shot":
        model.initialise(seed=0)
        record["dev"] = evaluate(model, task.dev[:eval_limit], "accuracy")["accuracy"]
    else:
        result = train(model, task, TrainConfig(epochs=1, lr=lr, batch_size=batch_size, train_limit=train_limit,
                                                eval_limit=eval_limit, progress=False, seed=0),
                       out_dir=Path(tempfile.mkdtemp(prefix=f"lm-{name}-")))
        record["dev"] = result.dev["accuracy"]
        record["train_seconds"] = round(result.seconds, 1)
    record["test"] = evaluate(model, test, "accuracy")["accuracy"]
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


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


def render(data: dict) -> str:
    v = data["verbalizer"]
    machine = v.get("machine", "not recorded with these runs; 2 CPU threads shared with other work")
    lines = [
        "## Verbalizer on a causal LM (issue: language-model side)",
        "",
        f"Command: {commands(v)} · machine: {machine} · date: {dates(v)} · "
        "backbone: smollm2 (SmolLM2-135M-Instruct, frozen, LM head tied).",
        f"rotten_tomatoes, first {v['train_limit']} training examples, {v['epochs']} epoch, batch {v['batch_size']}; "
        f"dev and test = the first {v['eval_limit']} examples of each split. Verbalizer `{VERBALIZER}` (a label's "
        "logit is the log-sum-exp of its words' first-token logits for the next token). Zero-shot: the same template "
        "and verbalizer with nothing trained. One seed; with 200 test examples one standard error is about 3 points. "
        "The budget is smaller than planned (400, not 1,000+, training examples) because the 2 cores were shared "
        "with two other jobs (load average about 7): times are upper bounds. Learning rates are the method "
        "defaults, untuned for smollm2 or the verbalizer.",
        "",
        "| method | template | lr | trainable params | dev acc | test acc | time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in v["runs"]:
        std = f" (prefix std {r['prefix_std']:g})" if "prefix_std" in r else ""
        lines.append(f"| {r['name']}{std} | `{r['template']}` | {r.get('lr', '–')} | {r['trainable_params']:,} | "
                     f"{100 * r['dev']:.1f} | {100 * r['test']:.1f} | {r['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def section() -> str:
    """The docs/RESULTS.md section, rendered from lm.json."""
    return render(json.loads(RESULTS.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(SETTINGS))
    parser.add_argument("--train-limit", type=int, default=1000)
    parser.add_argument("--eval-limit", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--report-only", action="store_true", help="rewrite docs/RESULTS.md from lm.json")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    import torch

    from ptune.model.backbones import load_backbone
    from ptune.data import get_task

    torch.set_num_threads(2)
    backbone, task = load_backbone("smollm2"), get_task("rotten_tomatoes")
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    budget = {"train_limit": args.train_limit, "eval_limit": args.eval_limit, "batch_size": args.batch_size}
    kept = data.get("verbalizer", {})
    if any(kept.get(key) != value for key, value in budget.items()):
        kept = {}  # another budget: the earlier runs are not comparable
    for r in kept.get("runs", []):  # runs from before commands were recorded per run
        r.setdefault("command", kept.get("command", FIRST_COMMAND))
        r.setdefault("date", kept["date"])
    command = " ".join(["python benchmarks/lm.py", *map(shlex.quote, sys.argv[1:])])
    for name in args.methods:
        record = {**run(name, backbone, task, args.train_limit, args.eval_limit, args.batch_size),
                  "command": command, "date": date.today().isoformat()}
        print(json.dumps(record), flush=True)
        runs = [r for r in kept.get("runs", []) if r["name"] != name] + [record]  # a rerun replaces its method
        runs.sort(key=lambda r: list(SETTINGS).index(r["name"]) if r["name"] in SETTINGS else len(SETTINGS))
        kept = data["verbalizer"] = {
            **budget, "date": date.today().isoformat(), "backbone": "smollm2", "task": "rotten_tomatoes", "epochs": 1,
            "verbalizer": VERBALIZER, "runs": runs, "command": command, "machine": machine(2),
            "versions": versions("torch", "transformers")}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")  # after every run: a stopped benchmark keeps them
        write_section(SECTION, render(data))


if __name__ == "__main__":
    main()
