"""Rewrite every section of docs/RESULTS.md from the JSON under benchmarks/results/; nothing is re-measured.

Each benchmark script that owns a section names it in ``SECTION`` and renders it from its JSON in
``section()``. tests/test_results_doc.py checks that the page is exactly what this writes.

    python benchmarks/render.py
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from report import write_section  # noqa: E402


def owners() -> dict[str, ModuleType]:
    """Section key -> the benchmark module that renders it."""
    found = {}
    for path in sorted(HERE.glob("*.py")):
        if "\nSECTION = " not in path.read_text(encoding="utf-8"):
            continue  # report.py, this file, families.py (docs/FAMILIES.md) and other scripts with no section
        module = importlib.import_module(path.stem)
        if hasattr(module, "SECTION"):
            if module.SECTION in found:
                raise SystemExit(f"{path.name} and {found[module.SECTION].__file__} both render {module.SECTION!r}")
            found[module.SECTION] = module
    return found


def main() -> None:
    for key, module in owners().items():
        write_section(key, module.section())
        print(f"{key}: {Path(module.__file__).name}")


if __name__ == "__main__":
    main()
