"""benchmarks/e2e.py's protocol on made-up records (issue 16): the learning rate chosen on dev, sides
alternated, the target fixed from the final seed means, time to target paired by seed, batch plans that
cover every example once. No training here; the script's own smoke runs measure."""

from __future__ import annotations

import importlib
import sys
from argparse import Namespace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
e2e = importlib.import_module("e2e")
sides = importlib.import_module("e2e_sides")


def run(side, seed, dev, curve, *, task="rotten_tomatoes", method="deep", stage="seeds", lr=0.01):
    return {"stage": stage, "task": task, "method": method, "side": side, "lr": lr, "seed": seed, "variant": "default",
            "dev": dev, "test": dev, "curve": curve, "train_s": curve[-1][1] if curve else 1.0, "command": "c",
            "machine": "m", "date": "2026-12-01", "versions": {"ptune": "0", "torch": "t", "transformers": "x",
                                                                "peft": "p"}}


def test_time_to_target_is_the_first_evaluation_at_or_above_it():
    curve = [[0, 0.0, 0.5], [10, 3.0, 0.7], [20, 6.0, 0.85], [30, 9.0, 0.8]]
    assert e2e.time_to(curve, 0.85) == 6.0
    assert e2e.time_to(curve, 0.7) == 3.0
    assert e2e.time_to(curve, 0.9) is None
    assert e2e.time_to(curve, 0.5) == 3.0  # the untrained start does not count


def test_target_from_the_lowest_side_mean_and_ratios_paired_by_seed():
    fast = [[0, 0.0, 0.5], [5, 2.0, 0.8], [10, 4.0, 0.9]]
    slow = [[0, 0.0, 0.5], [5, 6.0, 0.7], [10, 12.0, 0.8]]
    runs = [run("ptune", s, 0.9, fast) for s in (0, 1, 2)] + [run("peft_loop", s, 0.8, slow) for s in (0, 1, 2)]
    summary, ratios = e2e.summarise({"runs": runs})
    target = 0.95 * 0.8
    assert {r["side"]: r["target"] for r in summary} == {"ptune": pytest.approx(target), "peft_loop": pytest.approx(target)}
    by_side = {r["side"]: r for r in summary}
    assert by_side["ptune"]["time_to_target_s_median"] == 2.0  # 0.8 >= 0.76 at 2 s
    assert by_side["peft_loop"]["time_to_target_s_median"] == 12.0  # 0.7 < 0.76, 0.8 at 12 s
    assert by_side["ptune"]["dev_mean"] == pytest.approx(0.9) and by_side["ptune"]["seeds"] == [0, 1, 2]
    (ratio,) = ratios
    assert ratio["baseline"] == "peft_loop" and ratio["median"] == pytest.approx(6.0) and ratio["seeds"] == 3


def test_a_side_that_never_reaches_the_target_has_no_median():
    flat = [[0, 0.0, 0.1], [10, 5.0, 0.1]]
    good = [[0, 0.0, 0.0], [10, 5.0, 0.9]]
    runs = [run("ptune", 0, 0.9, good), run("peft_trainer", 0, 0.1, flat)]
    runs[1]["curve"] = [[0, 0.0, 0.0], [10, 5.0, 0.05]]  # its final dev is 0.1 but no evaluation reached 0.095
    summary, ratios = e2e.summarise({"runs": runs})
    by_side = {r["side"]: r for r in summary}
    assert by_side["peft_trainer"]["time_to_target_s_median"] is None
    assert ratios[0]["median"] is None  # not reached: no number, rendered as such
    assert "never reached" in e2e.render({"runs": runs, "summary": summary, "ratios": ratios, "checks": {}})


def test_seeds_stage_takes_each_sides_best_sweep_rate_and_alternates_sides():
    sweep = [run("ptune", 0, dev, [], stage="sweep", lr=lr) for lr, dev in ((0.01, 0.7), (0.03, 0.8), (0.1, 0.6))]
    sweep += [run("peft_loop", 0, dev, [], stage="sweep", lr=lr) for lr, dev in ((0.003, 0.7), (0.01, 0.75), (0.03, 0.5))]
    args = Namespace(tasks=["rotten_tomatoes"], methods=["deep"], sides=["ptune", "peft_loop"], seeds=[0, 1, 2])
    planned = e2e.specs("seeds", {"runs": sweep}, args)
    assert [(s["side"], s["seed"], s["lr"]) for s in planned] == [
        ("ptune", 0, 0.03), ("peft_loop", 0, 0.01), ("ptune", 1, 0.03), ("peft_loop", 1, 0.01),
        ("ptune", 2, 0.03), ("peft_loop", 2, 0.01)]
    assert len({e2e.key(s) for s in planned}) == len(planned)  # every run its own record


@pytest.mark.parametrize("beyond_dev, chosen", [(0.7, 0.1), (0.9, 0.3)])
def test_a_best_at_the_edge_of_its_grid_gets_one_step_beyond_before_seeds_run(beyond_dev, chosen):
    args = Namespace(tasks=["rotten_tomatoes"], methods=["deep"], sides=["ptune"], seeds=[0])
    data = {"runs": [run("ptune", 0, dev, [], stage="sweep", lr=lr) for lr, dev in ((0.01, 0.6), (0.03, 0.7), (0.1, 0.8))]}
    assert [s["lr"] for s in e2e.specs("sweep", data, args)] == [0.01, 0.03, 0.1, 0.3]  # 0.1 is the grid's top
    assert e2e.specs("seeds", data, args) == []  # not chosen while the step beyond is owed
    data["runs"].append(run("ptune", 0, beyond_dev, [], stage="sweep", lr=0.3))
    assert e2e.edge_lr(data, "rotten_tomatoes", "deep", "ptune") is None  # once: 1.0 is not tried after 0.3
    assert [s["lr"] for s in e2e.specs("seeds", data, args)] == [chosen]


def test_redo_owes_a_named_seeds_triple_again_once():
    redo = [["rotten_tomatoes", "prompt", "0"]]
    named = [run(side, 0, 0.7, [], method="prompt") for side in e2e.SIDES]
    assert all(e2e.owed_again(r, redo) for r in named)  # every side of the triple
    assert not e2e.owed_again(run("ptune", 1, 0.7, [], method="prompt"), redo)  # another seed
    assert not e2e.owed_again(run("ptune", 0, 0.7, [], method="ptuning"), redo)  # another method
    assert not e2e.owed_again(run("ptune", 0, 0.7, [], method="prompt", stage="sweep"), redo)  # the sweep's own
    assert not e2e.owed_again({**named[0], "redone": True}, redo)  # remade already: a resumed --redo keeps it
    assert not e2e.owed_again(named[0], [])


def test_sweep_covers_three_rates_per_side_within_each_documented_range():
    args = Namespace(tasks=["conll2003"], methods=list(e2e.METHODS), sides=list(e2e.SIDES), seeds=[0])
    planned = e2e.specs("sweep", {"runs": []}, args)
    for method in e2e.METHODS:
        for side in e2e.SIDES:
            assert len({s["lr"] for s in planned if (s["method"], s["side"]) == (method, side)}) >= 3
    assert 1e-2 in e2e.LRS["peft", "deep"]  # PEFT's documented prefix-tuning rate is in its sweep


@pytest.mark.parametrize("bucketing", [True, False])
def test_batch_plan_covers_every_example_once_and_repeats_for_a_seed(bucketing):
    lengths = [5 + (i * 7) % 40 for i in range(300)]
    first = sides.plan(lengths, epoch=1, seed=0, bucketing=bucketing)
    assert sorted(i for batch in first for i in batch) == list(range(300))
    assert first == sides.plan(lengths, epoch=1, seed=0, bucketing=bucketing)
    assert first != sides.plan(lengths, epoch=2, seed=0, bucketing=bucketing)
    assert all(len(batch) <= e2e.BATCH for batch in first)
