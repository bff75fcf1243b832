"""The ``ptune`` command line: one module per command (``train``, ``evaluate``, ``predict``...), the option
groups they share (``options``), where they write (``output``), and the entry point (``app``)."""

from ptune.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
