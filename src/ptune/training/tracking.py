"""Experiment tracking (``--report-to``) through Accelerate's trackers (TensorBoard, W&B, MLflow): the run's
options as hyperparameters at the start, the training loss, learning rate and examples/s every ``log_every``
steps, the dev scores of each evaluation. Their files go under the run folder's ``tracking/``."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

from ptune.errors import PtuneError
from ptune.training.distributed import Processes

log = logging.getLogger(__name__)

TRACKING_DIR = "tracking"  # in the run folder
PROJECT = "ptune"  # Accelerate's project name: TensorBoard's subfolder, the W&B project, the MLflow experiment


def tracking_dir(out: Path | None, trackers: tuple[str, ...]) -> Path | None:
    """Where the trackers of a run in ``out`` keep their files (None without trackers)."""
    if not trackers:
        return None
    if out is None:
        raise PtuneError(f"report_to {','.join(trackers)}: the trackers write into the run folder's "
                         f"{TRACKING_DIR}/; give out_dir (ptune train: --out)")
    return out / TRACKING_DIR


def hyperparameters(run: dict) -> dict[str, str | int | float | bool]:
    """The run's task, backbone, method and training options as one flat mapping (``method/length``: 8), the
    values trackers accept: numbers, text and flags (None as "none", lists as JSON)."""
    chosen = {key: run[key] for key in ("task", "backbone", "method", "train") if key in run}
    flat: dict[str, str | int | float | bool] = {}

    def add(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                add(f"{prefix}/{key}" if prefix else str(key), inner)
        elif value is None:
            flat[prefix] = "none"
        elif isinstance(value, (str, int, float, bool)):
            flat[prefix] = value
        else:
            flat[prefix] = json.dumps(value)

    add("", chosen)
    return flat


class Tracking:
    """The trackers of one run (none: every call does nothing). ``step`` is called after each optimiser step,
    ``evaluation`` after each dev evaluation, ``restart`` where time spent is not training (an evaluation)."""

    def __init__(self, processes: Processes, trackers: tuple[str, ...], *, every: int) -> None:
        self.accelerator = processes.accelerator if trackers else None
        self.every = every
        self.losses: list[float] = []
        self.examples = 0
        self.since = time.perf_counter()

    @classmethod
    def start(cls, processes: Processes, trackers: tuple[str, ...], folder: Path | None, run: dict, *,
              every: int, name: str) -> "Tracking":
        """Start ``trackers`` (their Accelerator was made with ``project_dir=folder``) with the run's options;
        ``name`` names the run in W&B and MLflow."""
        tracking = cls(processes, trackers, every=every)
        if not trackers:
            return tracking
        folder.mkdir(parents=True, exist_ok=True)
        if "mlflow" in trackers and not os.environ.get("MLFLOW_TRACKING_URI"):  # else ./mlruns of the working folder
            import mlflow

            # A folder store beside the run's other files (view: `mlflow ui --backend-store-uri URI`). MLflow 3.17
            # refuses folder stores unless allowed: its database store needs the full mlflow package, and a
            # run folder that holds its own tracking files is what the other trackers give too.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((folder / "mlruns").resolve().as_uri())
        processes.accelerator.init_trackers(PROJECT, config=hyperparameters(run),
                                            init_kwargs={"wandb": {"name": name, "dir": str(folder)},
                                                         "mlflow": {"run_name": name}})
        started = {tracker.name for tracker in processes.accelerator.trackers}
        if processes.is_main and (dropped := [name for name in trackers if name not in started]):
            # Accelerate drops a tracker it judges unavailable with only a debug line: never train unlogged
            raise PtuneError(f"report_to: Accelerate could not start {', '.join(dropped)} (it finds the package "
                             f"unavailable: check `pip show {dropped[0]}` in this environment)")
        if processes.is_main:
            where = (f"; view with `tensorboard --logdir {folder}`" if "tensorboard" in trackers else "")
            log.info("tracking with %s into %s every %d steps%s", ", ".join(trackers), folder, every, where)
        return tracking

    def restart(self) -> None:
        """Count examples/s from now: the time before (a dev evaluation) was not training."""
        self.examples, self.since = 0, time.perf_counter()

    def step(self, step: int, loss: float, examples: int, lr: float) -> None:
        """After optimiser step ``step`` (counted from 1) of ``examples`` examples: every ``every`` steps, the mean
        loss and the examples/s since the last log, and the learning rate now."""
        if self.accelerator is None:
            return
        self.losses.append(loss)
        self.examples += examples
        if step % self.every:
            return
        seconds = max(time.perf_counter() - self.since, 1e-9)
        self.accelerator.log({"train/loss": sum(self.losses) / len(self.losses), "train/lr": lr,
                              "train/examples_per_s": self.examples / seconds}, step=step)
        self.losses = []
        self.restart()

    def evaluation(self, step: int, record: dict) -> None:
        """An epoch's metrics.jsonl ``record``: its dev scores (``dev/accuracy``), mean training loss and epoch."""
        if self.accelerator is None:
            return
        values = {f"dev/{key[len('dev_'):]}": value for key, value in record.items()
                  if key.startswith("dev_") and _is_number(value)}
        values |= {"train/epoch_loss": record["train_loss"], "epoch": record["epoch"]}
        self.accelerator.log(values, step=step)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
