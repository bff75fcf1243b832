"""Skip the bottom layers a deep prompt does not reach: their output is a fixed function of the input.

With prompts only in layers ``start..L-1`` (e.g. ``top:k``), layers ``0..start-1`` see no trainable
tensor, so their output per training example is computed once, without autograd, and kept (up to a
memory cap; past it, recomputed without autograd). Later epochs run only the prompted layers.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import nn


class _Skip(nn.Module):
    """Stands in for a layer: hands its hidden states on unchanged."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def find_layers(transformer: nn.Module, num_layers: int) -> nn.ModuleList | None:
    """The backbone's stack of transformer layers (``encoder.layer`` for BERT, ``layers`` for Llama...),
    or None for a family without one (ALBERT runs one shared layer group ``num_layers`` times)."""
    for module in transformer.modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return module
    return None


def layer_list(transformer: nn.Module, num_layers: int) -> nn.ModuleList:
    """``find_layers``, required."""
    layers = find_layers(transformer, num_layers)
    if layers is None:
        raise ValueError(f"{type(transformer).__name__}: no list of {num_layers} layers found")
    return layers


@contextlib.contextmanager
def _swapped(layers: nn.ModuleList, indices: Sequence[int]) -> Iterator[None]:
    saved = {i: layers[i] for i in indices}
    try:
        for i in indices:
            layers[i] = _Skip()
        yield
    finally:
        for i, layer in saved.items():
            layers[i] = layer


@contextlib.contextmanager
def starting_at(layers: nn.ModuleList, start: int, hidden: torch.Tensor) -> Iterator[None]:
    """Within the block, a forward pass skips layers ``0..start-1`` and feeds ``hidden`` [B, T, H]
    to layer ``start`` in place of what the skipped layers would have computed."""
    def replace(module, args, kwargs):
        return (hidden, *args[1:]), kwargs

    handle = layers[start].register_forward_pre_hook(replace, with_kwargs=True)
    try:
        with _swapped(layers, range(start)):
            yield
    finally:
        handle.remove()


@contextlib.contextmanager
def stopping_before(layers: nn.ModuleList, start: int, out: list) -> Iterator[None]:
    """Within the block, a forward pass runs only layers ``0..start-1`` and appends their output
    [B, T, H] to ``out``."""
    handle = layers[start - 1].register_forward_hook(lambda module, args, output: out.append(output))
    try:
        with _swapped(layers, range(start, len(layers))):
            yield
    finally:
        handle.remove()


class BottomCache:
    """Per-example outputs of layers ``0..start-1``, kept in memory up to ``limit_bytes``."""

    def __init__(self, layers: nn.ModuleList, start: int, *, limit_bytes: int):
        self.layers, self.start, self.limit_bytes = layers, start, limit_bytes
        self.store: dict[int, torch.Tensor] = {}
        self.bytes = 0
        self.hits = self.misses = 0

    def hidden(self, keys: Sequence[int], batch: dict[str, torch.Tensor], compute) -> torch.Tensor:
        """Layer ``start``'s input [B, T, H] for the examples ``keys`` of ``batch``.

        ``compute()`` runs the backbone forward on ``batch``; it is called (without autograd, bottom
        layers only) when some example is not cached yet.
        """
        mask = batch["attention_mask"].bool()
        # Examples of several rows (multiple choice: a row per choice) are computed each time, never cached.
        cacheable = len(keys) == mask.shape[0]
        if cacheable and all(key in self.store for key in keys):
            self.hits += len(keys)
            first = self.store[keys[0]]
            hidden = first.new_zeros(*mask.shape, first.shape[-1])
            for row, key in enumerate(keys):
                hidden[row, mask[row]] = self.store[key]
            return hidden
        self.misses += len(keys)
        captured: list[torch.Tensor] = []
        with torch.no_grad(), stopping_before(self.layers, self.start, captured):
            compute()
        hidden = captured[0]
        for row, key in enumerate(keys if cacheable else ()):
            if key not in self.store:
                kept = hidden[row, mask[row]].clone()
                if self.bytes + kept.nbytes <= self.limit_bytes:
                    self.store[key] = kept
                    self.bytes += kept.nbytes
        return hidden
