"""End to end as a user runs it: `ptune train` defaults vs PEFT PrefixTuning under the Hugging Face
Trainer with its documented defaults; same model (minilm), data (conll2003), batch size, epochs and
prompt length. Reports training wall time per epoch and dev entity F1.

    python benchmarks/e2e_peft.py [--epochs 1] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "e2e_peft.json"  # {task name: record}
SECTION = "e2e_peft"
BATCH, PREFIX = 32, 16


def run_ptune(task, epochs: int) -> dict:
    from ptune.model.backbones import load_backbone
    from ptune.config import MethodConfig
    from ptune.model.prompt_model import PromptModel
    from ptune.training.loop import TrainConfig, train

    backbone = load_backbone("minilm")
    model = PromptModel.for_task(backbone, task, MethodConfig(method="deep", length=PREFIX))
    config = TrainConfig(epochs=epochs, batch_size=BATCH, patience=0, progress=False)
    result = train(model, task, config)
    key = "dev_f1" if task.kind == "tagging" else "dev_accuracy"
    return {"epoch_train_s": [r["epoch_train_s"] for r in result.history],
            "dev": result.history[-1][key], "lr": config.resolved(model.config).lr}


def run_peft(task, epochs: int) -> dict:
    import numpy as np
    import peft
    from seqeval.metrics import f1_score
    from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
                              DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer, TrainingArguments)

    from ptune.model.backbones import resolve

    path = resolve("minilm")
    tokenizer = AutoTokenizer.from_pretrained(path)
    label_ids = {label: i for i, label in enumerate(task.labels)}

    tagging = task.kind == "tagging"

    def encode(examples):
        if not tagging:
            return [dict(tokenizer(e.text, truncation=True, max_length=128), labels=label_ids[e.label])
                    for e in examples]
        rows = []
        for example in examples:
            enc = tokenizer(list(example.tokens), is_split_into_words=True, truncation=True, max_length=128)
            labels, previous = [], None
            for word in enc.word_ids():
                labels.append(-100 if word is None or word == previous else label_ids[example.tags[word]])
                previous = word
            rows.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
        return rows

    train_rows, dev_rows = encode(task.train), encode(task.dev)
    auto = AutoModelForTokenClassification if tagging else AutoModelForSequenceClassification
    model = auto.from_pretrained(path, num_labels=len(task.labels))
    model = peft.get_peft_model(model, peft.PrefixTuningConfig(task_type="TOKEN_CLS" if tagging else "SEQ_CLS",
                                                               num_virtual_tokens=PREFIX))
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=BATCH, per_device_eval_batch_size=64,
                                 num_train_epochs=epochs, report_to=[], save_strategy="no", use_cpu=True,
                                 disable_tqdm=True, logging_strategy="no")
        trainer = Trainer(model=model, args=args, train_dataset=train_rows,
                          data_collator=(DataCollatorForTokenClassification if tagging else DataCollatorWithPadding)(
                              tokenizer))
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        logits = trainer.predict(dev_rows).predictions
    if not tagging:
        accuracy = float(np.mean([int(np.argmax(scores)) == row["labels"] for row, scores in zip(dev_rows, logits)]))
        return {"epoch_train_s": [seconds / epochs] * epochs, "dev": accuracy, "lr": args.learning_rate}
    gold, predicted = [], []
    for row, scores in zip(dev_rows, logits):
        keep = [i for i, label in enumerate(row["labels"]) if label != -100]
        gold.append([task.labels[row["labels"][i]] for i in keep])
        predicted.append([task.labels[int(np.argmax(scores[i]))] for i in keep])
    return {"epoch_train_s": [seconds / epochs] * epochs, "dev": f1_score(gold, predicted), "lr": args.learning_rate}


def render(records: dict) -> str:
    lines = ["## End to end: `ptune train` defaults vs PEFT PrefixTuning + Hugging Face Trainer defaults", ""]
    for name, r in records.items():
        p, q = r["ptune"], r["peft"]
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        ratio = mean(q["epoch_train_s"]) / mean(p["epoch_train_s"])
        metric = "entity F1" if name == "conll2003" else "accuracy"
        lines += [
            f"### {name}", "",
            f"Command: `{r['command']}` · machine: {r['machine']} · date: {r['date']} · minilm, batch {BATCH}, prefix "
            f"length {PREFIX}, {r['epochs']} epoch(s) over the whole training set, 2 CPU threads.", "",
            f"| run | learning rate | training time per epoch (s) | dev {metric} |", "| --- | --- | --- | --- |",
            f"| ptune train (deep, defaults) | {p['lr']:g} | {mean(p['epoch_train_s']):.1f} | {100 * p['dev']:.2f} |",
            f"| PEFT PrefixTuning + Trainer (defaults) | {q['lr']:g} | {mean(q['epoch_train_s']):.1f} | "
            f"{100 * q['dev']:.2f} |", "",
            f"ptune is {ratio:.2f}x faster per epoch (target 1.5x).", "",
        ]
    lines += ["Training time only: ptune's dev evaluation after each epoch and the Trainer's prediction pass are "
              "not counted. The learning rates are each tool's default (ptune's per-method default; the Trainer's "
              "5e-5). The Trainer pads each random batch to its longest example (no length grouping by default) "
              "and keeps dropout on in the backbone; ptune buckets batches by length and runs the frozen backbone "
              "in eval mode."]
    return "\n".join(lines) + "\n"


def section() -> str:
    """The docs/RESULTS.md section, rendered from e2e_peft.json."""
    return render(json.loads(RESULTS.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--task", default="conll2003", choices=("conll2003", "rotten_tomatoes"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    import torch

    torch.set_num_threads(2)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ptune.data import get_task

    task = get_task(args.task)
    record = {"command": f"python benchmarks/e2e_peft.py --task {args.task} --epochs {args.epochs}", "epochs": args.epochs,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "date": date.today().isoformat()}
    record["ptune"] = run_ptune(task, args.epochs)
    print(json.dumps(record["ptune"]), flush=True)
    record["peft"] = run_peft(task, args.epochs)
    print(json.dumps(record["peft"]), flush=True)
    records = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    records[args.task] = record
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(records, indent=2) + "\n")
    write_section(SECTION, render(records))
    print(render(records))


if __name__ == "__main__":
    main()
