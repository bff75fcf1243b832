"""Span head for extractive question answering (SQuAD): a start and an end score for every token.

Position 0 ([CLS] / BOS) stands for "no answer in this window", so it is never masked. On a causal
(decoder) model position 0 sees nothing after it, so its no-answer score comes from the last real
token, which sees the question and the whole window, through a linear layer of its own.
"""

from __future__ import annotations

import torch
from torch import nn


class SpanHead(nn.Module):
    """Linear layer mapping each token's hidden state to a start and an end logit."""

    def __init__(self, hidden: int, dropout: float = 0.1, *, causal: bool = False):
        """``causal``: score "no answer" (position 0) from the last real token (decoders)."""
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, 2)
        self.null = nn.Linear(hidden, 2) if causal else None

    def forward(
        self, hidden: torch.Tensor, batch: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden: [B, T, H] -> start, end logits [B, T].

        Where ``batch["span_mask"]`` [B, T] is False (question, special and padding tokens) the
        logits are the dtype's lowest value; position 0 is always kept for the no-answer case.
        """
        start, end = self.linear(self.dropout(hidden)).unbind(-1)
        if self.null is not None:
            if batch is None or "attention_mask" not in batch:
                raise ValueError("a causal span head needs the batch's attention_mask to find the last token")
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            last = batch["attention_mask"].long().sum(-1) - 1  # right-padded windows
            null_start, null_end = self.null(self.dropout(hidden[rows, last])).unbind(-1)  # [B], [B]
            start = torch.cat([null_start.unsqueeze(1), start[:, 1:]], dim=1)
            end = torch.cat([null_end.unsqueeze(1), end[:, 1:]], dim=1)
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
