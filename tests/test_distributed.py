"""Data-parallel training: `accelerate launch` with 2 CPU processes (gloo) ends with one prompt."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ptune.storage.prompt_files import tensors_digest
from ptune.data import get_task


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """64 training examples (batches of 3: the last batch has one example, so one process has none, weight 0),
    17 dev examples (split unevenly between the processes, each scored once) and 9 test examples (scored by
    the main process after training)."""
    folder, task = tmp_path_factory.mktemp("data"), get_task("rotten_tomatoes")
    for name, examples in (("train", task.train[:64]), ("dev", task.dev[:17]), ("test", task.test[:9])):
        rows = ["text\tlabel"] + [f"{e.text}\t{e.label}" for e in examples]
        (folder / f"{name}.tsv").write_text("\n".join(rows) + "\n")
    return folder


def launch(data, out, *options):
    """`accelerate launch --multi_gpu --num_processes 2 -m ptune.cli train ...` (gloo on a machine without
    GPUs), a deep prompt for 2 epochs."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("PTUNE_FAULT", None)
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "-m", "ptune.cli", "-q", "train", "--train", str(data / "train.tsv"), "--dev", str(data / "dev.tsv"),
         "--test", str(data / "test.tsv"), "--method", "deep", "--length", "4", "--epochs", "2", "--batch-size", "3",
         "--out", str(out), *options],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DDP wrapper outlives training" not in done.stderr, "its gloo group's teardown can then hang"
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def ddp_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    return out, launch(data, out)


def test_two_processes_end_with_the_same_prompt(ddp_run):
    out, summary = ddp_run
    assert summary["processes"] == 2 and "backbone_sharded" not in summary
    first, second = summary["prompt_sha256_per_process"]
    assert first == second, "each process trained on its own half of every batch; DDP must keep them equal"
    assert tensors_digest(load_file(str(out / "prompt.safetensors"))) == first
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2, "only the main process writes"


@pytest.mark.slow  # two processes sharding a backbone: 32 s of CI's 19 minutes; the DDP test stays in CI
def test_a_sharded_backbone_trains_the_same_prompt_holding_half_of_each_layer(data, ddp_run, tmp_path):
    """--shard-backbone: FSDP2 over the frozen layers (gloo here), the prompt replicated under DDP. Each process
    holds half of the layers' weights, and the run ends on the prompt and dev scores of the unsharded run."""
    out = tmp_path / "sharded"
    summary = launch(data, out, "--shard-backbone")
    sharded = summary["backbone_sharded"]
    assert sharded["layers"] == 6 and sharded["held_per_process"] == sharded["layer_parameters"] // 2
    first, second = summary["prompt_sha256_per_process"]
    assert first == second
    plain, ours = load_file(str(ddp_run[0] / "prompt.safetensors")), load_file(str(out / "prompt.safetensors"))
    assert plain.keys() == ours.keys()
    for name in plain:
        torch.testing.assert_close(ours[name], plain[name], atol=1e-5, rtol=1e-4)
    assert summary["dev"] == pytest.approx(ddp_run[1]["dev"]) and summary["test"] == pytest.approx(ddp_run[1]["test"])


@pytest.mark.slow  # two processes importing DeepSpeed and partitioning a backbone
def test_zero3_partitions_the_backbone_and_trains_the_same_prompt(data, ddp_run, tmp_path):
    """--shard-with zero3: DeepSpeed ZeRO-3 partitions the frozen layers (gloo here), its hooks gather each
    layer's weights for the forward and the backward, and the run ends on the unsharded run's prompt."""
    pytest.importorskip("deepspeed", reason="pip install 'ptune[deepspeed]'")
    out = tmp_path / "zero3"
    summary = launch(data, out, "--shard-backbone", "--shard-with", "zero3")
    sharded = summary["backbone_sharded"]
    assert sharded["engine"] == "zero3" and sharded["layers"] == 6
    assert sharded["layer_parameters"] // 2 <= sharded["held_per_process"] <= sharded["layer_parameters"] // 2 + 6 * 16
    first, second = summary["prompt_sha256_per_process"]
    assert first == second
    plain, ours = load_file(str(ddp_run[0] / "prompt.safetensors")), load_file(str(out / "prompt.safetensors"))
    for name in plain:
        torch.testing.assert_close(ours[name], plain[name], atol=1e-5, rtol=1e-4)
    assert summary["dev"] == pytest.approx(ddp_run[1]["dev"]) and summary["test"] == pytest.approx(ddp_run[1]["test"])


@pytest.mark.parametrize("mode", ["FSDP", "DEEPSPEED"])
def test_accelerates_own_fsdp_and_deepspeed_modes_are_refused(mode, monkeypatch, tmp_path):
    """Accelerate's FSDP and DeepSpeed modes would wrap only the PromptModel (the backbone is not its submodule);
    the refusal names ptune's own options for both."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    from ptune.errors import PtuneError
    from ptune.training.distributed import Processes

    monkeypatch.setattr(Accelerator, "distributed_type", property(lambda self: DistributedType[mode]))
    with pytest.raises(PtuneError, match="add --shard-backbone .*--shard-with zero3"):
        Processes(log_with=["tensorboard"], project_dir=tmp_path)  # one process with trackers has an Accelerator


def test_zero3_without_deepspeed_is_one_clear_refusal(monkeypatch):
    from ptune.errors import PtuneError
    from ptune.training.distributed import Processes

    monkeypatch.setitem(sys.modules, "deepspeed", None)  # as if not installed
    layers = torch.nn.ModuleList([torch.nn.Linear(2, 2)])
    with pytest.raises(PtuneError, match=r"pip install 'ptune\[deepspeed\]'"):
        Processes()._partition_zero3(layers, torch.device("cpu"))


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
