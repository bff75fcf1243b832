"""Precision@1 of a causal LM on a relation's facts with a manual discrete template.

Two protocols: ranking the relation's candidates by full log-likelihood, and LAMA's single-token one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ptune.errors import PtuneError
from ptune.analysis.probing.relations import Fact, Relation, object_token_ids
from ptune.analysis.probing.scoring import prompt_embeddings, score_candidates


@dataclass(frozen=True)
class Prediction:
    """The top-ranked object for one fact and whether it is one of the fact's true objects."""

    subject: str
    predicted: str
    objects: tuple[str, ...]
    correct: bool


@dataclass(frozen=True)
class ProbeResult:
    """Precision@1 (fraction of facts whose top prediction is correct) and every prediction."""

    precision: float
    predictions: tuple[Prediction, ...]


def fill_template(template: str, subject: str) -> str:
    """The prompt text for ``subject``: ``template`` with its one ``{subject}`` (or ``{}``) slot filled.

    The object is appended after the prompt as a word after text (``object_token_ids``), so the
    template ends where the object would start, e.g. ``"The capital of {subject} is"``.
    """
    slots = template.count("{subject}") + template.count("{}")
    if slots != 1:
        raise PtuneError(f"template {template!r} needs exactly one {{subject}} slot (found {slots}), "
                         f"e.g. 'The capital of {{subject}} is'")
    return template.replace("{subject}", subject).replace("{}", subject)


def head_weight(model: PreTrainedModel) -> torch.Tensor:
    """The LM head weight [V, H]: the output embeddings, or the input ones when the head is tied."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None:
        return output.weight
    if not getattr(model.config, "tie_word_embeddings", False):
        raise PtuneError(f"{type(model).__name__} has no LM head and its embeddings are not tied: "
                         f"pass head_weight= with the LM head's weight [V, H]")
    return model.get_input_embeddings().weight


def prompt_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> torch.Tensor:
    """Token ids [T] of a prompt text, with the tokenizer's own special tokens (e.g. BOS)."""
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    if len(ids) == 0:
        raise PtuneError(f"prompt {text!r} is empty after tokenisation: give a template with words in it")
    return ids


Prompt = str | Callable[[str], torch.Tensor]


def make_prompt(tokenizer: PreTrainedTokenizerBase, template: Prompt, subject: str, device) -> torch.Tensor:
    """The prompt for ``subject``: ids [T] of a filled manual template, or the embeddings [T, H]
    a learned probe (any callable ``subject -> [T, H]``) returns."""
    if callable(template):
        return template(subject)
    return prompt_ids(tokenizer, fill_template(template, subject)).to(device)


def precision_at_1(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, relation: Relation,
                   facts: Sequence[Fact], template: Prompt, *, weight: torch.Tensor | None = None,
                   batch_size: int = 64, progress: bool = False) -> ProbeResult:
    """P@1 ranking all of ``relation.candidates`` by full log-likelihood after the prompt.

    ``template``: a manual template string, or a learned probe (``subject -> embeddings [T, H]``).
    A fact counts as correct when its top candidate is any of its objects (``borders``: any true
    neighbour). ``weight``: the LM head [V, H], found from ``model`` when not given.
    """
    if not facts:
        raise PtuneError(f"no facts to probe for relation {relation.name!r}: check the split or filters")
    weight = head_weight(model) if weight is None else weight
    candidate_ids = object_token_ids(tokenizer, relation.candidates)
    predictions = []
    with torch.inference_mode():
        for fact in tqdm(facts, desc=f"probe {relation.name}", disable=not progress, leave=False):
            prompt = make_prompt(tokenizer, template, fact.subject, weight.device)
            scores = score_candidates(model, weight, prompt, candidate_ids, batch_size=batch_size)
            predicted = relation.candidates[int(scores.argmax())]
            predictions.append(Prediction(fact.subject, predicted, fact.objects, predicted in fact.objects))
    return _result(predictions)


def single_token_precision_at_1(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                                facts: Sequence[Fact], template: Prompt, *, weight: torch.Tensor | None = None,
                                progress: bool = False) -> ProbeResult:
    """LAMA's P@1: the argmax of the next-token distribution over the whole vocabulary must be the
    (single) token of one of the fact's objects. Filter facts with ``single_token`` first.
    """
    if not facts:
        raise PtuneError("no facts to probe: check the split or the single-token filter")
    weight = head_weight(model) if weight is None else weight
    predictions = []
    with torch.inference_mode():
        for fact in tqdm(facts, desc="probe (single token)", disable=not progress, leave=False):
            targets = {ids[0] for ids in object_token_ids(tokenizer, fact.objects) if len(ids) == 1}
            if not targets:
                raise PtuneError(f"no object of {fact.subject!r} is a single token: filter the relation with "
                                 f"single_token(relation, tokenizer) first")
            embeds = prompt_embeddings(model, make_prompt(tokenizer, template, fact.subject, weight.device))
            hidden = model(inputs_embeds=embeds).last_hidden_state[0, -1]
            token = int((hidden @ weight.T).argmax())
            predicted = tokenizer.decode([token]).strip()
            predictions.append(Prediction(fact.subject, predicted, fact.objects, token in targets))
    return _result(predictions)


def _result(predictions: list[Prediction]) -> ProbeResult:
    return ProbeResult(sum(p.correct for p in predictions) / len(predictions), tuple(predictions))
