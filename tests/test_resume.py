"""Crash safety: real training subprocesses killed with SIGKILL, resumed, and compared bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ptune.cli import main
from ptune.data import get_task
from ptune.training.resume import CHECKPOINT

pytestmark = pytest.mark.slow  # real training subprocesses, killed and resumed: minutes on 2 cores

# 48 examples, batch 8: 6 steps per epoch, 18 in all; a checkpoint every 4 steps and at epoch ends.
OPTIONS = ["--method", "deep", "--length", "4", "--epochs", "3", "--batch-size", "8", "--checkpoint-every", "4",
           "--patience", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rt")
    task = get_task("rotten_tomatoes")
    for name, examples in (("train", task.train[:48]), ("dev", task.dev[:16])):
        rows = ["text\tlabel"] + [f"{e.text}\t{e.label}" for e in examples]
        (folder / f"{name}.tsv").write_text("\n".join(rows) + "\n")
    return folder


def ptune(*args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("PTUNE_FAULT", None)
    if fault:
        env["PTUNE_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "ptune.cli", "-q", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def start(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--train", str(data / "train.tsv"), "--dev", str(data / "dev.tsv"), *OPTIONS, "--out", str(out),
            *extra]


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "whole"
    result = ptune(*start(data, out))
    assert result.returncode == 0, result.stderr
    return out


def assert_same_prompt(a: Path, b: Path) -> None:
    first, second = load_file(str(a / "prompt.safetensors")), load_file(str(b / "prompt.safetensors"))
    assert first.keys() == second.keys()
    for name in first:
        assert first[name].equal(second[name]), f"{name} differs after resume"


@pytest.mark.parametrize("fault", ["kill-after-step:10", "kill-in-checkpoint:3"])
def test_killed_run_resumes_to_the_same_prompt(data, uninterrupted, tmp_path, fault):
    out = tmp_path / "run"
    killed = ptune(*start(data, out), fault=fault)
    assert killed.returncode == -signal.SIGKILL
    assert (out / CHECKPOINT).is_file() and not (out / "prompt.safetensors").exists()
    if fault.startswith("kill-in-checkpoint"):
        assert list(out.glob(".checkpoint.safetensors.*.tmp")), "the half-written checkpoint was left aside"
    resumed = ptune("train", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_prompt(uninterrupted, out)
    assert not (out / CHECKPOINT).exists() and not list(out.glob(".*.tmp"))
    epochs = [line for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    assert len(epochs) == 3


def test_sigkill_from_outside_mid_epoch(data, uninterrupted, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("PTUNE_FAULT", None)
    process = subprocess.Popen([sys.executable, "-m", "ptune.cli", "-q", *start(data, out)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / CHECKPOINT).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = ptune("train", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_prompt(uninterrupted, out)


def test_finished_run_is_not_overwritten(data, uninterrupted, capsys):
    before = (uninterrupted / "prompt.safetensors").read_bytes()
    assert main(start(data, uninterrupted)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["train", "--resume", str(uninterrupted)]) == 2
    assert "already finished" in capsys.readouterr().err
    assert (uninterrupted / "prompt.safetensors").read_bytes() == before


def test_resume_refuses_other_options_and_changed_data(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert ptune(*start(data, out), fault="kill-after-step:5").returncode == -signal.SIGKILL
    assert main(["train", "--resume", str(out), "--lr", "0.1"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    train = data / "train.tsv"
    original = train.read_text()
    try:
        train.write_text(original.replace("\tpositive\n", "\tnegative\n", 1))
        assert main(["train", "--resume", str(out)]) == 2
        assert "data differ" in capsys.readouterr().err
    finally:
        train.write_text(original)
    assert (out / CHECKPOINT).is_file(), "a refused resume keeps the checkpoint"


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no checkpoint.safetensors" in capsys.readouterr().err
    (tmp_path / CHECKPOINT).write_bytes(b"\x00" * 40)
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "damaged checkpoint" in capsys.readouterr().err
