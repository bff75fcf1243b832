"""Data-parallel training through Hugging Face Accelerate: `accelerate launch ... ptune train ...`.

Each process takes its share of every batch, its loss weighted by that share so that DDP's average
of the gradients is the gradient of the whole batch; every process then holds the same prompt after
each step. Dev evaluation is sharded the same way and gathered, each example counted once. Only
the main process writes files. One process: nothing changes.

``--shard-backbone``: the frozen backbone's layers are sharded with FSDP2 (``fully_shard`` per layer:
each process keeps 1/N of each layer's weights and gathers a layer's whole weights only while it runs,
in the forward pass and again for the backward), the small trainable parameters stay whole under DDP.
Every pass through a sharded layer is a collective, so every process must run the same passes: dev
evaluation then runs every example on every process, and the bottom-layer cache is off. At the end the
layers are gathered for good, so that the main process can score the test split alone.
``--shard-with zero3``: the same layers partitioned by DeepSpeed ZeRO-3 instead (``deepspeed.initialize`` on
the layer stack without an optimizer: hooks on every submodule gather its weights for its forward and again
for the backward, whoever calls it), for users whose clusters and offloading run on DeepSpeed.
Accelerate's own FSDP and DeepSpeed modes are refused: they would shard only what ptune hands them,
the PromptModel, whose backbone is shared and not its submodule.
"""

from __future__ import annotations

import gc
import logging
import os
import weakref
from typing import Callable, Sequence

import torch
from torch import nn

from ptune.storage.prompt_files import tensors_digest
from ptune.errors import PtuneError

log = logging.getLogger(__name__)


class Processes:
    """This process's place among those `accelerate launch` started (or the only one)."""

    def __init__(self, device: torch.device | None = None, *, log_with: Sequence[str] = (),
                 project_dir: str | os.PathLike | None = None) -> None:
        """``device``: where this process's model lives (its backbone's input device); a CPU model
        trains over gloo, a CUDA one over NCCL (each process on its LOCAL_RANK's GPU). ``log_with``:
        Accelerate's trackers (``training.tracking`` starts them), their files under ``project_dir``;
        one process with trackers gets an Accelerator too, and trains as without."""
        self.accelerator = None
        self.sharded: list[nn.Module] = []  # the backbone layers shard_backbone sharded
        self.zero3 = None  # the DeepSpeed engine partitioning them, with --shard-with zero3
        self._wrapper: weakref.ref | None = None  # the DDP wrapper wrap() made, to see it gone before the group
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 or log_with:
            from accelerate import Accelerator
            from accelerate.utils import DistributedType

            self.accelerator = Accelerator(cpu=device is None or device.type == "cpu", log_with=list(log_with) or None,
                                           project_dir=project_dir)
            kind = self.accelerator.distributed_type
            if kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
                raise PtuneError(f"accelerate's {kind.value} mode would shard only the prompt, not the shared frozen "
                                 "backbone; launch with --multi_gpu (examples/accelerate/ddp.yaml) and add "
                                 "--shard-backbone to shard the backbone's layers (--shard-with zero3: with "
                                 "DeepSpeed ZeRO-3, examples/accelerate/zero3.yaml)")

    @property
    def distributed(self) -> bool:
        """Several processes (`accelerate launch`), not one process that has an Accelerator for its trackers."""
        return self.accelerator is not None and self.accelerator.num_processes > 1

    @property
    def count(self) -> int:
        return self.accelerator.num_processes if self.distributed else 1

    @property
    def rank(self) -> int:
        return self.accelerator.process_index if self.distributed else 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """What the training step calls: DDP around ``model`` when there are several processes."""
        if not self.distributed:
            return model
        wrapper = self.accelerator.prepare_model(model)
        self._wrapper = weakref.ref(wrapper)
        return wrapper

    def shard_backbone(self, backbone, engine: str = "fsdp") -> dict[str, int]:
        """Shard ``backbone``'s layers across the processes with ``engine``: "fsdp" (FSDP2, one unit per layer)
        or "zero3" (DeepSpeed ZeRO-3); returns the layers' parameter count and how many of them this process
        holds (ZeRO-3 pads each parameter's part to equal sizes)."""
        from ptune.model.depth_cache import find_layers

        layers = find_layers(backbone.model, backbone.num_layers)
        if layers is None:
            raise PtuneError(f"--shard-backbone shards a stack of {backbone.num_layers} layers; this backbone "
                             f"({type(backbone.model).__name__}) shares one layer module: drop --shard-backbone")
        total = sum(p.numel() for p in layers.parameters())
        device = next(backbone.model.parameters()).device
        if engine == "zero3":
            held = self._partition_zero3(layers, device)
        else:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            mesh = init_device_mesh(device.type, (self.count,))
            for layer in layers:
                fully_shard(layer, mesh=mesh)
            held = sum(p.to_local().numel() for p in layers.parameters())
        self.sharded = list(layers)
        return {"layers": len(layers), "layer_parameters": total, "held_per_process": held, "engine": engine}

    def _partition_zero3(self, layers: nn.ModuleList, device: torch.device) -> int:
        """Partition ``layers`` with DeepSpeed ZeRO-3 (no optimizer: only the partitioning and its gather
        hooks); returns the elements this process holds."""
        if device.type == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # said, not guessed (DeepSpeed warns when it guesses)
        try:
            import deepspeed
        except ImportError:
            raise PtuneError("--shard-with zero3 needs DeepSpeed: pip install 'ptune[deepspeed]'") from None
        if device.type == "cpu":  # its CPU backend would first compile a shared-memory all-reduce with g++ (about
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # 2 min per machine); ours run on gloo
        dtype = next(layers.parameters()).dtype
        config = {
            "train_micro_batch_size_per_gpu": 1,  # required, unused: ptune feeds the layers itself
            "bf16": {"enabled": dtype == torch.bfloat16}, "fp16": {"enabled": dtype == torch.float16},
            "zero_optimization": {
                "stage": 3,
                "stage3_param_persistence_threshold": 0,  # else parameters under 1e5 elements stay whole everywhere
                "stage3_model_persistence_threshold": 0,
                "stage3_prefetch_bucket_size": 0,  # a prefetched layer stays gathered after a pass that ends early
                "memory_efficient_linear": False,  # else F.linear is replaced process-wide, heads and encoders too
            },
        }
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        self.zero3, *_ = deepspeed.initialize(model=layers, config=config)
        return sum(p.ds_tensor.numel() for p in layers.parameters())

    def share(self, indices: Sequence[int]) -> tuple[list[int], float]:
        """This process's examples of one global batch and the weight of its mean loss.

        DDP averages the processes' gradients, so a process holding n of the batch's N examples
        weighs its mean loss by n * count / N: the average is then the whole batch's mean. A process
        left with no example (a last batch smaller than the process count) still has to take part
        in the gradient exchange: it runs the batch's first example with weight 0, which adds
        nothing and repeats no example in the loss.
        """
        if not self.distributed:
            return list(indices), 1.0
        mine = list(indices[self.rank :: self.count])
        if not mine:
            return [indices[0]], 0.0
        return mine, len(mine) * self.count / len(indices)

    def map_shards(self, items: Sequence, predict: Callable[[Sequence], list]) -> list:
        """``predict(items)``, with the items split across the processes and the results gathered
        back into input order (each item predicted once)."""
        if not self.distributed:
            return predict(items)
        from accelerate.utils import gather_object

        mine = list(items[self.rank :: self.count])
        return interleave(gather_object([predict(mine) if mine else []]))

    def close(self) -> None:
        """End the trackers and leave the process group once every process is done (an undestroyed gloo
        group can abort the process at exit: "terminate called without an active exception")."""
        if self.accelerator is None:
            return
        if self.zero3 is not None:  # whole again (a collective), for what runs after the group is gone
            import deepspeed

            params = [p for layer in self.sharded for p in layer.parameters()]
            with deepspeed.zero.GatheredParameters(params):
                whole = [p.data.clone() for p in params]
            self.zero3.destroy()  # its gather hooks off: the layers are plain modules again
            for param, data in zip(params, whole):
                param.data = data
        else:
            for layer in self.sharded:
                layer.set_reshard_after_forward(False)
                layer.unshard()
        if self.distributed and torch.distributed.is_initialized():
            self.accelerator.wait_for_everyone()
        # The DDP wrapper goes first (the caller has dropped its own reference), while the group lives: its
        # reducer, freed after the group, would drop the group's last reference, and gloo's destructor, joining
        # its worker threads with the GIL held, can deadlock against a worker that waits for the GIL.
        self.accelerator.free_memory()
        gc.collect()
        if self._wrapper is not None and self._wrapper() is not None:
            log.warning("the DDP wrapper outlives training (its caller still holds it); its process group's "
                        "teardown may hang")
        self.accelerator.end_training()  # finishes the trackers, destroys the process group
        if self.distributed and torch.distributed.is_initialized():  # end_training keeps a forked launch's group
            torch.distributed.destroy_process_group()

    def prompt_digests(self, state: dict[str, torch.Tensor]) -> list[str]:
        """Each process's hash of its trained tensors; they must all be equal."""
        digest = tensors_digest(state)
        if not self.distributed:
            return [digest]
        from accelerate.utils import gather_object

        digests = gather_object([digest])
        if len(set(digests)) != 1:
            raise PtuneError(f"the {self.count} training processes ended with different prompts ({digests}); "
                             "report this with the accelerate launch command")
        return digests


def interleave(per_rank: Sequence[Sequence]) -> list:
    """Undo ``items[rank::count]``: [[a, c], [b]] -> [a, b, c]."""
    out: list = []
    for k in range(max((len(part) for part in per_rank), default=0)):
        out.extend(part[k] for part in per_rank if k < len(part))
    return out
