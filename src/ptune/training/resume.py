"""Training checkpoints: everything a killed run needs to continue exactly where it was.

One safetensors file (prompt, head, optimiser moments, best state so far, RNG states) with a JSON
header (position in the data, history, scheduler, how the run was started), written atomically.
"""

from __future__ import annotations

import json
import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ptune.storage.atomic import atomic_write
from ptune.errors import PtuneError

CHECKPOINT = "checkpoint.safetensors"
FORMAT = "ptune-checkpoint"
VERSION = 1
# Fault injection for the crash tests: "kill-after-step:N" sends SIGKILL to this process after the
# N-th optimiser step; "kill-in-checkpoint:N" does so while the N-th checkpoint's temporary file is
# written but not yet renamed into place.
FAULT_ENV = "PTUNE_FAULT"


@dataclass
class Progress:
    """Where a run is: the next batch to run and what has been recorded so far."""

    epoch: int = 1
    batch: int = 0  # index of the next batch within the epoch's fixed batch order
    step: int = 0
    losses: list[float] = field(default_factory=list)  # this epoch's losses so far
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0
    checkpoints: int = 0


def fault(event: str, count: int) -> None:
    """Kill this process for real (SIGKILL) when ``$PTUNE_FAULT`` names this event and count."""
    if os.environ.get(FAULT_ENV) == f"{event}:{count}":
        os.kill(os.getpid(), signal.SIGKILL)


def save_checkpoint(out_dir: Path, *, trainable: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                    scheduler, selection, progress: Progress, run: dict) -> Path:
    """Write ``out_dir/checkpoint.safetensors`` atomically; the previous one stays until the rename."""
    progress.checkpoints += 1
    tensors = {f"model.{name}": t for name, t in trainable.items()}
    optim = optimizer.state_dict()
    for index, state in optim["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    if selection.state is not None:
        tensors.update({f"best.{name}": t for name, t in selection.state.items()})
    numpy_state = np.random.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.numpy"] = torch.from_numpy(numpy_state[1].astype(np.int64))
    header = {
        "format": FORMAT,
        "version": VERSION,
        "run": run,
        "progress": progress.__dict__,
        "selection": {"score": selection.score, "epoch": selection.epoch, "dev": selection.dev, "stale": selection.stale},
        "optimizer": {"param_groups": optim["param_groups"], "state_keys": {str(i): sorted(s) for i, s in optim["state"].items()}},
        "scheduler": _jsonable(scheduler.state_dict()),
        "rng": {"python": _jsonable(random.getstate()), "numpy": [numpy_state[0], *map(_jsonable, numpy_state[2:])]},
    }
    tensors = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    path = out_dir / CHECKPOINT

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata={"ptune": json.dumps(header)})
        fault("kill-in-checkpoint", progress.checkpoints)

    atomic_write(path, write)
    return path


@dataclass
class Checkpoint:
    """A checkpoint read back: its header and tensors, grouped."""

    path: Path
    header: dict
    tensors: dict[str, torch.Tensor]

    @property
    def run(self) -> dict:
        return self.header["run"]

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        return {name[len(prefix) + 1:]: t for name, t in self.tensors.items() if name.startswith(prefix + ".")}

    def progress(self) -> Progress:
        return Progress(**self.header["progress"])

    def restore(self, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, selection) -> Progress:
        """Put the model, optimiser, scheduler, best-so-far state and RNGs back as they were."""
        trainable = self.group("model")
        expected = {name for name, p in model.named_parameters() if p.requires_grad}
        if set(trainable) != expected:
            raise PtuneError(f"{self.path}: checkpoint tensors do not match the model; it was written by another "
                             "ptune version or options — start a new run with another --out")
        model.load_state_dict(trainable, strict=False)
        optim_header = self.header["optimizer"]
        state = {int(i): {key: self.tensors[f"optim.{i}.{key}"] for key in keys}
                 for i, keys in optim_header["state_keys"].items()}
        optimizer.load_state_dict({"state": state, "param_groups": optim_header["param_groups"]})
        scheduler.load_state_dict(self.header["scheduler"])
        chosen = self.header["selection"]
        selection.score, selection.epoch = chosen["score"], chosen["epoch"]
        selection.dev, selection.stale = chosen["dev"], chosen["stale"]
        best = self.group("best")
        selection.state = best or None
        python_state = self.header["rng"]["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        numpy_header = self.header["rng"]["numpy"]
        np.random.set_state((numpy_header[0], self.tensors["rng.numpy"].numpy().astype(np.uint32), *numpy_header[1:]))
        torch.set_rng_state(self.tensors["rng.torch"])
        return self.progress()


def read_checkpoint(out_dir: str | Path) -> Checkpoint:
    """The checkpoint in ``out_dir``, validated; a clear error when there is none or it is damaged."""
    out_dir = Path(out_dir)
    path = out_dir / CHECKPOINT
    if not out_dir.is_dir():
        raise PtuneError(f"{out_dir}: no such run folder to resume")
    if not path.is_file():
        if (out_dir / "prompt.safetensors").is_file():
            raise PtuneError(f"{out_dir}: this run already finished (prompt.safetensors is there); nothing to resume")
        raise PtuneError(f"{out_dir}: no {CHECKPOINT}; the run was killed before its first checkpoint — start it again")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {}).get("ptune", "null"))
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise PtuneError(f"{path}: damaged checkpoint ({error}); start the run again with another --out") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise PtuneError(f"{path}: not a ptune training checkpoint")
    if header.get("version", 0) > VERSION:
        raise PtuneError(f"{path}: checkpoint version {header['version']} is newer than this ptune; upgrade ptune")
    for key in ("run", "progress", "selection", "optimizer", "scheduler", "rng"):
        if key not in header:
            raise PtuneError(f"{path}: checkpoint header lacks {key!r}; start the run again with another --out")
    return Checkpoint(path, header, tensors)


def remove_stale_temporaries(out_dir: Path) -> None:
    """Temporary files left by a write that was killed before its rename."""
    for tmp in out_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _jsonable(value):
    """Tuples to lists, numpy scalars and arrays to Python values (for the JSON header)."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
