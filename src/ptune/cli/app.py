"""The ``ptune`` entry point: the parser of every command, logging, and errors as one line and an exit code.

Every user-fixable problem surfaces as one line on stderr and exit code 2, never a traceback. Building the
parser imports no torch or transformers: each command loads them inside its ``run``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from ptune.cli import benchmark, evaluate, export, generate, inspect, predict, probe_sweep, serve, share, sweep, train
from ptune.cli.options import CommandParser, DefaultsFormatter, OneLineParser, add_device_options, add_global_flags
from ptune.cli.output import err
from ptune.errors import PtuneError


def build_parser() -> argparse.ArgumentParser:
    from ptune.analysis.probing.command import add_probe_parser

    parser = OneLineParser(prog="ptune", description="Prompt tuning of frozen Hugging Face transformers.",
                                     formatter_class=DefaultsFormatter)
    add_global_flags(parser, after_command=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for command in (train, sweep, evaluate, generate, predict, inspect, export, share, benchmark, serve):
        command.add_parser(sub)
    add_probe_parser(sub)
    add_device_options(sub.choices["probe"])  # the probe parser lives in analysis, which cannot import the CLI
    probe_sweep.add_parser(sub)
    return parser


def setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err(), show_path=False, show_time=False)])
    logging.getLogger("ptune").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # an option refused (one line printed): the status, as for any error
        if not exit.code:
            raise  # --help
        return exit.code
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: `ptune train` records it in results.json
    setup_logging(args.verbose or args.command == "train")
    try:
        return args.func(args)
    except PtuneError as error:
        print_error(str(error))
        return 2
    except OSError as error:  # a path the user gave that cannot be read or written (permissions, a full disk)
        where = f"{error.filename}: " if error.filename else ""
        print_error(f"{where}{error.strerror or error}; check the path, its permissions and free space")
        return 2
    except KeyboardInterrupt:
        err().print("interrupted")
        return 130


def print_error(message: str) -> None:
    """``error: message`` on stderr, one line; the message is plain text (rich markup would eat "[...]")."""
    from rich.text import Text

    err().print(Text.assemble(("error:", "bold red"), " ", " ".join(message.splitlines())), soft_wrap=True)
