#!/usr/bin/env bash
# The test suite against the newest releases that pyproject.toml's ranges allow (transformers,
# accelerate, safetensors, datasets, ... ; not constraints.txt), in a separate .venv-latest.
# torch stays 2.13.0, the CPU build. Run it when a dependency releases; if it passes, constraints.txt
# can move up (see the recipe at its top). Arguments go to pytest, as with scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PTUNE_VENV=.venv-latest PTUNE_LATEST=1
bash scripts/setup.sh
. .venv-latest/bin/activate
echo "Newest releases installed (constraints.txt pins what CI tests):"
python - <<'PY'
import importlib.metadata as md, platform
print(f"  python {platform.python_version()}")
for name in ["torch", "transformers", "accelerate", "safetensors", "peft", "datasets", "huggingface_hub",
             "tokenizers", "numpy", "scipy", "gguf"]:
    try:
        version = md.version(name)
    except md.PackageNotFoundError:
        version = "not installed"
    pinned = next((line.split("==")[1].strip() for line in open("constraints.txt")
                   if line.lower().replace("_", "-").startswith(name.replace("_", "-") + "==")), "-")
    print(f"  {name:16} {version:14} (constraints.txt: {pinned})")
PY
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python -m pytest -q "$@"
