"""Training a probe on a relation's train split: teacher-forced NLL of the gold object, frozen LM.

Selection is on the dev split's mean gold-object NLL (cheap: one batched forward per epoch).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ptune.errors import PtuneError
from ptune.analysis.probing.learned import ProbePrompt
from ptune.analysis.probing.relations import Fact, object_token_ids
from ptune.analysis.probing.scoring import summed_log_probs

log = logging.getLogger(__name__)


@dataclass
class ProbeTrainConfig:
    """Options of a probe training run (defaults measured on smollm2, capital-of)."""

    epochs: int = 5
    lr: float = 3e-3
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise PtuneError(f"probe training needs epochs >= 0, batch_size >= 1 and lr > 0; got epochs {self.epochs}, "
                             f"batch_size {self.batch_size}, lr {self.lr}")


@dataclass
class ProbeHistory:
    """Per-epoch mean train loss and dev NLL (index 0 of ``dev_nll``: before training)."""

    train_loss: list[float] = field(default_factory=list)
    dev_nll: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def pairs(tokenizer: PreTrainedTokenizerBase, facts: Sequence[Fact]) -> list[tuple[str, list[int]]]:
    """(subject, object token ids) per true object: a fact with several objects gives several pairs."""
    return [(fact.subject, ids) for fact in facts
            for ids in object_token_ids(tokenizer, fact.objects)]


def object_log_likelihood(model: PreTrainedModel, weight: torch.Tensor, probe: ProbePrompt,
                          batch: Sequence[tuple[str, list[int]]]) -> torch.Tensor:
    """log p(object tokens | probe prompt) per pair, teacher forced in one right-padded batch: [B].

    weight: the LM head [V, H]. Position T_i - 1 + k of row i (T_i: its prompt length) predicts
    object token k; the LM head runs only at those positions.
    """
    prompts = probe.embed([subject for subject, _ in batch])
    embeddings = probe.embeddings
    device = weight.device
    rows = [torch.cat([p, embeddings(torch.tensor(ids[:-1], dtype=torch.long, device=device))])
            for p, (_, ids) in zip(prompts, batch)]
    width = max(len(r) for r in rows)
    inputs = torch.zeros(len(rows), width, rows[0].shape[-1], dtype=rows[0].dtype, device=device)
    attention = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    targets = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    target_mask = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    for i, (row, prompt, (_, ids)) in enumerate(zip(rows, prompts, batch)):
        inputs[i, :len(row)] = row
        attention[i, :len(row)] = 1
        start = len(prompt) - 1
        targets[i, start:start + len(ids)] = torch.tensor(ids, device=device)
        target_mask[i, start:start + len(ids)] = True
    hidden = model(inputs_embeds=inputs, attention_mask=attention, use_cache=False).last_hidden_state
    return summed_log_probs(hidden, weight, targets, target_mask)


def mean_nll(model: PreTrainedModel, weight: torch.Tensor, probe: ProbePrompt,
             data: Sequence[tuple[str, list[int]]], batch_size: int = 32) -> float:
    """Mean negative log-likelihood of the gold objects over ``data`` (no gradients)."""
    if not data:
        raise PtuneError("no facts to compute a dev loss on: check the split")
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            total -= float(object_log_likelihood(model, weight, probe, data[start:start + batch_size]).sum())
    return total / len(data)


def train_probe(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, probe: ProbePrompt,
                train: Sequence[Fact], dev: Sequence[Fact], config: ProbeTrainConfig, *,
                weight: torch.Tensor, progress: bool = False) -> ProbeHistory:
    """Adam on the probe's parameters only; keeps the epoch with the lowest dev NLL (epoch 0 is
    the initial probe), restored into ``probe`` at the end. weight: the LM head [V, H]."""
    if not train:
        raise PtuneError("no training facts: check the relation's train split or --limit")
    train_pairs, dev_pairs = pairs(tokenizer, train), pairs(tokenizer, dev or train)
    params = [p for p in probe.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    history = ProbeHistory(dev_nll=[mean_nll(model, weight, probe, dev_pairs)])
    best = copy.deepcopy(probe.state_dict())
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        probe.train()
        order = torch.randperm(len(train_pairs), generator=generator).tolist()
        losses = []
        for first in tqdm(range(0, len(order), config.batch_size), desc=f"probe epoch {epoch}",
                          disable=not progress, leave=False):
            batch = [train_pairs[i] for i in order[first:first + config.batch_size]]
            loss = -object_log_likelihood(model, weight, probe, batch).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        probe.eval()
        history.train_loss.append(sum(losses) / len(losses))
        history.dev_nll.append(mean_nll(model, weight, probe, dev_pairs))
        log.info("epoch %d: train loss %.3f, dev NLL %.3f", epoch, history.train_loss[-1], history.dev_nll[-1])
        if history.dev_nll[-1] < history.dev_nll[history.best_epoch]:
            history.best_epoch = epoch
            best = copy.deepcopy(probe.state_dict())
    probe.load_state_dict(best)
    probe.eval()
    history.seconds = time.perf_counter() - start
    return history
