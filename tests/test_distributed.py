"""Data-parallel training: `accelerate launch` with 2 CPU processes (gloo) ends with one prompt."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from safetensors.torch import load_file

from ptune.storage.prompt_files import tensors_digest
from ptune.data import get_task


def test_two_processes_end_with_the_same_prompt(tmp_path):
    task = get_task("rotten_tomatoes")
    for name, examples in (("train", task.train[:64]), ("dev", task.dev[:16])):
        rows = ["text\tlabel"] + [f"{e.text}\t{e.label}" for e in examples]
        (tmp_path / f"{name}.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("PTUNE_FAULT", None)
    # On a machine without GPUs, --multi_gpu starts the processes and Accelerate runs DDP over gloo.
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "-m", "ptune.cli", "-q", "train", "--train", str(tmp_path / "train.tsv"), "--dev", str(tmp_path / "dev.tsv"),
         "--method", "deep", "--length", "4", "--epochs", "2", "--batch-size", "8", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "results.json").read_text())
    assert summary["processes"] == 2
    first, second = summary["prompt_sha256_per_process"]
    assert first == second, "each process trained on its own half of every batch; DDP must keep them equal"
    assert tensors_digest(load_file(str(out / "prompt.safetensors"))) == first
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2, "only the main process writes"
