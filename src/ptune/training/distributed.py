"""Data-parallel training through Hugging Face Accelerate: `accelerate launch ... ptune train ...`.

Each process takes its share of every batch; DDP averages the gradients, so every process holds the
same prompt after each step. Only the main process writes files. One process: nothing changes.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from ptune.storage.prompt_files import tensors_digest
from ptune.errors import PtuneError


class Processes:
    """This process's place among those `accelerate launch` started (or the only one)."""

    def __init__(self) -> None:
        self.accelerator = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import Accelerator

            # ptune keeps its backbone on the CPU, so DDP runs over gloo.
            self.accelerator = Accelerator(cpu=True)

    @property
    def count(self) -> int:
        return self.accelerator.num_processes if self.accelerator else 1

    @property
    def rank(self) -> int:
        return self.accelerator.process_index if self.accelerator else 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """What the training step calls: DDP around ``model`` when there are several processes."""
        return self.accelerator.prepare_model(model) if self.accelerator else model

    def share(self, indices: Sequence[int]) -> list[int]:
        """This process's examples of one global batch (every process gets at least one)."""
        if not self.accelerator:
            return list(indices)
        mine = list(indices[self.rank :: self.count])
        return mine or [indices[0]]

    def prompt_digests(self, state: dict[str, torch.Tensor]) -> list[str]:
        """Each process's hash of its trained tensors; they must all be equal."""
        digest = tensors_digest(state)
        if not self.accelerator:
            return [digest]
        from accelerate.utils import gather_object

        digests = gather_object([digest])
        if len(set(digests)) != 1:
            raise PtuneError(f"the {self.count} training processes ended with different prompts ({digests}); "
                             "report this with the accelerate launch command")
        return digests
