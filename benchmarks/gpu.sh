#!/usr/bin/env bash
# Training speed and memory on one CUDA GPU in under 4 minutes, nothing downloaded: randomly initialised
# SmolLM2-135M-shaped and Llama-3.2-1B-shaped models in bf16, ptune's deep prompt against PEFT prefix
# tuning in the same process. Writes benchmarks/results/gpu.json (see benchmarks/gpu.py).
#   bash benchmarks/gpu.sh            # on a machine with a CUDA GPU
#   bash benchmarks/gpu.sh --dry-run  # tiny shapes on the CPU: checks the script only
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
if [[ " $* " != *" --dry-run "* ]] && ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "benchmarks/gpu.sh: no CUDA device here (torch sees none); run it on a GPU machine, or pass --dry-run" >&2
    exit 2
fi
if [[ " $* " == *" --dry-run "* ]]; then exec "$PYTHON" benchmarks/gpu.py "$@"; fi  # no time limit on a busy CPU
exec timeout 240 "$PYTHON" benchmarks/gpu.py "$@"
