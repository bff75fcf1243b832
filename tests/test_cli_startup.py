"""The CLI's front door: help without loading torch, global flags on either side of the command, and every
option's default in its help."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from ptune.cli import build_parser, main

COMMANDS = ["train", "sweep", "evaluate", "generate", "predict", "inspect", "export", "import-peft", "save-pretrained",
            "push", "benchmark", "serve", "probe", "probe-sweep"]
# Runs the CLI as `python -m ptune.cli` does, then reports which heavy modules that loaded.
WRAPPER = """
import runpy, sys
sys.argv = ["ptune", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("ptune.cli", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
print("LOADED:" + ",".join(m for m in ("torch", "transformers", "rich") if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_every_command_is_covered():
    assert sorted(subcommands(build_parser())) == sorted(COMMANDS)


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=lambda c: " ".join(c) or "ptune")
def test_help_loads_no_torch_transformers_or_rich(command):
    done = subprocess.run([sys.executable, "-c", WRAPPER, *command, "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: ptune {' '.join(command)}".rstrip())
    assert done.stderr.strip().splitlines()[-1] == "LOADED:", done.stderr


@pytest.mark.parametrize("command", [["train"], ["predict", "p.safetensors"], ["serve", "folder"], ["probe"]])
def test_global_flags_before_or_after_the_command(command):
    parse = build_parser().parse_args
    for flag, dest in (("-q", "quiet"), ("--quiet", "quiet"), ("-v", "verbose"), ("--verbose", "verbose"),
                       ("--trust-remote-code", "trust_remote_code")):
        assert getattr(parse(command), dest) is False
        assert getattr(parse([flag, *command]), dest) is True, f"{flag} before {command[0]}"
        assert getattr(parse([*command, flag]), dest) is True, f"{flag} after {command[0]}"
    both = parse(["-q", *command, "-v", "--trust-remote-code"])
    assert (both.quiet, both.verbose, both.trust_remote_code) == (True, True, True)


def test_flags_after_the_command_reach_the_run(tmp_path, capsys):
    """`ptune train ... -q` behaves as `ptune -q train ...`: the error path runs with the flags set."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["train", "--train", str(empty), "-q", "--trust-remote-code"]) == 2
    assert "empty.jsonl" in capsys.readouterr().err


def test_train_help_shows_defaults(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit:
        main(["train", "--help"])
    assert exit.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for text in ("examples per step (default: 32)", "(default: deep)", "(default: minilm)",
                 "epochs (default: prompt 10, ptuning 10, deep 10, finetune 3)",
                 "(default: prompt 20, ptuning 8, deep 16; deep on tagging tasks 64)",
                 "deep 0.03 (0.05 on tagging tasks)",
                 "torch.compile the forward pass (measured in docs/RESULTS.md) (default: off)",
                 "-q, --quiet no progress bars (default: off)"):
        assert text in shown, text


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_shows_its_default(command):
    parser = subcommands(build_parser())[command]
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction) or action.required:
            continue
        formatter = parser.formatter_class(prog="ptune")
        formatter.add_argument(action)
        assert "default" in formatter.format_help(), f"ptune {command} {action.option_strings[-1]}"
