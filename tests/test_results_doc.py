"""docs/RESULTS.md and docs/FAMILIES.md are exactly what the benchmark scripts render from the JSON under
benchmarks/results/: no figure typed by hand, no section without a script (issue 16)."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
render = importlib.import_module("render")

PAGE = (ROOT / "docs" / "RESULTS.md").read_text()
OWNERS = render.owners()


def test_every_section_has_a_script():
    on_page = re.findall(r"<!-- (\w+):start -->", PAGE)
    assert len(on_page) == len(set(on_page)), "a section appears twice"
    assert sorted(on_page) == sorted(OWNERS), "a section no script renders, or a script's section is missing"


@pytest.mark.parametrize("key", sorted(OWNERS))
def test_section_is_rendered_from_the_json(key):
    start, end = f"<!-- {key}:start -->\n", f"\n<!-- {key}:end -->"
    shown = PAGE[PAGE.index(start) + len(start): PAGE.index(end)]
    assert shown == OWNERS[key].section().rstrip(), f"rerun: python benchmarks/render.py ({key})"


def test_families_page_is_rendered_from_the_json():
    families = _load("families", ROOT / "benchmarks" / "families.py")
    result = json.loads((ROOT / "benchmarks" / "results" / "families.json").read_text())
    assert (ROOT / "docs" / "FAMILIES.md").read_text() == families.render(result)


def _load(name: str, path: Path):
    """benchmarks/families.py under another name: tests/families.py (the suite) owns the plain one."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
