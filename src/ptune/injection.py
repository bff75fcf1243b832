"""Where deep prompts enter the model: a prefix-aware attention function for any HF backbone.

Registered once under the name ``ptune`` in transformers' AttentionInterface (and its mask
builder in AttentionMaskInterface, without which padding masks silently vanish). Every attention
module that carries a ``layer_idx`` looks up its layer's prefix keys/values in a context variable
set for the duration of one forward pass; with no prefix it is plain SDPA.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_IMPLEMENTATION = "ptune"

# layer index -> (keys [B, kvH, P, D], values [B, kvH, P, D])
Prefixes = dict[int, tuple[torch.Tensor, torch.Tensor]]
_active: ContextVar[Prefixes | None] = ContextVar("ptune_prefixes", default=None)


@contextlib.contextmanager
def prefixes_active(prefixes: Prefixes | None) -> Iterator[None]:
    """Make ``prefixes`` visible to every attention layer during the enclosed forward pass."""
    token = _active.set(prefixes)
    try:
        yield
    finally:
        _active.reset(token)


def _materialised_mask(*args, **kwargs):
    # Always build the boolean mask: with prefix columns added, SDPA's implicit `is_causal`
    # (top-left aligned) or a skipped bidirectional mask would be wrong.
    kwargs["allow_is_causal_skip"] = False
    kwargs["allow_is_bidirectional_skip"] = False
    return sdpa_mask(*args, **kwargs)


def prefix_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA with this layer's prefix prepended to keys/values.

    query: [B, H, T, D]; key, value: [B, kvH, S, D]; attention_mask: bool [B, 1, T, S] (True =
    attend) or None. Prefix columns are always attended.
    """
    prefixes = _active.get()
    layer = getattr(module, "layer_idx", None)
    if prefixes is None or layer not in prefixes:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    prefix_key, prefix_value = prefixes[layer]
    batch, _, length, _ = query.shape
    prefix_length = prefix_key.shape[2]
    key = torch.cat([prefix_key.to(key.dtype), key], dim=2)
    value = torch.cat([prefix_value.to(value.dtype), value], dim=2)
    if attention_mask is None:
        # Only reachable for a caller that skipped our mask builder: rebuild what it implies.
        keys = key.shape[2] - prefix_length
        attention_mask = torch.ones(batch, 1, length, keys, dtype=torch.bool, device=query.device)
        if getattr(module, "is_causal", False):
            attention_mask = attention_mask.tril(keys - length)
    # Prefix columns are always attended: True in a boolean mask, 0 in an additive one.
    attend = True if attention_mask.dtype == torch.bool else 0.0
    prefix_columns = torch.full((*attention_mask.shape[:-1], prefix_length), attend, dtype=attention_mask.dtype,
                                device=attention_mask.device)
    attention_mask = torch.cat([prefix_columns, attention_mask], dim=-1)
    kwargs["is_causal"] = False
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register() -> str:
    """Register the attention and mask functions (idempotent); returns the implementation name."""
    AttentionInterface.register(ATTN_IMPLEMENTATION, prefix_attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, _materialised_mask)
    return ATTN_IMPLEMENTATION
