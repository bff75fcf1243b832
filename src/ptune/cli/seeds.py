"""``ptune train --seeds 1 2 3``: one run per seed, each a normal run folder (``OUT/seed-N/``), then
``OUT/results.json`` with the mean, standard deviation and per-seed values of every dev and test score.
``ptune train --resume OUT`` finishes the seeds a kill left unfinished and skips the finished ones."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Callable

from ptune.cli.options import config_of
from ptune.cli.output import err, out, print_json
from ptune.errors import PtuneError
from ptune.storage.atomic import atomic_write
from ptune.training.seeds import (RESULTS, SEEDS_FILE, is_multi_seed, read_seeds_file, seed_dir, seed_state,
                                  summarise)

CONFIG_FILE = "config.json"  # in a multi-seed folder: the runs' options as a --config file

RunOne = Callable[[argparse.Namespace], int]  # `ptune train`'s own run: how each seed trains


def check_seeds(args: argparse.Namespace, config_file: dict) -> None:
    """Refuse what --seeds cannot combine with, before any data or model loads."""
    if args.seed is not None:
        raise PtuneError(f"--seed {args.seed} and --seeds {' '.join(map(str, args.seeds))}: give --seed N for one "
                         "run or --seeds A B C for one run per seed, not both")
    if len(set(args.seeds)) != len(args.seeds):
        raise PtuneError(f"--seeds {' '.join(map(str, args.seeds))}: a seed is given twice; give each once")
    names = args.task or config_file.get("task")
    if isinstance(names, list) and len(names) > 1:
        raise PtuneError(f"--seeds repeats a one-task run; multi-task training (--task {' '.join(names)}) takes one "
                         "--seed: run it once per seed with another --out")


def train_seeds(args: argparse.Namespace, config_file: dict, out_dir: Path, run_one: RunOne) -> int:
    """Train one run per seed into ``out_dir/seed-N`` through ``run_one``, then write the summary."""
    taken = [seed_dir(out_dir, seed) for seed in args.seeds if seed_state(seed_dir(out_dir, seed)) != "new"]
    if (is_multi_seed(out_dir) or taken) and not args.overwrite:
        what = f"a multi-seed run ({SEEDS_FILE})" if is_multi_seed(out_dir) else f"runs ({', '.join(map(str, taken))})"
        raise PtuneError(f"{out_dir}: holds {what}; use `ptune train --resume {out_dir}` to finish it, --overwrite "
                         "to replace it, or choose another --out")
    record = {"seeds": list(args.seeds), "init_from": str(Path(args.init_from).resolve()) if args.init_from else None,
              "trust_remote_code": args.trust_remote_code}
    if _is_main():
        config = config_of(args, config_file, drop=("out", "seed"))
        _write_json(out_dir / CONFIG_FILE, config)
        _write_json(out_dir / SEEDS_FILE, record)  # last: from here on the folder resumes as a multi-seed run
        (out_dir / RESULTS).unlink(missing_ok=True)  # an --overwrite'n summary no longer holds
    for seed in args.seeds:
        _run_seed(run_one, argparse.Namespace(**{**vars(args), "seeds": None, "seed": seed,
                                                 "out": str(seed_dir(out_dir, seed))}), seed_dir(out_dir, seed))
    return _summarise(out_dir, record["seeds"])


def resume_seeds(args: argparse.Namespace, run_one: RunOne) -> int:
    """``ptune train --resume OUT`` of a multi-seed folder: resume interrupted seeds, start missing ones."""
    out_dir = Path(args.resume)
    record = read_seeds_file(out_dir)
    for seed in record["seeds"]:
        run_dir = seed_dir(out_dir, seed)
        state = seed_state(run_dir)
        if state == "finished":
            err().log(f"seed {seed}: finished before ({run_dir})", markup=False)
            continue
        if state == "interrupted":
            seed_args = {"resume": str(run_dir)}
        else:  # not started, or killed before its results were written: start it as the others were
            seed_args = {"resume": None, "config": str(out_dir / CONFIG_FILE), "seed": seed, "out": str(run_dir),
                         "overwrite": True, "init_from": record.get("init_from"),
                         "trust_remote_code": bool(record.get("trust_remote_code"))}
        _run_seed(run_one, argparse.Namespace(**{**vars(args), "seeds": None, **seed_args}), run_dir)
    return _summarise(out_dir, record["seeds"])


def _run_seed(run_one: RunOne, seed_args: argparse.Namespace, run_dir: Path) -> None:
    """One seed through `ptune train`; its results go to its own results.json, and one line to the log."""
    with out().capture():  # what `ptune train` prints is in the seed's results.json
        code = run_one(seed_args)
    if code != 0:
        raise PtuneError(f"{run_dir}: the run ended with status {code}")
    if not _is_main():
        return
    results = json.loads((run_dir / RESULTS).read_text(encoding="utf-8"))
    scores = [f"{split} " + ", ".join(f"{k} {v:.4f}" for k, v in results[split].items() if isinstance(v, float))
              for split in ("dev", "test") if results.get(split)]
    err().log(f"{run_dir.name}: {'; '.join(scores) or 'no scores'} ({run_dir})", markup=False)


def _summarise(out_dir: Path, seeds: list[int]) -> int:
    """``out_dir/results.json``: each split's scores as mean, standard deviation and per-seed values."""
    if not _is_main():  # another process of `accelerate launch`: the main one reports
        return 0
    results = {seed_dir(out_dir, s).name: json.loads((seed_dir(out_dir, s) / RESULTS).read_text(encoding="utf-8"))
               for s in seeds}
    first = next(iter(results.values()))
    summary = {"task": first["task"], "method": first["method"], "backbone": first["backbone"], "seeds": seeds,
               "runs": {name: str(seed_dir(out_dir, s)) for name, s in zip(results, seeds)},
               "std": "sample standard deviation (n - 1)",
               "best_epoch": {name: r["best_epoch"] for name, r in results.items()},
               "dev": summarise({name: r["dev"] for name, r in results.items()})}
    if all(r.get("test") for r in results.values()):
        summary["test"] = summarise({name: r["test"] for name, r in results.items()})
    if all(r.get("fewshot") for r in results.values()):  # --shots: each seed's draw and selection
        from ptune.cli.fewshot import across_seeds

        summary["fewshot"] = across_seeds(results)
    _write_json(out_dir / RESULTS, summary)
    print_json(summary)
    return 0


def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _is_main() -> bool:
    """Not one of the other processes of `accelerate launch` (only the main one writes)."""
    return os.environ.get("RANK", "0") == "0"
