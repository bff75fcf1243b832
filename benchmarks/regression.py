"""The regression kind end to end on real data: deep prompts on minilm trained with `ptune train` on the
VADER tweets (4,200 tweets, each the mean sentiment rating of >= 20 people, -4..+4), Pearson/Spearman
over 3 seeds next to a predict-the-train-mean baseline and VADER's own rule-based scores.

    python benchmarks/regression.py [--epochs 2] [--seeds 0 1 2] [--report-only] [--fixture] [--rescore]

The data ship only in the vaderSentiment 3.3.2 source archive on PyPI (MIT, Copyright (c) 2016
C.J. Hutto); get it with
    pip download --no-deps --no-binary :all: --no-build-isolation -d .cache/data vaderSentiment==3.3.2
--fixture redraws the small CI sample in tests/fixtures/regression/ from the same split.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import platform
import random
import statistics
import sys
import tarfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, save, write_section

RESULTS = ROOT / "benchmarks" / "results" / "regression.json"
SECTION = "regression"
ARCHIVE = ROOT / ".cache" / "data" / "vaderSentiment-3.3.2.tar.gz"
ARCHIVE_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
TWEETS = "hutto_ICWSM_2014/tweets_GroundTruth.txt"
FIXTURE = ROOT / "tests" / "fixtures" / "regression"
SPLIT_SEED = 13
FIXTURE_SIZES = {"train": 120, "dev": 40, "test": 40}
# Deep prompt on minilm: length 16 on every layer at the method's default lr (3e-2), batch 32.
METHOD = ["--method", "deep", "--length", "16", "--batch-size", "32"]


def read_tweets(archive: Path = ARCHIVE) -> list[tuple[str, float, str]]:
    """(id, mean rating, text) for every line of tweets_GroundTruth.txt, read from inside the sdist."""
    if not archive.is_file():
        sys.exit(f"{archive}: missing; run: pip download --no-deps --no-binary :all: --no-build-isolation "
                 f"-d {archive.parent} vaderSentiment==3.3.2")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != ARCHIVE_SHA256:
        sys.exit(f"{archive}: sha256 {digest}, expected {ARCHIVE_SHA256}")
    with tarfile.open(archive) as outer:
        inner = outer.extractfile(INNER).read()
    with tarfile.open(fileobj=io.BytesIO(inner)) as corpus:
        text = corpus.extractfile(TWEETS).read().decode("utf-8")
    rows = []
    for line in text.splitlines():  # CRLF lines
        if line.strip():
            tweet_id, rating, tweet = line.split("\t")
            rows.append((tweet_id, float(rating), tweet))
    return rows


def split(rows: list) -> dict[str, list]:
    """Shuffle with random.Random(13); the first 80% (n * 8 // 10) train, the next n // 10 dev, the rest test."""
    rows = list(rows)
    random.Random(SPLIT_SEED).shuffle(rows)
    n_train, n_dev = len(rows) * 8 // 10, len(rows) // 10
    return {"train": rows[:n_train], "dev": rows[n_train : n_train + n_dev], "test": rows[n_train + n_dev :]}


def write_csv(path: Path, rows: list) -> None:
    """text,label CSV; the rating is written as the corpus writes it ("2.72631579", whole ones as "2")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["text", "label"])
        writer.writerows((text, str(int(rating)) if rating == int(rating) else repr(rating)) for _, rating, text in rows)


def draw_fixture() -> None:
    """tests/fixtures/regression/{train,dev,test}.csv: the first 120 / 40 / 40 rows of the benchmark's
    train / dev / test splits (so the sample's splits are disjoint, as the benchmark's are)."""
    splits = split(read_tweets())
    for name, size in FIXTURE_SIZES.items():
        write_csv(FIXTURE / f"{name}.csv", splits[name][:size])


def baseline(train: list, test: list) -> dict:
    """The train mean predicted for every test tweet: no correlation (a constant), its MSE."""
    from ptune.tasks.metrics import correlation

    mean = statistics.fmean(r for _, r, _ in train)
    scores = correlation([r for _, r, _ in test], [mean] * len(test))
    return {"prediction": mean, **scores, "note": "a constant has no correlation; scored 0"}


def vader_reference(splits: dict[str, list], archive: Path = ARCHIVE) -> dict:
    """The corpus authors' own rule-based scorer (VADER 3.3.2's compound score, -1..+1, from the same
    archive) on the test tweets; for an MSE in rating units its compound is mapped by a least-squares
    line fitted on the training tweets."""
    import importlib.util
    import tempfile

    from ptune.tasks.metrics import correlation

    with tempfile.TemporaryDirectory() as folder, tarfile.open(archive) as outer:
        for name in ("vaderSentiment.py", "vader_lexicon.txt", "emoji_utf8_lexicon.txt"):
            data = outer.extractfile(f"vaderSentiment-3.3.2/vaderSentiment/{name}").read()
            (Path(folder) / name).write_bytes(data)
        spec = importlib.util.spec_from_file_location("vader_3_3_2", Path(folder) / "vaderSentiment.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        analyzer = module.SentimentIntensityAnalyzer()
    compound = {name: [analyzer.polarity_scores(text)["compound"] for _, _, text in rows] for name, rows in splits.items()}
    slope, intercept = statistics.linear_regression(compound["train"], [r for _, r, _ in splits["train"]])
    gold = [r for _, r, _ in splits["test"]]
    predicted = [intercept + slope * c for c in compound["test"]]
    return {**correlation(gold, predicted), "slope": slope, "intercept": intercept, "version": "vaderSentiment 3.3.2",
            "test_predictions": [round(p, 6) for p in predicted]}


def test_predictions(out: Path, test_csv: Path) -> list[float]:
    """A run's prompt file scored on the test tweets again (`load_prompt` + `predict`), one score per tweet."""
    from ptune.data import from_files
    from ptune.infer.predict import predict
    from ptune.model.backbones import load_backbone
    from ptune.storage.prompt_files import load_prompt

    model = load_prompt(out / "prompt.safetensors", load_backbone("minilm"))
    return [round(p, 6) for p in predict(model, from_files(test_csv, kind="regression").train)]


def paired_bootstrap(gold: list[float], runs: list[list[float]], reference: list[float], *, resamples: int = 2000,
                     seed: int = 0) -> dict:
    """The difference (mean over seeds minus the reference) in Pearson and in Spearman over test sets
    resampled with replacement: its value on the real test set and a 95% percentile interval."""
    import numpy as np
    from scipy.stats import rankdata

    g, ref, deep = np.asarray(gold), np.asarray(reference), np.asarray(runs)
    rng = np.random.default_rng(seed)
    draws = [np.arange(len(g))] + [rng.integers(0, len(g), len(g)) for _ in range(resamples)]
    out = {}
    for name, rank in (("pearson", False), ("spearman", True)):
        def corr(a, b, rank=rank):  # Spearman: Pearson of the ranks
            return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1] if rank else np.corrcoef(a, b)[0, 1])

        diffs = [np.mean([corr(g[i], d[i]) for d in deep]) - corr(g[i], ref[i]) for i in draws]
        low, high = np.percentile(diffs[1:], [2.5, 97.5])
        out[name] = {"difference": diffs[0], "interval_95": [float(low), float(high)]}
    return {**out, "resamples": resamples, "seed": seed, "examples": len(g)}


def run_seed(folder: Path, seed: int, epochs: int) -> dict:
    """`ptune train` on the split's CSV files (detection picks regression), as a user runs it."""
    from ptune.cli import main as ptune_cli

    out = folder / f"seed{seed}"
    argv = ["-q", "train", "--train", str(folder / "train.csv"), "--dev", str(folder / "dev.csv"),
            "--test", str(folder / "test.csv"), *METHOD, "--epochs", str(epochs), "--seed", str(seed),
            "--out", str(out), "--overwrite"]
    start = time.perf_counter()
    if ptune_cli(argv) != 0:
        sys.exit(f"ptune train failed for seed {seed}")
    results = json.loads((out / "results.json").read_text())
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"seed": seed, "wall_s": round(time.perf_counter() - start, 1), "best_epoch": results["best_epoch"],
            "dev_pearson_per_epoch": [e.get("dev_pearson") for e in epochs], "dev": results["dev"],
            "test": results["test"], "test_predictions": test_predictions(out, folder / "test.csv")}


def compare(record: dict, splits: dict[str, list]) -> None:
    """Check each run's reloaded test predictions against its results.json, then bootstrap deep vs VADER."""
    from ptune.tasks.metrics import correlation

    gold = [r for _, r, _ in splits["test"]]
    for run in record["runs"]:
        again = correlation(gold, run["test_predictions"])["pearson"]
        if abs(again - run["test"]["pearson"]) > 1e-4:
            sys.exit(f"seed {run['seed']}: reloaded prompt gives test Pearson {again}, results.json {run['test']}")
    record["deep_minus_vader"] = paired_bootstrap(gold, [run["test_predictions"] for run in record["runs"]],
                                                  record["vader"]["test_predictions"])


def summarise(runs: list[dict]) -> dict:
    out = {}
    for key in ("pearson", "spearman", "mse"):
        values = [r["test"][key] for r in runs]
        out[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def render(r: dict) -> str:
    s, b, v, n = r["summary"], r["baseline"], r["vader"], r["data"]["sizes"]
    versions = r["versions"]
    mean = {key: s[key]["mean"] for key in s}
    lines = [
        "## Regression: VADER tweet sentiment (a score per text)", "",
        (f"Command: `{r['command']}` · machine: {r['machine']} · date: {r['date']} · ptune {versions['ptune']}, "
         f"torch {versions['torch']}, transformers {versions['transformers']} · seeds {', '.join(map(str, r['seeds']))}."),
        "",
        (f"Data: {r['data']['origin']} {n['train']:,} / {n['dev']:,} / {n['test']:,} tweets (train / dev / test), "
         f"{r['data']['split']}"),
        "",
        (f"Each seed: `ptune train --train train.csv --dev dev.csv --test test.csv {' '.join(r['method'])} "
         f"--epochs {r['epochs']} --seed S` on minilm (the regression kind detected from the fractional labels; "
         f"learning rate {r['lr']:g}, the deep default); the prompt of the best dev epoch is scored once on test."),
        "",
        "| run | test Pearson | test Spearman | test MSE |",
        "| --- | --- | --- | --- |",
    ]
    for run in r["runs"]:
        t = run["test"]
        lines.append(f"| deep prompt, seed {run['seed']} | {t['pearson']:.3f} | {t['spearman']:.3f} | {t['mse']:.3f} |")
    lines += [
        (f"| **deep prompt, mean ± std** | **{mean['pearson']:.3f} ± {s['pearson']['std']:.3f}** | "
         f"**{mean['spearman']:.3f} ± {s['spearman']['std']:.3f}** | **{mean['mse']:.3f} ± {s['mse']['std']:.3f}** |"),
        f"| baseline: predict the train mean ({b['prediction']:.3f}) | — (constant) | — (constant) | {b['mse']:.3f} |",
        (f"| reference: VADER's own rules ({v['version']}, compound mapped by a line fitted on train) | "
         f"{v['pearson']:.3f} | {v['spearman']:.3f} | {v['mse']:.3f} |"),
        "",
        comparison(r),
        "",
        (f"The deep prompt's test MSE is {mean['mse'] / b['mse']:.0%} of the mean baseline's. The ratings are means "
         "of 20 or more people on -4..+4; MSE is in those units squared. The mean baseline predicts one number for "
         "every tweet, so it has no correlation (ptune scores a constant 0). VADER is a rule-based scorer with a "
         "human-rated lexicon, written by the corpus's authors, who report it on these same tweets; it is the "
         "expert reference here, not a tuned model. The spread over seeds is training noise only; the bootstrap "
         f"interval adds the noise of drawing {n['test']} test tweets."),
    ]
    return "\n".join(lines) + "\n"


def section() -> str:
    """The docs/RESULTS.md section, rendered from regression.json."""
    return render(json.loads(RESULTS.read_text()))


def comparison(r: dict) -> str:
    """One sentence per metric: deep prompt minus VADER on test, its bootstrap interval, and what it means."""
    c = r["deep_minus_vader"]
    parts = []
    for name in ("pearson", "spearman"):
        d, (low, high) = c[name]["difference"], c[name]["interval_95"]
        verdict = ("a tie" if low <= 0 <= high else "the deep prompt ahead" if low > 0 else "VADER ahead")
        parts.append(f"{name.capitalize()} {d:+.3f} (95% interval {low:+.3f} .. {high:+.3f}: {verdict})")
    return (f"Deep prompt (mean of the seeds) minus VADER, paired bootstrap over the {c['examples']} test tweets "
            f"({c['resamples']:,} resamples, seed {c['seed']}): " + "; ".join(parts) + ".")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", default=str(ROOT / "runs" / "regression"), help="split CSVs and runs go here")
    parser.add_argument("--report-only", action="store_true", help="render docs/RESULTS.md from the JSON")
    parser.add_argument("--fixture", action="store_true", help="redraw tests/fixtures/regression/ and stop")
    parser.add_argument("--rescore", action="store_true",
                        help="no training: score the prompts a finished run left in --work and redo the comparison")
    args = parser.parse_args()
    if args.report_only:
        write_section(SECTION, section())
        return
    if args.fixture:
        draw_fixture()
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    import ptune
    from ptune.config import MethodConfig
    from ptune.training.loop import TrainConfig

    torch.set_num_threads(2)
    splits = split(read_tweets())
    folder = Path(args.work)
    if args.rescore:
        record = json.loads(RESULTS.read_text())
        record["vader"] = vader_reference(splits)
        for run in record["runs"]:
            run["test_predictions"] = test_predictions(folder / f"seed{run['seed']}", folder / "test.csv")
        compare(record, splits)
        record["rescore"] = {"command": "python benchmarks/regression.py --rescore", "date": date.today().isoformat(),
                             "what": "test predictions of the saved prompts, VADER's, and the paired bootstrap"}
        RESULTS.write_text(json.dumps(record, indent=2) + "\n")
        write_section(SECTION, render(record))
        print(render(record))
        return
    for name, rows in splits.items():
        write_csv(folder / f"{name}.csv", rows)
    record = {
        "command": "python benchmarks/regression.py " + " ".join(
            [f"--epochs {args.epochs}", "--seeds " + " ".join(map(str, args.seeds))]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        "date": date.today().isoformat(),
        "versions": {"ptune": getattr(ptune, "__version__", "?"), "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
        "data": {
            "origin": "tweets_GroundTruth.txt of Hutto & Gilbert, VADER (ICWSM 2014), from "
                      "additional_resources/hutto_ICWSM_2014.tar.gz in the vaderSentiment 3.3.2 source archive on "
                      f"PyPI (sha256 {ARCHIVE_SHA256[:12]}…; MIT, Copyright (c) 2016 C.J. Hutto):",
            "split": f"shuffled with random.Random({SPLIT_SEED}); the first 80% (n * 8 // 10) train, the next "
                     "n // 10 dev, the rest test; label = the tweet's mean human rating (-4..+4).",
            "sizes": {name: len(rows) for name, rows in splits.items()},
        },
        "method": METHOD, "epochs": args.epochs, "seeds": args.seeds,
        "lr": TrainConfig(epochs=args.epochs).resolved(MethodConfig(method="deep")).lr,
        "baseline": baseline(splits["train"], splits["test"]),
        "vader": vader_reference(splits),
    }
    print(json.dumps({"baseline": record["baseline"], "vader": record["vader"]}), flush=True)
    record["runs"] = []
    for seed in args.seeds:
        record["runs"].append(run_seed(folder, seed, args.epochs))
        print(json.dumps(record["runs"][-1]), flush=True)
    record["summary"] = summarise(record["runs"])
    compare(record, splits)
    save(RESULTS, record, SECTION, render(record))
    print(render(record))


if __name__ == "__main__":
    main()
