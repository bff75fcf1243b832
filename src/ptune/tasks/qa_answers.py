"""Decoding extractive QA: span logits over an example's windows -> its answer (text, character
offsets, span score and no-answer score), and which part of its context no window covered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ptune.data.examples import QAExample

NO_ANSWER = 0  # the target position of "no answer in this window": [CLS] (or BOS)

Offset = tuple[int, int]


@dataclass(frozen=True)
class Answer:
    """One example's answer: ``text`` ("" for no answer) at ``start:end`` in the context (None for
    no answer); ``score`` is the best span's start + end logit over the windows (None when no window
    holds a valid span), ``no_answer_score`` the lowest start + end logit of the no-answer position."""

    text: str
    start: int | None
    end: int | None
    score: float | None
    no_answer_score: float | None


def best_answers(
    examples: Sequence[QAExample],
    features: Sequence,
    start_logits: torch.Tensor | Sequence[Sequence[float]],
    end_logits: torch.Tensor | Sequence[Sequence[float]],
    *,
    allow_impossible: bool,
    max_answer_tokens: int = 30,
    n_best: int = 20,
    null_threshold: float = 0.0,
) -> list[Answer]:
    """Each example's answer, in order, cut from its context by the features' offsets.

    start_logits, end_logits: [F, T], one row per feature (positions past a feature's length are
    ignored). An example's answer is its best-scoring span (start + end logit) over all its
    windows, among the `n_best` starts and ends of each window, at most `max_answer_tokens` long.
    With `allow_impossible` (SQuAD 2.0) it is "" when the lowest null score (start[0] + end[0])
    beats that span by more than `null_threshold`; "" also when no window holds a valid span.
    """
    if not len(features) == len(start_logits) == len(end_logits):
        raise ValueError(f"{len(features)} features but {len(start_logits)}/{len(end_logits)} logit rows")
    best: dict[int, tuple[float, int, int]] = {}
    null: dict[int, float] = {}
    for row, feature in enumerate(features):
        length = len(feature.input_ids)
        starts = torch.as_tensor(start_logits[row], dtype=torch.float32)[:length]
        ends = torch.as_tensor(end_logits[row], dtype=torch.float32)[:length]
        index = feature.example_index
        null[index] = min(null.get(index, float("inf")), float(starts[NO_ANSWER] + ends[NO_ANSWER]))
        span = window_best_span(feature.offsets, starts, ends, max_answer_tokens, n_best)
        if span is not None and (index not in best or span[0] > best[index][0]):
            best[index] = span
    answers = []
    for index, example in enumerate(examples):
        span, no_answer = best.get(index), null.get(index)
        if span is None or (allow_impossible and no_answer - span[0] > null_threshold):  # a span means a window
            answers.append(Answer("", None, None, span[0] if span else None, no_answer))
            continue
        # byte-level BPE offsets include the space before a word ("ĠBrussels"): an answer never starts with one
        text = example.context[span[1] : span[2]]
        start = span[1] + len(text) - len(text.lstrip())
        answers.append(Answer(text.lstrip(), start, span[2], span[0], no_answer))
    return answers


def best_spans(examples: Sequence[QAExample], features: Sequence, start_logits, end_logits, *,
               allow_impossible: bool, **options) -> dict[str, str]:
    """Predicted answer text per example id (see ``best_answers`` for the arguments)."""
    answers = best_answers(examples, features, start_logits, end_logits, allow_impossible=allow_impossible, **options)
    return {example.id: answer.text for example, answer in zip(examples, answers)}


def window_best_span(
    offsets: Sequence[Offset | None],
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    max_answer_tokens: int,
    n_best: int,
) -> tuple[float, int, int] | None:
    """(score, start char, end char) of one window's best context span, or None if it has none.

    start_logits, end_logits: [T]. Only the `n_best` highest starts and ends are paired.
    """
    k = min(n_best, len(offsets))
    starts, ends = start_logits.tolist(), end_logits.tolist()
    top_starts = [t for t in torch.topk(start_logits, k).indices.tolist() if offsets[t] is not None]
    top_ends = [t for t in torch.topk(end_logits, k).indices.tolist() if offsets[t] is not None]
    best = None
    for s in top_starts:
        for e in top_ends:
            if not 0 <= e - s < max_answer_tokens:
                continue
            score = starts[s] + ends[e]
            if best is None or score > best[0]:
                best = (score, offsets[s][0], offsets[e][1])
    return best


def unseen_context(context: str, features: Sequence) -> int:
    """How many non-space characters of ``context`` lie in no token of any of its windows
    (``features``: that example's features, with offsets into ``context``)."""
    seen = bytearray(len(context))
    for feature in features:
        for span in feature.offsets:
            if span is not None and span[0] < min(span[1], len(context)):
                end = min(span[1], len(context))
                seen[span[0] : end] = b"\x01" * (end - span[0])
    return sum(1 for char, hit in zip(context, seen) if not hit and not char.isspace())
