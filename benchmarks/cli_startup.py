"""How long `ptune --help` and `ptune train --help` take, before and after the CLI loads torch only in commands.

"before" is the code at --before-ref (default 945acf5, the last single-module cli.py), extracted with
`git archive`; "after" is this checkout's src/ (or --after SRC). Each run is a fresh process,
`python -c 'from ptune.cli import main; import sys; sys.exit(main())' ... --help`, with PYTHONPATH
pointing at one tree; runs interleave (before, after) so that load on the machine hits both alike.
Wall seconds per run and peak RSS (os.wait4) are recorded; one unrecorded warm-up run each writes .pyc files.

    python benchmarks/cli_startup.py [--runs 7] [--before-ref 945acf5] [--after SRC [--after-label TEXT]]
                                     [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, cpu_name, save, versions, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "cli_startup.json"
SECTION = "cli_startup"
GOAL_S = 0.5
ENTRY = "from ptune.cli import main; import sys; sys.exit(main())"
COMMANDS = {"ptune --help": ["--help"], "ptune train --help": ["train", "--help"]}


def extract(ref: str, into: Path) -> Path:
    """The src/ tree of ``ref``, written under ``into``."""
    archive = into / "src.tar"
    with archive.open("wb") as handle:
        subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"], stdout=handle, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def one_run(src: Path, args: list[str]) -> dict:
    """Wall seconds and peak resident memory of one fresh ``ptune ...`` process importing from ``src``."""
    env = dict(os.environ, PYTHONPATH=str(src), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    begun = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", ENTRY, *args], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - begun
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} with PYTHONPATH={src} failed ({process.returncode}): {error[-2000:]}")
    return {"seconds": round(seconds, 4), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def loads(src: Path, args: list[str]) -> list[str]:
    """Which of torch, transformers and rich the command imported."""
    probe = ("import runpy, sys\nsys.argv = ['ptune', *sys.argv[1:]]\ntry:\n    " + ENTRY.replace("; ", "\n    ")
             + "\nexcept SystemExit:\n    pass\n"
             "print('LOADED:' + ','.join(m for m in ('torch', 'transformers', 'rich') if m in sys.modules), "
             "file=sys.stderr)")
    env = dict(os.environ, PYTHONPATH=str(src), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True, check=True)
    return [name for name in done.stderr.strip().splitlines()[-1].removeprefix("LOADED:").split(",") if name]


def measure(trees: dict[str, Path], runs: int) -> dict:
    for src in trees.values():  # warm-up: compile .pyc files, fill the page cache
        for args in COMMANDS.values():
            one_run(src, args)
    per_run = {label: {name: [] for name in COMMANDS} for label in trees}
    for _ in range(runs):
        for name, args in COMMANDS.items():
            for label, src in trees.items():
                per_run[label][name].append(one_run(src, args))
    out = {}
    for label, commands in per_run.items():
        out[label] = {}
        for name, rows in commands.items():
            out[label][name] = {
                "median_s": round(statistics.median(r["seconds"] for r in rows), 3),
                "median_peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in rows), 1),
                "imports": loads(trees[label], COMMANDS[name]),
                "runs": rows,
            }
    return out


def render(r: dict) -> str:
    lines = [
        "## CLI startup: `--help` without torch",
        "",
        f"Command: `{r['command']}` · machine: {r['machine']} · date: {r['date']} · {r['runs']} runs each, "
        f"interleaved, fresh processes · python {r['versions']['python']}, torch {r['versions']['torch']}, "
        f"transformers {r['versions']['transformers']}",
        "",
        f"before: {r['before']['source']}; after: {r['after']['source']}. Goal: under {r['goal_s']} s.",
        "",
        "| command | before: median s | after: median s | speed-up | peak RSS before / after (MB) | after imports "
        "| goal met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in COMMANDS:
        before, after = r["before"]["results"][name], r["after"]["results"][name]
        lines.append(f"| `{name}` | {before['median_s']:.3f} | {after['median_s']:.3f} | "
                     f"{before['median_s'] / after['median_s']:.0f}x | {before['median_peak_rss_mb']:.0f} / "
                     f"{after['median_peak_rss_mb']:.0f} | "
                     f"{', '.join(after['imports']) or 'no torch, transformers or rich'} | "
                     f"{'yes' if after['median_s'] < r['goal_s'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def section() -> str:
    """The docs/RESULTS.md section, rendered from cli_startup.json."""
    return render(json.loads(RESULTS.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="recorded runs per command and tree (default: 7)")
    parser.add_argument("--before-ref", default="945acf5", help="git ref of the 'before' code (default: 945acf5)")
    parser.add_argument("--after", default=str(ROOT / "src"), help="src folder of the 'after' code (default: ./src)")
    parser.add_argument("--after-label", default="src/ of this checkout (src/ptune/cli/, one module per command)",
                        help="how the report names the 'after' code")
    parser.add_argument("--report-only", action="store_true", help="re-render docs/RESULTS.md from the JSON")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    if args.runs < 5:
        raise SystemExit("--runs: at least 5 for a median worth reporting")
    with tempfile.TemporaryDirectory() as work:
        before = extract(args.before_ref, Path(work))
        results = measure({"before": before, "after": Path(args.after)}, args.runs)
    record = {
        "command": shlex.join(["python", "benchmarks/cli_startup.py", *sys.argv[1:]]),
        "entry": f"python -c '{ENTRY}' ARGS",
        "machine": f"{platform.machine()}, {cpu_name()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "date": date.today().isoformat(), "versions": versions("torch", "transformers", "rich"), "runs": args.runs, "goal_s": GOAL_S,
        "before": {"source": f"git {args.before_ref} (src/ptune/cli.py)", "results": results["before"]},
        "after": {"source": args.after_label, "results": results["after"]},
    }
    save(RESULTS, record, SECTION, render(record))
    print(render(record))


if __name__ == "__main__":
    main()
