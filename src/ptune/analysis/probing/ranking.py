"""Ranking candidate objects for ``ptune probe --facts``: candidate sets, a subject split shared by every
relation, each fact's rank, and P@1, P@10 and MRR.

Candidates are the objects of the file, a vocabulary file or the whole vocabulary; LAMA's protocol keeps
single-token objects only, ``multi_token`` ranks whole token sequences by their summed log-probability.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ptune.analysis.probing.probe import Prompt, make_prompt
from ptune.analysis.probing.relations import DEFAULT_RATIOS, SPLITS, Fact, Relation, object_token_ids
from ptune.analysis.probing.scoring import pad_candidates, score_candidates
from ptune.errors import PtuneError

MODES = ("objects", "vocab")


@dataclass(frozen=True)
class Candidates:
    """What a fact's objects are ranked against: a name and a token-id sequence per candidate (no
    two with the same ids), and, built once, ``padded`` (the ids [C, L] and mask [C, L]) and ``where``
    (each id sequence's index)."""

    names: tuple[str, ...]
    ids: tuple[tuple[int, ...], ...]
    padded: tuple[torch.Tensor, torch.Tensor]
    where: dict[tuple[int, ...], int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "where", {seq: i for i, seq in enumerate(self.ids)})

    @classmethod
    def of(cls, names: Sequence[str], ids: Sequence[Sequence[int]]) -> Candidates:
        seen: dict[tuple[int, ...], str] = {}
        for name, seq in zip(names, ids):
            seen.setdefault(tuple(seq), name)
        if not seen:
            raise PtuneError("no candidates left to rank: use --multi-token or a larger candidate set")
        ids_ = tuple(seen)
        return cls(tuple(seen.values()), ids_, pad_candidates(ids_))

    def gold(self, object_ids: Sequence[Sequence[int]]) -> list[int]:
        """Indices of the candidates whose ids are one of ``object_ids``."""
        return [self.where[seq] for seq in map(tuple, object_ids) if seq in self.where]


@dataclass(frozen=True)
class Ranked:
    """One fact's best-ranked true object (rank 1 = top), and the top candidate."""

    subject: str
    objects: tuple[str, ...]
    predicted: str
    rank: int


def prepare(relation: Relation, tokenizer: PreTrainedTokenizerBase, *, mode: str = "objects",
            vocabulary: Sequence[str] | None = None, multi_token: bool = False,
            vocab_size: int | None = None) -> tuple[Relation, Candidates]:
    """The facts to probe and their candidates.

    ``mode``: ``objects`` (every object of the relation), ``vocab`` (every token of the vocabulary,
    plus with ``multi_token`` the relation's multi-token objects) or ``file`` (``vocabulary``'s
    words). Without ``multi_token`` (LAMA) only single-token objects stay, in facts and candidates;
    a fact left with no object among the candidates is dropped and counted in ``skipped``.
    ``vocab_size``: the LM head's rows, when fewer than the tokenizer's tokens (an added pad token).
    """
    if mode == "file" and not vocabulary:
        raise PtuneError("candidates from a vocabulary file need its words")
    if mode not in (*MODES, "file"):
        raise PtuneError(f"candidates must be objects, vocab or a vocabulary file, got {mode!r}")
    if mode == "vocab":
        size = len(tokenizer) if vocab_size is None else min(len(tokenizer), vocab_size)
        names = [tokenizer.decode([t]).strip() for t in range(size)]
        ids: list[list[int]] = [[t] for t in range(size)]
        if multi_token:
            multi = [(o, seq) for o, seq in zip(relation.candidates, object_token_ids(tokenizer, relation.candidates))
                     if len(seq) > 1]
            names += [o for o, _ in multi]
            ids += [seq for _, seq in multi]
    else:
        names = list(relation.candidates if mode == "objects" else vocabulary)
        ids = object_token_ids(tokenizer, names)
        if not multi_token:
            names, ids = [n for n, s in zip(names, ids) if len(s) == 1], [s for s in ids if len(s) == 1]
    pairs = [(name, seq) for name, seq in zip(names, ids) if seq]
    candidates = Candidates.of([name for name, _ in pairs], [seq for _, seq in pairs])
    known = set(candidates.ids)
    facts, lost = [], {"multi-token object": 0, "object not among the candidates": 0}
    for fact in relation.facts:
        kept = tuple(obj for obj, seq in zip(fact.objects, object_token_ids(tokenizer, fact.objects))
                     if tuple(seq) in known)
        if kept:
            facts.append(Fact(fact.subject, kept))
        else:
            single = any(len(seq) == 1 for seq in object_token_ids(tokenizer, fact.objects))
            lost["multi-token object" if not multi_token and not single else "object not among the candidates"] += 1
    skipped = dict(relation.skipped)
    for reason, count in lost.items():
        if count:
            skipped[reason] = skipped.get(reason, 0) + count
    return replace(relation, facts=tuple(facts), skipped=skipped), candidates


def split_subjects(relations: Sequence[Relation], *, seed: int = 0,
                   ratios: tuple[float, float, float] = DEFAULT_RATIOS) -> dict[str, str]:
    """Each subject of any relation -> its split (train, dev or test), the same in every relation; the
    keys come in shuffled order.

    The subjects of all relations are sorted, shuffled with ``random.Random(seed)`` and cut at the
    cumulative ratios as in ``split_facts`` (for one relation the splits are the same): a subject,
    and so every fact about it, is in exactly one split, and no test subject is seen in training.
    """
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise PtuneError(f"split ratios {ratios} must be three non-negative numbers summing to 1, e.g. (0.6, 0.2, 0.2)")
    subjects = sorted({fact.subject for relation in relations for fact in relation.facts})
    random.Random(seed).shuffle(subjects)
    n_train = int(len(subjects) * ratios[0])
    n_dev = int(len(subjects) * (ratios[0] + ratios[1])) - n_train
    cuts = (0, n_train, n_train + n_dev, len(subjects))
    return {subject: split for split, start, end in zip(SPLITS, cuts, cuts[1:]) for subject in subjects[start:end]}


def split_relation(relation: Relation, splits: dict[str, str]) -> dict[str, tuple[Fact, ...]]:
    """``relation``'s facts per split, by ``split_subjects``' map, in its (shuffled) subject order:
    ``--limit N`` takes the same first N as ``split_facts`` does."""
    order = {subject: position for position, subject in enumerate(splits)}
    facts = sorted(relation.facts, key=lambda fact: order[fact.subject])
    return {name: tuple(f for f in facts if splits[f.subject] == name) for name in SPLITS}


def rank_facts(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, facts: Sequence[Fact], prompt: Prompt,
               candidates: Candidates, *, weight: torch.Tensor, batch_size: int = 64,
               progress: bool = False) -> list[Ranked]:
    """Each fact's rank: 1 + the number of candidates scored above its best true object.

    Scores are the summed log-probabilities of a candidate's tokens after the prompt (a manual
    template or a learned probe); single-token candidates cost one forward pass for all of them.
    weight: the LM head [V, H].
    """
    if not facts:
        raise PtuneError("no facts to rank: check the split, --limit and the candidate filters")
    device = weight.device
    padded = tuple(t.to(device) for t in candidates.padded)
    ranked = []
    with torch.inference_mode():
        for fact in tqdm(facts, desc="rank", disable=not progress, leave=False):
            gold = candidates.gold(object_token_ids(tokenizer, fact.objects))
            if not gold:
                raise PtuneError(f"no object of {fact.subject!r} is among the candidates: filter facts with prepare()")
            scores = score_candidates(model, weight, make_prompt(tokenizer, prompt, fact.subject, device),
                                      candidates.ids, batch_size=batch_size, padded=padded, gold=gold)
            best = scores[gold].max()
            ranked.append(Ranked(fact.subject, fact.objects, candidates.names[int(scores.argmax())],
                                 1 + int((scores > best).sum())))
    return ranked


def rank_metrics(ranks: Sequence[int]) -> dict[str, float]:
    """P@1 and P@10 (fraction of facts ranked at most 1 / 10) and MRR (mean of 1/rank)."""
    if not ranks:
        raise PtuneError("no ranks to score")
    if any(r < 1 for r in ranks):
        raise PtuneError(f"ranks start at 1, got {min(ranks)}")
    count = len(ranks)
    return {"p_at_1": sum(r == 1 for r in ranks) / count, "p_at_10": sum(r <= 10 for r in ranks) / count,
            "mrr": sum(1 / r for r in ranks) / count}
