"""Text-to-text: the target of each example is a string the model writes (Lester et al.'s T5 setting).

Training is teacher forcing on the target: cross-entropy of the frozen LM head's logits for each
target token. With a label set, prediction is rank classification (Lester et al. section 3): each
label string's full log-likelihood after the input, the likeliest wins, and the softmax of those
log-likelihoods is how sure it is. Without one (QA answers as text), prediction is greedy
generation, scored by exact match. On an encoder-decoder the input goes to the encoder and the
target to the decoder; on a decoder-only LM the target continues the input.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from ptune.batch.encoding import IGNORE, Feature, collate
from ptune.errors import PtuneError
from ptune.tasks.base import TaskKind

MAX_NEW_TOKENS = 32  # free generation without a label set: the longest answer written


class TextHead(nn.Module):
    """The frozen LM head over target states: [N, U, H] -> vocabulary logits [N, U, V]. No trainable
    parameter; the head is the backbone's, kept as a callable so it is neither a submodule nor saved."""

    def __init__(self, lm_head):
        super().__init__()
        self._lm_head = lm_head

    def forward(self, states: torch.Tensor, batch: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self._lm_head()(states)


def target_ids(model, text: str) -> list[int]:
    """A target string's token ids, ending where the model should stop: an encoder-decoder's tokenizer with its
    special tokens (T5: ``positive </s>``); on a decoder-only LM the words as they continue the input
    (``Ġpositive``), then its end-of-sequence token."""
    tokenizer = model.backbone.tokenizer
    if model.backbone.is_encoder_decoder:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    else:
        ids = model.encoder.label_word_ids([text])[0] + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None
                                                          else [])
    if not ids:
        raise PtuneError(f"target {text!r} has no tokens for this tokenizer; give a non-empty target")
    return ids[: model.config.max_length]


def _padded(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """Token id lists -> [N, U], IGNORE after each row's end."""
    out = torch.full((len(rows), max(len(r) for r in rows)), IGNORE, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class TextToText(TaskKind):
    name = "text_to_text"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "exact_match")
    has_labels = False  # a label set is optional: with one, rank classification; without, generation
    mixable = False
    input_help = "a JSON object with a 'text' field, or plain text"

    def check(self, model) -> None:
        if model.config.head == "verbalizer":
            raise PtuneError("a text_to_text task already reads the LM head over its target words; drop --head verbalizer")
        if model.config.has_input_prompt and model.config.init == "labels" and not model.labels:
            raise PtuneError("--init labels starts the prompt from label words, and this text_to_text task has no label "
                             "set; use --init vocab or --init random")
        model.backbone.lm_head()  # refuses a backbone without a trained LM head when the model is built

    def head(self, model) -> nn.Module:
        return TextHead(model.backbone.lm_head)

    def target(self, model, example) -> int | None:
        """The label's id when the task has a label set (rank classification's loss on dev), else None."""
        label = getattr(example, "label", None)
        return model.label_ids.get(label) if isinstance(label, str) else None

    # -- batches ----------------------------------------------------------------------------------
    def encode(self, model, examples: Sequence) -> list:
        features = model.encoder.encode(examples)
        for feature, example in zip(features, examples):
            label = getattr(example, "label", None)
            feature.target_ids = target_ids(model, label) if isinstance(label, str) else None
        return features

    def collate(self, model, features: Sequence[Feature]) -> dict[str, torch.Tensor]:
        """The inputs as ``batch.encoding.collate`` pads them, with ``target_ids`` [B, U] (when every feature has a
        target) and ``candidate_ids`` [C, U'] (each label's target ids, when the task has a label set)."""
        batch = collate(features, pad_id=model.encoder.pad_id, left_pad=model.encoder.decoder)
        targets = [getattr(f, "target_ids", None) for f in features]
        if all(t is not None for t in targets):
            batch["target_ids"] = _padded(targets)
        if model.labels:
            batch["candidate_ids"] = _padded([target_ids(model, label) for label in model.labels])
        return batch

    # -- forward, loss, decoding ------------------------------------------------------------------
    def forward(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training (or no label set): logits [B, U, V] for the gold target, teacher-forced ([B, 0, V]-free
        [B, 0] when there is none). Evaluating with a label set: each label's log-likelihood [B, C]."""
        size = batch["input_ids"].shape[0]
        rows = torch.arange(size, device=batch["input_ids"].device)
        if model.training or "candidate_ids" not in batch:
            if "target_ids" not in batch:
                return torch.zeros(size, 0, device=rows.device)
            return model.head(model.continuation_states(batch, batch["target_ids"], rows), batch)
        candidates = batch["candidate_ids"]  # [C, U]
        count = candidates.shape[0]
        targets = candidates.repeat(size, 1)  # [B * C, U]: every label after every input
        logits = model.head(model.continuation_states(batch, targets, rows.repeat_interleave(count)), batch)
        return sequence_log_likelihood(logits, targets).view(size, count)

    def loss(self, model, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Teacher forcing: mean cross-entropy over the target tokens; on label scores [B, C] (evaluation),
        cross-entropy of the labels' log-likelihoods against the gold label."""
        if outputs.dim() == 2:
            return nn.functional.cross_entropy(outputs.float(), batch["labels"])
        targets = batch["target_ids"]
        return nn.functional.cross_entropy(outputs.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

    def writes_text(self, model) -> bool:
        """Without a label set the prediction is written text (``infer.generate.greedy_texts``)."""
        return not model.labels

    def decode(self, model, outputs, batch: dict[str, torch.Tensor], *, scored: bool = False) -> list:
        if not model.labels:
            raise PtuneError("a text-to-text prompt without labels writes its answers: predict it with "
                             "ptune.infer.predict (ptune predict), which generates them")
        return super().decode(model, outputs, batch, scored=scored)

    def decode_row(self, model, output: torch.Tensor, num_words: int) -> str:
        """output: [C] label log-likelihoods -> the likeliest label."""
        return model.labels[int(output.argmax(-1))]

    def scores_row(self, model, output: torch.Tensor, num_words: int) -> dict:
        """output: [C] log-likelihoods -> each label's share (softmax over the labels), in label order."""
        return {"probabilities": dict(zip(model.labels, output.float().softmax(-1).tolist()))}

    def gold(self, examples) -> list:
        return [e.label for e in examples]

    def record(self, example, prediction, scores: dict | None = None, *, top_k: int | None = None) -> dict:
        record = {"text": example.text, "target": prediction}
        if scores and "probabilities" in scores:
            ranked = sorted(scores["probabilities"].items(), key=lambda item: -item[1])
            record["probability"] = scores["probabilities"][prediction]
            record["probabilities"] = dict(ranked[:top_k] if top_k is not None else ranked)
        return record


def sequence_log_likelihood(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits: [N, U, V] and targets: [N, U] (IGNORE after the end) -> each row's summed log-probability [N]."""
    logprobs = logits.float().log_softmax(-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logprobs.masked_fill(targets == IGNORE, 0.0).sum(-1)
