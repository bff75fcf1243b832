"""Text generation from a causal LM with a trained soft or deep prompt in place.

Deliberately simple: every step reruns the full forward pass (no key/value cache), so input
prompts, deep prefixes and left padding behave exactly as in training and prediction.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from ptune.data.examples import TextExample
from ptune.batch.encoding import collate
from ptune.errors import PtuneError
from ptune.model.prompt_model import PromptModel


def generate(model: PromptModel, texts: Sequence[str], *, max_new_tokens: int = 40, temperature: float = 0.0,
             seed: int = 0) -> list[str]:
    """Continue each text after the prompt's template; returns only the new text, one per input
    (see ``generate_ids``)."""
    tokenizer = model.backbone.tokenizer
    return [tokenizer.decode(ids, skip_special_tokens=True)
            for ids in generate_ids(model, texts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)]


def generate_ids(model: PromptModel, texts: Sequence[str], *, max_new_tokens: int = 40, temperature: float = 0.0,
                 seed: int = 0) -> list[list[int]]:
    """The new token ids after each text (end-of-sequence token excluded).

    temperature 0 is greedy (deterministic, and a text gives the same output alone or in a batch);
    above 0, tokens are sampled from softmax(logits / temperature) with a generator seeded by
    ``seed``. A row stops at the tokenizer's end-of-sequence token or after ``max_new_tokens``.
    """
    backbone = model.backbone
    if not backbone.is_decoder:
        raise PtuneError(f"backbone {backbone.name!r} is an encoder; generation needs a causal LM (e.g. smollm2)")
    if max_new_tokens < 1:
        raise PtuneError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0:
        raise PtuneError(f"temperature must be 0 (greedy) or positive (sampling), got {temperature}")
    if not texts:
        return []
    tokenizer = backbone.tokenizer
    stop = {i for i in (tokenizer.eos_token_id, getattr(backbone.config, "eos_token_id", None)) if isinstance(i, int)}
    suffix = len(model.encoder.layout.suffix)
    # The text continues where the template ends: drop the tokenizer's closing special tokens.
    features = [dataclasses.replace(f, input_ids=f.input_ids[: len(f.input_ids) - suffix],
                                    prompt_index=f.prompt_index[: len(f.prompt_index) - suffix],
                                    word_index=f.word_index[: len(f.word_index) - suffix],
                                    token_types=f.token_types[: len(f.token_types) - suffix], label=None)
                for f in model.encode([TextExample(text) for text in texts])]
    new: list[list[int]] = [[] for _ in texts]
    active = list(range(len(texts)))
    generator = torch.Generator().manual_seed(seed)
    head = backbone.lm_head()
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            rows = [_extended(features[i], new[i]) for i in active]
            batch = collate(rows, pad_id=model.encoder.pad_id, left_pad=True)
            hidden = model.hidden_states(batch)  # [B, T, H]
            logits = head(hidden[:, -1]).float()  # [B, V]: left padding puts every row's last token last
            if temperature == 0:
                chosen = logits.argmax(-1)
            else:
                chosen = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
            still = []
            for i, token in zip(active, chosen.tolist()):
                if token in stop:
                    continue
                new[i].append(token)
                still.append(i)
            active = still
            if not active:
                break
    model.train(was_training)
    return new


def _extended(feature, ids: list[int]):
    """``feature`` with generated token ``ids`` appended (real tokens: no prompt, no word index)."""
    n = len(feature.input_ids) + len(ids)
    return dataclasses.replace(feature, input_ids=feature.input_ids + ids, prompt_index=feature.prompt_index + [-1] * len(ids),
                               word_index=feature.word_index + [-1] * len(ids),
                               token_types=feature.token_types + [feature.token_types[-1] if feature.token_types else 0] * len(ids),
                               pool=n - 1)
