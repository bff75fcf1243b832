"""Encoder-decoders (T5, BART) and text targets: the forward passes that read a decoder.

Heads that read one state per input token (classification, tagging, spans, regression, the
verbalizer) get the decoder's states for the input shifted right by one, as transformers'
``BartForSequenceClassification`` and ``T5ForQuestionAnswering`` do: decoder position t has read
tokens 0..t-1 itself and the whole input through cross-attention. Text targets (the text-to-text
kind) get the states that predict each target token: the decoder's for the shifted target on an
encoder-decoder, the positions after the input on a decoder-only LM. Input prompts sit in the
encoder's input; deep prompts at the sites of ``injection.SITES``.
"""

from __future__ import annotations

import torch
from torch import nn

from ptune.model import injection

IGNORE = -100


def is_seq2seq(model: nn.Module) -> bool:
    """Whether ``model`` (a base model) is an encoder-decoder."""
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def start_id(config) -> int:
    """The token a decoder starts from (T5: its pad token; BART: </s>)."""
    start = getattr(config, "decoder_start_token_id", None)
    return start if start is not None else config.pad_token_id


def shift_right(ids: torch.Tensor, start: int, pad: int) -> torch.Tensor:
    """ids: [N, U] (IGNORE where padded) -> the decoder's input [N, U]: ``start``, then ids[:, :-1]."""
    shifted = ids.new_full(ids.shape, pad)
    shifted[:, 1:] = ids[:, :-1].masked_fill(ids[:, :-1] == IGNORE, pad)
    shifted[:, 0] = start
    return shifted


def run(transformer: nn.Module, embeds: torch.Tensor, batch: dict[str, torch.Tensor],
        prefixes: injection.Prefixes | None) -> torch.Tensor:
    """One encoder-decoder pass for heads that read the input's positions.

    embeds: [B, T, E] the encoder's input (prompts in place) -> decoder states [B, T, H] for the input
    shifted right (right padding: the decoder's padded positions come after every real one).
    """
    config = transformer.config
    decoder_ids = shift_right(batch["input_ids"], start_id(config), config.pad_token_id)
    with injection.prefixes_active(prefixes):
        return transformer(inputs_embeds=embeds, attention_mask=batch["attention_mask"], decoder_input_ids=decoder_ids,
                           decoder_attention_mask=batch["attention_mask"], use_cache=False).last_hidden_state


def _rows(prefixes: injection.Prefixes | None, rows: torch.Tensor, *, skip_encoder: bool) -> injection.Prefixes | None:
    """Each prefix entry's rows ``rows`` [N] (the example each target row belongs to)."""
    if prefixes is None:
        return None
    return {key: tuple(part[rows] for part in value) for key, value in prefixes.items()
            if not (skip_encoder and isinstance(key, tuple) and key[0] == "encoder")}


def continuation_states(model, batch: dict[str, torch.Tensor], targets: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """States that predict text targets after each input: position j of row n predicts targets[n, j].

    model: a PromptModel; batch: its inputs [B, T]; targets: [N, U] token ids, IGNORE after each
    target's end; rows: [N], the input each target follows (rank classification: every label after
    every input). Returns [N, U, H]. Encoder-decoders encode each input once.
    """
    transformer = model.transformer
    vectors = model.input_prompt() if model.input_prompt is not None else None
    prefixes = model.deep_prompt(batch["input_ids"].shape[0]) if model.deep_prompt is not None else None
    embeds = prompted_embeddings(transformer, batch, vectors)
    pad = model.encoder.pad_id
    if is_seq2seq(transformer):
        mask = batch["attention_mask"]
        with injection.prefixes_active(prefixes):
            encoded = transformer.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        decoder_ids = shift_right(targets, start_id(transformer.config), pad)
        decoder_mask = torch.ones_like(targets)
        decoder_mask[:, 1:] = (targets[:, :-1] != IGNORE).long()
        with injection.prefixes_active(_rows(prefixes, rows, skip_encoder=True)):
            return transformer(encoder_outputs=(encoded[rows],), attention_mask=mask[rows], decoder_input_ids=decoder_ids,
                               decoder_attention_mask=decoder_mask, use_cache=False).last_hidden_state
    # Decoder-only: the left-padded input, then the target, right-padded.
    length = batch["input_ids"].shape[1]
    target_embeds = transformer.get_input_embeddings()(targets.clamp(min=0).masked_fill(targets == IGNORE, pad))
    inputs = torch.cat([embeds[rows], target_embeds], dim=1)
    mask = torch.cat([batch["attention_mask"][rows], (targets != IGNORE).long()], dim=1)
    with injection.prefixes_active(_rows(prefixes, rows, skip_encoder=False)):
        hidden = transformer(inputs_embeds=inputs, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                             use_cache=False).last_hidden_state
    return hidden[:, length - 1 : length - 1 + targets.shape[1]]


def prompted_embeddings(transformer: nn.Module, batch: dict[str, torch.Tensor], vectors: torch.Tensor | None) -> torch.Tensor:
    """The input's embeddings [B, T, E] with prompt vectors [P, E] where ``batch["prompt_index"]`` >= 0."""
    embeds = transformer.get_input_embeddings()(batch["input_ids"])
    if vectors is None:
        return embeds
    index = batch["prompt_index"]
    return torch.where((index >= 0).unsqueeze(-1), vectors[index.clamp(min=0)].to(embeds.dtype), embeds)


class _GivenDecoder(nn.Module):
    """Stands in for an LM's decoder: returns the states it is handed as its last hidden state."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: torch.Tensor | None = None

    def forward(self, *args, **kwargs):
        from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=self.hidden)


class Seq2SeqLMHead(nn.Module):
    """The family's own *ForConditionalGeneration code above its decoder (T5's rescaling of tied
    embeddings, BART's final logits bias), with the decoder replaced by the states given."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        self.given = _GivenDecoder()
        decoder = lm.get_decoder()
        path = next(name for name, module in lm.named_modules() if module is decoder)
        parent = lm.get_submodule(path.rpartition(".")[0]) if "." in path else lm
        setattr(parent, path.rpartition(".")[2], self.given)
        encoder = lm.get_encoder()  # never run: the encoder's output is given too
        for parameter in encoder.parameters():
            parameter.requires_grad_(False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: [..., H] decoder states -> vocabulary logits [..., V]."""
        shape = hidden.shape
        flat = hidden.reshape(1, -1, shape[-1])  # [1, N, H]
        self.given.hidden = flat
        try:
            ids = torch.zeros(flat.shape[:2], dtype=torch.long, device=hidden.device)
            logits = self.lm(encoder_outputs=(flat[:, :1],), decoder_input_ids=ids, use_cache=False).logits
        finally:
            self.given.hidden = None
        return logits.reshape(*shape[:-1], logits.shape[-1])


def load_lm_head(backbone) -> nn.Module:
    """The frozen LM head of an encoder-decoder backbone (its *ForConditionalGeneration), checked against
    the family's own logits; refused when the checkpoint holds none."""
    from transformers import AutoModelForSeq2SeqLM

    from ptune.errors import PtuneError

    fix = "use --head linear, or a checkpoint saved with its LM head (e.g. t5-small, flan-t5-base, facebook/bart-base)"
    if backbone.path is None:
        raise PtuneError(f"backbone {backbone.name!r}: no weights folder to read a seq2seq LM head from; {fix}")
    try:
        lm, info = AutoModelForSeq2SeqLM.from_pretrained(backbone.path, dtype=torch.float32, output_loading_info=True,
                                                         trust_remote_code=backbone.trust_remote_code)
    except (OSError, ValueError) as error:
        raise PtuneError(f"backbone {backbone.name!r} has no seq2seq LM head ({str(error).splitlines()[0]}); {fix}") from None
    untrained = [key for key in info.get("missing_keys", ()) if "lm_head" in key or "logits_bias" in key]
    if untrained:
        raise PtuneError(f"backbone {backbone.name!r} has no trained LM head (its checkpoint lacks "
                         f"{', '.join(sorted(untrained)[:3])}); {fix}")
    lm.eval().requires_grad_(False)
    ids = torch.arange(1, 4).clamp(max=lm.config.vocab_size - 1).unsqueeze(0)
    with torch.no_grad():  # the backbone's decoder states, and what the family's own LM makes of them
        hidden = backbone.model(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=ids).last_hidden_state
        expected = lm(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=ids).logits
    output = lm.get_output_embeddings()
    if output is not None and getattr(lm.config, "tie_word_embeddings", False):
        output.weight = backbone.model.get_input_embeddings().weight  # tied: share the backbone's matrix
    head = Seq2SeqLMHead(lm).requires_grad_(False).eval()
    with torch.no_grad():
        ok = torch.allclose(head(hidden), expected, atol=1e-4, rtol=1e-4)
    if not ok:
        raise PtuneError(f"backbone {backbone.name!r} ({backbone.config.model_type}): its LM head cannot be run on "
                         f"ptune's decoder states (they differ from the model's own logits); {fix}")
    return head
