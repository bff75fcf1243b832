"""How the next token is chosen from a step's logits: greedy, or seeded sampling with temperature,
top-k and top-p, after a repetition penalty; the options are validated once, at the boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ptune.errors import PtuneError


@dataclass(frozen=True)
class Sampling:
    """The choice of each next token, in transformers' order: repetition penalty, then (sampling
    only) temperature, top-k, top-p.

    ``temperature`` 0 is greedy (argmax; deterministic, a text gives the same ids alone or in a
    batch); above 0, tokens are drawn from softmax(logits / temperature) with a generator seeded by
    ``seed`` (same seed, texts and options: same output). ``top_k``: keep the k most likely tokens
    (None: all); ``top_p``: keep the smallest set of most likely tokens whose probability reaches p
    (1: all); ``repetition_penalty`` (CTRL, Keskar et al. 2019): the logit of every token already in
    the text or the continuation is divided by it (multiplied when negative); 1 is off.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None
    repetition_penalty: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not _number(self.temperature) or self.temperature < 0:
            raise PtuneError(f"temperature (--temperature) must be 0 (greedy) or positive (sampling), "
                             f"got {self.temperature}")
        if not _number(self.top_p) or not 0 < self.top_p <= 1:
            raise PtuneError(f"top_p (--top-p) must be in (0, 1] (1 keeps every token), got {self.top_p}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise PtuneError(f"top_k (--top-k) must be an integer >= 1 (or unset: every token), got {self.top_k!r}")
        if not _number(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise PtuneError(f"repetition_penalty (--repetition-penalty) must be > 0 (1 is off), "
                             f"got {self.repetition_penalty}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise PtuneError(f"seed (--seed) must be an integer, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator | None:
        """The random generator of one generation call (None when greedy)."""
        return None if self.greedy else torch.Generator(device=device).manual_seed(self.seed)

    def choose(self, logits: torch.Tensor, seen: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        """logits: [B, V] (float); seen: bool [B, V], the tokens the penalty applies to (None: no
        penalty) -> the chosen token ids [B]."""
        if seen is not None and self.repetition_penalty != 1:
            logits = penalise(logits, seen, self.repetition_penalty)
        if self.greedy:
            return logits.argmax(-1)
        logits = logits / self.temperature
        if self.top_k is not None:
            logits = keep_top_k(logits, self.top_k)
        if self.top_p < 1:
            logits = keep_top_p(logits, self.top_p)
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def penalise(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """logits: [B, V]; seen: bool [B, V] -> [B, V] with seen tokens' logits divided by ``penalty``
    where positive, multiplied where negative (transformers' RepetitionPenaltyLogitsProcessor)."""
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def keep_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """logits: [B, V] -> [B, V] with all but the ``k`` largest of each row set to -inf (ties at the
    k-th value are kept)."""
    k = min(k, logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, -math.inf)


def keep_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """logits: [B, V] -> [B, V] keeping, per row, the smallest set of most likely tokens whose
    probabilities sum to at least ``p`` (always the most likely one); the rest -inf."""
    ordered, order = logits.sort(dim=-1, descending=True)
    probs = ordered.softmax(-1)
    before = probs.cumsum(-1) - probs  # probability mass of the tokens ranked above each one
    drop = before >= p
    drop[:, 0] = False
    return logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), -math.inf)
