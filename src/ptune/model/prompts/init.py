"""Initialisers for soft prompt vectors (Lester et al. 2021, section 3.2): pure functions."""

from __future__ import annotations

from typing import Sequence

import torch


def random_uniform(length: int, hidden: int, *, generator: torch.Generator | None = None,
                   scale: float = 0.5) -> torch.Tensor:
    """Returns [P, H] drawn from U(-scale, scale)."""
    return (torch.rand(length, hidden, generator=generator) * 2 - 1) * scale


def sampled_vocab(embeddings: torch.Tensor, length: int, frequent_ids: Sequence[int], *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Returns [P, H]: embeddings [V, H] of tokens sampled (without replacement while possible)
    from ``frequent_ids`` (the most frequent tokens, e.g. the top 5,000)."""
    ids = torch.as_tensor(list(frequent_ids), dtype=torch.long)
    picks = torch.randperm(len(ids), generator=generator)
    if length > len(ids):
        picks = torch.cat([picks, torch.randint(len(ids), (length - len(ids),), generator=generator)])
    return embeddings[ids[picks[:length]]].detach().clone()


def from_labels(embeddings: torch.Tensor, label_token_ids: Sequence[Sequence[int]], length: int,
                fallback: torch.Tensor) -> torch.Tensor:
    """Returns [P, H]: row i is the mean embedding of label i's tokens (multi-token labels
    averaged); rows past the number of labels come from ``fallback`` [P, H]."""
    out = fallback.detach().clone()
    for row, ids in enumerate(label_token_ids[:length]):
        out[row] = embeddings[torch.as_tensor(list(ids), dtype=torch.long)].mean(dim=0)
    return out
