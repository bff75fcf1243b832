"""Shared by the benchmark scripts: the machine and library versions a record names, writing a
results JSON, and one marked section of docs/RESULTS.md."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "RESULTS.md"
HEADER = "# Results\n\nEvery figure here comes from a script in benchmarks/; each section names its command, machine and date.\n\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it: a benchmark killed mid-write leaves the
    previous file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_section(key: str, markdown: str) -> None:
    """Replace (or append) the section between <!-- key:start --> and <!-- key:end -->."""
    text = REPORT.read_text() if REPORT.exists() else HEADER
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}\n"
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) + 1 :]
    else:
        text = text.rstrip() + "\n\n" + block
    write_atomic(REPORT, text)


def drop_section(key: str) -> None:
    """Remove section ``key`` (a result withdrawn, or a script whose JSON is gone)."""
    text = REPORT.read_text()
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->\n"
    if start in text:
        before = text[: text.index(start)].rstrip("\n")
        write_atomic(REPORT, before + "\n\n" + text[text.index(end) + len(end):].lstrip("\n"))


def versions(*packages: str) -> dict:
    """Python's version and each installed package's (None where it is not installed)."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "?"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")


def machine(threads: int | None = None) -> str:
    """The machine a record names: CPU model, architecture, CPU count (and torch threads when set), and the
    1-minute load average as the record is written, so a reader can tell an idle machine from a shared one."""
    import os

    text = f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs"
    return text + (f", torch threads {threads}" if threads else "") + f", load {os.getloadavg()[0]:.1f} when recorded"


def provenance(r: dict) -> str:
    """``Command: ... · machine: ... · date: ... · ptune X, torch Y, transformers Z`` of a saved record."""
    v = r["versions"]
    return (f"Command: `{r['command']}` · machine: {r['machine']} · date: {r['date']} · ptune {v['ptune']}, "
            f"torch {v['torch']}, transformers {v['transformers']}")


def save(path: Path, record: dict, key: str, markdown: str) -> None:
    """Write ``record`` as JSON to ``path`` and ``markdown`` as section ``key`` of docs/RESULTS.md."""
    write_atomic(path, json.dumps(record, indent=2) + "\n")
    write_section(key, markdown)
