"""Shared by the benchmark scripts: write one marked section of docs/RESULTS.md."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "RESULTS.md"
HEADER = "# Results\n\nEvery figure here comes from a script in benchmarks/; each section names its command, machine and date.\n\n"


def write_section(key: str, markdown: str) -> None:
    """Replace (or append) the section between <!-- key:start --> and <!-- key:end -->."""
    text = REPORT.read_text() if REPORT.exists() else HEADER
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}\n"
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) + 1 :]
    else:
        text = text.rstrip() + "\n\n" + block
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
