"""Where deep prompts enter the model: a prefix-aware attention function for any HF backbone.

Registered once under the name ``ptune`` in transformers' AttentionInterface (and its mask
builder in AttentionMaskInterface, without which padding masks silently vanish). Each attention
call finds its layer (the module's ``layer_idx``; else the index ptune tagged it with at load; else,
for families that run one shared module for every layer such as ALBERT, the order of the calls in
this forward pass) and looks up that layer's prefix keys/values in a context variable set for the
duration of one forward pass; with no prefix it is plain SDPA. ``prefix_problem`` checks at load
that this reaches every layer exactly once, so a family it cannot serve is refused, never silently
left without prompts.

Encoder-decoders (T5, BART) have three attention sites per layer number: encoder self-attention,
decoder self-attention and decoder cross-attention. ``tag_sites`` marks each attention module with
its site at load, and their prefixes are keyed ``(site, layer)``. T5's relative position bias gets a
zero column per prefix key: a prefix has no position, so no distance favours or hides it.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator, Sequence

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_IMPLEMENTATION = "ptune"

# layer index (encoder-decoders: (site, layer index)) -> (keys [B, kvH, P, D], values [B, kvH, P, D]) or,
# when examples of one batch carry prefixes of different lengths or layers (mixed tasks), (keys, values,
# attend [B, P] bool).
Prefixes = dict[int | tuple[str, int], tuple[torch.Tensor, ...]]
SITES = ("encoder", "decoder", "cross")  # the attention sites of an encoder-decoder layer
SITE_TAG = "_ptune_site"
_active: ContextVar[Prefixes | None] = ContextVar("ptune_prefixes", default=None)
# layer index -> list that receives that layer's keys [B, kvH, T, D] (for interpretability)
_captured: ContextVar[dict[int, list] | None] = ContextVar("ptune_captured_keys", default=None)
# attention calls so far in this forward pass: the layer of a module with no index of its own
_calls: ContextVar[list[int] | None] = ContextVar("ptune_attention_calls", default=None)
# receives the layer each attention call resolved to (the load-time reach check)
_resolved: ContextVar[list[int] | None] = ContextVar("ptune_resolved_layers", default=None)
LAYER_TAG = "_ptune_layer"


@contextlib.contextmanager
def prefixes_active(prefixes: Prefixes | None) -> Iterator[None]:
    """Make ``prefixes`` visible to every attention layer during the enclosed forward pass."""
    token, calls = _active.set(prefixes), _calls.set([0])
    try:
        yield
    finally:
        _active.reset(token)
        _calls.reset(calls)


def tag_layers(layers: Sequence[torch.nn.Module]) -> None:
    """Give every module inside ``layers[i]`` the layer index ``i``, for families whose attention
    modules carry no ``layer_idx`` (DistilBERT); modules shared by several layers are left alone."""
    owners: dict[int, set[int]] = {}
    for index, layer in enumerate(layers):
        for module in layer.modules():
            owners.setdefault(id(module), set()).add(index)
    for index, layer in enumerate(layers):
        for module in layer.modules():
            if len(owners[id(module)]) == 1 and getattr(module, "layer_idx", None) is None:
                setattr(module, LAYER_TAG, index)


def tag_sites(model: torch.nn.Module) -> None:
    """Mark every attention module of an encoder-decoder with its site: ``encoder`` (self-attention in
    the encoder), ``decoder`` (causal self-attention in the decoder) or ``cross`` (the decoder's
    attention over the encoder's output, the one that is not causal)."""
    stacks = (("encoder", model.get_encoder()), ("decoder", model.get_decoder()))
    for stack, part in stacks:
        for module in part.modules():
            causal = getattr(module, "is_causal", None)
            if isinstance(causal, bool) and getattr(module, "layer_idx", None) is not None:
                setattr(module, SITE_TAG, stack if stack == "encoder" else "decoder" if causal else "cross")


def site_key(module, layer: int | None) -> int | tuple[str, int] | None:
    """The key of a module's prefix: its layer, or (site, layer) for an encoder-decoder's module."""
    site = getattr(module, SITE_TAG, None)
    return layer if site is None or layer is None else (site, layer)


def layer_of(module) -> int | None:
    """The layer an attention call belongs to: ``layer_idx``, else ptune's tag, else the call order."""
    layer = getattr(module, "layer_idx", None)
    if layer is None:
        layer = getattr(module, LAYER_TAG, None)
    if layer is None:
        calls = _calls.get()
        if calls is not None:
            layer = calls[0]
            calls[0] += 1
    return layer


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
    # With deep prompts active, always build the boolean mask: with prefix columns added, SDPA's implicit
    # `is_causal` (top-left aligned) or a skipped bidirectional mask would be wrong. Without them, the mask is
    # skipped where transformers' SDPA would skip it (no padding), which lets SDPA take its fused kernel, that
    # keeps no attention weights for the backward pass.
    # A meta-device model (a dry run) has no values to tell whether there is padding.
    if _active.get() or any(isinstance(value, torch.Tensor) and value.is_meta for value in (*args, *kwargs.values())):
        kwargs["allow_is_causal_skip"] = False
        kwargs["allow_is_bidirectional_skip"] = False
    return sdpa_mask(*args, **kwargs)


def prefix_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA with this layer's prefix prepended to keys/values.

    query: [B, H, T, D]; key, value: [B, kvH, S, D]; attention_mask: bool [B, 1, T, S] (True =
    attend) or None. Prefix columns are attended unless the prefix entry carries a [B, P] mask.
    """
    prefixes = _active.get()
    layer = layer_of(module)
    where = site_key(module, layer)
    resolved = _resolved.get()
    if resolved is not None:
        resolved.append(where)
    captured = _captured.get()
    if captured is not None and layer in captured and getattr(module, SITE_TAG, "encoder") == "encoder":
        captured[layer].append(key.detach())
    if prefixes is None or where not in prefixes:
        return _attend(module, query, key, value, attention_mask, **kwargs)
    prefix_key, prefix_value, *prefix_attend = prefixes[where]
    batch, _, length, _ = query.shape
    prefix_length = prefix_key.shape[2]
    # To this layer's device and dtype: with a device map each layer may sit on its own GPU.
    key = torch.cat([prefix_key.to(key.device, key.dtype), key], dim=2)
    value = torch.cat([prefix_value.to(value.device, value.dtype), value], dim=2)
    if attention_mask is None:
        # Only reachable for a caller that skipped our mask builder: rebuild what it implies.
        keys = key.shape[2] - prefix_length
        attention_mask = torch.ones(batch, 1, length, keys, dtype=torch.bool, device=query.device)
        if getattr(module, "is_causal", False):
            attention_mask = attention_mask.tril(keys - length)
    # Prefix columns are attended (True in a boolean mask, 0 in an additive one) unless a
    # per-example mask says this example has no prefix there.
    if prefix_attend:
        columns = prefix_attend[0].to(query.device)[:, None, None, :].expand(batch, 1, attention_mask.shape[-2], prefix_length)
    else:
        columns = torch.ones(batch, 1, attention_mask.shape[-2], prefix_length, dtype=torch.bool, device=query.device)
    if attention_mask.dtype == torch.bool:
        prefix_columns = columns.expand(*attention_mask.shape[:-1], prefix_length)
    else:
        prefix_columns = torch.zeros_like(columns, dtype=attention_mask.dtype).masked_fill(
            ~columns, torch.finfo(attention_mask.dtype).min).expand(*attention_mask.shape[:-1], prefix_length)
    attention_mask = torch.cat([prefix_columns, attention_mask], dim=-1)
    bias = kwargs.get("position_bias")
    if bias is not None:  # T5: a zero bias for each prefix key (it has no position to be near or far)
        kwargs["position_bias"] = torch.cat([bias.new_zeros(*bias.shape[:-1], prefix_length), bias], dim=-1)
    kwargs["is_causal"] = False
    return _attend(module, query, key, value, attention_mask, **kwargs)


def _attend(module, query, key, value, attention_mask, **kwargs):
    """SDPA, or for families that cap their attention logits (Gemma-2's ``softcap``, which SDPA
    cannot do) the same computation written out."""
    if kwargs.get("softcap") is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return softcapped_attention(module, query, key, value, attention_mask, **kwargs)


def softcapped_attention(module, query, key, value, attention_mask, *, softcap: float, scaling: float | None = None,
                         dropout: float = 0.0, **_):
    """query: [B, H, T, D]; key, value: [B, kvH, S, D]; attention_mask: bool [B, 1, T, S] (True =
    attend), additive, or None -> (output [B, T, H, D], weights [B, H, T, S]), as transformers'
    eager attention: logits scaled, capped to softcap * tanh(logits / softcap), masked, softmax."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = query @ key.transpose(2, 3) * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is None and getattr(module, "is_causal", False) and query.shape[2] > 1:
        # a skipped mask (no padding, no prefixes) on a decoder means causal, as SDPA's is_causal: query i of
        # the last T positions sees the keys up to its own (bottom-right aligned past a cache)
        queries, keys = query.shape[2], key.shape[2]
        attention_mask = torch.ones(queries, keys, dtype=torch.bool, device=query.device).tril(keys - queries)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[2]]
    weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    return (weights @ value).transpose(1, 2).contiguous(), weights


def register() -> str:
    """Register the attention and mask functions (idempotent); returns the implementation name."""
    AttentionInterface.register(ATTN_IMPLEMENTATION, prefix_attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, _materialised_mask)
    return ATTN_IMPLEMENTATION


def prefix_problem(model: torch.nn.Module, num_layers: int, kv_heads: int, head_dim: int) -> str | None:
    """Why deep prompts cannot reach ``model``'s layers, or None when they can.

    Two tiny forward passes at load: every layer 0..L-1 must resolve exactly once per pass, and a
    random prefix on every layer must change the output (a family whose attention bypasses the
    attention interface, e.g. DeBERTa-v2's disentangled attention, fails both).
    """
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.arange(1, 4).clamp(max=vocab - 1).unsqueeze(0).to(model.get_input_embeddings().weight.device)
    mask = torch.ones_like(ids)
    # An encoder-decoder's output is its decoder's, which reads the encoder's through cross-attention.
    extra = {"decoder_input_ids": ids} if getattr(model.config, "is_encoder_decoder", False) else {}
    expected: list = ([(site, layer) for site in SITES for layer in range(num_layers)] if extra
                      else list(range(num_layers)))
    resolved: list = []
    token = _resolved.set(resolved)
    try:
        with torch.no_grad(), prefixes_active({}):
            plain = model(input_ids=ids, attention_mask=mask, **extra).last_hidden_state
    finally:
        _resolved.reset(token)
    if not resolved:
        return "its attention does not go through transformers' attention interface"
    if sorted(resolved, key=str) != sorted(expected, key=str):
        return (f"its attention calls resolve to layers {sorted(resolved, key=str)[:8]}, not to each of its "
                f"{num_layers} layers once" + (" per site (encoder, decoder, cross)" if extra else ""))
    generator = torch.Generator().manual_seed(0)
    dtype = plain.dtype
    prefixes = {where: tuple((torch.randn(1, kv_heads, 2, head_dim, generator=generator) * 3).to(ids.device, dtype)
                             for _ in range(2)) for where in expected}
    with torch.no_grad(), prefixes_active(prefixes):
        prompted = model(input_ids=ids, attention_mask=mask, **extra).last_hidden_state
    if torch.allclose(plain, prompted):
        return "a prefix on every layer leaves its outputs unchanged"
    return None
