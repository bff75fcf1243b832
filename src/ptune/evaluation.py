"""Prediction and scoring over many examples, batched by length."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from .encoding import Feature, batches, collate
from .metrics import score
from .model import PromptModel


def predict_features(model: PromptModel, features: Sequence[Feature], *, batch_size: int = 64,
                     progress: bool = False) -> list:
    """Predicted label (or tag list) for each feature, in input order."""
    was_training = model.training
    model.eval()
    out: list = [None] * len(features)
    encoder = model.encoder
    groups = list(batches(features, batch_size, shuffle=False))
    with torch.inference_mode():
        for indices in tqdm(groups, desc="predict", disable=not progress, leave=False):
            batch = collate([features[i] for i in indices], pad_id=encoder.pad_id, left_pad=encoder.decoder)
            for i, prediction in zip(indices, model.predict_batch(batch)):
                out[i] = prediction
    model.train(was_training)
    return out


def predict(model: PromptModel, examples: Sequence, *, batch_size: int = 64, progress: bool = False) -> list:
    """Labels for classification examples, tag lists for tagging examples."""
    return predict_features(model, model.encode(examples), batch_size=batch_size, progress=progress)


def gold_labels(examples: Sequence) -> list:
    return [list(e.tags) for e in examples] if hasattr(examples[0], "tags") else [e.label for e in examples]


def evaluate(model: PromptModel, examples: Sequence, metric: str, *, batch_size: int = 64,
             progress: bool = False) -> dict[str, float]:
    """Score predictions on labelled ``examples`` with ``metric`` (accuracy or entity_f1)."""
    return score(metric, gold_labels(examples), predict(model, examples, batch_size=batch_size, progress=progress))


def entities(tokens: Sequence[str], tags: Sequence[str]) -> list[dict]:
    """Entity spans of an IOB tag sequence: text, type, start and end (word offsets, end exclusive)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [{"text": " ".join(tokens[start : end + 1]), "type": kind, "start": start, "end": end + 1}
            for kind, start, end in get_entities(list(tags))]
