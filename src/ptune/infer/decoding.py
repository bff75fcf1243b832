"""The model side of generation on a causal LM: one pass over the prompted texts, then one cached step
per new token, each returning the next-token logits of the rows still generating.

Input prompts enter the embeddings of the first pass only (their keys/values then live in the
cache); deep prefixes enter every step through ptune's prefix-aware attention (``injection``), while
a transformers ``DynamicCache`` carries the keys/values of the real tokens. So every layer's cache
holds the same positions whichever layers a deep prompt reaches, sliding-window layers never evict
a prefix, and each step computes exactly what a full forward pass computes at its last position.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Sequence

import torch
from transformers import DynamicCache

from ptune.batch.encoding import Feature, collate
from ptune.data.examples import TextExample
from ptune.errors import PtuneError
from ptune.model import injection
from ptune.model.prompt_model import PromptModel


def check_decoder(model: PromptModel) -> None:
    """Refuse a backbone that cannot write text: an encoder (an encoder-decoder writes with its decoder,
    ``infer/seq2seq_steps.py``)."""
    backbone = model.backbone
    if not backbone.is_decoder and not backbone.is_encoder_decoder:
        raise PtuneError(f"backbone {backbone.name!r} is an encoder; generation needs a causal LM (e.g. smollm2) or "
                         "an encoder-decoder (T5, BART)")


def prompt_features(model: PromptModel, texts: Sequence[str]) -> list[Feature]:
    """Each text through the prompt's template, without the tokenizer's closing special tokens: the
    continuation starts where the template ends (an encoder-decoder's encoder reads them: its decoder
    writes the continuation)."""
    suffix = 0 if model.backbone.is_encoder_decoder else len(model.encoder.layout.suffix)
    return [dataclasses.replace(f, input_ids=f.input_ids[: len(f.input_ids) - suffix],
                                prompt_index=f.prompt_index[: len(f.prompt_index) - suffix],
                                word_index=f.word_index[: len(f.word_index) - suffix],
                                token_types=f.token_types[: len(f.token_types) - suffix], label=None)
            for f in model.encode([TextExample(text) for text in texts])]


def end_ids(backbone) -> set[int]:
    """The ids that end a text: the tokenizer's end-of-sequence token and the config's (one or a list)."""
    found = set()
    for value in (backbone.tokenizer.eos_token_id, getattr(backbone.config, "eos_token_id", None)):
        found.update(v for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, int))
    return found


def device_of(model: PromptModel) -> torch.device:
    """Where the weights of the network the model runs are."""
    return model.transformer.get_input_embeddings().weight.device


class CachedSteps:
    """Next-token logits for a batch of prompted texts, one cached forward step per token.

    ``start()`` runs the left-padded texts once (positions counted from each row's first real token,
    as ``run_backbone`` counts them) and fills the cache; ``advance(keep, tokens)`` drops the rows
    not in ``keep`` and feeds each kept row its new token. Must run under ``torch.inference_mode()``
    (or ``no_grad``) with the model in eval mode.
    """

    def __init__(self, model: PromptModel, features: Sequence[Feature] | None = None, *,
                 batch: dict[str, torch.Tensor] | None = None):
        """The texts as ``features``, or as a ``batch`` already collated with left padding."""
        self.model = model
        self._setup(model, batch if batch is not None else collate(features, pad_id=model.encoder.pad_id,
                                                                   left_pad=True))
        self.deep = model.deep_prompt(1) if model.deep_prompt is not None else None  # {layer: ([1, kvH, P, D], ...)}

    def _setup(self, model: PromptModel, batch: dict[str, torch.Tensor]) -> None:
        """What every cached run keeps: ``model``'s network and LM head, the batch on its device, the cache."""
        self.backbone, self.transformer = model.backbone, model.transformer
        device = device_of(model)
        self.batch = {k: v.to(device) for k, v in batch.items()}
        self.cache = DynamicCache(config=self.transformer.config)
        self.keyword = cache_keyword(self.transformer)
        self.token_types = model.encoder.layout.uses_token_types
        self.head = model.backbone.lm_head()
        self.mask = self.batch["attention_mask"]  # [b, S]: pads 0, every real (and generated) token 1
        self.positions = None  # [b]: each row's last position
        self.last_type = None  # [b]: each row's last token type (families with token types)

    def start(self) -> torch.Tensor:
        """The logits after each text: [B, V] (float)."""
        batch = self.batch
        embeds = self._prompted(self.transformer.get_input_embeddings()(batch["input_ids"]))
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        if "position_offset" in batch:  # PEFT's prefix-tuning layout: positions start after the prefix
            positions = positions + batch["position_offset"].unsqueeze(1)
        self.positions = positions[:, -1]
        extra = {}
        if self.token_types:
            extra["token_type_ids"] = batch["token_type_ids"]
            self.last_type = batch["token_type_ids"][:, -1]
        logits = self._run(inputs_embeds=embeds, position_ids=positions, **extra)
        if self.cache.get_seq_length() == 0:
            backbone = self.backbone
            raise PtuneError(f"backbone {backbone.name!r} ({backbone.config.model_type}) keeps no key/value cache in "
                             "its forward pass, which generation needs; use a causal LM that does (e.g. smollm2)")
        return logits

    def advance(self, keep: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """keep: [b] indices of the rows (of the last call) that go on; tokens: [b] their new tokens ->
        the logits after them, [b, V]."""
        if keep.numel() != self.mask.shape[0]:
            self.cache.batch_select_indices(keep)
            self.mask, self.positions = self.mask[keep], self.positions[keep]
            if self.last_type is not None:
                self.last_type = self.last_type[keep]
            self._keep(keep)
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(keep), 1)], dim=1)
        self.positions = self.positions + 1
        extra = {"token_type_ids": self.last_type[:, None]} if self.last_type is not None else {}
        return self._run(input_ids=tokens[:, None], position_ids=self.positions[:, None], **extra)

    # -- where the prompt goes: one model's here; per row in ``mixed_generation.MixedSteps`` ---------------------
    def _prompted(self, embeds: torch.Tensor) -> torch.Tensor:
        """The texts' embeddings [B, T, H] with the input prompt's vectors at its placeholders."""
        if self.model.input_prompt is None:
            return embeds
        vectors, index = self.model.input_prompt(), self.batch["prompt_index"]
        return torch.where((index >= 0).unsqueeze(-1), vectors[index.clamp(min=0)], embeds)

    def _prefixes(self) -> injection.Prefixes | None:
        """The deep prefixes of the rows still generating (one prompt's, broadcast to every row)."""
        rows = self.mask.shape[0]
        return ({layer: tuple(t.expand(rows, -1, -1, -1) for t in pair) for layer, pair in self.deep.items()}
                if self.deep is not None else None)

    def _keep(self, keep: torch.Tensor) -> None:
        """Keep the per-row prompt state of rows ``keep`` (none here: one prompt serves every row)."""

    def _run(self, **inputs) -> torch.Tensor:
        with injection.prefixes_active(self._prefixes()):
            hidden = self.transformer(attention_mask=self.mask, use_cache=True, **{self.keyword: self.cache},
                                      **inputs).last_hidden_state
        return self.head(hidden[:, -1]).float()


def cache_keyword(transformer: torch.nn.Module) -> str:
    """``cache`` (transformers 5.24 on; ``past_key_values`` is deprecated there), or ``past_key_values``
    for a model whose forward does not take ``cache``."""
    return "cache" if "cache" in inspect.signature(transformer.forward).parameters else "past_key_values"
