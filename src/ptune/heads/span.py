"""Span head for extractive question answering (SQuAD): a start and an end score for every token.

Position 0 ([CLS] / BOS) stands for "no answer in this window", so it is never masked.
"""

from __future__ import annotations

import torch
from torch import nn


class SpanHead(nn.Module):
    """Linear layer mapping each token's hidden state to a start and an end logit."""


    def __init__(self, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, 2)

    def forward(
        self, hidden: torch.Tensor, batch: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden: [B, T, H] -> start, end logits [B, T].

        Where ``batch["span_mask"]`` [B, T] is False (question, special and padding tokens) the
        logits are the dtype's lowest value; position 0 is always kept for the no-answer case.
        """
        start, end = self.linear(self.dropout(hidden)).unbind(-1)
        if batch is not None and "span_mask" in batch:
            allowed = batch["span_mask"].bool().clone()
            allowed[:, 0] = True
            lowest = torch.finfo(start.dtype).min
            start, end = start.masked_fill(~allowed, lowest), end.masked_fill(~allowed, lowest)
        return start, end

    @staticmethod
    def targets(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Gold start and end positions [B], [B]."""
        return batch["start_positions"], batch["end_positions"]

    @staticmethod
    def loss(
        start_logits: torch.Tensor,
        end_logits: torch.Tensor,
        start_positions: torch.Tensor,
        end_positions: torch.Tensor,
    ) -> torch.Tensor:
        """start_logits, end_logits: [B, T]; positions: [B] -> mean of the two cross-entropies []."""
        start_loss = nn.functional.cross_entropy(start_logits, start_positions)
        end_loss = nn.functional.cross_entropy(end_logits, end_positions)
        return (start_loss + end_loss) / 2
