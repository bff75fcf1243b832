"""``ptune predict``: label texts, tag sentences or answer questions with a prompt file; one JSON line each."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ptune.cli.options import add_backbone_override, load_prompt_and_backbone
from ptune.cli.output import print_line
from ptune.errors import PtuneError


def add_parser(sub) -> None:
    predict = sub.add_parser("predict", help="label texts (or tag sentences) with a prompt file; JSON lines out")
    predict.add_argument("prompt", help="prompt file (.safetensors)")
    predict.add_argument("--text", nargs="+", help="texts to label (tagging: words split on spaces)")
    predict.add_argument("--input", help="JSONL ({'text': ...}; QA: {'question': ..., 'context': ...}) or plain-text "
                                         "file; '-' reads stdin (default: stdin)")
    predict.add_argument("--question", help="QA prompts: the question (with --context)")
    predict.add_argument("--context", help="QA prompts: the passage to answer from")
    predict.add_argument("--predicate", type=int,
                         help="SRL prompts: 0-based index of the predicate word in each --text")
    add_backbone_override(predict)
    predict.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    predict.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptune.batch.encoding import truncation_marks
    from ptune.infer.predict import predict

    model = load_prompt_and_backbone(args)
    examples = read_inputs(args, model.kind)
    features = model.encode(examples)
    predictions = predict(model, examples, batch_size=args.batch_size, features=features)
    # One feature per example except QA (windows over the context, which is never cut).
    marks = features if len(features) == len(examples) else [None] * len(examples)
    for example, prediction, feature in zip(examples, predictions, marks):
        print_line({**model.kind.record(example, prediction), **truncation_marks(feature)})
    return 0


def read_inputs(args: argparse.Namespace, kind) -> list:
    """Unlabelled examples for ``kind`` from --text / --question --context, or JSONL / plain-text lines."""
    rows: list = []
    if kind.name == "qa" and (args.question or args.context or args.text):
        if not (args.question and args.context):
            raise PtuneError("give both --question and --context (or JSONL lines with 'question' and 'context')")
        rows = [(None, {"id": "1", "question": args.question, "context": args.context})]
    elif args.text:
        rows = [(None, {"text": text}) for text in args.text]
    else:
        rows = _read_lines(args.input)
    if not rows:
        raise PtuneError("nothing to predict: give --text, or JSONL / plain-text lines on --input or stdin")
    examples = []
    for index, (where, row) in enumerate(rows, start=1):
        row = {"id": str(index), **row}
        try:
            examples.append(kind.example(row, predicate=args.predicate))
        except ValueError as error:
            raise PtuneError(f"{where or 'input'}: {error}") from None
    return examples


def _read_lines(path: str | None) -> list[tuple[str, dict]]:
    """(``file:line``, row) for each non-empty JSONL or plain-text line of ``path`` (stdin for None or '-')."""
    source = sys.stdin if path in (None, "-") else None
    name = "stdin" if source else path
    try:
        lines = source.read().splitlines() if source else Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise PtuneError(f"{name}: input file not found") from None
    except UnicodeDecodeError as error:
        raise PtuneError(f"{name}: not UTF-8 ({error.reason} at byte {error.start}); re-encode it as UTF-8") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = {"text": line}  # plain text lines are accepted too
        if isinstance(row, str):
            row = {"text": row}
        rows.append((f"{name}:{number}", row if isinstance(row, dict) else {}))
    return rows
