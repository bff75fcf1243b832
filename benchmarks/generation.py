"""Generation speed: ptune's cached generation with a prompt in place against the bare model's own
transformers ``generate()`` with its key/value cache, on SmolLM2-135M, greedy, a batch of 4 texts.

    python benchmarks/generation.py [--new-tokens 32 128] [--repeats 5] [--threads 2] [--report-only]

Both sides generate exactly N tokens per text (min_new_tokens = max_new_tokens = N, so neither stops
early at an end-of-sequence token) and run interleaved in one process (ptune, bare, ptune, bare ...)
after one warm-up each; the speed is their ratio per repeat, reported as median and spread. Prompts
are freshly initialised (seed 0; training does not change the cost of a step) at each method's
default length. ``greedy_identical``: ptune's cached greedy ids equal the full-recompute reference
(one forward pass over the whole sequence per token) for every text.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, machine, provenance, save, versions, write_section

RESULTS = ROOT / "benchmarks" / "results" / "generation.json"
SECTION = "generation"
METHODS = ("prompt", "ptuning", "deep")
TEXTS = ["The capital of France is", "Once upon a time, a small dog lived in a house by the sea and",
         "Water boils at", "My favourite recipe for a quick weeknight dinner starts with"]
TARGET = 0.8


def measure(method: str, new_tokens: list[int], repeats: int, backbone, bare, encoded) -> list[dict]:
    """The records of one method: one per number of new tokens."""
    import torch

    from ptune.config import MethodConfig
    from ptune.infer.generate import generate_ids
    from ptune.infer.recompute import reference_ids
    from ptune.model.prompt_model import PromptModel

    model = PromptModel(backbone, MethodConfig(method=method), ["a", "b"])
    model.initialise(seed=0)
    model.eval()
    longest = max(new_tokens)
    reference = reference_ids(model, TEXTS, max_new_tokens=longest, min_new_tokens=longest)
    records = []
    for n in new_tokens:
        def ptune():
            return generate_ids(model, TEXTS, max_new_tokens=n, min_new_tokens=n)

        def hf():
            with torch.inference_mode():
                return bare.generate(**encoded, max_new_tokens=n, min_new_tokens=n, do_sample=False)

        ids = ptune()  # warm-up (and the ids checked against the reference)
        hf()
        ptune_s, hf_s = [], []
        for _ in range(repeats):
            for run, seconds in ((ptune, ptune_s), (hf, hf_s)):
                start = time.perf_counter()
                run()
                seconds.append(time.perf_counter() - start)
        tokens = len(TEXTS) * n
        ratios = [h / p for p, h in zip(ptune_s, hf_s)]  # (tokens / p) / (tokens / h)
        records.append({
            "model": "smollm2", "method": method, "length": model.config.length, "batch": len(TEXTS),
            "new_tokens": n, "repeats": repeats,
            "ptune_tok_s": round(tokens / statistics.median(ptune_s), 2),
            "bare_hf_tok_s": round(tokens / statistics.median(hf_s), 2),
            "ratio_median": round(statistics.median(ratios), 3),
            "ratio_spread": [round(min(ratios), 3), round(max(ratios), 3)],
            "greedy_identical": ids == [r[:n] for r in reference],
            # Other jobs only ever add time: the ratio of each side's fastest repeat is the least disturbed.
            "ratio_of_best": round(min(hf_s) / min(ptune_s), 3),
            "ptune_s": [round(s, 3) for s in ptune_s], "bare_hf_s": [round(s, 3) for s in hf_s],
        })
        print(json.dumps(records[-1]), flush=True)
    return records


def render(r: dict) -> str:
    lines = [
        "## Generation speed: cached generation with a prompt vs the bare model's generate()", "",
        (f"{provenance(r)} · load average at start / end: "
         f"{r['load_average'][0]} / {r['load_average'][1]}."),
        "",
        (f"SmolLM2-135M-Instruct (fp32), greedy, a batch of {r['batch']} texts of different lengths (left-padded), "
         "exactly N new tokens per text on both sides. ptune: `generate` with a freshly initialised prompt at each "
         "method's default length (prompt 20 vectors, P-tuning 8 vectors through its LSTM encoder, deep 16 "
         "prefix vectors on all 30 layers); bare: the same weights as `AutoModelForCausalLM` and its own "
         f"`generate()`, no prompt. Interleaved in one process, {r['repeats']} repeats after one warm-up each; "
         "ratio = ptune tokens/s ÷ bare tokens/s per repeat (median, min..max). The machine is shared with "
         "other jobs, so the absolute tokens/s are noisy and only the ratios compare; a min..max far from the "
         "median is a repeat that other jobs stalled (the seconds of every repeat are in the JSON), and the ratio "
         "of each side's fastest repeat is the least disturbed figure."),
        "",
        ("| method | new tokens | ptune tok/s | bare generate() tok/s | ratio (median) | ratio min..max | "
         "ratio of the fastest repeats | greedy ids = full recompute |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in r["records"]:
        lines.append(f"| {x['method']} | {x['new_tokens']} | {x['ptune_tok_s']:.1f} | {x['bare_hf_tok_s']:.1f} | "
                     f"{x['ratio_median']:.2f} | {x['ratio_spread'][0]:.2f}..{x['ratio_spread'][1]:.2f} | "
                     f"{x['ratio_of_best']:.2f} | "
                     f"{'yes' if x['greedy_identical'] else '**no**'} |")
    missed = [x for x in r["records"] if x["ratio_median"] < TARGET]
    lines += ["", (f"Target: a ratio of at least {TARGET} for every method: "
                   + ("met." if not missed else "missed for " + ", ".join(
                       f"{x['method']} at {x['new_tokens']} tokens ({x['ratio_median']:.2f})" for x in missed) + "."))]
    lines += ["", ("The prompt costs a step only its own width: input prompts are in the cache after the first pass; "
                   "deep prefixes enter each step's attention as extra keys and values (ptune's prefix-aware "
                   "attention, while the cache holds the text). The first pass of every method and the "
                   "recompute reference run the same code as training and prediction.")]
    return "\n".join(lines) + "\n"


def section() -> str:
    """The docs/RESULTS.md section, rendered from generation.json."""
    return render(json.loads(RESULTS.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="render docs/RESULTS.md from the JSON")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from ptune.model.backbones import load_backbone, resolve

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    load_start = [round(x, 2) for x in os.getloadavg()]
    backbone = load_backbone("smollm2")
    bare = AutoModelForCausalLM.from_pretrained(resolve("smollm2"), dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve("smollm2"), padding_side="left")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    encoded = dict(tokenizer(TEXTS, return_tensors="pt", padding=True), pad_token_id=tokenizer.pad_token_id)
    records = []
    for method in args.methods:
        records += measure(method, args.new_tokens, args.repeats, backbone, bare, encoded)
    record = {
        "command": "python benchmarks/generation.py " + " ".join(
            ["--new-tokens " + " ".join(map(str, args.new_tokens)), f"--repeats {args.repeats}",
             f"--threads {args.threads}"] + (["--methods " + " ".join(args.methods)] if args.methods != list(METHODS) else [])),
        "machine": machine(args.threads),
        "date": date.today().isoformat(),
        "versions": {"ptune": __import__("ptune").__version__, **versions("torch", "transformers")},
        "load_average": [load_start[0], round(os.getloadavg()[0], 2)],
        "seed": 0, "batch": len(TEXTS), "repeats": args.repeats, "texts": TEXTS, "records": records,
    }
    save(RESULTS, record, SECTION, render(record))
    print(render(record))


if __name__ == "__main__":
    main()
