"""Serving at scale: `ptune serve` over 1 to 10,000 prompt files with a bounded resident set, and the
2-replica Ray Serve deployment, under single-task and random mixed-task load on loopback.

Trains one deep prompt on rotten_tomatoes (20 steps: serving cost does not depend on training), writes
--tasks copies with perturbed tensors through ptune's own prompt-file writer into a temporary folder,
and for each task count starts the real server process (budget --budget-mb, default 10% of the
10,000 files' tensors), then runs rounds of single-task traffic (every request the same task) and
random mixed-task traffic (each request a task drawn uniformly, so most are cold at 10,000 tasks),
interleaved in the same process, in alternating order: the ratio is the median of the rounds' ratios. Before the rounds, the
resident set is filled (every task once, up to twice as many as the budget holds), so that RSS, the
server's after the last mixed round, is that of a full resident set whatever the machine's speed. Each
count's files are pinned in the page cache while its server runs (``held``; ``--page-cache warm``: read once
before it starts), and the share of them in the page cache is recorded before and after the rounds: where the
system evicts them, cold loads read from disk (measured here at 10,000 tasks with a third of the files cached:
mixed/single about 0.79, against 0.88-0.94 with them cached; this machine's DAMON pageout reclaims page cache
idle for a minute, so files read once are gone within the rounds). Writes
benchmarks/results/serve.json and the "serve" section of docs/RESULTS.md.

    python benchmarks/serve.py [--clients 8] [--seconds 10] [--rounds 8] [--tasks 1 4 100 1000 10000] [--no-ray] [--page-cache held|warm] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, cpu_name, save, versions  # noqa: E402
from ptune.serve.malloc import TRIM_EVERY_S  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "serve.json"
SECTION = "serve"
PARTIAL = Path(tempfile.gettempdir()) / "ptune-serve-partial.json"  # the records so far, should a later one fail
MB = 1024 * 1024


def make_prompts(folder: Path, count: int) -> list[str]:
    """``count`` deep prompt files: one trained prompt, then copies with its tensors perturbed (N(0, 0.01))."""
    import torch

    from ptune.cli import main
    from ptune.storage.prompt_files import load_prompt, save_prompt

    trained = folder / "trained"
    args = ["-q", "train", "--task", "rotten_tomatoes", "--method", "deep", "--seed", "0", "--max-steps", "20",
            "--epochs", "1", "--train-limit", "640", "--eval-limit", "64", "--out", str(trained)]
    if main(args) != 0:
        raise SystemExit("training a prompt failed")
    model = load_prompt(trained / "prompt.safetensors")
    originals = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    generator = torch.Generator().manual_seed(0)
    names = []
    files = folder / "all"
    files.mkdir()
    for i in range(count):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in originals:
                    p.copy_(originals[name] + 0.01 * torch.randn(p.shape, generator=generator))
        names.append(f"task{i:05d}")
        save_prompt(files / f"{names[-1]}.safetensors", model, task_name=names[-1], metric="accuracy")
    return names


def subset(folder: Path, names: list[str], count: int) -> Path:
    """A folder of the first ``count`` files (hard links: the same bytes, no copy)."""
    out = folder / f"tasks{count}"
    out.mkdir()
    for name in names[:count]:
        os.link(folder / "all" / f"{name}.safetensors", out / f"{name}.safetensors")
    return out


HOLD = """
import ctypes, mmap, os, sys
maps = []
for entry in os.scandir(sys.argv[1]):
    with open(entry.path, "rb") as handle:
        maps.append(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
if ctypes.CDLL(None, use_errno=True).mlockall(1) != 0:  # MCL_CURRENT: every mapping read in and pinned
    sys.exit(f"mlockall: {os.strerror(ctypes.get_errno())}")
print("held", flush=True)
sys.stdin.read()
"""


def warm(folder: Path) -> None:
    """Read every file of ``folder`` once, so that each count's server starts with its files in the page cache
    (as on a server whose prompt folder fits in memory) rather than with whatever earlier counts left there."""
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass


@contextlib.contextmanager
def held(folder: Path):
    """``folder``'s files pinned in the page cache while the block runs, by a child process that maps them and
    locks its mappings (``mlockall``; root or CAP_IPC_LOCK). A machine that reclaims idle page cache on its own
    (here: DAMON ``pageout`` of pages idle for a minute) would otherwise evict files between a task's uses,
    which a server whose prompt folder fits in its memory keeps; the server's own RSS is unchanged."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        if child.stdout.readline().strip() != "held":
            raise SystemExit(f"could not pin the prompt files in memory ({child.stderr.read().strip()}); run as root "
                             "or pass --page-cache warm")
        yield
    finally:
        child.stdin.close()
        child.wait(timeout=60)


def cached_fraction(folder: Path) -> float | None:
    """The share of ``folder``'s bytes in the page cache (util-linux ``fincore``; None where it is missing):
    a mixed round whose files were evicted reads them from disk, which the ratio then includes."""
    import shutil

    if shutil.which("fincore") is None:
        return None
    paths = sorted(map(str, folder.iterdir()))
    cached = total = 0
    for start in range(0, len(paths), 1000):
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE",
                              *paths[start : start + 1000]], capture_output=True, text=True, check=True).stdout
        for line in out.split("\n"):
            if line.strip():
                res, size = map(int, line.split())
                cached, total = cached + min(res, size), total + size  # RES counts whole pages
    return round(cached / max(1, total), 3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("GET", path)
    return json.loads(connection.getresponse().read())


def wait_ready(port: int, process: subprocess.Popen, limit: float = 600) -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < limit:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            get(port, "/health")
            return time.perf_counter() - began
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def rss_of(pid: int) -> dict[str, float]:
    """The process's resident MiB: all of it, and its anonymous and file-backed (mapped prompt files) parts."""
    with open(f"/proc/{pid}/status") as status:
        found = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in status
                 if line.startswith(("VmRSS", "RssAnon", "RssFile"))}
    return {"rss_mb": round(found["VmRSS"], 1), "rss_anon_mb": round(found["RssAnon"], 1),
            "rss_file_mb": round(found["RssFile"], 1)}


def fill(port: int, names: list[str], texts: list[str], capacity: int, per_request: int = 32) -> None:
    """Bring the resident set to its steady state before anything is measured: every task once, up to twice
    as many as fit the budget (``capacity``), in requests of ``per_request`` mixed items (tasks repeated
    when there are fewer, so that every count's server runs passes of the same size)."""
    touched = names[: min(len(names), 2 * capacity)]
    for start in range(0, max(len(touched), per_request), per_request):
        chunk = [touched[(start + i) % len(touched)] for i in range(per_request)]
        body = json.dumps({"items": [{"task": name, "text": texts[i % len(texts)]} for i, name in enumerate(chunk)]})
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"filling the resident set failed: HTTP {response.status}")


def load(port: int, pick, texts: list[str], clients: int, seconds: float, seed: int = 0) -> dict:
    """``clients`` threads sending one text per request back to back for ``seconds``; ``pick(rng)`` -> task,
    each client's ``rng`` seeded by ``seed`` and its number (a new ``seed`` per round: new tasks each round)."""
    done, errors = [0], [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(worker: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        rng = random.Random(seed * 1000 + worker)
        while time.perf_counter() < stop:
            body = json.dumps({"task": pick(rng), "texts": [rng.choice(texts)]})
            try:
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                done[0] += ok
                errors[0] += not ok

    threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"requests": done[0], "errors": errors[0], "rps": done[0] / (time.perf_counter() - began)}


def measure(port: int, names: list[str], texts: list[str], args) -> dict:
    """Interleaved rounds of single-task and mixed-task load, in alternating order (single first in odd rounds,
    mixed first in even ones: what drifts over a run, such as the page cache, weighs on both alike); the mixed
    phases' share of mixed batches."""
    single_rps, mixed_rps, ratios, errors, passes, mixed_passes, cold, answered = [], [], [], 0, 0, 0, 0, 0
    load(port, lambda rng: names[0], texts, args.clients, 2)  # warm-up
    for round_ in range(1, args.rounds + 1):
        if round_ % 2:
            single = load(port, lambda rng: names[0], texts, args.clients, args.seconds, seed=round_)
        before = get(port, "/health")
        mixed = load(port, lambda rng: rng.choice(names), texts, args.clients, args.seconds, seed=round_)
        after = get(port, "/health")
        if not round_ % 2:
            single = load(port, lambda rng: names[0], texts, args.clients, args.seconds, seed=round_)
        passes += after["batches"] - before["batches"]
        mixed_passes += after["mixed_batches"] - before["mixed_batches"]
        cold += after["loads"] - before["loads"]
        answered += mixed["requests"]
        single_rps.append(single["rps"])
        mixed_rps.append(mixed["rps"])
        ratios.append(mixed["rps"] / single["rps"])
        errors += single["errors"] + mixed["errors"]
    return {"single_rps": round(statistics.median(single_rps), 1), "mixed_rps": round(statistics.median(mixed_rps), 1),
            "mixed_over_single": round(statistics.median(ratios), 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "mixed_batch_fraction": round(mixed_passes / max(1, passes), 3),
            "mixed_cold_fraction": round(cold / max(1, answered), 3), "errors": errors}


def run_uvicorn(folder: Path, names: list[str], texts: list[str], budget: float, args) -> dict:
    if args.page_cache == "held":
        with held(folder):
            return _run_uvicorn(folder, names, texts, budget, args)
    warm(folder)
    return _run_uvicorn(folder, names, texts, budget, args)


def _run_uvicorn(folder: Path, names: list[str], texts: list[str], budget: float, args) -> dict:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ptune.cli", "serve", str(folder), "--port", str(port),
                                "--backbone", "minilm", "--max-resident-mb", str(budget)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        startup = wait_ready(port, process)
        health = get(port, "/health")
        fill(port, names, texts, capacity=int(budget / args.file_mb))
        cached = cached_fraction(folder)
        numbers = measure(port, names, texts, args)
        rss = rss_of(process.pid)
        time.sleep(TRIM_EVERY_S + 1)  # idle: the server trims its heap once after its last pass
        idle = rss_of(process.pid)
        cached = {"page_cache": [cached, cached_fraction(folder)]}
        health = get(port, "/health") | {"index_s": health["index_s"], "read_ahead_s": health.get("read_ahead_s")}
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {"backend": "uvicorn", "tasks": len(names), "clients": args.clients, "budget_mb": budget,
            "startup_s": round(startup, 2), "index_s": health["index_s"], "read_ahead_s": health["read_ahead_s"],
            **rss, "rss_idle_mb": idle["rss_mb"], "rss_idle_anon_mb": idle["rss_anon_mb"], **numbers, **cached,
            "resident": health["resident"], "loads": health["loads"], "evictions": health["evictions"],
            "index_mb": health.get("index_mb"), "trim_s": health.get("trim_s")}


def run_ray(folder: Path, names: list[str], texts: list[str], budget: float, args) -> dict:
    import ray
    from ray import serve

    from ptune.serve.app import Limits
    from ptune.serve.ray_app import build_app

    port = free_port()
    began = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(folder, "minilm", replicas=2, limits=Limits(max_resident_mb=budget)), name="ptune")
        startup = time.perf_counter() - began
        fill(port, names, texts, capacity=int(budget / args.file_mb))
        numbers = measure(port, names, texts, args)
        health = get(port, "/health")
    finally:
        serve.shutdown()
        ray.shutdown()
    return {"backend": "ray", "tasks": len(names), "clients": args.clients, "budget_mb": budget,
            "startup_s": round(startup, 2), "index_s": None,
            "rss_mb": round(sum(r["rss_mb"] for r in health["replicas"]), 1), **numbers,
            "replicas": len(health["replicas"]), "resident": health["resident"], "loads": health["loads"],
            "evictions": health["evictions"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 4, 100, 1000, 10000])
    parser.add_argument("--ray-tasks", type=int, default=1000)
    parser.add_argument("--budget-mb", type=float, help="resident budget (default: 10%% of the largest count's files)")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--render", action="store_true", help="only redraw docs/RESULTS.md from serve.json")
    parser.add_argument("--page-cache", choices=("held", "warm"), default="held",
                        help="held (default): each count's files pinned in the page cache while its server runs; "
                             "warm: read once before it starts, then left to the system's reclaim")
    parser.add_argument("--out", type=Path, help="a rerun's records: write them to this file, leaving serve.json and "
                                                 "docs/RESULTS.md as they are")
    args = parser.parse_args()
    if args.render:
        records = json.loads(RESULTS.read_text())
        save(RESULTS, records, SECTION, render(records))
        return
    if not args.no_ray:
        try:
            import ray  # noqa: F401  (checked before the uvicorn rounds, not after them)
        except ImportError:
            raise SystemExit("the Ray record needs Ray Serve: pip install 'ptune[ray]' (or pass --no-ray)") from None
    from ptune.data import get_task

    texts = [example.text for example in get_task("rotten_tomatoes").test[:200]]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = make_prompts(folder, max(args.tasks + [0 if args.no_ray else args.ray_tasks]))
        file_mb = args.file_mb = (folder / "all" / f"{names[0]}.safetensors").stat().st_size / MB
        budget = args.budget_mb or float(int(0.1 * max(args.tasks) * file_mb))
        for count in args.tasks:
            records.append(run_uvicorn(subset(folder, names, count), names[:count], texts, budget, args))
            print(json.dumps(records[-1]), flush=True)
            PARTIAL.write_text(json.dumps(records, indent=2) + "\n")
        if not args.no_ray:
            ray_folder = folder / f"tasks{args.ray_tasks}"
            if not ray_folder.exists():
                subset(folder, names, args.ray_tasks)
            records.append(run_ray(ray_folder, names[: args.ray_tasks], texts, budget, args))
            print(json.dumps(records[-1]), flush=True)
    command = " ".join(["python benchmarks/serve.py", *map(shlex.quote, sys.argv[1:])])
    meta = {"command": command, "date": date.today().isoformat(), "cpu": cpu_name(), "cores": os.cpu_count(),
            "file_mb": round(file_mb, 4), "seconds_per_phase": args.seconds, "rounds": args.rounds, "filled": True,
            "alternating": True, "page_cache_held": args.page_cache == "held", "versions": versions("torch", "transformers", "fastapi", "uvicorn", "ray")}
    records = [record | meta for record in records]
    if args.out:
        args.out.write_text(json.dumps(records, indent=2) + "\n")
        return
    save(RESULTS, records, SECTION, render(records))


def headers(record: dict) -> str:
    """The headers cell: how long indexing held up startup, and the read-ahead child's time beside the loading."""
    if record["index_s"] is None:
        return "-"
    ahead = record.get("read_ahead_s")
    return f"{record['index_s']}" + (f" ({ahead} ahead)" if ahead is not None else "")


def rss(record: dict) -> str:
    """The RSS cell: the total, and its anonymous and file-backed parts where they were recorded."""
    if "rss_anon_mb" not in record:
        return f"{record['rss_mb']:g}"
    return f"{record['rss_mb']:g} ({record['rss_anon_mb']:g} + {record['rss_file_mb']:g})"


def cache(record: dict) -> str:
    found = record.get("page_cache")
    return "-" if not found or found[0] is None else f"{found[0]:.2f} → {found[1]:.2f}"


def render(records: list[dict]) -> str:
    """The RESULTS.md section, from the records alone (``--render`` redraws it from serve.json)."""
    meta = records[0]
    filled = ("Before the rounds each server's resident set was filled (every task once, up to twice as many as "
              "the budget holds, in passes of 32 items), so RSS is that of a full resident set; in brackets, its "
              "anonymous and file-backed (mapped prompt files) parts." if meta.get("filled") else
              "These records predate the fill phase: the resident set held what the rounds had loaded (full where "
              "there were evictions).")
    rows = "\n".join(
        f"| {r['backend']}{' x' + str(r['replicas']) if r.get('replicas') else ''} | {r['tasks']:,} | {r['budget_mb']:g} | "
        f"{r['startup_s']} | {headers(r)} | {rss(r)} | {r['single_rps']} | "
        f"{r['mixed_rps']} | **{r['mixed_over_single']}** ({r['ratio_range'][0]}-{r['ratio_range'][1]}) | "
        f"{r['mixed_batch_fraction']} | {r.get('mixed_cold_fraction', '-')} | {cache(r)} | {r['loads']} / {r['evictions']} | "
        f"{r['errors']} |"
        for r in records)
    uvicorn = {r["tasks"]: r for r in records if r["backend"] == "uvicorn"}
    verdicts = []
    if 1 in uvicorn and 10000 in uvicorn:
        big, one = uvicorn[10000], uvicorn[1]
        grew = big["rss_mb"] - one["rss_mb"]
        verdicts.append(f"- startup with 10,000 files: {big['startup_s']} s to the first answer (headers: "
                        f"{headers(big)} s; 1 file: {one['startup_s']} s) — target under 10 s: "
                        f"**{'met' if big['startup_s'] < 10 else 'missed'}**.")
        verdicts.append(f"- RSS(10,000) - RSS(1) = {grew:.1f} MiB = {grew / big['budget_mb']:.2f}x the {big['budget_mb']:g} MiB "
                        f"budget — target at most 1.05x: **{'met' if grew <= 1.05 * big['budget_mb'] else 'missed'}**."
                        + (f" The budget covers the index of the 10,000 files ({big['index_mb']:g} MiB) besides the resident "
                           f"prompts; the server handed its heap's free pages back every 2 s between passes ({big['trim_s']:g} s "
                           "spent on it over the rounds)." if big.get("index_mb") is not None else ""))
        if "rss_idle_mb" in big:
            idle = big["rss_idle_mb"] - one["rss_idle_mb"]
            verdicts.append(f"- the same {TRIM_EVERY_S + 1:g} s after the last round, both servers idle (each trimmed its heap "
                            f"once after its last pass): RSS {big['rss_idle_mb']:g} and {one['rss_idle_mb']:g} MiB (anonymous "
                            f"{big['rss_idle_anon_mb']:g} and {one['rss_idle_anon_mb']:g}), a difference of {idle:.1f} MiB = "
                            f"{idle / big['budget_mb']:.2f}x the budget: what the 10,000 tasks hold, without the last passes' "
                            "freed temporaries that the figure above includes.")
        verdicts.append(f"- mixed over single at 10,000 tasks: {big['mixed_over_single']} — target at least 0.9: "
                        f"**{'met' if big['mixed_over_single'] >= 0.9 else 'missed'}**. The rounds' noise: with 1 task "
                        f"both phases send the same traffic, and its rounds' ratios span {one['ratio_range'][0]}-"
                        f"{one['ratio_range'][1]} (median {one['mixed_over_single']}).")
    order = " (alternating which phase goes first)" if meta.get("alternating") else ""
    held_text = ('"page cache" is the share of the count\'s prompt files in the page cache before and after the rounds. '
                 "Each count's files were pinned there while its server ran, by a helper process that maps and locks "
                 "them (as on a server whose prompt folder fits in its memory): this machine reclaims page cache idle "
                 "for a minute on its own (DAMON pageout), and with a third of the files left cached mixed/single fell "
                 "to about 0.79, cold loads then reading from disk." if meta.get("page_cache_held") else
                 '"page cache" is the share of the count\'s prompt files in the page cache before and after the rounds '
                 "(each count's files are read once before its server starts); where it falls, cold loads read from "
                 "disk.")
    return f"""## Serving at scale (issue 13: thousands of tasks, a bounded resident set)

Command: `{meta['command']}` · {meta['cpu']}, {meta['cores']} cores shared by the server and the clients (and
other jobs) · date: {meta['date']} · versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}.
Each task is a deep prompt (minilm, prefix 16, all layers; {meta['file_mb'] * 1024:.0f} KiB file), copies of one trained
prompt with perturbed tensors. Clients send one rotten_tomatoes snippet per request, back to back; "single" sends
every request to one task, "mixed" to a task drawn uniformly at random (cold loads included). Each count runs
{meta['rounds']} interleaved single/mixed rounds of {meta['seconds_per_phase']:g} s{order}; requests/s are medians, the ratio is
the median of the rounds' ratios (range in brackets). Startup is process start to the first `/health` answer
(backbone load included); RSS is the server's after the last mixed round (Ray: the sum of the replicas').
{filled}
{held_text}
"mixed batches" is the share of forward passes that held more than one task; "cold" the share of mixed requests
whose task had to be loaded first (each round draws new tasks).

| backend | tasks | budget MiB | startup s | headers s | RSS MiB | single req/s | mixed req/s | mixed / single | mixed batches | cold | page cache | loads / evictions | errors |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

{chr(10).join(verdicts)}
"""


def section() -> str:
    """The docs/RESULTS.md section, rendered from serve.json."""
    return render(json.loads(RESULTS.read_text()))


if __name__ == "__main__":
    main()
