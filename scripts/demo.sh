#!/usr/bin/env bash
# Set up (idempotent), then the main job on the embedded defaults: a deep prompt (P-tuning v2)
# on the frozen MiniLM encoder for rotten_tomatoes sentence polarity (about 3.5 minutes of training on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out=${1:-runs/demo-rotten_tomatoes-deep}
ptune train --task rotten_tomatoes --method deep --epochs 3 --out "$out" --overwrite  # rerunnable
ptune inspect "$out/prompt.safetensors"
ptune predict "$out/prompt.safetensors" --text "a moving, beautifully acted film" "a tedious, joyless mess"
