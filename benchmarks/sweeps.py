"""The gap-closing searches of issue 17: one `ptune sweep` study per gap on a stated subset, selected on dev
only, then the winner confirmed with 3 seeds on test at the full budget of the script that owns the row.

    python benchmarks/sweeps.py sweep conll2003_deep            # the study (resumes: rerun to add missing trials)
    python benchmarks/sweeps.py confirm conll2003_deep          # 3 seeds of the winner, through benchmarks/core.py
    python benchmarks/sweeps.py --report-only

A study's working folder (study.db and every trial's run) is under .cache/sweeps/NAME; what is kept is copied
to benchmarks/results/sweeps/NAME/: best.json (the winner as a --config file), trials.md, trials.json and
effects.png (each setting's effect on dev). benchmarks/results/sweeps.json records each study's command,
subset, trial counts, winner and, once confirmed, where its seeds are recorded. The confirmation of a gap on
a core row is core.json's variant ``sweep`` of that task and method, set against the default there.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, cpu_name, versions, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "sweeps.json"
KEPT = ROOT / "benchmarks" / "results" / "sweeps"
WORK = ROOT / ".cache" / "sweeps"
SECTION = "sweeps"
COPIED = ("best.json", "trials.md", "trials.json", "effects.png")
CONFIRM_SEEDS = (0, 1, 2)

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
        "confirm": {"script": "core.py", "task": "conll2003", "method": "deep"},
    },
}


def study_dir(name: str) -> Path:
    return WORK / name


def sweep(name: str, threads: int) -> dict:
    """Run (or resume) the study, then keep its report under benchmarks/results/sweeps/NAME."""
    gap = GAPS[name]
    command = ["ptune", "sweep", *gap["sweep"], "--trials", str(gap["trials"]), "--out", str(study_dir(name))]
    env = {**_env(), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "ptune.cli", *command[1:]], env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"sweep {name} failed (exit {done.returncode})")
    summary = json.loads(done.stdout)
    kept = KEPT / name
    kept.mkdir(parents=True, exist_ok=True)
    for file in COPIED:
        if (study_dir(name) / file).exists():
            shutil.copyfile(study_dir(name) / file, kept / file)
    record = {"name": name, "target": gap["target"], "subset": gap["subset"],
              "command": shlex.join(command).replace(str(study_dir(name)), "OUT"), "trials": summary["trials"],
              "best": summary["best"] and {k: summary["best"][k] for k in ("trial", "dev", "settings")},
              "threads": threads, "date": date.today().isoformat(), "cpu": cpu_name(),
              "versions": versions("torch", "transformers", "optuna")}
    _save(name, record)
    return record


def confirm(name: str, threads: int) -> None:
    """The winner's searched settings at the owning script's full budget, one run per seed, recorded there."""
    gap, record = GAPS[name], _load().get(name)
    if not record or not record["best"]:
        raise SystemExit(f"{name}: no completed trial yet; run `python benchmarks/sweeps.py sweep {name}` first")
    flags = winner_flags(record["best"]["settings"])
    where = gap["confirm"]
    command = [sys.executable, str(ROOT / "benchmarks" / where["script"]), "--tasks", where["task"],
               "--methods", where["method"], "--seeds", *map(str, CONFIRM_SEEDS), "--variant", "sweep",
               "--extra", shlex.join(flags), "--threads", str(threads)]
    subprocess.run(command, env=_env(), check=True)
    _save(name, {**record, "confirmed": {"script": where["script"], "variant": "sweep", "flags": shlex.join(flags),
                                         "seeds": list(CONFIRM_SEEDS)}})


def winner_flags(settings: dict) -> list[str]:
    """`ptune train` flags for a trial's searched settings (``reparam`` is a switch)."""
    flags = []
    for name, value in settings.items():
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no-{name}")
        else:
            flags += [f"--{name}", str(value)]
    return flags


def _env() -> dict:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _save(name: str, record: dict) -> None:
    records = {**_load(), name: record}
    RESULTS.write_text(json.dumps(records, indent=2) + "\n")
    write_section(SECTION, section())


def section() -> str:
    """The docs/RESULTS.md section, rendered from sweeps.json."""
    lines = ["## Searches that close a gap (issue 17)", "",
             "Each study is `ptune sweep` (Optuna TPE, median pruning on the per-epoch dev score) on a stated subset, "
             "selected on dev only. The winner's searched settings are then run at the full budget with 3 seeds and "
             "scored on test by the script named; that row says whether the gap closed.", ""]
    for name, r in _load().items():
        best = r["best"]
        shown = ", ".join(f"{k} {v}" for k, v in best["settings"].items()) if best else "none yet"
        counts = ", ".join(f"{v} {k}" for k, v in r["trials"].items() if v)
        lines += [f"### {name}", "",
                  f"- Target: {r['target']}.",
                  f"- Subset: {r['subset']}. Command: `{r['command']}` · {r['date']} · {r['cpu']}, "
                  f"{r['threads']} thread(s) · optuna {r['versions']['optuna']}.",
                  f"- Trials: {counts}. Best on dev: {best['dev']:.4f} (trial {best['trial']}: {shown})."
                  if best else f"- Trials: {counts}. No trial completed.",
                  f"- Table and plot: [trials.md](../benchmarks/results/sweeps/{name}/trials.md), "
                  f"![effects of each setting](../benchmarks/results/sweeps/{name}/effects.png)"]
        if "confirmed" in r:
            c = r["confirmed"]
            lines.append(f"- Confirmed with seeds {', '.join(map(str, c['seeds']))} by `{c['script']}` as variant "
                         f"`{c['variant']}` (`{c['flags']}`); its section sets it against the default and fine-tuning.")
        else:
            lines.append("- Not yet confirmed on test.")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", choices=("sweep", "confirm"))
    parser.add_argument("name", nargs="?", choices=sorted(GAPS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--report-only", action="store_true", help="rewrite docs/RESULTS.md from sweeps.json")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    if not args.stage or not args.name:
        parser.error("give a stage (sweep or confirm) and a gap: " + ", ".join(GAPS))
    if args.stage == "sweep":
        print(json.dumps(sweep(args.name, args.threads), indent=2))
    else:
        confirm(args.name, args.threads)


if __name__ == "__main__":
    main()
