#!/usr/bin/env bash
# Photograph the playground (docs/playground*.png) from a live `ptune serve`, in headless Chromium:
# the views tests/test_playground.py checks (tests/playground_steps.py). Needs scripts/setup.sh run
# (as root it also installs chromium and chromium-driver). Options: --tiny (a tiny random Llama for
# the generation view instead of SmolLM2), --out FOLDER.
set -euo pipefail
cd "$(dirname "$0")/.."
HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false exec .venv/bin/python scripts/screenshots.py "$@"
