"""The model side of generation on an encoder-decoder (T5, BART): the prompted input is encoded once,
then the decoder writes one cached step per new token.

Input prompts sit in the encoder's input; encoder prefixes enter the one encoder pass, decoder and
cross-attention prefixes every decoder step (``injection``), while a transformers
``EncoderDecoderCache`` carries the real tokens' keys/values (the cross-attention ones computed once).
``Seq2SeqRecompute`` is the reference: every step reruns the whole decoder over the tokens so far, as
training computes it (``PromptModel.continuation_states``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import DynamicCache, EncoderDecoderCache

from ptune.batch.encoding import Feature, collate
from ptune.infer.decoding import cache_keyword
from ptune.model import injection, seq2seq
from ptune.model.prompt_model import PromptModel


def _prefixes(deep: dict | None, rows: int, encoder: bool) -> dict | None:
    """The deep prompt's (site, layer) entries of the encoder (or of the decoder and cross-attention),
    expanded to ``rows`` rows."""
    if deep is None:
        return None
    return {key: tuple(t.expand(rows, -1, -1, -1) for t in pair) for key, pair in deep.items()
            if (key[0] == "encoder") == encoder}


class Seq2SeqSteps:
    """``decoding.CachedSteps``'s interface for encoder-decoders: ``start()`` encodes the texts and returns
    the logits of the first target token; ``advance(keep, tokens)`` keeps rows ``keep`` and feeds each its
    new token. Under ``torch.inference_mode()`` with the model in eval mode."""

    def __init__(self, model: PromptModel, features: Sequence[Feature] | None = None, *,
                 batch: dict[str, torch.Tensor] | None = None):
        """The texts as ``features``, or as a ``batch`` already collated (the encoder's mask covers its padding)."""
        self.model, self.transformer = model, model.transformer
        device = model.transformer.get_input_embeddings().weight.device
        if batch is None:
            batch = collate(features, pad_id=model.encoder.pad_id, left_pad=False)
        self.batch = {k: v.to(device) for k, v in batch.items()}
        self.deep = model.deep_prompt(1) if model.deep_prompt is not None else None
        config = self.transformer.config
        self.cache = EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
        self.head = model.backbone.lm_head()
        self.encoded = self.mask = None

    def start(self) -> torch.Tensor:
        """The logits of each text's first target token: [B, V] (float)."""
        model, batch = self.model, self.batch
        vectors = model.input_prompt() if model.input_prompt is not None else None
        embeds = seq2seq.prompted_embeddings(self.transformer, batch, vectors)
        self.mask = batch["attention_mask"]
        with injection.prefixes_active(_prefixes(self.deep, self.mask.shape[0], encoder=True)):
            self.encoded = self.transformer.get_encoder()(inputs_embeds=embeds, attention_mask=self.mask).last_hidden_state
        start = torch.full((self.mask.shape[0], 1), seq2seq.start_id(self.transformer.config), device=self.mask.device)
        return self._run(start)

    def advance(self, keep: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """keep: [b] indices of the rows that go on; tokens: [b] their new tokens -> the next logits [b, V]."""
        if keep.numel() != self.mask.shape[0]:
            self.cache.batch_select_indices(keep)
            self.encoded, self.mask = self.encoded[keep], self.mask[keep]
        return self._run(tokens[:, None])

    def _run(self, tokens: torch.Tensor) -> torch.Tensor:
        keyword = cache_keyword(self.transformer)
        with injection.prefixes_active(_prefixes(self.deep, tokens.shape[0], encoder=False)):
            hidden = self.transformer(encoder_outputs=(self.encoded,), attention_mask=self.mask, decoder_input_ids=tokens,
                                      use_cache=True, **{keyword: self.cache}).last_hidden_state
        return self.head(hidden[:, -1]).float()


class Seq2SeqRecompute:
    """The same interface by full recomputation: each step runs the encoder and the whole decoder over the
    tokens written so far (the path training and rank classification take)."""

    def __init__(self, model: PromptModel, features: Sequence[Feature]):
        self.model, self.rows = model, list(features)
        self.written: list[list[int]] = [[] for _ in self.rows]

    def start(self) -> torch.Tensor:
        return self._logits()

    def advance(self, keep: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        self.rows = [self.rows[i] for i in keep.tolist()]
        self.written = [self.written[i] + [token] for i, token in zip(keep.tolist(), tokens.tolist())]
        return self._logits()

    def _logits(self) -> torch.Tensor:
        model = self.model
        batch = model.collate(self.rows)
        # One more target column than written: the state at that position predicts the next token (its value
        # is never read).
        targets = torch.tensor([ids + [model.encoder.pad_id] for ids in self.written], device=batch["input_ids"].device)
        rows = torch.arange(len(self.rows), device=targets.device)
        states = model.continuation_states(batch, targets, rows)
        return model.backbone.lm_head()(states[:, -1]).float()
