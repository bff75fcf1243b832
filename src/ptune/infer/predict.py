"""Prediction and scoring over many examples, batched by length."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from ptune.batch.encoding import Feature, batches
from ptune.tasks.metrics import score
from ptune.model.prompt_model import PromptModel


def predict_features(model: PromptModel, features: Sequence[Feature], *, batch_size: int = 64,
                     progress: bool = False) -> list:
    """The kind's prediction for each feature (for qa, a window's start and end logits), in input order."""
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
    """One prediction per example, as the model's task kind decodes it: a label, a tag list, an
    answer text ("" for no answer), a score. ``features``: ``model.encode(examples)`` when already made."""
    features = model.encode(examples) if features is None else features
    decoded = predict_features(model, features, batch_size=batch_size, progress=progress)
    return model.kind.finish(model, examples, features, decoded)


def evaluate(model: PromptModel, examples: Sequence, metric: str | None = None, *, batch_size: int = 64,
             progress: bool = False, features: Sequence | None = None) -> dict[str, float]:
    """Score predictions on labelled ``examples`` with ``metric`` (default: the model's).
    ``features``: ``model.encode(examples)`` when already made."""
    predicted = predict(model, examples, batch_size=batch_size, progress=progress, features=features)
    return score(metric or model.metric, model.kind.gold(examples), predicted)
