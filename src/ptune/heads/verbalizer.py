"""The verbalizer head (P-tuning, Lester et al.): label scores from the frozen LM head's logits
for each label's words at the ``{label}`` slot — the [MASK] of a masked LM, or the next token
after the slot's preceding token for a causal LM. It adds no trainable parameters.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


class VerbalizerHead(nn.Module):
    """label logit = log-sum-exp over the label's words of the LM's logit for each word's first token.

    Log-sum-exp (not the mean) because, under the LM's softmax, it is the log of the probability
    that the next token is *any* of the label's words (up to the normaliser shared by all labels);
    a label with several words thus collects the probability of all of them.
    """


    def __init__(self, lm_head: Callable[[], nn.Module], word_ids: Sequence[Sequence[int]]):
        """lm_head: returns the frozen LM head ([..., H] -> [..., V]); kept as a callable so the
        shared head is neither a submodule nor saved with the prompt. word_ids: first-token id of
        each word, per label."""
        super().__init__()
        self._lm_head = lm_head
        width = max(len(ids) for ids in word_ids)
        index = torch.zeros(len(word_ids), width, dtype=torch.long)
        valid = torch.zeros(len(word_ids), width, dtype=torch.bool)
        for row, ids in enumerate(word_ids):
            index[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
            valid[row, : len(ids)] = True
        self.register_buffer("word_index", index, persistent=False)  # [C, W]
        self.register_buffer("word_valid", valid, persistent=False)  # [C, W]

    def vocab_logits(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """hidden: [B, T, H] -> the LM's logits at each example's ``pool_index``: [B, V]."""
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), batch["pool_index"]]
        return self._lm_head()(pooled)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """hidden: [B, T, H] -> label logits [B, C]."""
        vocab = self.vocab_logits(hidden, batch)
        words = vocab[:, self.word_index]  # [B, C, W]
        return words.masked_fill(~self.word_valid, float("-inf")).logsumexp(-1)

    @staticmethod
    def targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Gold label ids [B]."""
        return batch["labels"]
