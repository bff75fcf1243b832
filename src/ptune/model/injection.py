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

# layer index -> (keys [B, kvH, P, D], values [B, kvH, P, D]) or, when examples of one batch
# carry prefixes of different lengths or layers (mixed tasks), (keys, values, attend [B, P] bool).
Prefixes = dict[int, tuple[torch.Tensor, ...]]
_active: ContextVar[Prefixes | None] = ContextVar("ptune_prefixes", default=None)
# layer index -> list that receives that layer's keys [B, kvH, T, D] (for interpretability)
_captured: ContextVar[dict[int, list] | None] = ContextVar("ptune_captured_keys", default=None)


@contextlib.contextmanager
def prefixes_active(prefixes: Prefixes | None) -> Iterator[None]:
    """Make ``prefixes`` visible to every attention layer during the enclosed forward pass."""
    token = _active.set(prefixes)
    try:
        yield
    finally:
        _active.reset(token)


@contextlib.contextmanager
def capturing_keys(layer: int) -> Iterator[list[torch.Tensor]]:
    """Collect the keys that layer ``layer`` computes during the enclosed forward passes."""
    store: list[torch.Tensor] = []
    token = _captured.set({layer: store})
    try:
        yield store
    finally:
        _captured.reset(token)


def _materialised_mask(*args, **kwargs):
    # Always build the boolean mask: with prefix columns added, SDPA's implicit `is_causal`
    # (top-left aligned) or a skipped bidirectional mask would be wrong.
    kwargs["allow_is_causal_skip"] = False
    kwargs["allow_is_bidirectional_skip"] = False
    return sdpa_mask(*args, **kwargs)


def prefix_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA with this layer's prefix prepended to keys/values.

    query: [B, H, T, D]; key, value: [B, kvH, S, D]; attention_mask: bool [B, 1, T, S] (True =
    attend) or None. Prefix columns are attended unless the prefix entry carries a [B, P] mask.
    """
    prefixes = _active.get()
    layer = getattr(module, "layer_idx", None)
    captured = _captured.get()
    if captured is not None and layer in captured:
        captured[layer].append(key.detach())
    if prefixes is None or layer not in prefixes:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    prefix_key, prefix_value, *prefix_attend = prefixes[layer]
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
    # Prefix columns are attended (True in a boolean mask, 0 in an additive one) unless a
    # per-example mask says this example has no prefix there.
    if prefix_attend:
        columns = prefix_attend[0][:, None, None, :].expand(batch, 1, attention_mask.shape[-2], prefix_length)
    else:
        columns = torch.ones(batch, 1, attention_mask.shape[-2], prefix_length, dtype=torch.bool, device=query.device)
    if attention_mask.dtype == torch.bool:
        prefix_columns = columns.expand(*attention_mask.shape[:-1], prefix_length)
    else:
        prefix_columns = torch.zeros_like(columns, dtype=attention_mask.dtype).masked_fill(
            ~columns, torch.finfo(attention_mask.dtype).min).expand(*attention_mask.shape[:-1], prefix_length)
    attention_mask = torch.cat([prefix_columns, attention_mask], dim=-1)
    kwargs["is_causal"] = False
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register() -> str:
    """Register the attention and mask functions (idempotent); returns the implementation name."""
    AttentionInterface.register(ATTN_IMPLEMENTATION, prefix_attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, _materialised_mask)
    return ATTN_IMPLEMENTATION
