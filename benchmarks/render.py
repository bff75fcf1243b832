"""Rewrite every section of docs/RESULTS.md from the JSON under benchmarks/results/; nothing is re-measured.

Each benchmark script that owns a section names it in ``SECTION`` and renders it from its JSON in
``section()``. tests/test_results_doc.py checks that the page is exactly what this writes.

    python benchmarks/render.py
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from report import REPORT, drop_section, write_section  # noqa: E402


def owners() -> dict[str, ModuleType]:
    """Section key -> the benchmark module that renders it from its JSON (``RESULTS``), for every script
    whose JSON exists."""
    found = {}
    for path in sorted(HERE.glob("*.py")):
        if "\nSECTION = " not in path.read_text(encoding="utf-8"):
            continue  # report.py, this file, families.py (docs/FAMILIES.md) and other scripts with no section
        module = importlib.import_module(path.stem)
        if hasattr(module, "SECTION") and module.RESULTS.exists():  # a script not yet run has no section
            if module.SECTION in found:
                raise SystemExit(f"{path.name} and {found[module.SECTION].__file__} both render {module.SECTION!r}")
            found[module.SECTION] = module
    return found


def main() -> None:
    found = owners()
    for key, module in found.items():
        write_section(key, module.section())
        print(f"{key}: {Path(module.__file__).name}")
    for key in re.findall(r"<!-- (\w+):start -->", REPORT.read_text()):
        if key not in found:
            drop_section(key)
            print(f"{key}: dropped (no script renders it from JSON)")


if __name__ == "__main__":
    main()
