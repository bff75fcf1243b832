"""Ranking candidate objects by the log-likelihood of their full token sequence after a prompt.

The prompt runs once; all candidates are then scored in batches that reuse its key/value cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

from ptune.errors import PtuneError


def prompt_embeddings(model: PreTrainedModel, prompt: torch.Tensor) -> torch.Tensor:
    """Input embeddings of a prompt given as token ids [T] (long) or already as embeddings [T, H].

    Returns [1, T, H]: the form the model takes, so that continuous (P-tuning) vectors pass through.
    """
    if prompt.dim() == 1 and not prompt.is_floating_point():
        return model.get_input_embeddings()(prompt)[None]
    if prompt.dim() == 2 and prompt.is_floating_point():
        return prompt[None]
    raise PtuneError(f"prompt must be token ids [T] or embeddings [T, H], got a {prompt.dtype} tensor of shape "
                     f"{tuple(prompt.shape)}: pass one example, without a batch dimension")


def pad_candidates(candidate_ids: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded candidate ids [C, L] and their mask [C, L] (True = a real token)."""
    if not candidate_ids or any(len(ids) == 0 for ids in candidate_ids):
        raise PtuneError("every candidate needs at least one token: drop empty candidate strings")
    length = max(len(ids) for ids in candidate_ids)
    ids = torch.full((len(candidate_ids), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(candidate_ids), length, dtype=torch.bool)
    for row, tokens in enumerate(candidate_ids):
        ids[row, :len(tokens)] = torch.as_tensor(list(tokens), dtype=torch.long)
        mask[row, :len(tokens)] = True
    return ids, mask


def token_log_probs(hidden: torch.Tensor, head_weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under the LM head: hidden [..., H], head_weight [V, H], targets [...] -> [...]."""
    logits = hidden @ head_weight.T
    return logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)


def summed_log_probs(hidden: torch.Tensor, head_weight: torch.Tensor, targets: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """Per-row sum of log p(target) over real positions: hidden [B, L, H], targets/mask [B, L] -> [B].

    The LM head runs only where ``mask`` is True, not on padding.
    """
    rows = mask.nonzero()[:, 0]
    log_probs = token_log_probs(hidden[mask], head_weight, targets[mask])
    return torch.zeros(len(hidden), dtype=log_probs.dtype, device=log_probs.device).index_add(0, rows, log_probs)


def length_sorted_chunks(candidate_ids: Sequence[Sequence[int]], batch_size: int,
                         min_length: int = 1) -> list[list[int]]:
    """Indices of candidates with at least ``min_length`` tokens, shortest first, ``batch_size`` at a
    time: candidates of similar length share a batch, so right-padding stays small."""
    if batch_size < 1:
        raise PtuneError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted((i for i, ids in enumerate(candidate_ids) if len(ids) >= min_length),
                   key=lambda i: len(candidate_ids[i]))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def _cache_layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    # keys/values per layer, each [1, kvH, T, D]
    return [(layer.keys, layer.values) for layer in cache.layers]


def _repeated_cache(layers: list[tuple[torch.Tensor, torch.Tensor]], count: int, config) -> DynamicCache:
    # A fresh cache per batch (a forward pass appends to it in place); expand() copies nothing.
    return DynamicCache([(k.expand(count, *k.shape[1:]), v.expand(count, *v.shape[1:])) for k, v in layers],
                        config=config)


def score_candidates(model: PreTrainedModel, head_weight: torch.Tensor, prompt: torch.Tensor,
                     candidate_ids: Sequence[Sequence[int]], *, batch_size: int = 64,
                     padded: tuple[torch.Tensor, torch.Tensor] | None = None,
                     gold: Sequence[int] | None = None) -> torch.Tensor:
    """Sum of log-probabilities of each candidate's tokens after ``prompt``: returns [C].

    model: a decoder body (e.g. ``LlamaModel``) returning ``last_hidden_state``; head_weight: [V, H]
    (the input embeddings when the LM head is tied); prompt: ids [T] or embeddings [T, H];
    candidate_ids: C token lists of any lengths >= 1. The prompt runs once and predicts every
    candidate's first token; candidates of two or more tokens then run ``batch_size`` at a time
    (grouped by length, right-padded, with an attention mask) on the prompt's key/value cache
    repeated along the batch, token k predicted from token k-1. Gradients flow to ``prompt`` when
    it is embeddings that need them. ``padded``: ``pad_candidates(candidate_ids)`` made once by a
    caller that scores the same candidates for many prompts (e.g. a whole vocabulary).

    ``gold``: the indices of the true objects, for a caller that needs only their rank and the top
    candidate. The gold candidates are scored first; a candidate whose first token already scores at
    most the best of them cannot end above it (each further token only lowers the sum), so it is not
    run on and its score is -inf. The gold scores, every score above the best of them, and so each
    rank and the argmax, are those of the full scoring.
    """
    embeds = prompt_embeddings(model, prompt)
    out = model(inputs_embeds=embeds, use_cache=True)
    layers = _cache_layers(out.cache if getattr(out, "cache", None) is not None else out.past_key_values)
    ids, mask = (t.to(embeds.device) for t in (padded or pad_candidates(candidate_ids)))
    scores = (out.last_hidden_state[0, -1] @ head_weight.T).log_softmax(-1)[ids[:, 0]]
    run_on = [i for i, tokens in enumerate(candidate_ids) if len(tokens) >= 2]
    if gold is not None:
        gold_set = set(gold)
        scores = _run_on(model, head_weight, layers, embeds.shape[1], ids, mask, candidate_ids, scores,
                         [i for i in run_on if i in gold_set], batch_size)
        is_gold = torch.zeros(len(scores), dtype=torch.bool, device=scores.device)
        is_gold[list(gold_set)] = True
        beaten = ~is_gold & (scores <= scores[is_gold].max())  # cannot end above the best gold object
        run_on = [i for i in run_on if not is_gold[i] and not beaten[i]]
        scores = scores.masked_fill(beaten, float("-inf"))
    return _run_on(model, head_weight, layers, embeds.shape[1], ids, mask, candidate_ids, scores, run_on, batch_size)


def _run_on(model: PreTrainedModel, head_weight: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]],
            length: int, ids: torch.Tensor, mask: torch.Tensor, candidate_ids: Sequence[Sequence[int]],
            scores: torch.Tensor, which: Sequence[int], batch_size: int) -> torch.Tensor:
    """``scores`` with the log-probabilities of tokens 2.. of the candidates ``which`` added, run on the
    prompt's cached keys/values (``length`` positions) in length-grouped batches."""
    if not which:
        return scores
    chosen = [candidate_ids[i] for i in which]
    for chunk in length_sorted_chunks(chosen, batch_size, min_length=2):
        chunk = [which[i] for i in chunk]
        rows = torch.tensor(chunk, device=ids.device)
        width = len(candidate_ids[chunk[-1]])
        chunk_ids, chunk_mask = ids[rows, :width], mask[rows, :width]
        attention = torch.cat([chunk_mask.new_ones(len(chunk), length), chunk_mask[:, :-1]], dim=1).long()
        cache = {_cache_argument(model): _repeated_cache(layers, len(chunk), model.config)}
        hidden = model(input_ids=chunk_ids[:, :-1], attention_mask=attention, use_cache=True, **cache).last_hidden_state
        rest = summed_log_probs(hidden, head_weight, chunk_ids[:, 1:], chunk_mask[:, 1:])
        scores = scores.index_add(0, rows, rest)
    return scores


def score_candidates_uncached(model: PreTrainedModel, head_weight: torch.Tensor, prompt: torch.Tensor,
                              candidate_ids: Sequence[Sequence[int]], *, batch_size: int = 64) -> torch.Tensor:
    """The same scores as :func:`score_candidates` without a cache: returns [C].

    Every prompt+candidate sequence runs in full (the same length-grouped, right-padded batches):
    the baseline the cached version is measured and tested against.
    """
    embeds = prompt_embeddings(model, prompt)[0]
    ids, mask = (t.to(embeds.device) for t in pad_candidates(candidate_ids))
    length = embeds.shape[0]
    scores = torch.zeros(len(ids), dtype=embeds.dtype, device=embeds.device)
    for chunk in length_sorted_chunks(candidate_ids, batch_size):
        rows = torch.tensor(chunk, device=ids.device)
        width = len(candidate_ids[chunk[-1]])
        chunk_ids, chunk_mask = ids[rows, :width], mask[rows, :width]
        count = len(chunk)
        inputs = torch.cat([embeds.expand(count, *embeds.shape), model.get_input_embeddings()(chunk_ids)], dim=1)
        attention = torch.cat([chunk_mask.new_ones(count, length), chunk_mask], dim=1).long()
        hidden = model(inputs_embeds=inputs, attention_mask=attention, use_cache=False).last_hidden_state
        # Positions T-1 .. T+L-2 predict candidate tokens 1 .. L.
        scores = scores.index_add(0, rows, summed_log_probs(hidden[:, length - 1:-1], head_weight, chunk_ids, chunk_mask))
    return scores


def _cache_argument(model) -> str:
    """``cache`` (transformers 5.24 on; ``past_key_values`` is deprecated there and goes in 5.40), or
    ``past_key_values`` for a model whose forward does not take ``cache`` yet."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
