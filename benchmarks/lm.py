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


def render(data: dict) -> str:
    v = data["verbalizer"]
    machine = v.get("machine", "not recorded with these runs; 2 CPU threads shared with other work")
    lines = [
        "## Verbalizer on a causal LM (issue: language-model side)",
        "",
        f"Command: `{v.get('command', FIRST_COMMAND)}` · machine: {machine} · date: {v['date']} · "
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
        lines.append(f"| {r['name']} | `{r['template']}` | {r.get('lr', '–')} | {r['trainable_params']:,} | "
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
    runs = []
    for name in args.methods:
        runs.append(run(name, backbone, task, args.train_limit, args.eval_limit, args.batch_size))
        print(json.dumps(runs[-1]), flush=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["verbalizer"] = {"date": date.today().isoformat(), "backbone": "smollm2", "task": "rotten_tomatoes",
                          "train_limit": args.train_limit, "eval_limit": args.eval_limit, "epochs": 1,
                          "batch_size": args.batch_size, "verbalizer": VERBALIZER, "runs": runs,
                          "command": " ".join(["python benchmarks/lm.py", *map(shlex.quote, sys.argv[1:])]),
                          "machine": machine(2), "versions": versions("torch", "transformers")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    write_section(SECTION, render(data))


if __name__ == "__main__":
    main()
