"""Encoding time against data size: conll2003 train (tagging) and rotten_tomatoes train (classification)
on the minilm tokenizer, repeated 1x, 4x and 16x; the median of 3 runs each and the ratio to linear
(time at kx / (k * time at 1x); the goal is within 1.2).

    python benchmarks/encode_scaling.py [--scales 1 4 16] [--runs 3] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, machine, provenance, save, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "encode_scaling.json"
SECTION = "encode_scaling"
GOAL = 1.2


def measure(model, examples, scales: list[int], runs: int) -> list[dict]:
    """For each scale: the median seconds of ``runs`` encodes of the examples repeated ``scale`` times."""
    from ptune.batch.encoding import truncation_counts

    rows = []
    for scale in scales:
        data = list(examples) * scale
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            features = model.encode(data)
            seconds.append(time.perf_counter() - started)
        rows.append({"scale": scale, "examples": len(data), "seconds": round(statistics.median(seconds), 3),
                     "runs_s": [round(s, 3) for s in seconds], "truncated": truncation_counts(features)})
        del features
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["seconds"] / rows[0]["scale"]
    for row in rows:
        row["ratio_to_linear"] = round(row["seconds"] / (row["scale"] * base), 3)
    return rows


def render(r: dict) -> str:
    v = r["versions"]
    lines = [
        "## Encoding time against data size",
        "",
        (f"{provenance(r)}, tokenizers {v['tokenizers']} · tokenizer: minilm "
         f"· median of {r['runs']} runs. Ratio to linear = seconds at kx / (k x seconds at 1x); goal within {GOAL}."),
        "",
        "| data | kind | scale | examples | seconds | ratio to linear | examples cut (tokens lost) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in r["datasets"].items():
        for row in entry["rows"]:
            cut = row["truncated"]
            lines.append(f"| {name} | {entry['kind']} | {row['scale']}x | {row['examples']:,} | {row['seconds']:.2f} | "
                         f"{row['ratio_to_linear']:.2f} | {cut['examples']:,} ({cut['tokens']:,}) |")
    worst = max(row["ratio_to_linear"] for entry in r["datasets"].values() for row in entry["rows"])
    lines += ["", f"Worst ratio to linear: {worst:.2f} ({'within' if worst <= GOAL else 'outside'} the {GOAL} goal). "
              "Truncation is by slicing (`batch/encoding.py` `fit`); the examples cut are those longer than "
              "max_length=128 with the method's prompt."]
    return "\n".join(lines)


def section() -> str:
    """The docs/RESULTS.md section, rendered from encode_scaling.json."""
    return render(json.loads(RESULTS.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--report-only", action="store_true", help="re-render docs/RESULTS.md from the JSON")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import tokenizers
    import torch
    import transformers

    import ptune
    from ptune.config import MethodConfig
    from ptune.data import get_task
    from ptune.model.backbones import load_backbone
    from ptune.model.prompt_model import PromptModel

    logging.getLogger("ptune.batch.encoding").setLevel(logging.ERROR)  # the counts go into the table
    backbone = load_backbone("minilm")
    datasets = {}
    for name in ("conll2003", "rotten_tomatoes"):
        task = get_task(name)
        model = PromptModel(backbone, MethodConfig(method="prompt", length=8), task.labels, kind=task.kind)
        datasets[name] = {"kind": task.kind, "train_examples": len(task.train),
                          "rows": measure(model, task.train, args.scales, args.runs)}
    record = {
        "command": "python benchmarks/encode_scaling.py " + " ".join(
            ["--scales " + " ".join(map(str, args.scales)), f"--runs {args.runs}"]),
        "machine": machine(),
        "date": date.today().isoformat(),
        "versions": {"ptune": getattr(ptune, "__version__", "?"), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "python": platform.python_version()},
        "runs": args.runs,
        "goal_ratio": GOAL,
        "datasets": datasets,
    }
    save(RESULTS, record, SECTION, render(record))
    print(render(record))


if __name__ == "__main__":
    main()
