"""Training memory at steady state, counting everything a configuration keeps (issue 16).

Each configuration runs in its own process: the baseline is the process's resident memory once torch,
transformers, PEFT and ptune are imported, before any weight is loaded. The configuration is then built
(the frozen backbone loaded once; PEFT on its own copy of the model; fine-tuning on one trainable copy,
as a user's fine-tuning run holds: the extra frozen copy ptune's benchmark helpers load to make the
batches is released and the high-water mark restarted), warmed up for WARMUP steps (the depth cache
fills on its first pass over the batches), and then trained for STEPS more. The figure is the peak
resident memory over those STEPS steps above the baseline: weights, activations, gradients, optimizer
state and the depth cache together. Same conll2003 batches (32 sentences, prompt length 16) as
benchmarks/perf.py, AdamW, one process, 2 threads. Writes benchmarks/results/memory.json and the
"memory" section of docs/RESULTS.md.

    python benchmarks/memory.py [--steps 50] [--configs NAME ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import shlex
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, save, versions, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "memory.json"
SECTION = "memory"
STEPS, WARMUP, THREADS = 50, 12, 2
CONFIGS = ["finetune", "ptune prompt", "ptune ptuning (lstm)", "ptune deep", "ptune deep top:3 (cached)",
           "ptune deep top:3 (no cache)", "peft prompt tuning", "peft p-tuning (lstm)", "peft prefix"]
MB = 1024 * 1024


def status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise SystemExit("needs Linux /proc/self/status")


def release(module) -> None:
    """Drop a module's weights (their storage), so the process holds only the copy that trains."""
    for p in module.parameters():
        p.data = p.data.new_empty(0)


def measure_one(name: str, steps: int, warmup: int) -> dict:
    """In this process: the baseline, then the configuration's peak over ``steps`` steps after ``warmup``."""
    import torch

    torch.set_num_threads(THREADS)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import peft  # noqa: F401  (imported before the baseline: its code is not what is measured)
    import transformers  # noqa: F401

    from ptune.analysis.benchmark import Setting, build
    from ptune.data import get_task
    from ptune.model.backbones import load_backbone

    task = get_task("conll2003")
    gc.collect()
    baseline = status_kib("VmRSS") * 1024
    backbone = load_backbone("minilm")
    setting = Setting(batches=WARMUP, configs=[name])
    step = build(backbone, task.train[:4000], task.labels, setting)[name]
    if name == "finetune" or name.startswith("peft"):
        release(backbone.model)  # fine-tuning trains its own copy, PEFT its own model: one copy each
    gc.collect()
    for i in range(warmup):
        step(i % setting.batches)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts from the current size
    for i in range(steps):
        step(i % setting.batches)
    return {"config": name, "baseline_mb": round(baseline / MB, 1),
            "steady_peak_mb": round((status_kib("VmHWM") * 1024 - baseline) / MB, 1),
            "after_mb": round((status_kib("VmRSS") * 1024 - baseline) / MB, 1), "steps": steps, "warmup": warmup}


def render(data: dict) -> str:
    rows = {r["config"]: r for r in data["records"]}
    finetune = rows.get("finetune", {}).get("steady_peak_mb")
    lines = ["## Training memory at steady state (issue 16)", "",
             f"Command: `{data['command']}` · {data['machine']} · date: {data['date']} · versions: "
             + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + ".", "",
             "Each configuration in its own process; the figure is the peak resident memory over "
             f"{data['steps']} training steps (after {data['warmup']} warm-up steps that fill the depth cache) above "
             "the process's memory with the libraries imported and no weights loaded: one copy of the weights, "
             "activations, gradients, optimizer state and the cache together. conll2003, minilm, batches of 32 "
             "sentences, prompt length 16, AdamW. Fine-tuning holds one trainable copy of the weights, PEFT its own "
             "model, ptune's prompt methods the shared frozen backbone.", "",
             "| configuration | steady-state peak (MiB) | vs fine-tuning | resident after (MiB) |",
             "| --- | --- | --- | --- |"]
    for name in data["order"]:
        r = rows.get(name)
        if r is None:
            continue
        ratio = f"{r['steady_peak_mb'] / finetune:.2f}" if finetune else "-"
        lines.append(f"| {name} | {r['steady_peak_mb']:.0f} | {ratio} | {r['after_mb']:.0f} |")
    if finetune:
        prompt = [rows[n] for n in data["order"] if n.startswith("ptune") and n in rows]
        worst = max(prompt, key=lambda r: r["steady_peak_mb"])
        met = worst["steady_peak_mb"] <= 0.5 * finetune
        lines += ["", f"Goal: every ptune prompt method at most 0.5x fine-tuning. Highest: {worst['config']} at "
                      f"{worst['steady_peak_mb'] / finetune:.2f}x: **{'met' if met else 'missed'}**."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: measure this configuration
    parser.add_argument("--report-only", action="store_true", help="rewrite the section from memory.json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.steps, args.warmup)))
        return
    if args.report_only:
        write_section(SECTION, section())
        return
    records = []
    for name in args.configs:
        done = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps),
                               "--warmup", str(args.warmup)], capture_output=True, text=True,
                              env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        records.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(records[-1]), flush=True)
    command = shlex.join(["python", "benchmarks/memory.py", *sys.argv[1:]])
    data = {"command": command, "machine": machine(THREADS),
            "date": date.today().isoformat(), "versions": versions("torch", "transformers", "peft", "ptune"),
            "steps": args.steps, "warmup": args.warmup, "order": args.configs, "records": records}
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else None
    if old and set(args.configs) < set(old["order"]) and (old["steps"], old["warmup"]) == (args.steps, args.warmup):
        # some configurations re-measured: the others are kept, and the record says which run made which
        for record in records:
            record["command"] = command
        kept = [r for r in old["records"] if r["config"] not in args.configs]
        data.update(order=old["order"], command=f"{old['command']}; then {command}",
                    records=sorted(kept + records, key=lambda r: old["order"].index(r["config"])))
    save(RESULTS, data, SECTION, render(data))


def section() -> str:
    """The docs/RESULTS.md section, from memory.json (benchmarks/render.py)."""
    return render(json.loads(RESULTS.read_text()))


if __name__ == "__main__":
    main()
