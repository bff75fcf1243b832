"""Manual-template knowledge probing on SmolLM2: P@1 per template and cached vs uncached scoring time.

Capital-of, test split (seed 0), first --subjects countries, every capital a candidate. Prints a
table; writes nothing.

    python benchmarks/probe_manual.py                     # 40 subjects, 5 templates (minutes on 2 cores)
    python benchmarks/probe_manual.py --subjects 10 --timed 2
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from ptune.model.backbones import load_backbone
from ptune.analysis.probing import (
    fill_template,
    head_weight,
    load_relation,
    precision_at_1,
    score_candidates,
    score_candidates_uncached,
    single_token,
    single_token_precision_at_1,
    split_facts,
)
from ptune.analysis.probing.probe import prompt_ids
from ptune.analysis.probing.relations import object_token_ids

TEMPLATES = (
    "The capital of {} is",
    "{}'s capital city is",
    "The capital city of {} is",
    "{} is a country. Its capital is",
    "Q: What is the capital of {}? A:",
)


def timed_scores(score, backbone, facts, candidate_ids, template: str) -> tuple[float, torch.Tensor]:
    """Seconds per subject and the scores [S, C] of ``score`` (cached or uncached)."""
    weight = head_weight(backbone.model)
    rows = []
    start = time.perf_counter()
    with torch.inference_mode():
        for fact in facts:
            ids = prompt_ids(backbone.tokenizer, fill_template(template, fact.subject))
            rows.append(score(backbone.model, weight, ids, candidate_ids, batch_size=64))
    return (time.perf_counter() - start) / len(facts), torch.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=40, help="test-split countries to probe")
    parser.add_argument("--timed", type=int, default=3, help="countries timed with the uncached baseline")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    backbone = load_backbone("smollm2")
    relation = load_relation("capital-of")
    facts = split_facts(relation.facts)["test"][: args.subjects]
    single = single_token(relation, backbone.tokenizer)
    print(f"capital-of: {len(relation.facts)} facts, {len(relation.candidates)} candidates, skipped {relation.skipped}")
    print(f"single-token capitals for smollm2: {len(single.facts)} of {len(relation.facts)} "
          f"({single.skipped['multi-token object']} dropped)")

    single_facts = split_facts(single.facts)["test"]
    candidate_ids = object_token_ids(backbone.tokenizer, relation.candidates)
    timed_scores(score_candidates, backbone, facts[:1], candidate_ids, TEMPLATES[0])  # warm-up, untimed
    print(f"\nP@1 over {len(facts)} test countries, ranking all {len(relation.candidates)} capitals; "
          f"single-token P@1 over the {len(single_facts)} single-token test facts")
    print(f"{'template':40} {'P@1 rank':>9} {'P@1 1-tok':>10} {'s/subject':>10}")
    for template in TEMPLATES:
        start = time.perf_counter()
        ranked = precision_at_1(backbone.model, backbone.tokenizer, relation, facts, template)
        per_subject = (time.perf_counter() - start) / len(facts)
        vocab = single_token_precision_at_1(backbone.model, backbone.tokenizer, single_facts, template)
        print(f"{template:40} {ranked.precision:9.3f} {vocab.precision:10.3f} {per_subject:10.2f}")

    timed = facts[: args.timed]
    cached, cached_scores = timed_scores(score_candidates, backbone, timed, candidate_ids, TEMPLATES[0])
    uncached, uncached_scores = timed_scores(score_candidates_uncached, backbone, timed, candidate_ids, TEMPLATES[0])
    print(f"\nseconds per subject, {len(candidate_ids)} candidates, {len(timed)} subjects, batch 64: "
          f"cached {cached:.2f}, uncached {uncached:.2f} ({uncached / cached:.1f}x); "
          f"max |cached - uncached| score {float((cached_scores - uncached_scores).abs().max()):.1e}")


if __name__ == "__main__":
    main()
