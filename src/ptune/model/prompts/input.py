"""Input-level continuous prompts: Lester's soft prompt and P-tuning's encoded prompt tokens."""

from __future__ import annotations

import torch
from torch import nn

ENCODERS = ("none", "mlp", "lstm")


class InputPrompt(nn.Module):
    """``length`` trainable vectors, optionally passed through a P-tuning prompt encoder.

    The raw vectors (``embedding``) and the encoder are both parameters, so a saved prompt can
    resume training. ``forward()`` returns the [P, H] vectors that replace the template's [P]s.
    """

    def __init__(self, length: int, hidden: int, *, encoder: str = "none", init: torch.Tensor | None = None):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        self.length, self.hidden, self.encoder_kind = length, hidden, encoder
        self.embedding = nn.Parameter(init.clone() if init is not None else torch.zeros(length, hidden))
        if encoder == "lstm":
            # Liu et al.: a bidirectional LSTM over the prompt sequence, then a two-layer MLP.
            self.lstm = nn.LSTM(hidden, hidden // 2, num_layers=2, bidirectional=True, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(2 * (hidden // 2), hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        elif encoder == "mlp":
            self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    def forward(self) -> torch.Tensor:
        """Returns [P, H]."""
        vectors = self.embedding
        if self.encoder_kind == "lstm":
            vectors = self.mlp(self.lstm(vectors.unsqueeze(0))[0].squeeze(0))
        elif self.encoder_kind == "mlp":
            vectors = self.mlp(vectors)
        return vectors

    def fit_output(self, target: torch.Tensor, *, steps: int = 300, lr: float = 1e-2, tolerance: float = 1e-2) -> float:
        """Set the raw vectors to ``target`` [P, H] and train the encoder so that its output starts at
        ``target`` too (else initialising from words would only feed the encoder's input, and the
        words would never reach the model). Stops early once the relative error ||out - target|| /
        ||target|| is below ``tolerance``; returns it.
        """
        with torch.no_grad():
            self.embedding.copy_(target)
        if self.encoder_kind == "none":
            return 0.0
        encoder = [p for name, p in self.named_parameters() if name != "embedding"]
        optimizer = torch.optim.Adam(encoder, lr=lr)
        scale = target.pow(2).mean().clamp(min=1e-12)
        with torch.enable_grad():
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                loss = (self() - target).pow(2).mean() / scale  # squared relative error
                if loss.item() < tolerance ** 2:
                    break
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            return float((self() - target).norm() / target.norm().clamp(min=1e-12))
