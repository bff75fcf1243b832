"""``ptune train --seeds``: one run folder per seed, a summary whose mean and std are those of the per-seed scores,
``ptune evaluate`` on the folder (or the prompt files) giving the same summary, and ``--resume`` of a folder whose
second seed was interrupted. A tiny random BERT on a few sentences keeps each run to seconds."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from safetensors.torch import load_file

import ptune.training.loop
from ptune.cli import main

SEEDS = ["1", "2", "4"]  # on this tiny model, seed 4 lands on the other class: the std is not 0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seed-data")
    good, bad = ["good", "great", "lovely", "superb"], ["bad", "awful", "dull", "poor"]
    for name, count in (("train", 16), ("dev", 8), ("test", 8)):
        rows = [f"a {good[i % 4]} film,positive" if i % 3 else f"a {bad[i % 4]} film,negative" for i in range(count)]
        (folder / f"{name}.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    return folder


def argv(data: Path, tiny_bert_dir, out: Path, *seeds: str) -> list[str]:
    return ["-q", "train", "--train", str(data / "train.csv"), "--dev", str(data / "dev.csv"), "--test",
            str(data / "test.csv"), "--backbone", str(tiny_bert_dir), "--method", "deep", "--length", "2",
            "--lr", "0.03", "--epochs", "1", "--max-steps", "3", "--batch-size", "4", "--checkpoint-every", "1",
            "--out", str(out), "--seeds", *seeds]


@pytest.fixture(scope="module")
def three(data, tiny_bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("three") / "run"
    assert main(argv(data, tiny_bert_dir, out, *SEEDS)) == 0
    return out


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_one_run_folder_per_seed_and_a_summary(three):
    for seed in SEEDS:
        run = three / f"seed-{seed}"
        assert {"prompt.safetensors", "results.json", "metrics.jsonl", "curve.png"} <= {p.name for p in run.iterdir()}
    summary = read(three / "results.json")
    assert summary["seeds"] == [1, 2, 4] and summary["std"].startswith("sample")
    for split in ("dev", "test"):
        per_seed = {f"seed-{s}": read(three / f"seed-{s}" / "results.json")[split]["accuracy"] for s in SEEDS}
        accuracy = summary[split]["accuracy"]
        assert accuracy["values"] == per_seed
        assert accuracy["mean"] == pytest.approx(statistics.mean(per_seed.values()))
        assert accuracy["std"] == pytest.approx(statistics.stdev(per_seed.values()))
    options = read(three / "config.json")  # the runs' options as a --config file, paths absolute
    assert options["length"] == 2 and Path(options["train"]).is_absolute() and "seed" not in options


def test_evaluate_on_the_folder_or_the_files_gives_the_same_summary(three, data, capsys):
    summary = read(three / "results.json")
    capsys.readouterr()
    assert main(["-q", "evaluate", str(three), "--data", str(data / "test.csv")]) == 0
    folder = json.loads(capsys.readouterr().out)
    assert folder["scores"] == summary["test"]
    files = [str(three / f"seed-{s}" / "prompt.safetensors") for s in SEEDS]
    assert main(["-q", "evaluate", *files, "--data", str(data / "test.csv")]) == 0
    given = json.loads(capsys.readouterr().out)
    assert list(given["scores"]["accuracy"]["values"]) == files
    assert given["scores"]["accuracy"]["mean"] == pytest.approx(summary["test"]["accuracy"]["mean"])


def test_resume_finishes_an_interrupted_seed(three, data, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    calls = []

    def interrupt(event: str, count: int) -> None:  # seed 1 takes 3 steps; stop seed 2 after its first
        calls.append(event)
        if event == "kill-after-step" and len(calls) == 5:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    monkeypatch.setattr(ptune.training.loop, "fault", interrupt)
    assert main(argv(data, tiny_bert_dir, out, "1", "2")) == 130
    assert (out / "seed-1" / "prompt.safetensors").exists() and (out / "seed-2" / "checkpoint.safetensors").exists()
    monkeypatch.undo()
    finished = (out / "seed-1" / "prompt.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["-q", "train", "--resume", str(out), "--seeds", "4"]) == 2
    assert "drop --seeds" in capsys.readouterr().err
    assert main(["-q", "train", "--resume", str(out)]) == 0
    assert (out / "seed-1" / "prompt.safetensors").stat().st_mtime_ns == finished  # not trained again
    assert list(read(out / "results.json")["dev"]["accuracy"]["values"]) == ["seed-1", "seed-2"]
    resumed, whole = (load_file(str(folder / "seed-2" / "prompt.safetensors")) for folder in (out, three))
    assert all(resumed[name].equal(whole[name]) for name in whole)  # as if never interrupted


@pytest.mark.parametrize("seeds, extra, fragment", [
    (["1", "2"], ["--seed", "4"], "not both"),
    (["1", "1"], [], "given twice"),
    (["1", "-1"], [], "--seeds"),
])
def test_refused_in_one_line(data, tiny_bert_dir, tmp_path, capsys, seeds, extra, fragment):
    assert main([*argv(data, tiny_bert_dir, tmp_path / "run", *seeds), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err
    assert not (tmp_path / "run").exists()


def test_multi_task_is_refused(tmp_path, capsys):
    assert main(["train", "--task", "rotten_tomatoes", "conll2003", "--seeds", "1", "2"]) == 2
    assert "multi-task" in capsys.readouterr().err
