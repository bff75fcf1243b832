"""Speed and memory against Hugging Face PEFT, side by side (issue: speed and memory).

1. Step time: every configuration on the same conll2003 batches, round-robin in one process.
2. Depth trade-off: deep top:k with the bottom-layer cache, step time and dev F1 after equal training.

    python benchmarks/perf.py [--report-only] [--skip-accuracy]

Training memory is benchmarks/memory.py's (steady state, each configuration in its own process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, machine, versions, write_section  # noqa: E402

from ptune.analysis.benchmark import FLOOR, Setting, counterpart  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "perf.json"
SECTION = "perf"
THREADS = 2


def setup(threads: int = THREADS):
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ptune.model.backbones import load_backbone
    from ptune.data import get_task

    return load_backbone("minilm"), get_task("conll2003")


def speed(setting) -> dict:
    from ptune.analysis.benchmark import run

    backbone, task = setup()
    return run(backbone, task.train[:4000], task.labels, setting)


def profile(setting) -> dict[str, str]:
    """Where a step's time goes (torch.profiler, operators by self CPU time)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    from ptune.analysis.benchmark import build

    backbone, task = setup()
    setting.configs = ["ptune deep", f"ptune deep top:{setting.top_k} (cached)"]
    steps = build(backbone, task.train[:4000], task.labels, setting)
    tables = {}
    for name, step in steps.items():
        for i in range(setting.batches):  # warm-up; fills the cache
            step(i)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(setting.batches):
                step(i)
        tables[name] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40)
    return tables


def inference(rounds: int = 20, size: int = 64) -> dict:
    """Prediction: one batch of 64 texts for one task vs the same texts spread over 4 tasks' prompts
    (2 deep, 1 prompt, 1 P-tuning) in one mixed forward pass; interleaved, medians."""
    import statistics
    import time

    import torch

    from ptune.config import MethodConfig
    from ptune.data import get_task
    from ptune.infer.bank import PromptBank
    from ptune.model.prompt_model import PromptModel

    backbone, _ = setup()
    texts = get_task("rotten_tomatoes").dev[:size]
    labels = ["negative", "positive"]
    configs = {"deep-a": MethodConfig(method="deep", length=16), "deep-b": MethodConfig(method="deep", length=8),
               "prompt": MethodConfig(method="prompt", length=16),
               "ptuning": MethodConfig(method="ptuning", template="[P]*8 {text} [P]*8", encoder="lstm")}
    models = {}
    for seed, (name, config) in enumerate(configs.items()):
        models[name] = PromptModel(backbone, config, labels)
        models[name].initialise(seed=seed)
    bank = PromptBank(models).eval()
    single = bank.collate(bank.encode([("deep-a", e) for e in texts]))
    mixed = bank.collate(bank.encode([(list(models)[i % 4], e) for i, e in enumerate(texts)]))
    alone = PromptBank({"deep-a": models["deep-a"]}).eval()
    plain = alone.collate(alone.encode([("deep-a", e) for e in texts]))
    soft = alone.collate(PromptBank({"prompt": models["prompt"]}).encode([("prompt", e) for e in texts]))
    calls = {"single task (deep 16), PromptModel": lambda: models["deep-a"](plain),
             "single task (deep 16), PromptBank": lambda: bank(single),
             "single task (prompt 16: same padded length as the mixed batch), PromptModel": lambda: models["prompt"](soft),
             "4 tasks mixed, PromptBank": lambda: bank(mixed)}
    times = {name: [] for name in calls}
    with torch.inference_mode():
        for _ in range(3):
            for call in calls.values():
                call()
        for _ in range(rounds):
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {"batch": size, "rounds": rounds, "median_s": medians,
            "mixed_vs_single": medians["4 tasks mixed, PromptBank"] / medians["single task (deep 16), PromptModel"],
            "mixed_vs_same_length": medians["4 tasks mixed, PromptBank"]
            / medians["single task (prompt 16: same padded length as the mixed batch), PromptModel"],
            "tokens": {"single": list(single["input_ids"].shape), "mixed": list(mixed["input_ids"].shape)}}


def depth_curve(epochs: int, train_limit: int, eval_limit: int, seeds: list[int], threads: int = THREADS) -> list[dict]:
    """Dev F1 of deep prompts on the top k layers for every k (k = all: full depth), one run per seed, and the
    bottom-layer cache's size at the end of training (memory the top:k method keeps)."""
    from ptune.config import MethodConfig
    from ptune.model.prompt_model import PromptModel
    from ptune.training.loop import TrainConfig, train

    backbone, task = setup(threads)
    rows = []
    for k in range(1, backbone.num_layers + 1):
        layers = "all" if k == backbone.num_layers else f"top:{k}"
        for seed in seeds:
            model = PromptModel.for_task(backbone, task, MethodConfig(method="deep", length=16, layers=layers))
            result = train(model, task, TrainConfig(epochs=epochs, train_limit=train_limit, eval_limit=eval_limit,
                                                    patience=0, progress=False, seed=seed, checkpoint_every=0))
            rows.append({"layers": layers, "k": k, "seed": seed, "dev_f1": result.dev.get("f1"),
                         "cache_mb": result.history[-1].get("cache_mb", 0.0)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _ratio(c: dict, reference: str | None) -> str:
    """A configuration's ratio to ``reference`` with the range of its paired per-step ratios, where recorded."""
    if reference is None:
        return "–"
    for key in ([f"vs {reference}"] if reference != "floor" else [f"vs {FLOOR}", "vs floor (2 forwards)"]):
        if key in c:
            interval = c.get(f"{key} interval")
            return f"{c[key]:.2f}" + (f" ({interval[0]:.2f}-{interval[1]:.2f})" if interval else "")
    return "1.00" if reference in ("finetune", "peft prefix", "floor") else "not measured"


def _cache(rows: list[dict]) -> str:
    """The largest cache a layer choice's runs held (full depth: none), or that the record predates the field."""
    if any("cache_mb" not in row for row in rows):
        return "not recorded"
    return f"{max(row['cache_mb'] for row in rows):,.0f}"


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def render(r: dict) -> str:
    s = r["speed"]["configs"]
    paired = any(key.endswith(" interval") for c in s.values() for key in c)
    floor = next(name for name in s if name.startswith("floor"))
    # top:k is another method (its section below); bf16 and torch.compile have their own run and section
    same_method = {name: c for name, c in s.items() if " top:" not in name and not name.endswith(("autocast)", "compile)"))}
    lines = [
        "## Speed and memory against Hugging Face PEFT",
        "",
        f"Command: `{r['command']}` · machine: {r['machine']} · date: {r['date']} · backbone: minilm (6 layers), "
        f"conll2003 token classification, batch {r['setting']['batch_size']}, prompt length "
        f"{r['setting']['prompt_length']}, {THREADS} CPU threads, one process, PEFT {r['peft']}.",
        "",
        f"Step time: median over {r['setting']['rounds']} rounds x {r['setting']['batches']} real batches per "
        "configuration after warm-up, configurations interleaved batch by batch; same batches, same linear "
        "head and loss, AdamW. "
        + ("Ratios: the median of the paired per-step ratios (same batch, same round) and, in brackets, the "
           "2.5-97.5% range of those ratios; a range that contains 1.00 is a tie. " if paired else
           "Ratios: of the medians (this record predates the paired ratios with their ranges). ")
        + "Each ptune method is set against the same method in PEFT (deep prompts: prefix tuning without "
          "projection; prompt tuning; P-tuning with an LSTM encoder of the same shapes), at the same prompt length. "
        + f"`{floor}`: "
        + ("the frozen backbone's forward pass and its backward pass to the input embeddings, no prompt, head or "
           "optimizer: what a method that trains anything at the input must at least run."
           if floor == FLOOR else "two forward passes of the frozen backbone without autograd (not a floor of a "
           "training step: it has no backward pass; the current script measures forward + backward to the inputs).")
        + " Training memory is measured on its own, at steady state, in the memory section below; deep prompts on "
          "the top layers only are a different method, set against full depth with their accuracy below.",
        "",
        "| configuration | step (s) | examples/s | vs the same method in PEFT | vs full fine-tuning | vs floor |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in same_method.items():
        against = counterpart(name)
        shown = f"{_ratio(c, against)} ({against})" if against and against in s else "–"
        lines.append(f"| {name} | {c['median_step_s']:.3f} | {c['examples_per_s']:.1f} | {shown} | "
                     f"{_ratio(c, 'finetune')} | {_ratio(c, 'floor')} |")
    if r.get("depth"):
        d = r["depth_setting"]
        by_layers: dict[str, list[dict]] = {}
        for row in r["depth"]:
            by_layers.setdefault(row["layers"], []).append(row)
        seeds = sorted({row.get("seed", 0) for row in r["depth"]})
        lines += ["", "### Depth trade-off: deep prompts on the top k of 6 layers, bottom layers cached", "",
                  f"A different method from full-depth deep prompts: each row trains a fresh deep prompt (length 16) for "
                  f"{d['epochs']} epochs on the first {d['train_limit']} conll2003 training sentences, dev F1 on the "
                  f"first {d['eval_limit']} dev sentences, `ptune train` defaults otherwise; seeds "
                  f"{', '.join(map(str, seeds))} (mean ± std). The cache column is what the bottom-layer cache holds "
                  "at the end of training (memory the method keeps on top of full depth's). Step time against full "
                  "depth is the paired ratio of the speed measurement above, where that k was measured.", "",
                  "| layers | dev F1 | cache (MiB) | step time vs full depth, cache warm | without the cache |",
                  "| --- | --- | --- | --- | --- |"]
        for layers, rows in by_layers.items():
            cached, plain = s.get(f"ptune deep {layers} (cached)"), s.get(f"ptune deep {layers} (no cache)")
            lines.append(f"| {layers} | {_spread([x['dev_f1'] for x in rows])} | "
                         f"{_cache(rows)} | "
                         f"{_ratio(cached, 'ptune deep') if cached else '–'} | {_ratio(plain, 'ptune deep') if plain else '–'} |")
    if r.get("variants"):
        lines += ["", "### bf16 autocast and torch.compile (ptune deep, all layers; a separate run of the same "
                  "round-robin measurement)", "", "| configuration | step (s) | vs ptune deep (fp32, eager) |",
                  "| --- | --- | --- |"]
        v = r["variants"]["configs"]
        for name, c in v.items():
            paired = _ratio(c, "ptune deep") if "vs ptune deep" in c else None
            lines.append(f"| {name} | {c['median_step_s']:.3f} | "
                         f"{paired or format(c['median_step_s'] / v['ptune deep']['median_step_s'], '.2f')} |")
    if r.get("inference"):
        inf = r["inference"]
        lines += ["", f"### Inference: a batch of {inf['batch']} rotten_tomatoes texts, one task vs four tasks mixed",
                  "", "Four prompts on one frozen backbone (deep 16, deep 8, prompt 16, P-tuning 8+8 with LSTM); the "
                  "mixed batch gives every text a different task's prompt and head. Median of "
                  f"{inf['rounds']} interleaved forward passes (inference mode). Padded batch shapes: single "
                  f"{inf['tokens']['single']}, mixed {inf['tokens']['mixed']} (the mixed one carries the longest "
                  "prompt of its tasks).", "", "| batch | forward (s) |", "| --- | --- |"]
        for name, seconds in inf["median_s"].items():
            lines.append(f"| {name} | {seconds:.4f} |")
        lines += ["", f"Mixed / single deep-task batch: {inf['mixed_vs_single']:.2f}; mixed / single-task batch of the "
                  f"same padded length: {inf['mixed_vs_same_length']:.2f}. A mixed batch is as long as its longest "
                  "member, and input-prompt tasks add their prompt tokens to every row; the mixing itself (per-row "
                  "prompts, prefixes and heads) costs the difference between the last two rows."]
    for name, table in r.get("profile", {}).items():
        lines += ["", f"Profile of `{name}` (12 steps, torch.profiler, operators by self CPU time):", "", "```",
                  table.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def section() -> str:
    """The docs/RESULTS.md section, rendered from perf.json."""
    return render(json.loads(RESULTS.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--profile-only", action="store_true", help="add the profiler tables to perf.json")
    parser.add_argument("--variants-only", action="store_true", help="add bf16 / torch.compile step times to perf.json")
    parser.add_argument("--inference-only", action="store_true", help="add the mixed-task inference figures")
    parser.add_argument("--speed-only", action="store_true",
                        help="measure the step times again and keep the record's other parts (depth, variants, ...)")
    parser.add_argument("--depth-only", action="store_true",
                        help="add the depth trade-off's accuracy runs (no timing: may share the machine)")
    parser.add_argument("--threads", type=int, default=THREADS, help="--depth-only: torch threads")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-limit", type=int, default=3000)
    parser.add_argument("--eval-limit", type=int, default=1000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="depth trade-off: one run per seed")
    args = parser.parse_args()
    command = " ".join(["python benchmarks/perf.py", *sys.argv[1:]])
    setting = Setting(rounds=args.rounds)
    if args.report_only:
        write_section(SECTION, section())
    elif args.inference_only:
        update(command, inference=inference())
    elif args.depth_only:
        update(command, depth_setting={"epochs": args.epochs, "train_limit": args.train_limit,
                                       "eval_limit": args.eval_limit, "seeds": args.seeds, "threads": args.threads},
               depth=depth_curve(args.epochs, args.train_limit, args.eval_limit, args.seeds, args.threads))
    elif args.variants_only:
        setting.configs = ["ptune deep", "ptune deep (bf16 autocast)", "ptune deep (torch.compile)", "peft prefix"]
        update(command, variants=speed(setting))
    elif args.profile_only:
        update(command, profile=profile(setting))
    else:
        measure(args, setting, command)


def update(command: str, **parts) -> None:
    """Measure again only ``parts`` of perf.json: the other parts stay, with their commands, and this command
    is appended to the record's."""
    record = json.loads(RESULTS.read_text())
    record = {**record, **parts, "command": f"{record['command']}; then {command}"}
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    write_section(SECTION, render(record))


def measure(args: argparse.Namespace, setting: Setting, command: str) -> None:
    """The whole record (or, with --speed-only, the step times again beside the kept parts)."""
    import peft

    record = {"command": command, "machine": machine(THREADS), "versions": versions("torch", "transformers", "peft"),
              "date": date.today().isoformat(), "peft": peft.__version__,
              "setting": {"batch_size": setting.batch_size, "prompt_length": setting.prompt_length,
                          "rounds": setting.rounds, "batches": setting.batches}}
    if args.speed_only:  # the step times again; the other parts of the record are kept, with their commands
        old = json.loads(RESULTS.read_text())
        record = {**old, **record, "command": f"{old['command']}; then {command}"}
        setting.configs = [name for name in old["speed"]["configs"] if not name.endswith(("autocast)", "compile)"))]
    record["speed"] = speed(setting)
    print(json.dumps(record["speed"], indent=1), flush=True)
    if not args.skip_accuracy and not args.speed_only:
        record["depth_setting"] = {"epochs": args.epochs, "train_limit": args.train_limit, "eval_limit": args.eval_limit,
                                   "seeds": args.seeds}
        record["depth"] = depth_curve(args.epochs, args.train_limit, args.eval_limit, args.seeds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    write_section(SECTION, render(record))
    print(render(record))


if __name__ == "__main__":
    main()
