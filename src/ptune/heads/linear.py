"""Randomly initialised linear heads (P-tuning v2): on one pooled token, or on every word."""

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
