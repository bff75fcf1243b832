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
Accelerate's own FSDP and DeepSpeed modes are refused: they would shard only what ptune hands them,
the PromptModel, whose backbone is shared and not its submodule.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import torch
from torch import nn

from ptune.storage.prompt_files import tensors_digest
from ptune.errors import PtuneError


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
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 or log_with:
            from accelerate import Accelerator
            from accelerate.utils import DistributedType

            self.accelerator = Accelerator(cpu=device is None or device.type == "cpu", log_with=list(log_with) or None,
                                           project_dir=project_dir)
            kind = self.accelerator.distributed_type
            if kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
                raise PtuneError(f"accelerate's {kind.value} mode would shard only the prompt, not the shared frozen "
                                 "backbone; launch with --multi_gpu (examples/accelerate/ddp.yaml) and add "
                                 "--shard-backbone to shard the backbone's layers")

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
        return self.accelerator.prepare_model(model) if self.distributed else model

    def shard_backbone(self, backbone) -> dict[str, int]:
        """Shard ``backbone``'s layers across the processes (FSDP2, one unit per layer, frozen weights);
        returns the layers' parameter count and how many of them this process holds."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        from ptune.model.depth_cache import find_layers

        layers = find_layers(backbone.model, backbone.num_layers)
        if layers is None:
            raise PtuneError(f"--shard-backbone shards a stack of {backbone.num_layers} layers; this backbone "
                             f"({type(backbone.model).__name__}) shares one layer module: drop --shard-backbone")
        total = sum(p.numel() for p in layers.parameters())
        device = next(backbone.model.parameters()).device
        mesh = init_device_mesh(device.type, (self.count,))
        for layer in layers:
            fully_shard(layer, mesh=mesh)
        self.sharded = list(layers)
        held = sum(p.to_local().numel() for p in layers.parameters())
        return {"layers": len(layers), "layer_parameters": total, "held_per_process": held}

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
        for layer in self.sharded:  # whole again (a collective), for what runs after the group is gone
            layer.set_reshard_after_forward(False)
            layer.unshard()
        if self.distributed and torch.distributed.is_initialized():
            self.accelerator.wait_for_everyone()
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
