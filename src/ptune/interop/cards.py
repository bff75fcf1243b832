"""The model card of a shared prompt (README.md): the hub's YAML metadata (library, base model, tags, datasets,
metrics), then the method and its size, the results the run recorded (per seed too), its command and usage."""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ptune.data.named import HUB_NAMES
from ptune.training.seeds import RESULTS, is_multi_seed

# Embedded short names -> the hub model each one is (``model/backbones.py``).
BASE_MODELS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# Built-in tasks -> the hub dataset they are.
DATASETS = {"rotten_tomatoes": "cornell-movie-review-data/rotten_tomatoes", "conll2003": "eriktks/conll2003"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# method -> (its tag, its name, what it trains)
METHODS = {
    "prompt": ("soft-prompt", "Prompt Tuning", "Prompt Tuning (Lester et al. 2021): trained vectors placed before "
                                               "the input"),
    "ptuning": ("p-tuning", "P-Tuning", "P-Tuning (Liu et al. 2021): trained tokens placed by a template, made by a "
                                        "prompt encoder"),
    "deep": ("p-tuning-v2", "P-Tuning v2", "P-Tuning v2 / deep prompt tuning (Liu et al. 2022): trained key/value "
                                           "prefixes in the attention of every prompted layer"),
    "finetune": ("fine-tuning", "fine-tuning", "full fine-tuning of the backbone (for comparison; not a prompt)"),
}
KIND_TAGS = {"classification": "text-classification", "tagging": "token-classification", "qa": "question-answering",
             "regression": "text-regression", "multiple_choice": "multiple-choice", "text_to_text": "text-to-text"}
# The method options a reader looks for, per method (every option is in the prompt file's header).
SHOWN_OPTIONS = {"prompt": ("length", "init", "template"),
                 "ptuning": ("length", "template", "encoder", "tune_backbone"),
                 "deep": ("length", "layers", "reparam", "template"), "finetune": ()}
SHOWN_FOR_ALL = ("head", "verbalizer", "max_length")


@dataclass
class RunRecord:
    """What the run that wrote a prompt file recorded beside it: its ``results.json`` (the part for this prompt's
    task), the multi-seed summary of the folder above (``ptune train --seeds``) and this prompt's seed run."""

    results: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)
    seed_run: str | None = None

    @property
    def command(self) -> str | None:
        command = self.results.get("command")
        return command if isinstance(command, str) else None


def run_record(prompt: Path, header: dict) -> RunRecord:
    """The records of the run folder ``prompt`` lies in; empty where the run wrote none (a file copied alone)."""
    record = RunRecord()
    results = _json(prompt.parent / RESULTS)
    task = header["task"]["name"]
    if isinstance(results.get("per_task"), dict):  # multi-task: one results.json, a prompt file per task
        results = results["per_task"].get(task, {}) | ({"command": results["command"]} if "command" in results else {})
    if results.get("task", task) == task and Path(str(results.get("prompt", prompt.name))).name == prompt.name:
        record.results = results
    if is_multi_seed(prompt.parent.parent):
        summary = _json(prompt.parent.parent / RESULTS)
        if summary.get("task") == task:
            record.seeds, record.seed_run = summary, prompt.parent.name
    return record


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def base_model(name: str) -> str | None:
    """The hub id of the backbone a prompt file names: an embedded name's model, a hub id; None for a folder."""
    if name in BASE_MODELS:
        return BASE_MODELS[name]
    return name if HUB_ID.match(name) and not Path(name).is_absolute() else None


def dataset(task: dict) -> str | None:
    """The hub dataset a task came from, when it is known: a built-in or benchmark task, or --dataset NAME."""
    source = task.get("source", {}).get("dataset")
    if isinstance(source, str) and HUB_ID.match(source) and not Path(source).is_absolute():
        return source
    benchmark, _, _ = task["name"].partition("/")
    if benchmark in HUB_NAMES and "/" in task["name"]:
        return HUB_NAMES[benchmark][1]
    return DATASETS.get(task["name"])


def model_card(header: dict, record: RunRecord, *, ref: str) -> str:
    """README.md for the prompt described by ``header``: YAML metadata, then prose; ``ref`` is what the usage
    examples load (a hub repo id or a folder)."""
    from huggingface_hub import ModelCard, ModelCardData

    task, method = header["task"], header["method"]
    backbone = header["backbone"]["name"]
    metric_names = [key[len("dev_"):] for key in header.get("metrics", {}) if key.startswith("dev_")]
    data = ModelCardData(library_name="ptune", base_model=base_model(backbone),
                         tags=["ptune", "prompt-tuning", METHODS[method["method"]][0], KIND_TAGS[task["kind"]]],
                         datasets=[dataset(task)] if dataset(task) else None,
                         metrics=metric_names or [task["metric"]])
    body = "\n\n".join([_title(header), _method(header), _results(header, record), _command(record),
                        _usage(header, ref)])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n"))


def _title(header: dict) -> str:
    task, backbone = header["task"], header["backbone"]["name"]
    hub = base_model(backbone)
    on = f"[`{hub}`](https://huggingface.co/{hub})" if hub else f"the local model folder `{backbone}` (not on the hub)"
    labels = f" (labels: {', '.join(task['labels'])})" if task["labels"] else ""
    return (f"# {task['name']} · {METHODS[header['method']['method']][1]} (ptune)\n\n"
            f"A {task['kind'].replace('_', ' ')} prompt for `{task['name']}`{labels}, trained with "
            f"ptune on the frozen backbone {on}. This repo holds only what was trained "
            "(the prompt and the task's head) in `prompt.safetensors`: safetensors tensors with ptune's JSON "
            "description in the header, no pickle. The frozen backbone is not included: ptune loads the one the "
            "prompt file names and checks it by its weights.")


def _method(header: dict) -> str:
    method = header["method"]
    shown = (*SHOWN_OPTIONS[method["method"]], *SHOWN_FOR_ALL)
    options = ", ".join(f"{name} `{method[name]}`" for name in shown if method.get(name) not in (None, False))
    lines = ["## Method", "", f"- {METHODS[method['method']][2]}.", f"- Options: `{method['method']}`, {options}."]
    trainable, total = header.get("trainable_params"), header.get("backbone_params")
    if isinstance(trainable, int) and isinstance(total, int) and total > 0:
        lines.append(f"- Trainable parameters: {trainable:,} ({100 * trainable / total:.3f}% of the backbone's "
                     f"{total:,}).")
    elif isinstance(trainable, int):
        lines.append(f"- Trainable parameters: {trainable:,}.")
    lines.append(f"- Task kind `{header['task']['kind']}`, scored by `{header['task']['metric']}`.")
    return "\n".join(lines)


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _scores(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)} if isinstance(scores, dict) else {}


def _results(header: dict, record: RunRecord) -> str:
    lines = ["## Results", ""]
    metrics = header.get("metrics", {})
    dev = {key[len("dev_"):]: value for key, value in _scores(metrics).items() if key.startswith("dev_")}
    rows = [("dev", dev, f"best epoch {metrics['best_epoch']}" if "best_epoch" in metrics else "")]
    if _scores(record.results.get("test")):
        rows.append(("test", _scores(record.results["test"]), "scored once, after training"))
    rows = [(split, scores, note) for split, scores, note in rows if scores]
    if rows:
        lines += ["| split | metric | value | note |", "| --- | --- | --- | --- |"]
        lines += [f"| {split} | {name} | {_number(value)} | {note} |" for split, scores, note in rows
                  for name, value in scores.items()]
    else:
        lines.append("No scores were recorded with this prompt.")
    seed = f" (`seed` {record.results['seed']})" if isinstance(record.results.get("seed"), int) else ""
    if record.seeds:
        runs = list(record.seeds.get("runs", {}))
        lines += ["", f"Across seeds {', '.join(map(str, record.seeds.get('seeds', [])))} (this repo holds "
                      f"`{record.seed_run}`'s prompt); std is the sample standard deviation (n - 1):", "",
                  "| split | metric | mean | std | " + " | ".join(runs) + " |",
                  "| --- | --- | --- | --- | " + " | ".join("---" for _ in runs) + " |"]
        for split in ("dev", "test"):
            for name, summary in (record.seeds.get(split) or {}).items():
                values = summary.get("values", {})
                lines.append(f"| {split} | {name} | {_number(summary.get('mean'))} | {_number(summary.get('std'))} | "
                             + " | ".join(_number(values.get(run, "")) for run in runs) + " |")
    elif record.results:
        lines += ["", f"One run{seed}; no other seeds were recorded with it."]
    return "\n".join(lines)


def _command(record: RunRecord) -> str:
    if record.command:
        return f"## Training command\n\n```bash\n{record.command}\n```"
    return ("## Training command\n\nNot recorded: the run's `results.json` beside the prompt file holds no command "
            "(runs of earlier ptune versions, the Python API, a sweep's trials, or a prompt file shared without its run "
            "folder).")


def _usage(header: dict, ref: str) -> str:
    kind, pair = header["task"]["kind"], header["task"].get("pair", False)
    if kind == "qa":
        python = 'ptune.QAExample("1", "Who went home?", "Peter went home.")'
        cli = '--question "Who went home?" --context "Peter went home."'
    elif kind == "tagging":
        python = 'ptune.TaggedExample(("Peter", "visited", "Paris"))'
        cli = '--text "Peter visited Paris"'
    elif kind == "multiple_choice":
        python = 'ChoiceExample("It rained.", ("so the street got wet.", "so the sun came out."))'
        cli = """--input choices.jsonl   # lines of {"text": "...", "choices": ["...", "..."]}"""
    elif pair:
        python = 'ptune.TextExample("A man is eating.", text_pair="Someone eats.")'
        cli = """--input pairs.jsonl   # lines of {"text": "...", "text_pair": "..."}"""
    else:
        python = 'ptune.TextExample("a triumph of a film")'
        cli = '--text "a triumph of a film"'
    imports = ["import ptune"]
    if kind == "multiple_choice":
        imports.append("from ptune.data.examples import ChoiceExample")
    lines = ["## Usage", "", "With ptune installed:", "", "```python", *imports, "",
             f"model = ptune.load_prompt({json.dumps(ref)})   # the backbone it names loads too",
             f"print(ptune.predict(model, [{python}]))", "```", "", "or from the command line:", "", "```bash",
             f"ptune predict {shlex.quote(ref)} {cli}",
             f"ptune evaluate {shlex.quote(ref)} --data labelled.csv   # scores it on your labelled data", "```"]
    return "\n".join(lines)
