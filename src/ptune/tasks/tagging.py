"""Tagging: a tag per word (NER, chunking; SRL with the predicate as a second segment), from a
linear head on each word's first sub-token; scored by entity F1 (entity tags: B-/I-, IOBES,
BILOU), token accuracy and macro-F1 (POS and other plain tags) or SRL argument F1 (see `metrics`)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from ptune.errors import PtuneError
from ptune.heads import TokenHead
from ptune.tasks.base import TaskKind
from ptune.tasks.classification import label_id


class Tagging(TaskKind):
    name = "tagging"
    # entity_f1 first: the default of callers that name no metric, and what prompt files before
    # token_accuracy and srl_f1 record (`ptune.data.tasks.auto_metric` picks one from the tags).
    metrics: ClassVar[tuple[str, ...]] = ("entity_f1", "token_accuracy", "srl_f1")
    word_level = True
    input_help = "a JSON object with a 'text' (words split on spaces) or 'tokens' field, or plain text"

    def check(self, model) -> None:
        if model.config.head == "verbalizer":
            raise PtuneError("the verbalizer head classifies whole examples; use --head linear for tagging tasks")

    def head(self, model) -> nn.Module:
        return TokenHead(model.backbone.output_size, len(model.labels))

    def target(self, model, example) -> list[int] | None:
        return None if example.tags is None else [label_id(model, tag) for tag in example.tags]

    def rows(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """outputs: [N, C] over the batch's N words with a position -> one [W_i, C] per example, each
        word's row in its place; NaN rows for words without one (no sub-token, cut by max_length)."""
        placed = batch["word_index"] >= 0
        counts = placed.sum(-1).tolist()
        out = []
        for words, logits, total in zip(batch["word_index"][placed].split(counts), outputs.split(counts),
                                        batch["num_words"].tolist()):
            row = logits.new_full((max(total, int(words.max()) + 1 if len(words) else 0), logits.shape[-1]), float("nan"))
            row[words] = logits
            out.append(row)
        return out

    def decode_row(self, model, output: torch.Tensor, num_words: int) -> list[str]:
        """output: [W, C] -> a tag per word; a word without a row (NaN) gets "O"."""
        missing = output.isnan().any(-1).tolist()
        tags = ["O" if gone else model.labels[i] for i, gone in zip(output.nan_to_num(0.0).argmax(-1).tolist(), missing)]
        return tags + ["O"] * (num_words - len(tags))

    def scores_row(self, model, output: torch.Tensor, num_words: int) -> dict:
        """output: [W, C] -> the probability of each word's tag (softmax over the tags); None for a
        word without a row (tagged O because it has no sub-token or was cut)."""
        best = output.float().softmax(-1).max(-1).values.tolist()
        chosen = [None if math.isnan(p) else p for p in best]  # NaN rows: no row
        return {"tag_probabilities": chosen + [None] * (num_words - len(chosen))}

    def combine(self, members: torch.Tensor, how: str) -> torch.Tensor:
        """[N, W, C] -> [W, C], over the members that have a row for the word (a NaN row: none); a
        word that no member has stays NaN."""
        missing = members.isnan().any(-1)  # [N, W]
        weights = (~missing).float()
        if how == "mean":
            each = members.nan_to_num(0.0).softmax(-1)
        elif how == "vote":
            each = nn.functional.one_hot(members.nan_to_num(0.0).argmax(-1), members.shape[-1]).float()
        else:
            raise PtuneError(f"combine must be 'vote' or 'mean', got {how!r}")
        shares = (each * weights.unsqueeze(-1)).sum(0) / weights.sum(0).clamp_min(1).unsqueeze(-1)
        return shares.log().masked_fill(missing.all(0).unsqueeze(-1), float("nan"))

    def gold(self, examples) -> list:
        return [list(e.tags) for e in examples]

    def labelled(self, example) -> bool:
        return example.tags is not None

    def example(self, row: dict, *, predicate: int | None = None):
        from ptune.data.examples import TaggedExample

        tokens = row.get("tokens")
        if tokens is None and isinstance(row.get("text"), str):
            tokens = row["text"].split()
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"expected {self.input_help}")
        if not any(t.strip() for t in tokens):
            raise ValueError("no words to tag; give a sentence")
        predicate = row.get("predicate", predicate)
        if predicate is not None and not (isinstance(predicate, int) and 0 <= predicate < len(tokens)):
            raise ValueError(f"predicate {predicate!r} is not the index of one of its {len(tokens)} words "
                             f"(0 to {len(tokens) - 1})")
        return TaggedExample(tuple(tokens), predicate=predicate)

    def record(self, example, prediction, scores: dict | None = None, *, top_k: int | None = None) -> dict:
        probabilities = (scores or {}).get("tag_probabilities")
        return {"tokens": list(example.tokens), "tags": prediction, **(scores or {}),
                "entities": entities(example.tokens, prediction, probabilities)}


def entities(tokens, tags, probabilities=None) -> list[dict]:
    """Entity spans of a tag sequence: text, type, start and end (word offsets, end exclusive), read by
    the tags' scheme as entity F1 reads them; none for tags that mark no entities (POS tags). With
    each word's tag probability, an entity's ``score`` is the mean over its words."""
    from ptune.data.tag_schemes import entity_spans

    out = []
    for kind, start, end in entity_spans(tags):
        entity = {"text": " ".join(tokens[start : end + 1]), "type": kind, "start": start, "end": end + 1}
        if probabilities is not None:
            known = [p for p in probabilities[start : end + 1] if p is not None]
            entity["score"] = sum(known) / len(known) if known else None
        out.append(entity)
    return out
