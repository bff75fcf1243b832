"""The reference that cached generation is tested and benchmarked against: every step reruns the full
forward pass (``PromptModel.hidden_states``) over the prompted text and the tokens so far.

Slow (each step costs a whole pass) but the prompts, prefixes and left padding behave exactly as in
training and prediction; ``CachedSteps`` must give the same logits at every step.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from ptune.batch.encoding import Feature, collate
from ptune.infer.decoding import device_of
from ptune.infer.generate import Generation
from ptune.model.prompt_model import PromptModel


def reference_ids(model: PromptModel, texts: Sequence[str], **options) -> list[list[int]]:
    """``generate.generate_ids`` by full recomputation (same options, same sampling)."""
    return Generation(model, texts, steps=RecomputeSteps, **options).run().ids


class RecomputeSteps:
    """The interface of ``decoding.CachedSteps`` (``start()``, ``advance(keep, tokens)``), by full
    recomputation."""

    def __init__(self, model: PromptModel, features: Sequence[Feature]):
        self.model, self.rows = model, list(features)
        self.head = model.backbone.lm_head()

    def start(self) -> torch.Tensor:
        """The logits after each text: [B, V] (float)."""
        return self._logits()

    def advance(self, keep: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """keep: [b] indices of the rows that go on; tokens: [b] their new tokens -> [b, V]."""
        self.rows = [_extended(self.rows[i], token) for i, token in zip(keep.tolist(), tokens.tolist())]
        return self._logits()

    def _logits(self) -> torch.Tensor:
        device = device_of(self.model)
        batch = {k: v.to(device) for k, v in collate(self.rows, pad_id=self.model.encoder.pad_id, left_pad=True).items()}
        hidden = self.model.hidden_states(batch)  # [B, T, H]
        return self.head(hidden[:, -1]).float()  # left padding puts every row's last token last


def _extended(feature: Feature, token: int) -> Feature:
    """``feature`` with one generated ``token`` appended (a real token: no prompt, no word index)."""
    return dataclasses.replace(feature, input_ids=feature.input_ids + [token], prompt_index=feature.prompt_index + [-1],
                               word_index=feature.word_index + [-1],
                               token_types=feature.token_types + [feature.token_types[-1] if feature.token_types else 0],
                               pool=len(feature.input_ids))
