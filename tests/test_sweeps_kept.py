"""benchmarks/sweeps.py keeps each study where git keeps it: the report and the Optuna storage after every
trial, a study continued from that storage on a machine without the working folder, and a study kept before
the storage was rebuilt from its trials.json, which `ptune sweep` then continues."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
sweeps = importlib.import_module("sweeps")


@pytest.fixture
def places(tmp_path, monkeypatch):
    monkeypatch.setattr(sweeps, "WORK", tmp_path / "work")
    monkeypatch.setattr(sweeps, "KEPT", tmp_path / "kept")
    monkeypatch.setattr(sweeps, "ROOT", tmp_path)
    return tmp_path


def test_a_kept_study_comes_back_on_a_machine_without_its_working_folder(places):
    work = sweeps.study_dir("conll2003_deep")
    work.mkdir(parents=True)
    (work / "study.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    (work / "trials.md").write_text("| trial |\n")
    sweeps.keep("conll2003_deep")
    kept = places / "kept" / "conll2003_deep"
    assert sorted(p.name for p in kept.iterdir()) == ["study.db.gz", "trials.md"]
    stored = (work / "study.db").read_bytes()
    (work / "study.db").unlink()
    sweeps.restore("conll2003_deep")
    assert (work / "study.db").read_bytes() == stored
    (work / "study.db").write_bytes(b"newer")
    sweeps.restore("conll2003_deep")  # a working storage is never replaced by the kept one
    assert (work / "study.db").read_bytes() == b"newer"


def test_a_study_is_rebuilt_from_its_trials_and_ptune_sweep_continues_it(places):
    optuna = pytest.importorskip("optuna")
    kept = places / "kept" / "smollm2_verbalizer_deep"
    kept.mkdir(parents=True)
    rows = [{"trial": 0, "state": "complete", "dev": 0.8, "lr": 0.005, "length": 8, "layers": "all", "reparam": True,
             "best_epoch": 2, "run": "/gone/trial-0000"},
            {"trial": 1, "state": "pruned", "dev": 0.6, "lr": 0.03, "length": 4, "layers": "all", "reparam": False,
             "best_epoch": 1, "run": "/gone/trial-0001"},
            {"trial": 2, "state": "fail", "dev": None, "lr": 0.01, "length": 16, "layers": "all", "reparam": False,
             "best_epoch": None, "run": "/gone/trial-0002"}]
    (kept / "trials.json").write_text(json.dumps(rows))
    assert sweeps.reseed("smollm2_verbalizer_deep") == 2  # the failed trial is not carried over
    storage = sweeps.study_dir("smollm2_verbalizer_deep") / "study.db"
    study = optuna.load_study(study_name="ptune", storage=f"sqlite:///{storage}")
    assert [t.params for t in study.trials] == [{"lr": 0.005, "length": 8, "reparam": True},
                                                {"lr": 0.03, "length": 4, "reparam": False}]
    assert study.best_value == 0.8 and study.trials[1].state.name == "PRUNED"
    with pytest.raises(SystemExit, match="nothing to rebuild"):
        sweeps.reseed("smollm2_verbalizer_deep")
    gap = sweeps.GAPS["smollm2_verbalizer_deep"]["sweep"]
    done = subprocess.run([sys.executable, "-m", "ptune.cli", "sweep", *gap, "--trials", "2", "--out",
                           str(storage.parent)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # the study's record accepted, no trial left to run
    summary = json.loads(done.stdout)
    assert summary["trials"]["complete"] == 1 and summary["trials"]["pruned"] == 1
    assert summary["best"]["settings"] == {"lr": 0.005, "length": 8, "reparam": True}


def test_a_probing_winner_is_carried_to_the_other_relations_with_their_own_templates(tied_llama_dir):
    """`sweeps.py transfer`: the winner's command on continent-of and borders, each with its LAMA template in place
    of the capital wording, 3 real seeds on the test split of split seed 0, set against probe_facts.json's rows."""
    sweeps_probe = importlib.import_module("sweeps_probe")
    command = (f"ptune probe --facts tests/fixtures/facts/P36.jsonl --manual 'The capital of [X] is [Y] .' --method "
               f"ptuning --backbone {tied_llama_dir} --candidates objects --multi-token --epochs 1 --limit 3 "
               f"--prompts 1 --encoder none --batch-size 16 --seed 0")
    out = sweeps_probe.transfer_probe(command, threads=1)
    assert list(out["relations"]) == ["P30", "P47"] and out["seeds"] == [0, 1, 2] and out["split_seed"] == 0
    earlier = json.loads((Path(sweeps.ROOT) / "benchmarks" / "results" / "probe_facts.json").read_text())
    assert out["settings_before"]["encoder"] == earlier["settings"]["encoder"]
    for relation, row in out["relations"].items():
        assert f"--facts tests/fixtures/facts/{relation}.jsonl" in row["command"]
        assert "--manual" not in row["command"] and "--relations tests/fixtures/facts/relations.jsonl" in row["command"]
        assert len(row["ptuning_p1"]) == 3 and all(0 <= p <= 1 for p in row["ptuning_p1"])
        before = next(r for r in earlier["relations"] if r["relation"] == relation)
        assert row["before_p1_mean"] == before["ptuning_p1_mean"] and row["builtin"] == before["builtin"]
