"""``ptune predict``: label texts, tag sentences or answer questions with a prompt file; one JSON line
each, with how sure it is (probabilities, scores), or a .jsonl / .json / .csv file with --output."""

from __future__ import annotations

import argparse

from ptune.cli.inputs import FORMATS, INPUT_ROLES, input_row, read_rows
from ptune.cli.options import add_backbone_override, add_data_options, backbone_for, columns_from
from ptune.cli.output import print_line
from ptune.cli.records import output_format, write_records
from ptune.bounds import COUNT, NON_NEGATIVE
from ptune.data.columns import Columns
from ptune.errors import PtuneError


def add_parser(sub) -> None:
    predict = sub.add_parser("predict", help="label texts (or tag sentences) with a prompt file; JSON lines out")
    predict.add_argument("prompt", help="prompt file (.safetensors), a folder holding prompt.safetensors (a run "
                                        "folder, `ptune save-pretrained`'s) or a hub repo id user/name")
    predict.add_argument("--text", nargs="+", help="texts to label (tagging: words split on spaces)")
    predict.add_argument("--input", help="JSONL ({'text': ...}; QA: {'question': ..., 'context': ...}), CSV/TSV with a "
                                         "header row, or plain-text lines; '-' reads stdin (default: stdin)")
    predict.add_argument("--format", choices=FORMATS,
                         help="how to read --input (default: from its suffix: .jsonl/.json, .csv, .tsv, .txt; stdin "
                              "and other files: JSON lines, a line that is not JSON a plain text)")
    add_data_options(predict, INPUT_ROLES, dataset=False)
    predict.add_argument("--question", help="QA prompts: the question (with --context)")
    predict.add_argument("--context", help="QA prompts: the passage to answer from")
    predict.add_argument("--predicate", type=NON_NEGATIVE,
                         help="SRL prompts: 0-based index of the predicate word in each --text")
    add_backbone_override(predict)
    predict.add_argument("--batch-size", type=COUNT, default=64, help="examples per forward pass")
    predict.add_argument("--output", metavar="FILE",
                         help="write the predictions to FILE, atomically, instead of printing JSON lines: JSON lines "
                              "(.jsonl), a JSON array (.json) or CSV (.csv, one column per label's probability) "
                              "(default: stdout)")
    predict.add_argument("--top-k", type=COUNT, metavar="K",
                         help="classification: only the K likeliest labels in 'probabilities' (default: every label)")
    predict.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptune.infer.predict import predict
    from ptune.storage.locations import locate_prompt
    from ptune.storage.prompt_files import load_prompt, read_header
    from ptune.tasks import get_kind

    if args.output is not None:
        output_format(args.output)  # a wrong suffix or a folder fails before the model loads
    prompt = locate_prompt(args.prompt)  # a hub repo is fetched once
    header = read_header(prompt)
    examples = read_inputs(args, get_kind(header["task"]["kind"]), header["task"].get("source"))
    model = load_prompt(prompt, backbone_for(prompt, header, args))
    records = predict(model, examples, batch_size=args.batch_size, scores=True, top_k=args.top_k)
    if args.output is not None:
        write_records(args.output, records, labels=model.labels)
        return 0
    for record in records:
        print_line(record)
    return 0


def read_inputs(args: argparse.Namespace, kind, recorded: dict | None = None) -> list:
    """Unlabelled examples for ``kind`` from --text / --question --context, or the rows of --input (stdin),
    read with the column options, then the columns the prompt recorded (``recorded``: its task source)."""
    columns = columns_from(args, recorded=recorded)
    rows: list = []
    if kind.name == "qa" and (args.question or args.context or args.text):
        if not (args.question and args.context):
            raise PtuneError("give both --question and --context (or JSONL lines with 'question' and 'context')")
        rows = [("--question/--context", {"id": "1", "question": args.question, "context": args.context})]
    elif args.text:
        rows = [("--text", input_row("--text", {"text": text}, Columns())) for text in args.text]
    else:
        rows = read_rows(args.input, args.format, columns)
    if not rows:
        raise PtuneError("nothing to predict: give --text, or JSONL / CSV / plain-text lines on --input or stdin")
    examples = []
    for index, (where, row) in enumerate(rows, start=1):
        row = {"id": str(index), **row}
        try:
            examples.append(kind.example(row, predicate=args.predicate))
        except ValueError as error:
            fields = [key for key in row if key != "id"]
            hint = (f"; found fields: {', '.join(map(repr, fields))} — pass --text-column with the one holding the"
                    " text (--tokens-column for tagging)" if fields and kind.name != "qa"
                    and str(error).startswith("expected") else "")
            raise PtuneError(f"{where}: {error}{hint}") from None
    return examples
