"""Lester et al.'s setting on a T5-family model: rotten_tomatoes as text-to-text (targets "positive" /
"negative"), rank classification over the two label strings, an input prompt started from the label
words' embeddings, against deep prompts and full fine-tuning of the same model.

    python benchmarks/t5_lester.py [--backbone google/flan-t5-small] [--epochs 3] [--train-limit N]
    python benchmarks/t5_lester.py --smoke --out DIR   # a tiny random T5, end to end, written under DIR

Without ``--backbone`` it looks for pretrained T5-family weights that install offline; none do here
(the PyPI packages named T5 hold code, not weights), so the record and its docs/RESULTS.md section
say "not measured here: no pretrained weights offline" rather than a number. ``--smoke`` builds the
tiny random T5 of tests/families.py and never writes the tracked results.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import report  # noqa: E402
from report import ROOT, machine, provenance, versions  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "t5_lester.json"
SECTION = "t5_lester"
# Lester et al.: 100 prompt tokens at lr 0.3 with Adafactor on T5 1.1 LM-adapted; here AdamW at ptune's defaults.
METHODS = {"prompt": {"method": "prompt", "length": 20, "init": "labels"},
           "deep": {"method": "deep", "length": 16},
           "finetune": {"method": "finetune"}}
# PyPI packages whose names promise T5 weights, checked: each holds code only (or does not build).
CHECKED = ("flan-t5-hf 0.7 (an sdist that does not build)", "grass-sample-chatbot 0.1 (a 1.4 kB wheel, no weights)")


def run_method(backbone, task, name: str, options: dict, args, folder: Path) -> dict:
    from ptune.config import MethodConfig, TrainConfig
    from ptune.infer.predict import evaluate
    from ptune.model.prompt_model import PromptModel
    from ptune.training.loop import train

    model = PromptModel.for_task(backbone, task, MethodConfig(**options, max_length=args.max_length))
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, train_limit=args.train_limit,
                         eval_limit=args.eval_limit, seed=args.seed, progress=False, checkpoint_every=0)
    result = train(model, task, config, out_dir=folder / name)
    test = task.test[: args.eval_limit] if args.eval_limit else task.test
    scores = evaluate(model, test)
    return {"method": name, "options": options, "trainable": model.num_trainable(),
            "trainable_percent": round(100 * model.num_trainable() / backbone.num_parameters(), 4),
            "dev": result.dev, "test": scores, "best_epoch": result.best_epoch, "seconds": round(result.seconds, 1)}


def measure(backbone_name: str, args, folder: Path) -> list[dict]:
    from ptune.data.tasks import rotten_tomatoes
    from ptune.data.text_targets import as_text_to_text
    from ptune.model.backbones import load_backbone

    backbone = load_backbone(backbone_name, device="cpu")
    task = as_text_to_text(rotten_tomatoes())
    return [run_method(backbone, task, name, options, args, folder) for name, options in METHODS.items()]


def smoke_backbone(folder: Path) -> str:
    """The tiny random T5 of the conformance suite (t5-small's shape of config), saved under ``folder``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from families import Zoo

    return str(Zoo(folder).folder("t5"))


def render(record: dict) -> str:
    lines = ["## T5: Lester et al.'s setting (rank classification on rotten_tomatoes)", "", provenance(record), ""]
    if record["status"] != "measured":
        lines += [f"**Not measured here: {record['reason']}.** The script runs it on any T5-family checkpoint: "
                  f"`{record['how']}`.", ""]
        return "\n".join(lines)
    lines += [f"Backbone `{record['backbone']}`{' (random weights: a smoke run, not a result)' if record['smoke'] else ''}; "
              f"{record['train_examples']} training examples, {record['epochs']} epochs; accuracy of the likelier label "
              "string (full log-likelihood of its target).", "",
              "| method | trainable | dev accuracy | test accuracy | seconds |", "| --- | --- | --- | --- | --- |"]
    for run in record["runs"]:
        lines.append(f"| {run['method']} | {run['trainable']:,} ({run['trainable_percent']}%) | "
                     f"{run['dev'].get('accuracy', float('nan')):.3f} | {run['test']['accuracy']:.3f} | {run['seconds']} |")
    return "\n".join(lines) + "\n"


def section() -> str:
    """The docs/RESULTS.md section, rendered from t5_lester.json."""
    return render(json.loads(RESULTS.read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", help="a T5-family hub id or folder (default: pretrained weights offline, if any)")
    parser.add_argument("--smoke", action="store_true", help="a tiny random T5, a few examples, written under --out")
    parser.add_argument("--out", help="where a smoke run writes t5_lester.json and RESULTS.md (default: a temp dir)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-limit", type=int)
    parser.add_argument("--eval-limit", type=int)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.smoke:
        args.train_limit, args.eval_limit, args.epochs, args.batch_size = args.train_limit or 8, args.eval_limit or 8, 1, 8
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="t5-lester-")) if args.smoke else None)
    results, section = (out / "t5_lester.json", out / "RESULTS.md") if out else (RESULTS, report.REPORT)
    command = "python benchmarks/t5_lester.py" + (" --smoke" if args.smoke else "") + (
        f" --backbone {args.backbone}" if args.backbone and not args.smoke else "")
    record = {"command": command, "machine": machine(), "date": date.today().isoformat(),
              "versions": versions("torch", "transformers", "ptune"), "smoke": args.smoke}
    begun = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="t5-lester-runs-") as folder:
        backbone = smoke_backbone(Path(folder) / "zoo") if args.smoke else args.backbone
        if backbone is None:
            record.update(status="not measured", reason="no pretrained weights offline",
                          detail="no T5-family weights install offline from PyPI here; checked " + "; ".join(CHECKED),
                          how="python benchmarks/t5_lester.py --backbone google/flan-t5-small")
        else:
            record.update(status="measured", backbone=backbone if not args.smoke else "tiny random T5 (tests/families.py)",
                          epochs=args.epochs, train_examples=args.train_limit or "all",
                          runs=measure(backbone, args, Path(folder)))
    record["seconds"] = round(time.perf_counter() - begun, 1)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(record, indent=2) + "\n")
    report.REPORT = section  # a smoke run's section goes beside its JSON, never into docs/RESULTS.md
    report.write_section(SECTION, render(record))
    print(f"wrote {results} and section {SECTION} of {section}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
