"""Deep prompts (P-tuning v2 / prefix tuning): trainable keys and values at chosen layers."""

from __future__ import annotations

import torch
from torch import nn

from ptune.errors import PtuneError


def parse_layers(spec: str | list[int], num_layers: int) -> list[int]:
    """``all`` | ``top:k`` (the k layers nearest the output) | ``bottom:k`` | ``0,2,5``."""
    if isinstance(spec, list):
        layers = spec
    elif spec == "all":
        layers = list(range(num_layers))
    elif spec.startswith(("top:", "bottom:")):
        side, _, count = spec.partition(":")
        if not count.isdigit() or not 1 <= int(count) <= num_layers:
            raise PtuneError(f"layers {spec!r}: k must be between 1 and {num_layers}")
        k = int(count)
        layers = list(range(num_layers - k, num_layers)) if side == "top" else list(range(k))
    else:
        try:
            layers = [int(part) for part in spec.split(",")]
        except ValueError:
            raise PtuneError(f"layers {spec!r}: use all, top:K, bottom:K or a comma list like 0,2,5") from None
    bad = [layer for layer in layers if not 0 <= layer < num_layers]
    if bad or not layers or len(set(layers)) != len(layers):
        raise PtuneError(f"layers {spec!r}: need distinct layer numbers in 0..{num_layers - 1}")
    return sorted(layers)


class DeepPrompt(nn.Module):
    """Per-layer prefix keys/values, optionally reparameterised by an MLP (P-tuning v2).

    Without reparameterisation the prefix is one parameter [P, n_layers * 2 * kvH * D]; with it,
    a [P, H] embedding goes through Linear-Tanh-Linear to that size (Li & Liang 2021). With ``sites``
    (an encoder-decoder's ``encoder``, ``decoder``, ``cross``) each site of each layer gets its own
    slice, keyed ``(site, layer)``, site-major: [P, n_sites * n_layers * 2 * kvH * D].
    """

    def __init__(self, length: int, layers: list[int], kv_heads: int, head_dim: int, hidden: int, *,
                 reparam: bool = False, reparam_hidden: int = 512, dropout: float = 0.1,
                 init: torch.Tensor | None = None, std: float = 1.0, per_example_dropout: bool = False,
                 sites: tuple[str, ...] = ()):
        """``std``: of the normal init; ``per_example_dropout``: each example of a batch gets its own
        dropout mask on the prefix (P-tuning v2's code) instead of one mask for the batch."""
        super().__init__()
        self.std, self.per_example_dropout = std, per_example_dropout
        self.length, self.layers, self.kv_heads, self.head_dim = length, list(layers), kv_heads, head_dim
        self.reparam = reparam
        self.sites = tuple(sites)
        self.keys: list = [(site, layer) for site in sites for layer in layers] if sites else list(layers)
        width = len(self.keys) * 2 * kv_heads * head_dim
        if reparam:
            self.embedding = nn.Parameter(torch.randn(length, hidden) * std if init is None else init.clone())
            self.mlp = nn.Sequential(nn.Linear(hidden, reparam_hidden), nn.Tanh(), nn.Linear(reparam_hidden, width))
        else:
            self.prefix = nn.Parameter(torch.randn(length, width) * std if init is None else init.clone())
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            (self.embedding if self.reparam else self.prefix).normal_(0.0, self.std)

    def flat(self) -> torch.Tensor:
        """Returns [P, n_layers * 2 * kvH * D]."""
        return self.mlp(self.embedding) if self.reparam else self.prefix

    def forward(self, batch_size: int) -> dict:
        """Returns {layer (with sites: (site, layer)): (keys, values)}, each [B, kvH, P, D]."""
        flat = self.flat()
        if self.per_example_dropout and self.training:
            prefix = self.dropout(flat.expand(batch_size, -1, -1))
            prefix = prefix.view(batch_size, self.length, len(self.keys), 2, self.kv_heads, self.head_dim)
            prefix = prefix.permute(2, 3, 0, 4, 1, 5)  # [layers, 2, B, kvH, P, D]
            return {key: (prefix[i, 0], prefix[i, 1]) for i, key in enumerate(self.keys)}
        prefix = self.dropout(flat)
        prefix = prefix.view(self.length, len(self.keys), 2, self.kv_heads, self.head_dim)
        prefix = prefix.permute(1, 2, 3, 0, 4)  # [layers, 2, kvH, P, D]
        return {
            key: (prefix[i, 0].expand(batch_size, -1, -1, -1), prefix[i, 1].expand(batch_size, -1, -1, -1))
            for i, key in enumerate(self.keys)
        }
