"""The examples users copy first run as written: the ``ptune`` docstring and the README's
"## Python" block (each trains on a small budget, in a temporary folder). ``import ptune`` stays
light, every public name resolves, and docs/ARCHITECTURE.md names files and layers that exist."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ptune

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


def docstring_example(doc: str) -> str:
    """The first indented block of ``doc``, dedented."""
    block = []
    for line in doc.splitlines():
        if line.startswith("    "):
            block.append(line)
        elif block and line.strip():
            break
    assert block, "the ptune docstring has no indented example"
    return textwrap.dedent("\n".join(block))


def readme_python_block(text: str) -> str:
    """The ```python block under the README's "## Python" heading."""
    section = re.search(r"^## Python\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, 'README.md has no "## Python" section'
    code = re.search(r"^```python\n(.*?)^```", section.group(1), re.MULTILINE | re.DOTALL)
    assert code, 'README.md "## Python" has no ```python block'
    return code.group(1)


def run_example(source: str, name: str) -> dict:
    namespace: dict = {"__name__": name}
    exec(compile(source, name, "exec"), namespace)  # noqa: S102 - running the documented example is the test
    return namespace


def test_package_docstring_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_example(docstring_example(ptune.__doc__), "<ptune docstring>")
    assert 0.0 <= namespace["scores"]["accuracy"] <= 1.0
    assert (tmp_path / "runs" / "rt" / "prompt.safetensors").is_file()


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_example(readme_python_block(README.read_text(encoding="utf-8")), "<README.md ## Python>")
    assert 0.0 <= namespace["scores"]["accuracy"] <= 1.0
    assert len(namespace["labels"]) == 1 and namespace["labels"][0] in namespace["task"].labels
    examples = namespace["task"].test[:20]  # the reloaded prompt predicts as the trained one did
    assert ptune.predict(namespace["again"], examples) == ptune.predict(namespace["model"], examples)


def test_import_ptune_does_not_import_torch():
    code = "import ptune, sys; heavy = sorted({'torch', 'transformers'} & set(sys.modules)); assert not heavy, heavy"
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"`import ptune` must stay light (names load on first use):\n{done.stderr[-600:]}"


@pytest.mark.parametrize("name", ptune.__all__)
def test_public_name_resolves(name):
    assert getattr(ptune, name) is not None
    assert name in dir(ptune)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        ptune.nothing  # noqa: B018


def test_architecture_names_files_that_exist():
    package = ROOT / "src" / "ptune"
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = []
    for name in sorted(set(re.findall(r"`([\w/]+(?:\.py|/))`", text))):
        if "/" in name.rstrip("/"):
            found = any((base / name).exists() for base in (package, package.parent, ROOT))
        else:
            found = any(package.rglob(name.rstrip("/")))
        if not found:
            missing.append(name)
    assert not missing, f"docs/ARCHITECTURE.md names files or folders that do not exist: {', '.join(missing)}"


def test_architecture_layer_table_matches_the_layout_test():
    from test_layout import FACADE, LAYERS

    text = ARCHITECTURE.read_text(encoding="utf-8")
    documented = {}
    for number, packages in re.findall(r"^\| (\d+) \| (.*) \|$", text, re.MULTILINE):
        for name in re.findall(r"`(\w+)`", packages):
            documented[FACADE if name == FACADE else f"ptune.{name}"] = int(number)
    assert documented == LAYERS, "docs/ARCHITECTURE.md's layer table differs from LAYERS in tests/test_layout.py"
