"""What a prompt learned: the nearest vocabulary tokens (cosine) of each learned prompt vector.

Input-level prompts are compared with the input embedding table. Deep prompts are compared in
key space at the first layer: the prefix keys against the keys that layer computes for each
vocabulary token on its own (meaningful only when layer 0 is prompted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ptune.model import injection
from ptune.errors import PtuneError
from ptune.model.prompt_model import PromptModel


@dataclass
class Neighbours:
    space: str                      # "input embeddings" or "layer 0 keys"
    tokens: list[list[str]]         # [P][K]
    similarities: list[list[float]]  # [P][K]


def _top_k(vectors: torch.Tensor, table: torch.Tensor, k: int, excluded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """vectors [P, E], table [V, E] -> (cosine [P, K], ids [P, K]), never one of the ``excluded`` ids."""
    sims = torch.nn.functional.normalize(vectors, dim=-1) @ torch.nn.functional.normalize(table, dim=-1).T
    sims[:, excluded] = float("-inf")
    return sims.topk(k, dim=-1)


def _vocabulary_keys(model: PromptModel, chunk: int = 4096) -> torch.Tensor:
    """Layer-0 keys of every vocabulary token alone: [V, kvH * D]."""
    backbone = model.backbone
    vocab = backbone.model.get_input_embeddings().weight.shape[0]
    out = []
    with torch.inference_mode(), injection.capturing_keys(0) as store:
        for start in range(0, vocab, chunk):
            ids = torch.arange(start, min(start + chunk, vocab)).unsqueeze(1)
            backbone.model(input_ids=ids, attention_mask=torch.ones_like(ids))
            keys = store.pop()  # [n, kvH, 1, D]
            out.append(keys[:, :, 0, :].reshape(keys.shape[0], -1))
    return torch.cat(out)


@torch.no_grad()
def nearest_tokens(model: PromptModel, k: int = 5) -> Neighbours:
    """The ``k`` vocabulary tokens nearest to each prompt vector."""
    if k < 1:
        raise PtuneError("--neighbours needs K of at least 1")
    tokenizer = model.backbone.tokenizer
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    if model.input_prompt is not None:
        space, vectors = "input embeddings", model.input_prompt()
        table = model.backbone.model.get_input_embeddings().weight.detach().clone()
    elif model.deep_prompt is not None:
        if 0 not in model.deep_prompt.layers:
            raise PtuneError("neighbour tokens of a deep prompt need layer 0 prompted (keys are compared at layer 0)")
        space = "layer 0 keys"
        keys, _ = model.deep_prompt.eval()(1)[0]  # [1, kvH, P, D]
        vectors = keys[0].permute(1, 0, 2).reshape(model.deep_prompt.length, -1)
        table = _vocabulary_keys(model)
    else:
        raise PtuneError(f"method {model.config.method} has no prompt vectors to inspect")
    if k > table.shape[0] - len(special):
        raise PtuneError(f"--neighbours {k} is more than the {table.shape[0] - len(special)} ordinary tokens of the vocabulary")
    sims, ids = _top_k(vectors.float(), table.float(), k, special)  # never report [PAD]/[CLS]...
    tokens = [[tokenizer.convert_ids_to_tokens(int(i)) for i in row] for row in ids]
    return Neighbours(space, tokens, sims.tolist())


def plot_neighbours(neighbours: Neighbours, path: str | Path, *, title: str = "") -> Path:
    """A table-like heat map: one row per prompt vector, its K nearest tokens with cosine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, k = len(neighbours.tokens), len(neighbours.tokens[0])
    fig, ax = plt.subplots(figsize=(1.6 * k + 1.5, 0.35 * rows + 1.2))
    image = ax.imshow(neighbours.similarities, cmap="viridis", aspect="auto")
    for r in range(rows):
        for c in range(k):
            ax.text(c, r, neighbours.tokens[r][c], ha="center", va="center", fontsize=8, color="white")
    ax.set(xlabel=f"nearest tokens ({neighbours.space}, cosine)", ylabel="prompt vector",
           xticks=range(k), yticks=range(rows))
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
