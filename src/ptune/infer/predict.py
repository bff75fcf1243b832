"""Prediction and scoring over many examples, batched by length."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from .data.squad import QAExample
from .encoding import Feature, batches
from .metrics import score
from .model import PromptModel
from .qa import best_spans


def predict_features(model: PromptModel, features: Sequence[Feature], *, batch_size: int = 64,
                     progress: bool = False) -> list:
    """Predicted label (or tag list; for qa, start and end logits) for each feature, in input order."""
    was_training = model.training
    model.eval()
    out: list = [None] * len(features)
    groups = list(batches(features, batch_size, shuffle=False))
    with torch.inference_mode():
        for indices in tqdm(groups, desc="predict", disable=not progress, leave=False):
            batch = model.collate([features[i] for i in indices])
            for i, prediction in zip(indices, model.predict_batch(batch)):
                out[i] = prediction
    model.train(was_training)
    return out


def predict(model: PromptModel, examples: Sequence, *, batch_size: int = 64, progress: bool = False,
            features: Sequence | None = None) -> list:
    """Labels for classification examples, tag lists for tagging examples, answer texts for
    questions ("" for no answer). ``features``: ``model.encode(examples)`` when already made."""
    features = model.encode(examples) if features is None else features
    predicted = predict_features(model, features, batch_size=batch_size, progress=progress)
    if not model.qa:
        return predicted
    # A context may span several windows: its answer is the best span over all of them.
    starts, ends = zip(*predicted) if predicted else ((), ())
    answers = best_spans(examples, features, starts, ends, allow_impossible=model.no_answer)
    return [answers[e.id] for e in examples]


def gold_labels(examples: Sequence) -> list:
    """What predictions are scored against: tag lists, labels, or (qa) the examples themselves."""
    if isinstance(examples[0], QAExample):
        return list(examples)
    return [list(e.tags) for e in examples] if hasattr(examples[0], "tags") else [e.label for e in examples]


def evaluate(model: PromptModel, examples: Sequence, metric: str, *, batch_size: int = 64,
             progress: bool = False) -> dict[str, float]:
    """Score predictions on labelled ``examples`` with ``metric`` (accuracy, entity_f1, squad, squad_v2)."""
    return score(metric, gold_labels(examples), predict(model, examples, batch_size=batch_size, progress=progress))


def entities(tokens: Sequence[str], tags: Sequence[str]) -> list[dict]:
    """Entity spans of an IOB tag sequence: text, type, start and end (word offsets, end exclusive)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [{"text": " ".join(tokens[start : end + 1]), "type": kind, "start": start, "end": end + 1}
            for kind, start, end in get_entities(list(tags))]
