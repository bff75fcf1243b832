"""Regression: a score per text or text pair (as STS-B), from a one-output linear head on the
pooled token, trained with mean squared error; scored by Pearson and Spearman correlation."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from ptune.errors import PtuneError
from ptune.heads import RegressionHead
from ptune.tasks.base import TaskKind


def score_of(label) -> float:
    """A label as a finite number; refuses text such as "positive"."""
    try:
        value = float(label)
    except (TypeError, ValueError):
        raise PtuneError(f"label {label!r} is not a number; a regression task needs numeric labels "
                         "(or train with --kind classification)") from None
    if not math.isfinite(value):
        raise PtuneError(f"label {label!r} is not a finite number; fix or remove that example")
    return value


class Regression(TaskKind):
    name = "regression"
    metrics: ClassVar[tuple[str, ...]] = ("correlation",)
    has_labels = False

    def check(self, model) -> None:
        if model.config.head == "verbalizer":
            raise PtuneError("the verbalizer head chooses among label words; a regression task needs --head linear")
        if model.config.has_input_prompt and model.config.init == "labels":
            raise PtuneError("--init labels starts the prompt from label words, and a regression task has none; "
                             "use --init vocab or --init random")

    def head(self, model) -> nn.Module:
        return RegressionHead(model.backbone.output_size)

    def target(self, model, example) -> float | None:
        return None if example.label is None else score_of(example.label)

    def loss(self, model, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """outputs, targets: [B] -> mean squared error []."""
        return nn.functional.mse_loss(outputs.float(), model.head.targets(batch).float())

    def decode_row(self, model, output: torch.Tensor, num_words: int) -> float:
        return float(output)

    def combine(self, members: torch.Tensor, how: str) -> torch.Tensor:
        """members: [N] -> their mean []; a vote has no meaning for scores."""
        if how != "mean":
            raise PtuneError("an ensemble of regression prompts combines by mean; use --combine mean")
        return members.mean(0)

    def gold(self, examples) -> list[float]:
        return [score_of(e.label) for e in examples]

    def record(self, example, prediction, scores: dict | None = None, *, top_k: int | None = None) -> dict:
        return {"text": example.text, "score": prediction}
