"""Gradient checkpointing of a frozen backbone: each layer's activations are recomputed in the backward
pass instead of kept. Backbone-agnostic (the layer stack found by size) and independent of train/eval
mode, which transformers' own switch needs (a frozen backbone runs in eval mode)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ptune.errors import PtuneError
from ptune.model.depth_cache import find_layers

# Keyword arguments through which a layer would write a key/value cache: the replay in the backward
# pass would write it a second time.
_CACHES = ("past_key_values", "past_key_value", "layer_past", "cache")


@contextlib.contextmanager
def checkpointed(transformer: nn.Module, num_layers: int) -> Iterator[None]:
    """Within the block, every layer of ``transformer`` runs under ``torch.utils.checkpoint`` when
    gradients are on. The recomputation replays the layer in the context of its first run, so the
    deep prompt it saw (``injection.prefixes_active``, a context variable) is the same."""
    layers = find_layers(transformer, num_layers)
    if layers is None:
        raise PtuneError(f"gradient checkpointing needs a stack of {num_layers} layers; this backbone "
                         f"({type(transformer).__name__}) shares one layer module: drop --gradient-checkpointing")
    originals = [layer.forward for layer in layers]
    try:
        for layer, forward in zip(layers, originals):
            layer.forward = functools.partial(_checkpointed_forward, forward)
        yield
    finally:
        for layer in layers:
            del layer.forward  # back to the class's forward


def _checkpointed_forward(forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    for key in _CACHES:
        if kwargs.get(key) is not None:
            kwargs[key] = None
    if "use_cache" in kwargs:
        kwargs["use_cache"] = False
    context = contextvars.copy_context()  # the prefixes of this forward pass, for the replay
    return checkpoint(lambda *inputs: context.run(forward, *inputs, **kwargs), *args, use_reentrant=False)
