"""The gap-closing searches of issue 17: one `ptune sweep` study per gap on a stated subset, selected on dev
only, then the winner confirmed with 3 seeds on test at the full budget of the script that owns the row.

    python benchmarks/sweeps.py sweep conll2003_deep            # the study (resumes: rerun to add missing trials)
    python benchmarks/sweeps.py confirm conll2003_deep          # 3 seeds of the winner, through benchmarks/core.py
    python benchmarks/sweeps.py sweep smollm2_verbalizer_deep   # confirm: lm.py's rows at a larger budget + the winner
    python benchmarks/sweeps.py sweep capital_of_ptuning        # ptune probe-sweep; confirm: 3 seeds vs manual on test
    python benchmarks/sweeps.py transfer capital_of_ptuning     # its settings on continent-of and borders, 3 seeds
    python benchmarks/sweeps.py reseed capital_of_ptuning  # once: a study kept before study.db.gz, from trials.json
    python benchmarks/sweeps.py --report-only

A study's working folder (study.db and every trial's run) is under .cache/sweeps/NAME; what is kept is copied
to benchmarks/results/sweeps/NAME/ after every finished trial: best.json (the winner as a --config file),
trials.md, trials.json, effects.png (each setting's effect on dev) and study.db.gz, the Optuna study itself,
from which a machine without the working folder continues the study where the last one stopped (the
working folder is git-ignored and lost with the machine; trials a killed session ran are then not rerun). benchmarks/results/sweeps.json records each study's command,
subset, trial counts, winner and, once confirmed, where its seeds are recorded. The confirmation of a gap on
a core row is core.json's variant ``sweep`` of that task and method, set against the default there; that of a
probing gap (``ptune probe-sweep``) is recorded here: the winner's test P@1 over 3 training seeds on one subject
split, against every manual wording on the same test subjects.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, cpu_name, versions, write_atomic, write_section  # noqa: E402
from sweeps_probe import CONFIRM_SEEDS, MANUAL_CAPITAL, child_env, confirm_probe, transfer_probe  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "sweeps.json"
KEPT = ROOT / "benchmarks" / "results" / "sweeps"
WORK = ROOT / ".cache" / "sweeps"
SECTION = "sweeps"
COPIED = ("best.json", "trials.md", "trials.json", "effects.png")

# Each gap: what it must reach, the study (a subset of the full budget, at most 30 trials), and the settings
# the winner carries into the confirmation (the searched ones; the subset's limits and epochs stay behind).
GAPS = {
    "conll2003_deep": {
        "target": "conll2003 test F1 with deep prompts at least 0.97 of full fine-tuning (minilm)",
        "subset": "3,000 of 14,041 training sentences, dev limited to 1,000 sentences, 5 epochs, seed 0",
        "sweep": ["--task", "conll2003", "--method", "deep", "--train-limit", "3000", "--eval-limit", "1000",
                  "--epochs", "5", "--patience", "5", "--seed", "0", "--layers", "all",
                  "--lr", "3e-3:1e-1:log", "--length", "8,16,32,64", "--reparam", "off,on"],
        "trials": 30,
        "confirm": {"script": "core.py", "task": "conll2003", "method": "deep", "of_finetune": 0.97},
        "written_back": "deep prompts on tagging tasks default to length 64 and lr 5e-2 (`KIND_DEFAULTS` in "
                        "src/ptune/config.py; `ptune train` logs it, `--length`/`--lr` override it)",
    },
    "smollm2_verbalizer_deep": {
        "target": "smollm2 verbalizer with deep prompts at least as good as with input prompts, at a budget large "
                  "enough to converge, with a linear-head deep row beside them",
        "subset": "smollm2, rotten_tomatoes: the first 400 training examples, dev limited to 200, 2 epochs, seed 0",
        "sweep": ["--backbone", "smollm2", "--task", "rotten_tomatoes", "--method", "deep", "--head", "verbalizer",
                  "--verbalizer", "negative=bad,terrible;positive=good,great", "--template", "{text} It was {label}",
                  "--train-limit", "400", "--eval-limit", "200", "--epochs", "2", "--patience", "2", "--seed", "0",
                  "--layers", "all", "--lr", "1e-3:1e-1:log", "--length", "4,8,16,32", "--reparam", "off,on"],
        "trials": 24,
        "confirm": {"script": "lm.py", "argv": ["--train-limit", "2000", "--eval-limit", "500", "--epochs", "3",
                                                "--methods", "zero-shot", "prompt", "ptuning", "deep", "deep-linear"]},
    },
    "capital_of_ptuning": {
        "target": "capital-of (LAMA P36) P-tuning P@1 at least 10 points above the best manual wording (smollm2)",
        "subset": "every fact of the P36 fixture (147 train / 49 dev / 50 test subjects, split seed 0), objects "
                  "ranked by summed log-probability, 8 epochs, seed 0; three manual wordings to start from",
        "command": "probe-sweep",
        "sweep": ["--facts", "tests/fixtures/facts/P36.jsonl", "--multi-token", "--epochs", "8", "--seed", "0",
                  "--manual", *MANUAL_CAPITAL, "--lr", "1e-3:3e-2:log", "--prompts", "1,2,3,4,6",
                  "--init", "words,vocab", "--encoder", "lstm,mlp,none",
                  # queued from trial 11 on: the settings of benchmarks/probe.py's capital-of table, whose best
                  # P-tuning row (this wording, 3 [P] per side) was 12 points over its best manual wording
                  "--enqueue", json.dumps({"lr": 0.003, "prompts": 3, "init": "words", "encoder": "lstm",
                                           "wording": MANUAL_CAPITAL[2]})],
        "trials": 30,
        "confirm": {"probe": True},
        "written_back": "`ptune probe`'s learned probes default to lr 4.4e-3, 8 epochs, an MLP encoder and 2 [P] per "
                        "side for P-tuning (`LEARNED_DEFAULTS`, `DEFAULT_PROMPTS` in src/ptune/analysis/probing/"
                        "defaults.py); `--lr`, `--epochs`, `--encoder`, `--prompts` override them",
    },
}


def study_dir(name: str) -> Path:
    return WORK / name


def sweep(name: str, threads: int, trials: int | None = None) -> dict:
    """Run (or resume) the study up to ``trials`` finished trials (default: the gap's plan), then keep its report
    under benchmarks/results/sweeps/NAME. Fewer than planned records a partial study (rerun to continue it)."""
    gap = GAPS[name]
    trials = gap["trials"] if trials is None else trials
    def command(count: int) -> list[str]:
        return [gap.get("command", "sweep"), *gap["sweep"], "--trials", str(count), "--out", str(study_dir(name))]

    env = {**child_env(), "OMP_NUM_THREADS": str(threads)}
    restore(name)
    finished, stalled = 0, 0
    while True:  # one trial per call, its report and study kept as soon as it ends
        done = subprocess.run([sys.executable, "-m", "ptune.cli", *command(min(trials, finished + 1))], env=env,
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"sweep {name} failed (exit {done.returncode})")
        summary = json.loads(done.stdout)
        keep(name)
        now = summary["trials"]["complete"] + summary["trials"].get("pruned", 0)
        stalled = stalled + 1 if now <= finished else 0
        finished = now
        if finished >= trials or stalled >= 3:  # three failed trials in a row: stop and report
            break
    record = {"name": name, "target": gap["target"], "subset": gap["subset"],
              "command": shlex.join(["ptune", *command(gap["trials"])]).replace(str(study_dir(name)), "OUT"), "trials": summary["trials"],
              "planned": gap["trials"],
              "best": summary["best"] and {"trial": summary["best"]["trial"], "settings": summary["best"]["settings"],
                                           "dev": summary["best"].get("dev", summary["best"].get("dev_p_at_1")),
                                           **({"command": summary["best"]["command"]}
                                              if "command" in summary["best"] else {})},
              "threads": threads, "date": date.today().isoformat(), "cpu": cpu_name(),
              "versions": versions("torch", "transformers", "optuna")}
    _save(name, record)
    return record


def keep(name: str) -> None:
    """Copy the study's report and its Optuna storage (gzipped) to benchmarks/results/sweeps/NAME."""
    kept = KEPT / name
    kept.mkdir(parents=True, exist_ok=True)
    for file in COPIED:
        if (study_dir(name) / file).exists():
            shutil.copyfile(study_dir(name) / file, kept / file)
    storage = study_dir(name) / "study.db"
    if storage.exists():
        partial = kept / "study.db.gz.partial"
        partial.write_bytes(gzip.compress(storage.read_bytes(), mtime=0))
        partial.replace(kept / "study.db.gz")


def restore(name: str) -> None:
    """Where this machine has no working folder for the study, start it from the kept storage."""
    storage, kept = study_dir(name) / "study.db", KEPT / name / "study.db.gz"
    if not storage.exists() and kept.exists():
        storage.parent.mkdir(parents=True, exist_ok=True)
        storage.write_bytes(gzip.decompress(kept.read_bytes()))
        print(f"{name}: continuing the study kept in {kept.relative_to(ROOT)}", file=sys.stderr)


def reseed(name: str) -> int:
    """Rebuild the Optuna storage of a study that predates study.db.gz from its kept trials.json: each finished
    trial (complete or pruned) with its settings, dev score and best epoch, so that the study continues instead
    of starting over; returns how many trials it holds. `ptune sweep` sets its record on the next run."""
    import optuna

    from ptune.cli.app import build_parser

    gap, storage = GAPS[name], study_dir(name) / "study.db"
    if storage.exists() or (KEPT / name / "study.db.gz").exists():
        raise SystemExit(f"{name}: its storage exists; nothing to rebuild")
    args = build_parser().parse_args([gap.get("command", "sweep"), *gap["sweep"], "--out", str(study_dir(name))])
    if gap.get("command") == "probe-sweep":
        from ptune.cli.probe_sweep import resolve

        space = resolve(args)
    else:
        from ptune.cli.options import dataclass_from, read_config
        from ptune.config import MethodConfig
        from ptune.training.search_space import SETTINGS, resolve_space

        method = dataclass_from(MethodConfig, args, read_config(None))
        space = resolve_space(method.method, method.template, {s: getattr(args, f"{s}_space") for s in SETTINGS}, {})
    probe = optuna.create_study().ask()  # each searched setting's distribution, as the sweep suggests it
    for setting in space.values():
        if not setting.fixed:
            setting.suggest(probe)
    storage.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=f"sqlite:///{storage.resolve()}", study_name=args.study_name,
                                direction="maximize")
    kept = json.loads((KEPT / name / "trials.json").read_text())
    for row in kept:
        if row["state"] not in ("complete", "pruned") or row["dev"] is None:
            continue
        state = optuna.trial.TrialState[row["state"].upper()]
        study.add_trial(optuna.trial.create_trial(
            state=state, value=row["dev"] if state.name == "COMPLETE" else None,
            intermediate_values={} if state.name == "COMPLETE" else {row["best_epoch"] or 0: row["dev"]},
            params={key: row[key] for key in probe.distributions}, distributions=probe.distributions,
            user_attrs={"run": row["run"], "best_epoch": row["best_epoch"], "rebuilt_from": "trials.json"}))
    return len(study.trials)


def confirm(name: str, threads: int, seeds: tuple[int, ...] = CONFIRM_SEEDS) -> None:
    """The winner's searched settings at the owning script's full budget, one run per seed, recorded there.
    ``seeds`` adds missing seeds to a core row without redoing the others; the record lists the seeds that row
    holds afterwards."""
    gap, record = GAPS[name], _load().get(name)
    if not record or not record["best"]:
        raise SystemExit(f"{name}: no completed trial yet; run `python benchmarks/sweeps.py sweep {name}` first")
    if gap["confirm"].get("probe"):
        _save(name, {**record, "confirmed": confirm_probe(record["best"]["command"], threads)})
        return
    where, run_seeds = gap["confirm"], ["--seeds", *map(str, seeds), "--threads", str(threads)]
    if where["script"] == "lm.py":  # its own rows at a larger budget, and the winner as deep-sweep
        best = KEPT / name / "best.json"
        argv = [*where["argv"], *run_seeds, "--sweep", str(best.relative_to(ROOT)), "--resume"]
        shown = f"row deep-sweep ({best.relative_to(ROOT)})"
    else:
        flags = shlex.join(winner_flags(record["best"]["settings"]))
        argv = ["--tasks", where["task"], "--methods", where["method"], *run_seeds, "--variant", "sweep",
                "--extra", flags]
        shown = f"variant `sweep` (`{flags}`)"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / where["script"]), *argv], env=child_env(), cwd=ROOT, check=True)
    held = _core_seeds(where["task"], where["method"]) if where["script"] == "core.py" else list(seeds)
    _save(name, {**record, "confirmed": {"script": where["script"], "row": shown, "seeds": held,
                                         "command": shlex.join(["python", f"benchmarks/{where['script']}", *argv])}})


def _share_of_finetune(where: dict) -> str:
    """The confirmed core row's mean test score as a share of fine-tuning's, against the gap's target."""
    rows = {(row["task"], row["method"], row.get("variant")): row
            for row in json.loads((ROOT / "benchmarks" / "results" / "core.json").read_text())}
    sweep, finetune = rows[where["task"], where["method"], "sweep"], rows[where["task"], "finetune", "default"]
    share = sweep["test"] / finetune["test"]
    return (f"- On test: {100 * sweep['test']:.2f} ± {100 * sweep['test_std']:.2f} over seeds "
            f"{', '.join(map(str, sweep['seeds']))}, against fine-tuning's {100 * finetune['test']:.2f}: "
            f"**{share:.3f} of fine-tuning, target {where['of_finetune']} {'met' if share >= where['of_finetune'] else 'missed'}**.")


def _core_seeds(task: str, method: str) -> list[int]:
    """The seeds core.json's variant ``sweep`` of ``task``/``method`` holds."""
    rows = json.loads((ROOT / "benchmarks" / "results" / "core.json").read_text())
    return next((row["seeds"] for row in rows
                 if (row["task"], row["method"], row.get("variant")) == (task, method, "sweep")), [])


def winner_flags(settings: dict) -> list[str]:
    """`ptune train` flags for a trial's searched settings (``reparam`` is a switch)."""
    flags = []
    for name, value in settings.items():
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no-{name}")
        else:
            flags += [f"--{name}", str(value)]
    return flags


def _load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _save(name: str, record: dict) -> None:
    records = {**_load(), name: record}
    write_atomic(RESULTS, json.dumps(records, indent=2) + "\n")
    write_section(SECTION, section())


def _show(value) -> str:
    """A setting as tables write it: on/off, 4 significant digits."""
    return "on" if value is True else "off" if value is False else f"{value:.4g}" if isinstance(value, float) else str(value)


def section() -> str:
    """The docs/RESULTS.md section, rendered from sweeps.json."""
    lines = ["## Searches that close a gap (issue 17)", "",
             "Each study is `ptune sweep` (Optuna TPE, median pruning on the per-epoch dev score) on a stated subset, "
             "selected on dev only. The winner's searched settings are then run at the full budget with 3 seeds and "
             "scored on test by the script named; that row says whether the gap closed.", ""]
    for name, r in _load().items():
        best = r["best"]
        shown = ", ".join(f"{k} {_show(v)}" for k, v in best["settings"].items()) if best else "none yet"
        finished = sum(r["trials"].get(state, 0) for state in ("complete", "pruned"))
        counts = ", ".join(f"{v} {k}" for k, v in r["trials"].items() if v) + (
            f" of {r['planned']} planned (**partial**: the same command continues it)"
            if finished < r.get("planned", finished) else "")
        lines += [f"### {name}", "",
                  f"- Target: {r['target']}.",
                  f"- Subset: {r['subset']}. Command: `{r['command']}` · {r['date']} · {r['cpu']}, "
                  f"{r['threads']} thread(s) · optuna {r['versions']['optuna']}.",
                  f"- Trials: {counts}. Best on dev: {best['dev']:.4f} (trial {best['trial']}: {shown})."
                  if best else f"- Trials: {counts}. No trial completed.",
                  f"- Table and plot: [trials.md](../benchmarks/results/sweeps/{name}/trials.md), "
                  f"![effects of each setting](../benchmarks/results/sweeps/{name}/effects.png)"]
        if "confirmed" in r and "ptuning_p1" in r["confirmed"]:
            c = r["confirmed"]
            manual = ", ".join(f"`{w}` {100 * v:.1f}" for w, v in c["manual_p1"].items())
            lines += [f"- Confirmed on test ({c['test_facts']} subjects, split seed {c['split_seed']}): `{c['command']}` "
                      f"with seeds {', '.join(map(str, c['seeds']))}: P@1 {100 * c['ptuning_p1_mean']:.1f} ± "
                      f"{100 * c['ptuning_p1_std']:.1f}; manual wordings {manual}.",
                      f"- Gap to the best manual wording: {c['gap_points']:+.1f} points (target +10: "
                      f"**{'met' if c['gap_points'] >= 10 else 'missed'}**)."]
        elif "confirmed" in r:
            c = r["confirmed"]
            lines.append(f"- Confirmed with seeds {', '.join(map(str, c['seeds']))} as {c['row']} (the last "
                         f"confirmation run: `{c['command']}`; each seed's own command is in that script's record); "
                         "that script's section sets it against the other rows.")
            if GAPS.get(name, {}).get("confirm", {}).get("of_finetune"):
                lines.append(_share_of_finetune(GAPS[name]["confirm"]))
        else:
            lines.append("- Not yet confirmed on test.")
        if "transfer" in r:
            lines += _transfer(r["transfer"])
        if GAPS.get(name, {}).get("written_back"):
            lines.append(f"- Written back into the code: {GAPS[name]['written_back']}.")
        lines.append("")
    return "\n".join(lines)


def _transfer(t: dict) -> list[str]:
    """Lines for a probing winner's settings carried to the other built-in relations."""
    before = t["settings_before"]
    lines = [f"- The winner's settings on the other built-in relations (`python benchmarks/sweeps.py transfer`; each "
             f"relation's LAMA template, seeds {', '.join(map(str, t['seeds']))}, split seed {t['split_seed']}, test), "
             f"against the P-tuning rows of \"Knowledge probing from LAMA files\" on the same split and template, made with lr "
             f"{before['lr']}, {before['epochs']} epochs, {before['encoder']} encoder, {before['prompts_per_side']} [P] "
             f"per side:", "",
             "  | relation | facts | P@1, winner's settings | P@1, before | best manual | change |",
             "  | --- | --- | --- | --- | --- | --- |"]
    for relation, row in t["relations"].items():
        change = 100 * (row["ptuning_p1_mean"] - row["before_p1_mean"])
        spread = max(100 * row["ptuning_p1_std"], 100 * row["before_p1_std"])
        verdict = "tie (within a std)" if abs(change) <= spread else "better" if change > 0 else "worse"
        lines.append(f"  | {relation} ({row['builtin']}) | {row['test_facts']} | {100 * row['ptuning_p1_mean']:.1f} ± "
                     f"{100 * row['ptuning_p1_std']:.1f} | {100 * row['before_p1_mean']:.1f} ± "
                     f"{100 * row['before_p1_std']:.1f} | {100 * row['manual_best_p1']:.1f} | {change:+.1f}: {verdict} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", choices=("sweep", "confirm", "transfer", "reseed"),
                        help="transfer: a probing winner's settings on the other built-in relations, 3 seeds on test; "
                             "reseed: rebuild a study's storage from its kept trials.json (studies kept before "
                             "study.db.gz), then keep it")
    parser.add_argument("name", nargs="?", choices=sorted(GAPS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--trials", type=int, help="sweep: stop at this many finished trials (default: the gap's "
                                                   "plan); fewer records a partial study")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(CONFIRM_SEEDS),
                        help="confirm: the seeds to run (default: 0 1 2); others already recorded are kept")
    parser.add_argument("--report-only", action="store_true", help="rewrite docs/RESULTS.md from sweeps.json")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    if not args.stage or not args.name:
        parser.error("give a stage (sweep or confirm) and a gap: " + ", ".join(GAPS))
    if args.stage == "sweep":
        print(json.dumps(sweep(args.name, args.threads, args.trials), indent=2))
    elif args.stage == "reseed":
        print(f"{args.name}: {reseed(args.name)} trials rebuilt from trials.json", file=sys.stderr)
        keep(args.name)
    elif args.stage == "transfer":
        record = _load().get(args.name)
        if GAPS[args.name].get("command") != "probe-sweep" or not record or not record["best"]:
            parser.error(f"transfer: {args.name} is not a finished probing study")
        _save(args.name, {**record, "transfer": transfer_probe(record["best"]["command"], args.threads)})
    else:
        confirm(args.name, args.threads, tuple(args.seeds))


if __name__ == "__main__":
    main()
