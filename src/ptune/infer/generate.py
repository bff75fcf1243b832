"""Text generation from a causal LM with a trained soft or deep prompt in place.

One forward pass over the prompted texts, then one cached step per new token (``decoding``): the
soft prompt sits in the input embeddings, deep prefixes enter every step's attention, and the
key/value cache carries the text. Greedy ids equal a full forward pass per token (``recompute``,
the tested reference). ``generate`` returns texts, ``generate_ids`` token ids, ``stream`` and
``stream_batch`` yield text pieces as they are decided (e.g. for server-sent events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from ptune.errors import PtuneError
from ptune.infer.decoding import CachedSteps, check_decoder, end_ids, prompt_features
from ptune.infer.detokenize import RowText
from ptune.infer.sampling import Sampling
from ptune.model.prompt_model import PromptModel
from ptune.tasks.text_to_text import MAX_NEW_TOKENS as ANSWER_TOKENS

FINISH = ("eos", "stop", "length")  # the end-of-sequence token, a stop string, max_new_tokens


@dataclass(frozen=True)
class Limits:
    """How long a continuation may get: at most ``max_new_tokens``; the end-of-sequence token is
    not chosen before ``min_new_tokens``; it ends just before the first of the ``stop`` strings."""

    max_new_tokens: int = 40
    min_new_tokens: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise PtuneError(f"max_new_tokens (--max-new-tokens) must be an integer >= 1, got {self.max_new_tokens!r}")
        if (isinstance(self.min_new_tokens, bool) or not isinstance(self.min_new_tokens, int)
                or not 0 <= self.min_new_tokens <= self.max_new_tokens):
            raise PtuneError(f"min_new_tokens (--min-new-tokens) must be an integer in 0..max_new_tokens "
                             f"({self.max_new_tokens}), got {self.min_new_tokens!r}")
        bad = [s for s in self.stop if not isinstance(s, str) or not s]
        if bad:
            raise PtuneError(f"stop (--stop) strings must be non-empty text, got {bad[0]!r}")


def settings(*, max_new_tokens: int = 40, min_new_tokens: int = 0, temperature: float = 0.0, top_p: float = 1.0,
             top_k: int | None = None, repetition_penalty: float = 1.0, stop: str | Sequence[str] = (),
             seed: int = 0) -> tuple[Limits, Sampling]:
    """The generation options, validated (a ``PtuneError`` naming the option and its value)."""
    if not isinstance(stop, str) and not isinstance(stop, (list, tuple)):
        raise PtuneError(f"stop (--stop) must be a string or a list of strings, got {stop!r}")
    return (Limits(max_new_tokens, min_new_tokens, (stop,) if isinstance(stop, str) else tuple(stop)),
            Sampling(temperature, top_p, top_k, repetition_penalty, seed))


class Generation:
    """One generation call over a batch of texts: iterate ``pieces()`` (or call ``run()``), then read
    ``texts``, ``ids`` (the new token ids, end-of-sequence excluded) and ``finish`` (one of
    ``FINISH`` per text)."""

    def __init__(self, model: PromptModel, texts: Sequence[str], *, steps=CachedSteps, **options):
        """``options``: see ``settings``; ``steps``: the model side, ``decoding.CachedSteps``
        (``recompute.RecomputeSteps`` is the full-recompute reference of tests and benchmarks)."""
        self.limits, self.sampling = settings(**options)
        check_decoder(model)
        if isinstance(texts, str):
            raise PtuneError("texts must be a list of strings; for one text pass [text] (or use stream())")
        self.model, self.input_texts, self.steps = model, list(texts), steps
        self.texts: list[str] = []
        self.ids: list[list[int]] = []
        self.finish: list[str] = []

    def _steps(self, model: PromptModel, features):
        """The model side: ``self.steps``; on an encoder-decoder its counterpart in ``seq2seq_steps``
        (``CachedSteps``: the cached ``Seq2SeqSteps``; the recompute reference: ``Seq2SeqRecompute``)."""
        if not model.backbone.is_encoder_decoder:
            return self.steps(model, features)
        from ptune.infer.seq2seq_steps import Seq2SeqRecompute, Seq2SeqSteps

        return (Seq2SeqSteps if self.steps is CachedSteps else Seq2SeqRecompute)(model, features)

    def run(self) -> "Generation":
        for _ in self.pieces():
            pass
        return self

    def pieces(self) -> Iterator[tuple[int, str]]:
        """Yields (text index, piece) as pieces are decided; the pieces of a text join to its
        continuation. Torch's grad mode is untouched between pieces."""
        model, limits, sampling = self.model, self.limits, self.sampling
        if not self.input_texts:
            return
        tokenizer = model.backbone.tokenizer
        features = prompt_features(model, self.input_texts)
        ends = sorted(end_ids(model.backbone))
        special = set(tokenizer.all_special_ids)
        seq2seq = model.backbone.is_encoder_decoder  # the decoder starts a new text: no last word to follow
        rows = [RowText(tokenizer, limits.stop, None if seq2seq else _last_word(f, special)) for f in features]
        self.finish = [""] * len(rows)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                steps = self._steps(model, features)
                logits = steps.start()
                ends = [e for e in ends if e < logits.shape[-1]]
                seen = _text_tokens(features, logits.shape[-1], logits.device) if sampling.repetition_penalty != 1 else None
                generator = sampling.generator(logits.device)
            yield from write(steps, logits, rows, self.finish, [limits] * len(rows), ends, seen,
                             lambda logits, active, seen: sampling.choose(logits, seen, generator).tolist())
        finally:
            model.train(was_training)
        self.texts = [row.result for row in rows]
        self.ids = [row.ids for row in rows]


def write(steps, logits: torch.Tensor, rows: list[RowText], finish: list[str], limits: Sequence[Limits],
          ends: list[int], seen: torch.Tensor | None, choose) -> Iterator[tuple[int, str]]:
    """The token loop of a generation: from the first ``logits`` [B, V] of ``steps`` (``CachedSteps`` or
    the like), each row's next token by ``choose(logits, active rows, seen) -> ids``, added to its
    ``RowText`` until an end id, a stop string or its ``limits[row].max_new_tokens``; no end id before
    its ``min_new_tokens``. Yields (row, piece) as pieces are decided; sets ``finish[row]``."""
    active = list(range(len(rows)))
    for step in range(max(limit.max_new_tokens for limit in limits)):
        with torch.inference_mode():
            early = [p for p, row in enumerate(active) if step < limits[row].min_new_tokens]
            if early and ends:  # no end-of-sequence before min_new_tokens
                where, banned = (torch.tensor(v, device=logits.device) for v in (early, ends))
                logits[where[:, None], banned] = -torch.inf
            chosen = choose(logits, active, seen)
        going = []
        for position, (row, token) in enumerate(zip(active, chosen)):
            text, limit = rows[row], limits[row].max_new_tokens
            if token in ends:
                finish[row] = "eos"
            else:
                text.add(token)
                finish[row] = "stop" if text.stopped else "length" if step + 1 == limit else ""
            piece = text.piece(final=bool(finish[row]))
            if piece:
                yield row, piece
            if not finish[row]:
                going.append(position)
        if not going:
            break
        with torch.inference_mode():
            keep = torch.tensor(going, device=logits.device)
            tokens = torch.tensor([chosen[p] for p in going], device=logits.device)
            if seen is not None:
                seen = seen[keep]
                seen[torch.arange(len(going), device=seen.device), tokens] = True
            logits = steps.advance(keep, tokens)
        active = [active[p] for p in going]


def _last_word(feature, special: set[int]) -> int | None:
    """The id of the text's last real token (not a prompt placeholder, not a special token), or None."""
    for token, prompt in zip(reversed(feature.input_ids), reversed(feature.prompt_index)):
        if prompt < 0 and token not in special:
            return token
    return None


def _text_tokens(features, vocab: int, device) -> torch.Tensor:
    """bool [B, V]: the tokens of each prompted text (placeholders excluded), for the repetition penalty."""
    seen = torch.zeros(len(features), vocab, dtype=torch.bool, device=device)
    for row, f in enumerate(features):
        ids = [t for t, p in zip(f.input_ids, f.prompt_index) if p < 0 and 0 <= t < vocab]
        seen[row, ids] = True
    return seen


def generate(model: PromptModel, texts: Sequence[str], **options) -> list[str]:
    """Continue each text after the prompt's template; returns only the new text, one per input.

    Options (validated by ``settings``; see ``Limits`` and ``Sampling``): ``max_new_tokens`` (40),
    ``min_new_tokens`` (0), ``temperature`` (0: greedy), ``top_p`` (1), ``top_k`` (None: all),
    ``repetition_penalty`` (1: off), ``stop`` (a string or strings: the text ends before the first),
    ``seed`` (0). Several texts run as one left-padded batch; greedy output is the same alone or
    in a batch.
    """
    return Generation(model, texts, **options).run().texts


def generate_ids(model: PromptModel, texts: Sequence[str], **options) -> list[list[int]]:
    """The new token ids after each text (end-of-sequence token excluded; with ``stop``, up to the
    token that completed the stop string). Options as ``generate``."""
    return Generation(model, texts, **options).run().ids


def stream_batch(model: PromptModel, texts: Sequence[str], **options) -> Iterator[tuple[int, str]]:
    """Yields (text index, piece) while generating; each text's pieces join to what ``generate``
    returns for it. Options as ``generate``."""
    return Generation(model, texts, **options).pieces()


def stream(model: PromptModel, text: str, **options) -> Iterator[str]:
    """Yields the continuation of one text in pieces as they are generated (a piece is held back
    while it may still become a stop string or an unfinished character). Options as ``generate``."""
    if not isinstance(text, str):
        raise PtuneError(f"stream() continues one text (a string), got {type(text).__name__}; "
                         "for several use stream_batch()")
    pieces = Generation(model, [text], **options).pieces()  # built now: bad options raise here, not at the first piece
    return (piece for _, piece in pieces)


def greedy_texts(model: PromptModel, batch: dict[str, torch.Tensor], max_new_tokens: int = ANSWER_TOKENS) -> list[str]:
    """What a text-to-text prompt without labels predicts for a collated batch of its inputs: the greedy text
    after each (``greedy_ids``, decoded up to the end-of-sequence token)."""
    tokenizer = model.backbone.tokenizer
    eos = tokenizer.eos_token_id
    return [tokenizer.decode(ids[: ids.index(eos)] if eos in ids else ids, skip_special_tokens=True).strip()
            for ids in greedy_ids(model, batch, max_new_tokens)]


@torch.no_grad()
def greedy_ids(model: PromptModel, batch: dict[str, torch.Tensor], max_new_tokens: int = ANSWER_TOKENS) -> list[list[int]]:
    """The likeliest token after each input of the batch, then after that, until the end-of-sequence token
    (kept) or ``max_new_tokens``: one cached step per token (``infer.decoding.CachedSteps`` on decoders,
    ``infer.seq2seq_steps.Seq2SeqSteps`` on encoder-decoders; a deep prompt pre-filled in the cache). The
    same ids as recomputing the whole continuation per token (tests/test_seq2seq.py keeps that loop). Training
    and rank classification score text targets with ``seq2seq.continuation_states`` instead."""
    from ptune.infer.seq2seq_steps import Seq2SeqSteps

    eos = model.backbone.tokenizer.eos_token_id
    steps = (Seq2SeqSteps if model.backbone.is_encoder_decoder else CachedSteps)(model, batch=batch)
    written: list[list[int]] = [[] for _ in range(batch["input_ids"].shape[0])]
    going = torch.arange(len(written))  # the rows still writing, in the order of the last logits
    logits = steps.start()
    for step in range(max_new_tokens):
        tokens = logits.argmax(-1)
        for row, token in zip(going.tolist(), tokens.tolist()):
            written[row].append(token)
        keep = (tokens != eos).nonzero(as_tuple=True)[0] if eos is not None else torch.arange(len(tokens))
        if step + 1 == max_new_tokens or not len(keep):
            break
        going = going[keep.cpu()]
        logits = steps.advance(keep, tokens[keep])
    return written
