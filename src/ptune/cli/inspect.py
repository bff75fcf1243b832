"""``ptune inspect``: what a prompt file holds (method, task, backbone, size), and optionally the nearest
vocabulary tokens of each prompt vector."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ptune.cli.options import add_backbone_override, load_prompt_and_backbone
from ptune.cli.output import out, print_json
from ptune.bounds import COUNT


def add_parser(sub) -> None:
    inspect = sub.add_parser("inspect", help="describe a prompt file: method, parameters, size")
    inspect.add_argument("prompt", help="prompt file (.safetensors), a folder holding prompt.safetensors or a hub "
                                        "repo id user/name")
    inspect.add_argument("--json", action="store_true", help="print the full header as JSON")
    inspect.add_argument("--neighbours", type=COUNT, metavar="K",
                         help="list the K nearest vocabulary tokens of each prompt vector")
    inspect.add_argument("--png", help="where to draw the neighbours (default: next to the prompt file; a hub repo's: "
                                       "USER--NAME.neighbours.png here)")
    add_backbone_override(inspect)
    inspect.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ptune.storage.locations import locate_prompt
    from ptune.storage.prompt_files import read_header

    prompt = locate_prompt(args.prompt)
    header = read_header(prompt)
    size = prompt.stat().st_size
    trainable, total = header.get("trainable_params", 0), header.get("backbone_params", 0)
    if args.json:
        print_json({**header, "file_bytes": size})
        return 0
    table = Table(show_header=False, box=None)
    method = header["method"]
    rows = [
        ("file", f"{prompt} ({size:,} bytes)"),
        ("method", method["method"] + method_detail(method)),
        ("task", f"{header['task']['name']} ({header['task']['kind']}"
                 + (f", {len(header['task']['labels'])} labels)" if header["task"]["labels"] else ")")),
        ("backbone", f"{header['backbone']['name']} ({header['backbone']['model_type']}, "
                     f"{header['backbone']['num_layers']} layers, hidden {header['backbone']['hidden_size']})"),
        ("trainable", f"{trainable:,} parameters = {100 * trainable / max(total, 1):.3f}% of {total:,}"),
        ("metrics", json.dumps(header.get("metrics", {}))),
        ("created", header.get("created", "?")),
    ]
    for key, value in rows:
        table.add_row(f"[bold]{key}", escape(value))  # names and paths as they are: "[x]" is no markup
    out().print(table)
    if args.neighbours:
        _print_neighbours(args, prompt)
    return 0


def method_detail(method: dict) -> str:
    """The options that matter for ``method`` (a prompt header's method record), e.g. ' (length 16, ...)'."""
    if method.get("head") == "verbalizer":
        words = method.get("verbalizer") or "label names"
        return method_detail({**method, "head": "linear"}) + f" · verbalizer head ({words})"
    if method["method"] == "deep":
        return f" (length {method['length']}, layers {method['layers']}, reparam {method['reparam']})"
    if method["method"] in ("prompt", "ptuning"):
        encoder = f", encoder {method['encoder']}" if method["method"] == "ptuning" else ""
        detail = f" (init {method['init']}{encoder}"
        shape = f", template {method['template']!r}" if method.get("template") else f", length {method['length']}"
        return detail + shape + ")"
    return ""


def _print_neighbours(args: argparse.Namespace, prompt: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ptune.analysis.interpret import nearest_tokens, plot_neighbours

    model = load_prompt_and_backbone(args)
    found = nearest_tokens(model, args.neighbours)
    table = Table(title=f"nearest vocabulary tokens ({found.space}, cosine)")
    table.add_column("prompt vector", justify="right")
    for rank in range(args.neighbours):
        table.add_column(f"#{rank + 1}")
    for index, (tokens, sims) in enumerate(zip(found.tokens, found.similarities)):
        table.add_row(str(index), *(escape(f"{t} ({s:.2f})") for t, s in zip(tokens, sims)))
    out().print(table)
    here = Path(args.prompt).exists()  # else a hub repo: not into the hub's cache
    png = Path(args.png) if args.png else (prompt.with_suffix(".neighbours.png") if here
                                           else Path(args.prompt.replace("/", "--") + ".neighbours.png"))
    plot_neighbours(found, png, title=f"{args.prompt}")
    out().print(f"plot: {png}", markup=False, highlight=False)
