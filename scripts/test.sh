#!/usr/bin/env bash
# Set up (idempotent) and run the test suite.
#   bash scripts/test.sh          every test not marked slow (what CI runs)
#   bash scripts/test.sh --slow   only the tests marked slow (real models and longer runs)
#   bash scripts/test.sh --all    both
# Further arguments go to pytest (e.g. tests/test_server.py -x).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --slow) shift; SELECT=(-m slow) ;;
  --all) shift; SELECT=() ;;
  *) SELECT=(-m "not slow") ;;
esac
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python -m pytest -q --durations=15 "${SELECT[@]}" "$@"  # the 15 slowest, to keep CI in budget
