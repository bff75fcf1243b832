"""Where the CLI writes: results (JSON, tables) on stdout, log lines and errors on stderr.

rich loads on first use, so that ``--help`` and argument errors do not pay for it.
"""

from __future__ import annotations

import json
from functools import cache


@cache
def out():
    """The stdout console (results)."""
    from rich.console import Console

    return Console()


@cache
def err():
    """The stderr console (log lines, errors)."""
    from rich.console import Console

    return Console(stderr=True)


def print_json(data) -> None:
    """``data`` as pretty JSON on stdout."""
    out().print_json(json.dumps(data))


def print_line(record) -> None:
    """``record`` as one JSON line on stdout (predictions, generations); as written: markup would eat "[...]"."""
    out().print(json.dumps(record, ensure_ascii=False), soft_wrap=True, highlight=False, markup=False)
