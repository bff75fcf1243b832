"""``ptune probe-sweep``: trials are ``ptune probe --facts`` runs scored on the dev split, the study continues when
the command runs again, ``best.json``'s command reproduces the winning trial, and bad spaces are refused in one line
(ptune/cli/probe_sweep.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import optuna
import pytest

from ptune.analysis.probing import load_relation
from ptune.cli import main


@pytest.fixture(scope="module")
def facts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("probe-sweep") / "capitals.tsv"
    path.write_text("".join(f"{fact.subject}\t{obj}\n" for fact in load_relation("capital-of").facts[:60]
                            for obj in fact.objects), encoding="utf-8")
    return path


def sweep(facts: Path, backbone: Path, out: Path, trials: int, *extra: str) -> list[str]:
    return ["-q", "probe-sweep", "--facts", str(facts), "--backbone", str(backbone), "--multi-token",
            "--manual", "The capital of [X] is [Y] .", "{subject}'s capital city is", "--epochs", "1",
            "--lr", "1e-3:1e-1:log", "--prompts", "1,2", "--init", "words,vocab", "--encoder", "mlp,none",
            "--trials", str(trials), "--startup-trials", "2", "--out", str(out), *extra]


def test_trials_are_dev_probe_runs_the_study_continues_and_best_reproduces(facts, tied_llama_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(sweep(facts, tied_llama_dir, out, 3)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trials"]["complete"] == 3
    assert main(sweep(facts, tied_llama_dir, out, 4)) == 0  # the same command with one more trial adds one
    capsys.readouterr()
    study = optuna.load_study(study_name="ptune-probe", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    for trial in study.trials:  # each trial is a probe run on the dev split, its value that run's P@1
        result = json.loads((Path(trial.user_attrs["run"]) / "results.json").read_text())
        (relation,) = result["relations"]
        (run,) = relation["runs"]
        assert result["split"] == "dev" and run["method"] == "ptuning" and run["facts"] == relation["split_sizes"]["dev"]
        assert trial.value == run["p_at_1"]
        assert run["wording"] in ("{subject}'s capital city is", "The capital of {subject} is")
        assert result["lr"] == trial.params["lr"] and run["init"] == trial.params["init"]
        assert run["encoder"] == trial.params["encoder"]
    best = json.loads((out / "best.json").read_text())
    winner = max((t for t in study.trials), key=lambda t: t.value)
    assert best["dev_p_at_1"] == winner.value and best["settings"]["prompts"] == winner.params["prompts"]
    rows = json.loads((out / "trials.json").read_text())
    assert [row["trial"] for row in rows] == [0, 1, 2, 3] and (out / "effects.png").stat().st_size > 0
    assert "dev P@1" in (out / "trials.md").read_text()

    # best.json's command, scored on dev, is the winning trial again (same split, seed and settings)
    argv = shlex.split(best["command"])[1:] + ["--split", "dev", "--out", str(tmp_path / "again")]
    assert argv[0] == "probe" and main(["-q", *argv]) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    (relation,) = again["relations"]
    learned = [run for run in relation["runs"] if run["method"] == "ptuning"]
    assert learned[0]["p_at_1"] == pytest.approx(winner.value)


def test_another_space_in_the_same_folder_is_refused(facts, tied_llama_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(sweep(facts, tied_llama_dir, out, 1)) == 0
    capsys.readouterr()
    assert main(sweep(facts, tied_llama_dir, out, 2, "--seed", "1")) == 2
    assert "was started with other options (seed)" in capsys.readouterr().err


@pytest.mark.parametrize("extra, fragment", [
    (["--prompts", "0,2"], "--prompts"),
    (["--init", "words,labels"], "give some of words, vocab"),
    (["--method", "prompt", "--encoder", "lstm"], "--method prompt has no encoder"),
    (["--lr", "0.01", "--prompts", "2", "--init", "words", "--encoder", "none", "--manual", "The capital of [X] is [Y] ."],
     "nothing to search"),
    (["--manual", "[P] The capital of {subject} is"], "wordings have no [P] tokens"),
    (["--facts"], "--facts"),
    (["--manual", "The capital of [X] is [Y] .", "--enqueue", '{"encoder": "gru"}'], "not one of its choices"),
])
def test_bad_options_are_refused_in_one_line(facts, tmp_path, capsys, extra, fragment):
    argv = ["-q", "probe-sweep", "--facts", str(facts), "--backbone", str(tmp_path / "never-loaded"),
            "--out", str(tmp_path / "out"), *extra]
    assert main(argv) == 2
    message = capsys.readouterr().err.strip()
    assert fragment in message and "Traceback" not in message and len(message.splitlines()) == 1, message
    assert not (tmp_path / "out").exists()  # refused before anything is written or loaded


def test_without_facts_it_says_what_to_give(tmp_path, capsys):
    assert main(["-q", "probe-sweep", "--out", str(tmp_path / "out")]) == 2
    assert "--facts FILE" in capsys.readouterr().err


def test_learned_probe_defaults_are_the_capital_of_studys_winner():
    """What the kept capital-of study chose is what `ptune probe` trains with when no flag is given: its lr (to
    2 figures), epochs, encoder, [P] per side and wording."""
    import argparse

    from ptune.analysis.probing.command import DEFAULT_MANUAL, DEFAULT_PROMPTS, add_probe_options
    from ptune.analysis.probing.lama import convert_template

    kept = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "sweeps" / "capital_of_ptuning"
    best = json.loads((kept / "best.json").read_text())
    winner, command = best["settings"], shlex.split(best["command"])
    parser = argparse.ArgumentParser()
    add_probe_options(parser)
    defaults = parser.parse_args([])
    assert defaults.lr == pytest.approx(winner["lr"], rel=0.01) and defaults.encoder == winner["encoder"]
    assert defaults.epochs == int(command[command.index("--epochs") + 1])
    assert DEFAULT_PROMPTS["ptuning"] == winner["prompts"] and winner["init"] == "words"  # words: ptuning's default
    assert convert_template(winner["wording"]) == DEFAULT_MANUAL
