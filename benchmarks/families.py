"""Every model family x method x task kind: pass, refused or fail, by the checks of the conformance suite.

Runs the checks of tests/families.py (the same functions tests/test_families.py runs) on tiny random
models of each family with its real tokenizer class, writes benchmarks/results/families.json (a
header, then one record per cell) and renders docs/FAMILIES.md from it.

    python benchmarks/families.py [--families bert,llama] [--render-only]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "benchmarks" / "results" / "families.json"
DOC = ROOT / "docs" / "FAMILIES.md"
COLUMNS = {"prompt": "prompt", "ptuning": "ptuning", "deep": "deep (all)", "deep:top1": "deep (top:1)",
           "finetune": "finetune"}
KIND_LETTER = {"classification": "C", "tagging": "T", "regression": "R", "qa": "Q", "verbalizer": "V"}


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "ptune"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def source() -> dict:
    """The commit measured, and the files under src/ that differed from it (a shared working tree)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False).stdout

    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "modified": [line[3:] for line in git("status", "--porcelain", "src").splitlines() if line.strip()]}


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "?"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")


def run(names: list[str]) -> dict:
    import families
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)  # tiny models; see tests/test_families.py one_thread
    begun = time.perf_counter()
    records = []
    with tempfile.TemporaryDirectory(prefix="ptune-families-") as folder:
        zoo = families.Zoo(Path(folder))
        for family in names:
            for method in families.METHODS:
                for kind in families.KINDS:
                    start = time.perf_counter()
                    record = families.run_case(zoo, family, method, kind)
                    record["seconds"] = round(time.perf_counter() - start, 3)
                    records.append(record)
                    print(f"{family:12} {method:10} {kind:15} {record['status']:8} {record['detail'][:100]}",
                          flush=True)
    return {
        "command": "python benchmarks/families.py" + ("" if names == list(families.FAMILIES) else
                                                      f" --families {','.join(names)}"),
        "machine": f"{platform.machine()}, {cpu_name()}, torch threads 1, {platform.platform()}",
        "date": date.today().isoformat(),
        "versions": versions(),
        "source": source(),
        "seconds": round(time.perf_counter() - begun, 1),
        "families": {name: {"tokenizer_kind": spec.tokenizer_kind, "decoder": spec.decoder, "note": spec.note,
                            "size": families.SIZE} for name, spec in families.FAMILIES.items() if name in names},
        "checks": {check.name: " ".join(check.run.__doc__.split()) for check in families.CHECKS},
        "records": records,
    }


def _cell(records: list[dict], notes: dict[str, int]) -> str:
    """One family x method over the kinds: the worst status, then the kinds behind it with footnotes."""
    worst = "fail" if any(r["status"] == "fail" for r in records) else (
        "refused" if any(r["status"] == "refused" for r in records) else "pass")
    if worst == "pass":
        return "pass"
    parts = []
    for r in records:
        if r["status"] == "pass":
            continue
        failing = [(name, result[len("fail: "):]) for name, result in r["checks"].items() if result.startswith("fail")]
        text = r["detail"] if r["status"] == "refused" else f"{failing[0][0]}: {failing[0][1]}" + (
            f" (also failing: {', '.join(name for name, _ in failing[1:])})" if failing[1:] else "")
        key = f"{r['status']}: {text}"
        number = notes.setdefault(key, len(notes) + 1)
        parts.append(f"{KIND_LETTER[r['kind']]}<sup>{number}</sup>")
    return f"{worst} " + " ".join(parts)


def render(result: dict) -> str:
    records = result["records"]
    names = list(dict.fromkeys(r["family"] for r in records))
    by = {(r["family"], r["method"], r["kind"]): r for r in records}
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    notes: dict[str, int] = {}
    v, src = result["versions"], result["source"]
    modified = f" with uncommitted changes to {', '.join(src['modified'])}" if src["modified"] else ""
    lines = [
        "# Model families",
        "",
        "<!-- Generated by benchmarks/families.py from benchmarks/results/families.json: do not edit by hand. -->",
        "",
        (f"Command: `{result['command']}` · date: {result['date']} · source: {src['commit']}{modified} · "
        f"python {v['python']}, torch {v['torch']}, transformers {v['transformers']}, tokenizers {v['tokenizers']} · "
        f"{len(records)} cells in {result['seconds']} s."),
        "",
        ("Each family is a tiny random model (2 layers, hidden 32, 4 heads, 2 key/value heads where the family has "
        "grouped-query attention) saved as its *ForMaskedLM / *ForCausalLM, with its real tokenizer class: MiniLM's "
        "WordPiece vocabulary, or a byte-level BPE / SentencePiece Unigram / SentencePiece BPE model trained on "
        "conll2003 and rotten_tomatoes text (tests/fixtures/tokenizers) handed to the family's own class "
        "(tests/families.py). `pytest tests/test_families.py` runs the same checks."),
        "",
        ("A cell is one method over the task kinds C classification, T tagging, R regression, Q extractive QA and "
        "V verbalizer (the LM head's label words): **pass** when every kind passes every check; **refused** when "
        "building the model raises a one-line error about deep prompts; **fail** otherwise. The letters after a "
        "status name the kinds that did not pass, with a footnote each."),
        "",
        "| family | model_type | tokenizer | tokenizer kind | " + " | ".join(COLUMNS.values()) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    for name in names:
        first = next(r for r in records if r["family"] == name)
        cells = [_cell([by[(name, method, kind)] for kind in kinds if (name, method, kind) in by], notes)
                 for method in COLUMNS]
        lines.append(f"| {name} | {first['model_type']} | {first['tokenizer']} | {first['tokenizer_kind']} | "
                     + " | ".join(cells) + " |")
    deep_ok = [n for n in names if all(by[(n, m, k)]["status"] == "pass" for m in ("deep", "deep:top1") for k in kinds
                                       if (n, m, k) in by)]
    statuses = [r["status"] for r in records]
    lines += [
        "",
        f"Cells: {statuses.count('pass')} pass, {statuses.count('refused')} refused, {statuses.count('fail')} fail. "
        f"Deep prompts (all layers and top:1) pass on every kind on {len(deep_ok)} of {len(names)} families"
        + (f": {', '.join(deep_ok)}." if deep_ok else "."),
        "",
        "## Checks",
        "",
    ]
    notes_of = {name: spec["note"] for name, spec in result["families"].items() if spec["note"]}
    lines += [f"- `{name}`: {doc}" for name, doc in result["checks"].items()]
    lines += ["", "## Families with a particular shape", ""]
    lines += [f"- {name}: {note}" for name, note in notes_of.items()]
    lines += ["", "## Notes", ""]
    known: dict[str, set[str]] = {}
    for r in records:
        for cause in (r.get("known") or "").split(" | ") if r.get("known") else ():
            known.setdefault(cause, set()).add(r["family"])
    for text, number in notes.items():
        short = text if len(text) <= 400 else text[:400] + " …"
        lines.append(f"{number}. {short.replace('|', '/')}")
    if known:
        lines += ["", "## Known causes of the failures above (`KNOWN` in tests/families.py)", ""]
        lines += [f"- {cause} — {', '.join(sorted(fams))}" for cause, fams in known.items()]
    unexplained = sorted({r["family"] for r in records if r["status"] == "fail" and not r.get("known")})
    if unexplained:
        lines += ["", f"Failures with no known cause yet: {', '.join(unexplained)}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", help="comma-separated subset (default: all); the results file is overwritten")
    parser.add_argument("--render-only", action="store_true", help="re-render docs/FAMILIES.md from the results file")
    args = parser.parse_args()
    if not args.render_only:
        import families

        names = args.families.split(",") if args.families else list(families.FAMILIES)
        unknown = sorted(set(names) - set(families.FAMILIES))
        if unknown:
            parser.error(f"unknown families {', '.join(unknown)}; known: {', '.join(families.FAMILIES)}")
        RESULTS.write_text(json.dumps(run(names), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    DOC.write_text(render(json.loads(RESULTS.read_text(encoding="utf-8"))), encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
