"""benchmarks/t5_lester.py --smoke runs Lester et al.'s T5 setting end to end on a tiny random T5 (input
prompt from label words, deep prompts, fine-tuning; rank classification on rotten_tomatoes), writing
under a temp dir and never into the tracked results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_run_writes_only_under_its_folder(tmp_path):
    tracked = [ROOT / "benchmarks" / "results" / "t5_lester.json", ROOT / "docs" / "RESULTS.md"]
    before = {path: path.read_bytes() if path.exists() else None for path in tracked}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "t5_lester.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "t5_lester.json").read_text())
    assert record["status"] == "measured" and record["smoke"]
    assert [run["method"] for run in record["runs"]] == ["prompt", "deep", "finetune"]
    for run in record["runs"]:
        assert 0.0 <= run["test"]["accuracy"] <= 1.0 and run["trainable"] > 0
    assert record["runs"][0]["options"]["init"] == "labels"
    assert record["runs"][2]["trainable_percent"] == 100.0
    section = (tmp_path / "RESULTS.md").read_text()
    assert "<!-- t5_lester:start -->" in section and "smoke run, not a result" in section
    assert {path: path.read_bytes() if path.exists() else None for path in tracked} == before


def test_tracked_record_says_why_it_is_not_measured():
    record = json.loads((ROOT / "benchmarks" / "results" / "t5_lester.json").read_text())
    if record["status"] == "not measured":
        assert record["reason"] == "no pretrained weights offline"
        assert "not measured here: no pretrained weights offline" in (ROOT / "docs" / "RESULTS.md").read_text().lower()
    else:
        assert {run["method"] for run in record["runs"]} == {"prompt", "deep", "finetune"}
