"""Gradient checkpointing of the frozen backbone: peak memory (RSS) of one forward+backward pass of a
deep prompt with and without ``--gradient-checkpointing``, on the embedded real-weight models.

    python benchmarks/checkpointing.py [--threads 2] [--report-only]

Each (model, setting) runs in a fresh process: the backbone loads, one batch is built from real
rotten_tomatoes sentences (several joined per row, so rows reach the token length), one warm-up
forward pass runs without gradients, and then one forward+backward pass with gradients. The record
holds the process's peak RSS after the pass (``ru_maxrss``) and its RSS before it; the difference is
what the pass itself added (activations kept for the backward pass, gradients). The prompt gradients
of both settings are equal (tests/test_devices.py checks that), so only memory and time differ.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, machine, provenance, save, versions, write_section

RESULTS = ROOT / "benchmarks" / "results" / "checkpointing.json"
SECTION = "checkpointing"
# (backbone, batch size, tokens per row): minilm (6 layers, hidden 384), smollm2 (30 layers, hidden 576).
SETTINGS = (("minilm", 32, 256), ("smollm2", 4, 128))


def rss_mb() -> float:
    """This process's resident set now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def one(backbone_name: str, batch_size: int, tokens: int, checkpointing: bool, threads: int) -> dict:
    """One forward+backward pass in this process; its memory and time."""
    import contextlib

    import torch

    from ptune.config import MethodConfig
    from ptune.data import get_task
    from ptune.data.examples import TextExample
    from ptune.model.backbones import load_backbone
    from ptune.model.checkpointing import checkpointed
    from ptune.model.prompt_model import PromptModel

    torch.set_num_threads(threads)
    backbone = load_backbone(backbone_name, device="cpu")
    task = get_task("rotten_tomatoes")
    texts = [e.text for e in task.train[: batch_size * 12]]
    rows = [TextExample(" ".join(texts[i::batch_size]), task.train[i].label) for i in range(batch_size)]
    model = PromptModel(backbone, MethodConfig(method="deep", length=16, max_length=tokens), task.labels)
    model.initialise(seed=0)
    model.train()
    batch = model.collate(model.encode(rows))
    with torch.no_grad():
        model(batch)
    before = rss_mb()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    recompute = (checkpointed(model.transformer, backbone.num_layers) if checkpointing else contextlib.nullcontext())
    started = time.perf_counter()
    with recompute:
        loss = model.loss(batch)
        loss.backward()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"backbone": backbone_name, "layers": backbone.num_layers, "hidden": backbone.hidden_size,
            "batch": list(batch["input_ids"].shape), "checkpointing": checkpointing,
            "rss_before_mb": round(before, 1), "peak_rss_before_mb": round(peak_before, 1),
            "peak_rss_mb": round(peak, 1), "pass_added_mb": round(peak - before, 1),
            "step_s": round(seconds, 3)}


def render(r: dict) -> str:
    lines = ["## Gradient checkpointing: memory of one training pass", "", provenance(r), "",
             "One forward+backward pass of a deep prompt (16 vectors per layer) on the frozen backbone, each in a "
             "fresh process; peak RSS after the pass, and what the pass added to the RSS before it. The prompt's "
             "gradients are the same with and without (tests/test_devices.py).", "",
             "| backbone | batch [B, T] | checkpointing | RSS before (MB) | peak RSS (MB) | added by the pass (MB) "
             "| pass time (s) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in r["runs"]:
        lines.append(f"| {row['backbone']} ({row['layers']} layers, hidden {row['hidden']}) | {row['batch']} | "
                     f"{'on' if row['checkpointing'] else 'off'} | {row['rss_before_mb']:.0f} | "
                     f"{row['peak_rss_mb']:.0f} | {row['pass_added_mb']:.0f} | {row['step_s']:.2f} |")
    lines.append("")
    for name, saving in r["saving"].items():
        lines.append(f"- {name}: checkpointing cuts the memory the pass adds by {saving['added_cut_percent']:.0f}% "
                     f"({saving['added_off_mb']:.0f} -> {saving['added_on_mb']:.0f} MB) and the peak RSS by "
                     f"{saving['peak_cut_percent']:.0f}%, for {saving['time_ratio']:.2f}x the pass time.")
    return "\n".join(lines) + "\n"


def section() -> str:
    """The docs/RESULTS.md section, rendered from checkpointing.json."""
    return render(json.loads(RESULTS.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run (default: 2)")
    parser.add_argument("--report-only", action="store_true", help="re-render docs/RESULTS.md from the JSON")
    parser.add_argument("--backbones", nargs="+", default=[name for name, *_ in SETTINGS],
                        help="measure only these (default: minilm smollm2)")
    parser.add_argument("--one", nargs=4, metavar=("BACKBONE", "BATCH", "TOKENS", "CHECKPOINTING"),
                        help=argparse.SUPPRESS)  # a child process: one measurement, printed as JSON
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, render(json.loads(RESULTS.read_text())))
        return
    if args.one:
        name, batch, tokens, flag = args.one
        print(json.dumps(one(name, int(batch), int(tokens), flag == "on", args.threads)))
        return
    runs = []
    settings = [setting for setting in SETTINGS if setting[0] in args.backbones]
    for name, batch, tokens in settings:
        for flag in ("off", "on"):
            done = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--one", name,
                                   str(batch), str(tokens), flag], capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(runs[-1], flush=True)
    saving = {}
    for name, *_ in settings:
        off, on = (next(r for r in runs if r["backbone"] == name and r["checkpointing"] == flag) for flag in (False, True))
        saving[name] = {"added_off_mb": off["pass_added_mb"], "added_on_mb": on["pass_added_mb"],
                        "added_cut_percent": 100 * (1 - on["pass_added_mb"] / off["pass_added_mb"]),
                        "peak_cut_percent": 100 * (1 - on["peak_rss_mb"] / off["peak_rss_mb"]),
                        "time_ratio": on["step_s"] / off["step_s"]}
    record = {"command": shlex.join(["python", "benchmarks/checkpointing.py", *sys.argv[1:]]),
              "machine": machine(args.threads), "date": date.today().isoformat(),
              "versions": {"ptune": versions("ptune")["ptune"], **versions("torch", "transformers")},
              "runs": runs, "saving": saving}
    save(RESULTS, record, SECTION, render(record))
    print(render(record))


if __name__ == "__main__":
    main()
