"""Bounded load test of `ptune serve` on loopback: one task vs four tasks interleaved.

Trains four small deep prompts on rotten_tomatoes (different seeds, 20 steps each: serving cost
does not depend on how long a prompt was trained), starts the real server process, and runs a
fixed number of concurrent clients for a fixed time per scenario, one text per request.

    python benchmarks/serve.py [--clients 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
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
from report import ROOT, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "serve.json"


def make_prompts(folder: Path, count: int) -> list[str]:
    from ptune.cli import main

    names = []
    for seed in range(count):
        out = folder / f"run{seed}"
        args = ["-q", "train", "--task", "rotten_tomatoes", "--method", "deep", "--seed", str(seed), "--max-steps", "20",
                "--epochs", "1", "--train-limit", "640", "--eval-limit", "64", "--out", str(out)]
        if main(args) != 0:
            raise SystemExit("training a prompt failed")
        name = f"sentiment{seed}"
        (out / "prompt.safetensors").rename(folder / f"{name}.safetensors")
        names.append(name)
    return names


def start_server(folder: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "ptune.cli", "serve", str(folder), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(240):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("server did not start")


def load(port: int, tasks: list[str], texts: list[str], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(worker: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = worker
        while time.perf_counter() < stop:
            body = json.dumps({"task": tasks[i % len(tasks)], "texts": [texts[i % len(texts)]]})
            started = time.perf_counter()
            try:
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed) if ok else None
                errors[0] += 0 if ok else 1
            i += clients

    threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    latencies.sort()
    return {
        "tasks": len(tasks), "clients": clients, "seconds": round(wall, 1), "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "errors": errors[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    from ptune.data import get_task

    texts = [example.text for example in get_task("rotten_tomatoes").test[:200]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = make_prompts(folder, 4)
        process, port = start_server(folder)
        try:
            load(port, names, texts, args.clients, 3)  # warm-up
            one = load(port, names[:1], texts, args.clients, args.seconds)
            four = load(port, names, texts, args.clients, args.seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
    ratio = round(four["requests_per_s"] / one["requests_per_s"], 3)
    command = " ".join(["python benchmarks/serve.py", *map(shlex.quote, sys.argv[1:])])
    record = {"command": command, "machine": f"{platform.machine()}, 2 CPU cores", "date": date.today().isoformat(),
              "one_task": one, "four_tasks_interleaved": four, "throughput_ratio": ratio}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    rows = "\n".join(
        f"| {label} | {r['clients']} | {r['seconds']} s | {r['requests']} | {r['requests_per_s']} | {r['p50_ms']} ms | "
        f"{r['p99_ms']} ms | {r['errors']} |" for label, r in (("(a) one task", one), ("(b) 4 tasks interleaved", four)))
    write_section("serve", f"""## Serving load test (issue: one frozen model, many tasks)

Command: `{command}` · machine: {record['machine']} (server and clients on the same 2 cores) · date: {record['date']}.
`ptune serve` with four deep prompts (minilm, prefix 16, all layers) on loopback; each request carries one
rotten_tomatoes test snippet; clients send back to back. In (b) consecutive requests go to different tasks, so
every gathered batch mixes tasks.

| scenario | clients | duration | requests | requests/s | p50 | p99 | errors |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

Throughput (b)/(a): **{ratio}** (target at least 0.9).
""")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
