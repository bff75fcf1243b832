"""Randomly initialised linear heads (P-tuning v2): on one pooled token, or on every word; one score per
choice for multiple choice."""

from __future__ import annotations

import torch
from torch import nn


class ClassificationHead(nn.Module):
    """Linear layer on one token per example ([CLS], the last token, or a template's {label} slot)."""


    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, num_labels)

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """hidden: [B, T, H] -> logits [B, C]."""
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), batch["pool_index"]]
        return self.linear(self.dropout(pooled))

    @staticmethod
    def targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Gold label ids [B]."""
        return batch["labels"]


class TokenHead(nn.Module):
    """Linear layer on the first sub-token of every word; other positions (virtual prompt tokens,
    continuation sub-tokens, specials, padding) are dropped before the head."""


    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, num_labels)

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """hidden: [B, T, H] -> logits [N, C] for the N word positions, in (example, word) order."""
        return self.linear(self.dropout(hidden[batch["word_index"] >= 0]))

    @staticmethod
    def targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Gold tag ids [N], aligned with ``forward``'s rows."""
        rows, _ = (batch["word_index"] >= 0).nonzero(as_tuple=True)
        return batch["tags"][rows, batch["word_index"][batch["word_index"] >= 0]]


class RegressionHead(ClassificationHead):
    """The classification head with one output: a score per example (STS-B style regression)."""

    def __init__(self, hidden: int, dropout: float = 0.1):
        super().__init__(hidden, 1, dropout)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """hidden: [B, T, H] -> scores [B]."""
        return super().forward(hidden, batch).squeeze(-1)

    @staticmethod
    def targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Gold scores [B]."""
        return batch["scores"]


class ChoiceHead(RegressionHead):
    """One score per choice from the pooled token of each (text, choice) row; an example's choices side
    by side as logits, so that their softmax is a distribution over them (multiple choice)."""

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """hidden: [N, T, H] for the N rows of B examples' choices, in (example, choice) order -> logits
        [B, C], C the most choices of an example; -inf past an example's own choices."""
        scores = super().forward(hidden, batch)  # [N]
        counts = batch["choice_count"]  # [B]
        width = int(counts.max()) if len(counts) else 0
        present = torch.arange(width, device=counts.device) < counts.unsqueeze(1)  # [B, C]
        logits = scores.new_full(present.shape, float("-inf"))
        logits[present] = scores
        return logits

    @staticmethod
    def targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The right choice's index per example [B] (IGNORE where unlabelled)."""
        return batch["labels"]
