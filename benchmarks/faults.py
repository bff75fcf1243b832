"""Faults injected into real runs, and hostile inputs counted per reader: what happened, what was lost.

Kill points: a real `ptune train` subprocess gets SIGKILL at chosen moments (from inside via
$PTUNE_FAULT, or from outside), is resumed with `ptune train --resume`, and its final prompt is
compared bit for bit with an uninterrupted run. Inputs: tests/test_hostile.py with N per target.

    python benchmarks/faults.py [--examples 1000] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "faults.json"
SECTION = "faults"
# 96 examples, batch 8: 12 steps per epoch, 36 in all; checkpoints every 5 steps and at epoch ends.
OPTIONS = ["--method", "deep", "--length", "4", "--epochs", "3", "--batch-size", "8", "--checkpoint-every", "5",
           "--patience", "0"]
KILL_POINTS = [
    ("kill-after-step:3", "step 3, before the first checkpoint"),
    ("kill-after-step:7", "step 7, mid-epoch 1 (checkpoint at step 5)"),
    ("kill-after-step:12", "step 12, last batch of epoch 1, before dev evaluation"),
    ("kill-after-step:20", "step 20, mid-epoch 2"),
    ("kill-in-checkpoint:2", "while writing checkpoint 2 (temp file written, not renamed)"),
    ("kill-in-checkpoint:5", "while writing checkpoint 5 (end of epoch 2)"),
    ("kill-after-step:36", "step 36, the last step, before the final prompt is written"),
    ("outside", "SIGKILL from another process as soon as the first checkpoint exists"),
]


def ptune(*args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("PTUNE_FAULT", None)
    if fault:
        env["PTUNE_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "ptune.cli", "-q", *args], env=env, capture_output=True, text=True)


def same_prompt(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    first, second = load_file(str(a)), load_file(str(b))
    return first.keys() == second.keys() and all(first[k].equal(second[k]) for k in first)


def kill_points(work: Path) -> list[dict]:
    from ptune.data import get_task

    task = get_task("rotten_tomatoes")
    for name, examples in (("train", task.train[:96]), ("dev", task.dev[:32])):
        rows = ["text\tlabel"] + [f"{e.text}\t{e.label}" for e in examples]
        (work / f"{name}.tsv").write_text("\n".join(rows) + "\n")
    start = ["train", "--train", str(work / "train.tsv"), "--dev", str(work / "dev.tsv"), *OPTIONS]
    whole = work / "whole"
    assert ptune(*start, "--out", str(whole)).returncode == 0
    rows = []
    for fault, where in KILL_POINTS:
        out = work / fault.replace(":", "-")
        begun = time.perf_counter()
        if fault == "outside":
            process = subprocess.Popen([sys.executable, "-m", "ptune.cli", "-q", *start, "--out", str(out)],
                                       env=dict(os.environ, HF_HUB_OFFLINE="1"), stderr=subprocess.DEVNULL)
            while not (out / "checkpoint.safetensors").exists() and process.poll() is None:
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            code = process.wait()
        else:
            code = ptune(*start, "--out", str(out), fault=fault).returncode
        left = sorted(p.name for p in out.iterdir()) if out.exists() else []
        resumed = ptune("train", "--resume", str(out))
        message = resumed.stderr.strip().splitlines()[-1] if resumed.returncode else ""
        if resumed.returncode and "before its first checkpoint" in message:
            again = ptune(*start, "--out", str(out), "--overwrite")
            outcome = "no checkpoint yet: one-line error, run started again" if again.returncode == 0 else "failed"
        else:
            outcome = "resumed" if resumed.returncode == 0 else f"resume failed: {message}"
        identical = (out / "prompt.safetensors").exists() and same_prompt(whole / "prompt.safetensors",
                                                                           out / "prompt.safetensors")
        rows.append({"fault": fault, "where": where, "exit_code": code, "files_after_kill": left, "outcome": outcome,
                     "identical_prompt": identical, "seconds": round(time.perf_counter() - begun, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def hostile_inputs(examples: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as handle:
        env = dict(os.environ, PTUNE_FUZZ_EXAMPLES=str(examples), PTUNE_FUZZ_REPORT=handle.name, HF_HUB_OFFLINE="1")
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              str(ROOT / "tests" / "test_hostile.py")], env=env, capture_output=True, text=True)
        counts = json.loads(Path(handle.name).read_text())
    return {"passed": run.returncode == 0, "summary": run.stdout.strip().splitlines()[-1], "counts": counts}


def render(r: dict) -> str:
    lines = [
        "## Faults and hostile inputs: nothing lost, nothing unclear",
        "",
        f"Command: `{r['command']}` · machine: {r['machine']} · date: {r['date']}",
        "",
        "### Kill points (real `ptune train` processes, SIGKILL, then `ptune train --resume DIR`)",
        "",
        "deep prompt on 96 rotten_tomatoes examples, 3 epochs of 12 steps, a checkpoint every 5 steps and at each "
        "epoch's end; the final prompt is compared bit for bit with an uninterrupted run of the same seed.",
        "",
        "| kill point | exit code | files left | outcome | final prompt identical |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in r["kill_points"]:
        lines.append(f"| {row['where']} | {row['exit_code']} | {', '.join(row['files_after_kill']) or '(none)'} | "
                     f"{row['outcome']} | {'yes' if row['identical_prompt'] else 'NO'} |")
    hostile = r["hostile"]
    lines += [
        "",
        f"### Hostile inputs (`tests/test_hostile.py`, hypothesis, {r['examples']} inputs per target: random bytes, "
        "format-flavoured text, mutated valid files)",
        "",
        f"pytest: {hostile['summary']}. Any exception other than ptune's one-line `PtuneError` fails the run; "
        "the server must answer below 500.",
        "",
        "| target | inputs | read | clear error (PtuneError, one line) | server: 200 / 4xx |",
        "| --- | --- | --- | --- | --- |",
    ]
    for target, counts in sorted(hostile["counts"].items()):
        total = sum(counts.values())
        if target.startswith("server"):
            lines.append(f"| {target} | {total} | | | {counts.get('200', 0)} / {counts.get('4xx', 0)} |")
        else:
            lines.append(f"| {target} | {total} | {counts.get('read', 0)} | {counts.get('clear error', 0)} | |")
    return "\n".join(lines) + "\n"


def section() -> str:
    """The docs/RESULTS.md section, rendered from faults.json."""
    return render(json.loads(RESULTS.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    with tempfile.TemporaryDirectory() as work:
        points = kill_points(Path(work))
    record = {"command": f"python benchmarks/faults.py --examples {args.examples}",
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "date": date.today().isoformat(),
              "examples": args.examples, "kill_points": points, "hostile": hostile_inputs(args.examples)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    write_section(SECTION, render(record))
    print(render(record))


if __name__ == "__main__":
    main()
