"""``ptune sweep``: trials on a tiny budget in a SQLite study, continued after a SIGKILL mid-trial (the killed trial
failed and not counted, the finished ones unchanged); the best configuration trains with ``ptune train --config``;
the table and the plot; pruning on a poor first epoch through Optuna's real pruner; the training loop's
``on_epoch`` hook; bad search spaces refused in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from ptune.cli import main
from ptune.training.sweep import EpochPruning, open_study


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep-data")
    good, bad = ["good", "great", "lovely", "superb"], ["bad", "awful", "dull", "poor"]
    for name, count in (("train", 16), ("dev", 8)):
        rows = [f"a {good[i % 4]} film,positive" if i % 3 else f"a {bad[i % 4]} film,negative" for i in range(count)]
        (folder / f"{name}.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    return folder


def sweep(data: Path, tiny_bert_dir, out: Path, trials: int) -> list[str]:
    return ["-q", "sweep", "--train", str(data / "train.csv"), "--dev", str(data / "dev.csv"),
            "--backbone", str(tiny_bert_dir), "--method", "deep", "--lr", "1e-3:1e-1:log", "--length", "2,4",
            "--layers", "all,top:1", "--reparam", "off", "--epochs", "1", "--max-steps", "2", "--batch-size", "8",
            "--trials", str(trials), "--out", str(out), "--storage", f"sqlite:///{out.parent / 'study.db'}"]


def trials(out: Path) -> list:
    return optuna.load_study(study_name="ptune", storage=f"sqlite:///{out.parent / 'study.db'}").trials


def test_sweep_continues_after_a_kill_and_its_best_config_trains(data, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(sweep(data, tiny_bert_dir, out, 2)) == 0
    first = [(t.number, t.params, t.value) for t in trials(out)]
    assert len(first) == 2 and all(t.state.name == "COMPLETE" for t in trials(out))
    assert "trial 1 complete" in capsys.readouterr().err

    env = dict(os.environ, PTUNE_FAULT="kill-after-step:1")  # SIGKILL in the next trial's first step
    killed = subprocess.run([sys.executable, "-m", "ptune.cli", *sweep(data, tiny_bert_dir, out, 3)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [t.state.name for t in trials(out)] == ["COMPLETE", "COMPLETE", "RUNNING"]

    assert main(sweep(data, tiny_bert_dir, out, 3)) == 0  # the same command continues the study
    assert "trial 2: killed mid-way" in capsys.readouterr().err
    after = trials(out)
    assert [t.state.name for t in after] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert [(t.number, t.params, t.value) for t in after[:2]] == first

    rows = json.loads((out / "trials.json").read_text())
    assert [row["state"] for row in rows] == ["complete", "complete", "fail", "complete"]
    assert {"lr", "length", "layers", "reparam", "dev"} <= set(rows[0])
    assert (out / "trials.md").read_text().startswith("| trial | state | dev accuracy | lr | length | layers |")
    assert (out / "effects.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "trials" / "trial-0003" / "prompt.safetensors").exists()

    best = max((t for t in after if t.value is not None), key=lambda t: t.value)
    config = json.loads((out / "best.json").read_text())
    assert {key: config[key] for key in best.params} == best.params and config["reparam"] is False
    assert main(["-q", "train", "--config", str(out / "best.json"), "--out", str(tmp_path / "best")]) == 0
    assert json.loads((tmp_path / "best" / "results.json").read_text())["method"] == "deep"


def test_an_enqueued_configuration_runs_first_and_once(data, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    known = ["--enqueue", '{"lr": 0.05, "length": 4, "layers": "top:1"}']
    assert main(sweep(data, tiny_bert_dir, out, 1) + known) == 0
    assert "1 trial(s) queued" in capsys.readouterr().err
    (first,) = trials(out)
    assert first.params == {"lr": 0.05, "length": 4, "layers": "top:1"} and first.state.name == "COMPLETE"
    assert main(sweep(data, tiny_bert_dir, out, 2) + known) == 0  # the same command continues: not queued again
    assert "queued" not in capsys.readouterr().err
    assert len(trials(out)) == 2 and trials(out)[1].params["lr"] != 0.05


def test_a_poor_first_epoch_is_pruned(tmp_path):
    """Optuna's median pruner, fed through the on_epoch callback by stub per-epoch dev scores."""
    study = open_study(f"sqlite:///{tmp_path / 'prune.db'}", "prune", startup_trials=2,
                       record={"space": {}, "options": {}})
    sequences = iter([[0.80, 0.85, 0.90], [0.70, 0.80, 0.90], [0.10, 0.95, 0.99], [0.75, 0.90, 0.95]])
    stopped = []

    def objective(trial) -> float:
        pruning = EpochPruning(trial)
        for epoch, score in enumerate(next(sequences), 1):
            if pruning({"epoch": epoch, "dev_accuracy": score, "score": score}):
                stopped.append((trial.number, epoch))
                raise optuna.TrialPruned()
        return pruning.best

    study.optimize(objective, n_trials=4)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]
    assert stopped == [(2, 1)]


def test_on_epoch_sees_each_epoch_and_can_stop_training(data, tiny_bert_dir):
    from ptune.config import MethodConfig, TrainConfig
    from ptune.data import from_files
    from ptune.model.backbones import load_backbone
    from ptune.model.prompt_model import PromptModel
    from ptune.training.loop import train

    task = from_files(str(data / "train.csv"), str(data / "dev.csv"))
    model = PromptModel.for_task(load_backbone(str(tiny_bert_dir)), task, MethodConfig(method="deep", length=2))
    seen = []
    result = train(model, task, TrainConfig(epochs=3, batch_size=8, progress=False),
                   on_epoch=lambda record: seen.append(record) or len(seen) == 2)
    assert [record["epoch"] for record in seen] == [1, 2] and len(result.history) == 2
    assert all(record["score"] == record["dev_accuracy"] for record in seen)


@pytest.mark.parametrize("option, value, fragment", [
    ("--lr", "0:1", "out of range"),
    ("--lr", "1e-1:1e-3:log", "LOW must be below HIGH"),
    ("--lr", "1e-3:1e-1:ln", "LOW:HIGH:log"),
    ("--lr", "fast", "not a number"),
    ("--length", "0,4", "out of range"),
    ("--length", "4,4", "given twice"),
    ("--layers", "all,middle", "'middle'"),
    ("--layers", "top:0", "top:0"),
    ("--reparam", "maybe", "on or off"),
    ("--init", "zeros", "not an init"),
    ("--trials", "0", "--trials"),
    ("--timeout", "-5", "--timeout"),
    ("--storage", "study.db", "not a database URL"),
    ("--enqueue", "lr=0.1", "not a JSON object"),
    ("--enqueue", '{"speed": 1}', "not searched here"),
    ("--enqueue", '{"lr": 5}', "outside its range"),
])
def test_bad_search_space_is_refused_in_one_line(tmp_path, capsys, option, value, fragment):
    assert main(["sweep", "--task", "rotten_tomatoes", "--out", str(tmp_path / "s"), option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option in err and fragment in err, err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["--method", "prompt", "--layers", "all,top:3"], "--layers all,top:3: --method prompt has no use for it"),
    (["--method", "deep", "--init", "vocab,random"], "--init vocab,random"),
    (["--method", "finetune", "--lr", "1e-4"], "nothing to search"),
    (["--task", "rotten_tomatoes", "conll2003"], "one task"),
])
def test_options_the_method_cannot_use_are_refused(tmp_path, capsys, argv, fragment):
    assert main(["sweep", "--task", "rotten_tomatoes", "--out", str(tmp_path / "s"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "s").exists()
