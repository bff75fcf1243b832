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
    # 64 examples in batches of 3: the last batch has one example, so one process has none (weight 0);
    # 17 dev examples split unevenly between the processes, each scored once.
    for name, examples in (("train", task.train[:64]), ("dev", task.dev[:17])):
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
         "--method", "deep", "--length", "4", "--epochs", "2", "--batch-size", "3", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "results.json").read_text())
    assert summary["processes"] == 2
    first, second = summary["prompt_sha256_per_process"]
    assert first == second, "each process trained on its own half of every batch; DDP must keep them equal"
    assert tensors_digest(load_file(str(out / "prompt.safetensors"))) == first
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2, "only the main process writes"


class _Ranks:
    """Stands in for Accelerate's view of the processes (a fault that needs several processes)."""

    def __init__(self, rank: int, count: int):
        self.process_index, self.num_processes = rank, count


def processes(rank: int, count: int):
    from ptune.training.distributed import Processes

    out = Processes()
    out.accelerator = _Ranks(rank, count)
    return out


def test_shares_weigh_losses_so_the_average_is_the_whole_batch():
    batch = [10, 11, 12, 13, 14]
    shares = [processes(rank, 2).share(batch) for rank in range(2)]
    assert shares == [([10, 12, 14], 1.2), ([11, 13], 0.8)]
    # mean over ranks of (weight * mean loss of the share) == mean loss of the batch
    losses = {i: float(i) for i in batch}
    average = sum(w * sum(losses[i] for i in mine) / len(mine) for mine, w in shares) / 2
    assert abs(average - sum(losses.values()) / len(batch)) < 1e-12


def test_a_process_without_examples_adds_nothing():
    assert processes(1, 2).share([7]) == ([7], 0.0)
    assert processes(0, 2).share([7]) == ([7], 2.0)  # 1 * 2 / 1: the DDP average halves it back
    assert processes(0, 1).share([7, 8]) == ([7, 8], 1.0)


def test_interleave_undoes_the_rank_split():
    from ptune.training.distributed import interleave

    items = list("abcdefg")
    assert interleave([items[r::3] for r in range(3)]) == items
    assert interleave([[], []]) == []
