"""LAMA-format knowledge probing through ``ptune probe --facts`` on SmolLM2: manual vs P-tuning per relation.

The three built-in relations are written as LAMA / T-REx files (tests/fixtures/facts: P36 capital,
P30 continent, P47 shares border, and LAMA's templates in relations.jsonl), regenerated from the
countryinfo data on every run. Each file runs through the CLI with the settings of the "Knowledge
probing" section of docs/RESULTS.md (benchmarks/probe.py: 8 epochs, Adam lr 3e-3, batch 16, LSTM
encoder, 3 [P] per side, seed-0 split by subject, every object a candidate, ranked by full
log-likelihood); P-tuning runs with --seeds training seeds on the same split. Writes
benchmarks/results/probe_facts.json and the probe_facts section of docs/RESULTS.md after every run.

    python benchmarks/probe_facts.py                          # three relations x 3 seeds
    python benchmarks/probe_facts.py --files P36 --seeds 0    # one relation, one seed (an estimate)
    python benchmarks/probe_facts.py --write-fixtures         # only regenerate tests/fixtures/facts
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, cpu_name, save, versions  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "facts"
RESULTS = ROOT / "benchmarks" / "results" / "probe_facts.json"
SECTION = "probe_facts"
# built-in relation -> (Wikidata predicate, LAMA's label, LAMA's T-REx template)
BUILTIN = {
    "capital-of": ("P36", "capital", "The capital of [X] is [Y] ."),
    "continent-of": ("P30", "continent", "[X] is located in [Y] ."),
    "borders": ("P47", "shares border with", "[X] shares border with [Y] ."),
}
PLANNED_SEEDS = (0, 1, 2)
BUILTIN_IDS = [predicate for predicate, _, _ in BUILTIN.values()]


def write_fixtures(folder: Path = FIXTURES) -> list[Path]:
    """The built-in relations as LAMA files (one per predicate) and LAMA's relations.jsonl."""
    from ptune.analysis.probing.lama import lama_records, write_jsonl
    from ptune.analysis.probing.relations import load_relation

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (predicate, _, _) in BUILTIN.items():
        path = folder / f"{predicate}.jsonl"
        write_jsonl(path, lama_records(load_relation(name), predicate))
        paths.append(path)
    write_jsonl(folder / "relations.jsonl", [{"relation": p, "template": t, "label": label}
                                             for p, label, t in BUILTIN.values()])
    return paths


def markdown(record: dict) -> str:
    s = record["settings"]
    rows = ["| relation | file | test facts | candidates | manual P@1 | P-tuning P@1 (mean ± std) | seeds | "
            "manual MRR | P-tuning MRR (mean) | train s / seed |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in record["relations"]:
        tuned = ("not run" if r["ptuning_p1_mean"] is None else f"{100 * r['ptuning_p1_mean']:.1f}" + (
            f" ± {100 * r['ptuning_p1_std']:.1f}" if len(r["seeds"]) > 1 else " (one seed, no spread)"))
        mrr = f"{r['ptuning_mrr_mean']:.3f}" if r.get("ptuning_mrr_mean") is not None else ""
        seconds = f"{r['train_seconds_mean']:.0f}" if r.get("train_seconds_mean") else ""
        rows.append(f"| {r['relation']} ({r['builtin']}) | `{r['file']}` | {r['facts']} | {r['candidates']} | "
                    f"{100 * r['manual_best_p1']:.1f} | {tuned} | {len(r['seeds'])} | {r['manual_mrr']:.3f} | {mrr} | "
                    f"{seconds} |")
    done = sum(len(r["seeds"]) for r in record["relations"])
    lines = [
        "## Knowledge probing from LAMA files: manual vs P-tuning per relation (smollm2, `ptune probe --facts`)",
        "",
        f"`{record['command']}` — {record['machine']}, {record['date']}.",
        "",
        f"The built-in relations written as LAMA / T-REx files by the script (`tests/fixtures/facts`, "
        f"{', '.join(f'{p} = {n}' for n, (p, _, _) in BUILTIN.items())}) with LAMA's templates "
        f"(`relations.jsonl`; the text after `[Y]` is dropped, the causal LM predicts the object last), run as "
        f"`ptune probe --facts FILE --relations relations.jsonl --multi-token --method manual ptuning "
        f"--epochs {s['epochs']} --lr {s['lr']} --batch-size {s['batch_size']} --encoder {s['encoder']} "
        f"--prompts {s['prompts_per_side']} --split-seed {s['split_seed']} --seed SEED`: the settings of \"Knowledge probing: manual prompts vs P-tuning vs prompt tuning\" (frozen LM, LSTM encoder, 3 [P] per side, best epoch by dev "
        f"NLL). Test split of a seed-{s['split_seed']} split by subject; every object of the file is a candidate, "
        f"ranked by full log-likelihood; a subject with several true objects (borders) counts its best-ranked one. "
        f"P-tuning: mean ± sample std over the training seeds on that one split; manual prompts are deterministic.",
        "",
        *(rows if record["relations"] else ["No run is recorded yet."]),
        "",
        f"{done} P-tuning run(s) of the {len(BUILTIN) * len(PLANNED_SEEDS)} planned ({len(BUILTIN)} relations x "
        f"seeds {', '.join(map(str, PLANNED_SEEDS))})" + (f"; {record['note']}" if record.get("note") else "") + ".",
    ]
    return "\n".join(lines)


def section() -> str:
    """The docs/RESULTS.md section, rendered from probe_facts.json."""
    return markdown(json.loads(RESULTS.read_text()))


def _without_note(argv: list[str]) -> list[str]:
    """The command line as recorded: ``--note`` is prose for the section, not a setting."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--note":
            skip = True
        elif not arg.startswith("--note="):
            kept.append(arg)
    return kept


def summarise(entry: dict) -> None:
    p1 = [run["p_at_1"] for run in entry["ptuning_runs"]]
    entry["ptuning_p1_mean"] = statistics.mean(p1) if p1 else None
    entry["ptuning_p1_std"] = statistics.stdev(p1) if len(p1) > 1 else 0.0
    entry["ptuning_mrr_mean"] = statistics.mean(r["mrr"] for r in entry["ptuning_runs"]) if p1 else None
    entry["train_seconds_mean"] = (statistics.mean(r["train_seconds"] for r in entry["ptuning_runs"]) if p1 else None)
    entry["seeds"] = [run["seed"] for run in entry["ptuning_runs"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="*", default=[p for p, _, _ in BUILTIN.values()],
                        help="predicates to run (P36 P30 P47); none: only write the record (and --note) as it is")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(PLANNED_SEEDS))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="1: on a busy 2-core machine, 2 threads thrash")
    parser.add_argument("--note", default="", help="a sentence for the section (e.g. what was not run and why)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs of probe_facts.json made with the same settings; run only the rest")
    parser.add_argument("--write-fixtures", action="store_true", help="only regenerate tests/fixtures/facts")
    args = parser.parse_args()
    write_fixtures()
    if args.write_fixtures:
        return
    import torch

    from ptune.cli import main as ptune

    torch.set_num_threads(args.threads)
    names = {p: n for n, (p, _, _) in BUILTIN.items()}
    record = {
        "command": " ".join(["python benchmarks/probe_facts.py", *_without_note(sys.argv[1:])]),
        "machine": f"{cpu_name()}, {args.threads} CPU thread(s) of a 2-core machine shared with other jobs",
        "versions": versions("torch", "transformers"), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": {"backbone": "smollm2", "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                     "split_seed": args.split_seed, "encoder": "lstm", "prompts_per_side": 3,
                     "candidates": "objects", "multi_token": True},
        "note": args.note, "relations": [],
    }
    done = {}
    if args.resume and RESULTS.exists():
        old = json.loads(RESULTS.read_text())
        if {k: v for k, v in old["settings"].items() if k != "seeds"} != {
                k: v for k, v in record["settings"].items() if k != "seeds"}:
            raise SystemExit(f"--resume: {RESULTS} was made with other settings ({old['settings']})")
        done = {entry["relation"]: entry for entry in old["relations"]}
        if done:
            record["command"] = f"{old['command']}; then {record['command']}"
            record["date"] = f"{old['date'].split(' to ')[0]} to {record['date']}"
    for predicate in dict.fromkeys([p for p in BUILTIN_IDS if p in args.files or p in done] + args.files):
        entry = done.get(predicate) or {"relation": predicate, "builtin": names.get(predicate, "?"),
                                        "file": str((FIXTURES / f"{predicate}.jsonl").relative_to(ROOT)),
                                        "ptuning_runs": []}
        record["relations"].append(entry)
        for seed in args.seeds if predicate in args.files else ():
            if seed in entry.get("seeds", ()):
                continue
            methods = ["manual", "ptuning"] if "manual_best_p1" not in entry else ["ptuning"]
            with tempfile.TemporaryDirectory() as out:
                argv = ["-q", "probe", "--facts", str(FIXTURES / f"{predicate}.jsonl"), "--relations",
                        str(FIXTURES / "relations.jsonl"), "--multi-token", "--method", *methods,
                        "--epochs", str(args.epochs), "--lr", str(args.lr), "--batch-size", str(args.batch_size),
                        "--encoder", "lstm", "--prompts", "3",  # this record's settings (the CLI's differ since)
                        "--split-seed", str(args.split_seed), "--seed", str(seed), "--out", out]
                start = time.perf_counter()
                if ptune(argv) != 0:
                    raise SystemExit(f"ptune {' '.join(argv)} failed")
                seconds = time.perf_counter() - start
                result = json.loads((Path(out) / "results.json").read_text())["relations"][0]
            entry.update(facts=result["split_sizes"]["test"], facts_in_file=result["facts_in_file"],
                         candidates=result["candidates"], split_sizes=result["split_sizes"])
            for run in result["runs"]:
                if run["method"] == "manual":
                    entry.update(manual_best_p1=run["p_at_1"], manual_p10=run["p_at_10"], manual_mrr=run["mrr"],
                                 manual_template=run["template"])
                else:
                    entry["ptuning_runs"].append({"seed": seed, "p_at_1": run["p_at_1"], "p_at_10": run["p_at_10"],
                                                  "mrr": run["mrr"], "best_epoch": run["best_epoch"],
                                                  "train_seconds": run["train_seconds"], "template": run["template"]})
            summarise(entry)
            print(f"{predicate} seed {seed}: manual P@1 {entry['manual_best_p1']:.3f}, P-tuning P@1 "
                  f"{entry['ptuning_runs'][-1]['p_at_1']:.3f} ({seconds:.0f} s)", flush=True)
            save(RESULTS, record, SECTION, markdown(record))
    if not args.files:
        save(RESULTS, record, SECTION, markdown(record))


if __name__ == "__main__":
    main()
