"""Prediction and scoring over many examples, batched by length."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from ptune.batch.encoding import Feature, batches
from ptune.errors import PtuneError
from ptune.infer.generate import greedy_texts
from ptune.tasks.metrics import score
from ptune.model.prompt_model import PromptModel


def predict_features(model: PromptModel, features: Sequence[Feature], *, batch_size: int = 64,
                     progress: bool = False, scored: bool = False) -> list:
    """The kind's prediction for each feature (for qa, a window's start and end logits), in input order;
    with ``scored``, (prediction, scores) pairs (``TaskKind.scores_row``)."""
    was_training = model.training
    model.eval()
    out: list = [None] * len(features)
    groups = list(batches(features, batch_size, shuffle=False))
    writes = model.kind.writes_text(model)
    with torch.inference_mode():
        for indices in tqdm(groups, desc="predict", disable=not progress, leave=False):
            batch = model.collate([features[i] for i in indices])
            if writes:  # text written token by token, with the key/value cache
                texts = greedy_texts(model, batch)
                predictions = [(text, {}) for text in texts] if scored else texts
            else:
                predictions = model.predict_batch(batch, scored=scored)
            for i, prediction in zip(indices, predictions):
                out[i] = prediction
    model.train(was_training)
    return out


def predict(model: PromptModel, examples: Sequence, *, batch_size: int = 64, progress: bool = False,
            features: Sequence | None = None, scores: bool = False, top_k: int | None = None) -> list:
    """One prediction per example, as the model's task kind decodes it: a label, a tag list, an
    answer text ("" for no answer), a score. ``features``: ``model.encode(examples)`` when already made.

    With ``scores``, each example's JSON record instead, as ``ptune predict`` prints it: the
    prediction with how sure it is (classification: ``probability`` and ``probabilities``, likeliest
    first, the ``top_k`` likeliest only when given; tagging: ``tag_probabilities`` and a ``score`` per
    entity; qa: ``score``, ``start``, ``end``, ``no_answer_score`` for squad_v2) and what was cut to fit.
    """
    if top_k is not None and not scores:
        raise PtuneError("top_k keeps the likeliest labels of scored predictions; pass scores=True with it")
    if top_k is not None and top_k < 1:
        raise PtuneError(f"top_k is {top_k}; keep at least 1 label")
    features = model.encode(examples) if features is None else features
    decoded = predict_features(model, features, batch_size=batch_size, progress=progress, scored=scores)
    finished = model.kind.finish(model, examples, features, decoded, scored=scores)
    if not scores:
        return finished
    marks = model.kind.marks(examples, features)
    return [{**model.kind.record(example, prediction, found, top_k=top_k), **mark}
            for example, (prediction, found), mark in zip(examples, finished, marks)]


def evaluate(model: PromptModel, examples: Sequence, metric: str | None = None, *, batch_size: int = 64,
             progress: bool = False, features: Sequence | None = None) -> dict[str, float]:
    """Score predictions on labelled ``examples`` with ``metric`` (default: the model's).
    ``features``: ``model.encode(examples)`` when already made."""
    predicted = predict(model, examples, batch_size=batch_size, progress=progress, features=features)
    return score(metric or model.metric, model.kind.gold(examples), predicted)
