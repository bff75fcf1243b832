"""Several seeds of one run: the layout of a multi-seed folder (``seed-N/`` run folders and ``seeds.json``),
which seeds are finished, and the mean, standard deviation and per-run values of every score across runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ptune.errors import PtuneError
from ptune.storage.locations import locate_prompt
from ptune.training.resume import CHECKPOINT

SEEDS_FILE = "seeds.json"  # in a multi-seed folder: the seeds and the options that start a missing one
PROMPT = "prompt.safetensors"
RESULTS = "results.json"


def seed_dir(out_dir: str | Path, seed: int) -> Path:
    """The run folder of ``seed`` inside the multi-seed folder ``out_dir``."""
    return Path(out_dir) / f"seed-{seed}"


def seed_state(run_dir: Path) -> str:
    """``finished`` (a prompt file and its results), ``interrupted`` (a checkpoint) or ``new``."""
    if (run_dir / CHECKPOINT).exists():
        return "interrupted"
    if (run_dir / PROMPT).exists() and (run_dir / RESULTS).exists():
        return "finished"
    return "new"


def is_multi_seed(folder: str | Path) -> bool:
    return (Path(folder) / SEEDS_FILE).is_file()


def read_seeds_file(folder: str | Path) -> dict:
    """``seeds.json`` of a multi-seed folder: ``seeds`` and what a config file cannot hold (``init_from``,
    ``trust_remote_code``); the runs' other options are in ``config.json`` beside it."""
    path = Path(folder) / SEEDS_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PtuneError(f"{path}: cannot read the multi-seed record ({error}); start the runs again with "
                         "--overwrite") from None
    seeds = record.get("seeds") if isinstance(record, dict) else None
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise PtuneError(f"{path}: not a multi-seed record (a list of seeds); start the runs again with --overwrite")
    return record


def seed_runs(folder: str | Path) -> list[tuple[str, Path]]:
    """(``seed-N``, its prompt file) for every seed of a multi-seed folder, each finished."""
    folder = Path(folder)
    runs = []
    for seed in read_seeds_file(folder)["seeds"]:
        run_dir = seed_dir(folder, seed)
        state = seed_state(run_dir)
        if state != "finished":
            raise PtuneError(f"{run_dir}: seed {seed} is not finished ({state}); complete it with "
                             f"`ptune train --resume {folder}`")
        runs.append((run_dir.name, run_dir / PROMPT))
    return runs


def prompt_runs(paths: list[str]) -> list[tuple[str, Path]]:
    """The prompt files the given paths name, each with a name for the summary: a multi-seed folder gives its
    ``seed-N`` runs, a run folder its prompt file, a file itself, a hub repo id its prompt file. Names are
    ``seed-N`` when that is unambiguous, else the prompt files' paths."""
    runs: list[tuple[str, Path]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir() and is_multi_seed(path):
            runs += seed_runs(path)
        elif path.is_dir():
            if not (path / PROMPT).is_file():
                raise PtuneError(f"{path}: a folder without {PROMPT} or {SEEDS_FILE}; give a prompt file, a run "
                                 "folder or a multi-seed folder (ptune train --seeds)")
            runs.append((str(path / PROMPT), path / PROMPT))
        else:
            runs.append((given, locate_prompt(given)))
    names = [name for name, _ in runs]
    if len(set(names)) != len(names):
        runs = [(str(prompt), prompt) for _, prompt in runs]
    if len({str(prompt) for _, prompt in runs}) != len(runs):
        raise PtuneError(f"the same prompt file is given twice ({', '.join(paths)}); give each once")
    return runs


def summarise(runs: dict[str, dict]) -> dict[str, dict]:
    """``{run: {metric: value}}`` -> ``{metric: {"mean", "std", "values": {run: value}}}`` for every number
    that every run reports. ``std`` is the sample standard deviation (n - 1 in the denominator; 0.0 for one
    run), as results across seeds are usually reported."""
    if not runs:
        return {}
    first = next(iter(runs.values()))
    metrics = [key for key, value in first.items() if _is_number(value)
               and all(_is_number(scores.get(key)) for scores in runs.values())]
    summary = {}
    for metric in metrics:
        values = {run: float(scores[metric]) for run, scores in runs.items()}
        mean = math.fsum(values.values()) / len(values)
        spread = math.fsum((v - mean) ** 2 for v in values.values()) / max(len(values) - 1, 1)
        summary[metric] = {"mean": mean, "std": math.sqrt(spread), "values": values}
    return summary


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
