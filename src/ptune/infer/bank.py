"""One frozen backbone, many task prompts: batches whose examples each carry their own task.

A ``PromptBank`` holds several PromptModels that share one backbone. Each example is encoded by
its task's template, the batch is padded together, every example gets its own task's input
prompt vectors and deep prefixes (padded to the longest, masked per example), and each task's
head reads its own rows: the same outputs as running each task alone, in one forward pass.
Prompt ensembling is the special case of N prompts of one task over repeated examples.
"""

from __future__ import annotations

from typing import Iterator, Literal, Sequence

import torch
from torch import nn

from ptune.batch.encoding import Feature, collate, report_truncation, truncation_collected
from ptune.errors import PtuneError
from ptune.model.prompt_model import PromptModel, run_backbone
from ptune.model.placement import input_device, to_device


class PromptBank(nn.Module):
    """Named PromptModels on one shared frozen backbone."""

    def __init__(self, models: dict[str, PromptModel]):
        super().__init__()
        if not models:
            raise PtuneError("a prompt bank needs at least one prompt")
        first = next(iter(models.values())).backbone
        for name, model in models.items():
            if model.backbone is not first:
                raise PtuneError(f"prompt {name!r} is on another backbone object; load every prompt on one backbone")
            if not model.kind.mixable:
                raise PtuneError(f"prompt {name!r} is for a {model.kind.name} task, which cannot share a mixed-task "
                                 "batch yet; run it on its own")
            if getattr(model, "tuned_backbone", None) is not None:
                raise PtuneError(f"prompt {name!r} tunes its own backbone copy ({model.config.method}); it cannot share one")
        self.models = nn.ModuleDict(models)
        self.backbone = first
        self.names = list(models)

    def encode(self, items: Sequence[tuple[str, object]]) -> list[tuple[int, Feature]]:
        """(task name, example) pairs -> (task index, feature), each encoded by its task's template: one call
        for all the examples of tasks that encode alike (``TaskKind.encoding_key``), such as many tasks
        loaded from prompt files of one shape."""
        index = {name: i for i, name in enumerate(self.names)}
        alike: dict[tuple[int, int], list[int]] = {}
        for i, (name, _) in enumerate(items):
            if name not in index:
                raise PtuneError(f"unknown task {name!r}; loaded: {', '.join(self.names)}")
            model = self.models[name]
            alike.setdefault((id(model.kind), id(model.kind.encoding_key(model))), []).append(i)
        out: list[tuple[int, Feature] | None] = [None] * len(items)
        for rows in alike.values():
            features = self.models[items[rows[0]][0]].encode([items[i][1] for i in rows])
            for i, feature in zip(rows, features):
                out[i] = (index[items[i][0]], feature)
        return out  # type: ignore[return-value]

    def collate(self, encoded: Sequence[tuple[int, Feature]]) -> dict[str, torch.Tensor]:
        encoder = next(iter(self.models.values())).encoder
        batch = collate([f for _, f in encoded], pad_id=encoder.pad_id, left_pad=encoder.decoder)
        batch["task_index"] = torch.tensor([t for t, _ in encoded])
        return to_device(batch, input_device(self.backbone.model))

    def _prompt_table(self, task_index: torch.Tensor) -> torch.Tensor | None:
        """Per-example input prompt vectors [B, P_max, H], or None if no task has any."""
        vectors = {i: self.models[name].input_prompt() for i, name in enumerate(self.names)
                   if self.models[name].input_prompt is not None and (task_index == i).any()}
        if not vectors:
            return None
        longest = max(v.shape[0] for v in vectors.values())
        sample = next(iter(vectors.values()))
        table = sample.new_zeros(len(task_index), longest, sample.shape[1])
        for i, v in vectors.items():
            table[task_index == i, : v.shape[0]] = v
        return table

    def _prefixes(self, task_index: torch.Tensor):
        """Per-example deep prefixes: {layer: (keys, values, attend)}, keys/values [B, kvH, P_max, D]."""
        deep = {i: self.models[name].deep_prompt for i, name in enumerate(self.names)
                if self.models[name].deep_prompt is not None and (task_index == i).any()}
        if not deep:
            return None
        first = next(iter(deep.values()))
        if all(p.keys == first.keys and p.length == first.length for p in deep.values()):
            return self._stacked_prefixes(deep, task_index)
        batch, longest = len(task_index), max(p.length for p in deep.values())
        shape = (batch, self.backbone.kv_heads, longest, self.backbone.head_dim)
        out = {}
        for i, prompt in deep.items():
            rows = task_index == i
            for layer, (keys, values) in prompt(1).items():
                if layer not in out:
                    out[layer] = (keys.new_zeros(shape), keys.new_zeros(shape),
                                  torch.zeros(batch, longest, dtype=torch.bool, device=keys.device))
                all_keys, all_values, attend = out[layer]
                all_keys[rows, :, : prompt.length] = keys[0]
                all_values[rows, :, : prompt.length] = values[0]
                attend[rows, : prompt.length] = True
        return out

    def _stacked_prefixes(self, deep: dict, task_index: torch.Tensor):
        """``_prefixes`` when every deep prompt has the same layers and length (the common case with many
        tasks): one gather of the stacked flat prefixes [n, P, W] instead of assignments per task and layer."""
        first = next(iter(deep.values()))
        flats = torch.stack([prompt.dropout(prompt.flat()) for prompt in deep.values()])  # [n, P, W]
        slot = torch.full((len(self.names),), len(deep), dtype=torch.long)
        slot[list(deep)] = torch.arange(len(deep))
        rows = slot[task_index.cpu()]  # [B]: each example's row of flats; len(deep) where it has none
        bare = bool((rows == len(deep)).any())
        if bare:
            flats = torch.cat([flats, flats.new_zeros(1, *flats.shape[1:])])
        batch, length = len(task_index), first.length
        shape = (batch, length, len(first.keys), 2, self.backbone.kv_heads, self.backbone.head_dim)
        stacked = flats[rows.to(flats.device)].view(shape).permute(2, 3, 0, 4, 1, 5)  # [layers, 2, B, kvH, P, D]
        attend = ((rows < len(deep)).to(flats.device)[:, None].expand(batch, length),) if bare else ()
        return {key: (stacked[i, 0], stacked[i, 1], *attend) for i, key in enumerate(first.keys)}  # key: layer, or (site, layer)

    def task_outputs(self, batch: dict[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, dict]]:
        """One backbone pass; then, per task present: (name, rows [n], head logits, the rows' batch)."""
        task_index = batch["task_index"]
        encoder = next(iter(self.models.values())).encoder
        hidden = run_backbone(self.backbone.model, batch, prompt_vectors=self._prompt_table(task_index),
                              prefixes=self._prefixes(task_index), token_types=encoder.layout.uses_token_types,
                              decoder=encoder.decoder).float()  # fp32 heads over a half-precision backbone
        for i, name in enumerate(self.names):
            rows = (task_index == i).nonzero(as_tuple=True)[0]
            if len(rows):
                sub = {key: value[rows] for key, value in batch.items()}
                yield name, rows, self.models[name].readout(hidden[rows], sub), sub

    def forward(self, batch: dict[str, torch.Tensor]) -> list:
        """Per-example head outputs, cut by each task's kind: [C] logits (classification), [W, C]
        over the words (tagging), a score [] (regression)."""
        out: list = [None] * len(batch["task_index"])
        for name, rows, outputs, sub in self.task_outputs(batch):
            for row, part in zip(rows.tolist(), self.models[name].kind.rows(outputs, sub)):
                out[row] = part
        return out

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean over the tasks in the batch of each task's loss (multi-task training)."""
        losses = [self.models[name].kind.loss(self.models[name], outputs, sub)
                  for name, _, outputs, sub in self.task_outputs(batch)]
        return torch.stack(losses).mean()

    def predict(self, items: Sequence[tuple[str, object]], *, batch_size: int = 64) -> list:
        """Predictions for (task name, example) pairs, batched across tasks."""
        return [prediction for prediction, _ in self.predict_features(items, batch_size=batch_size)]

    def predict_features(self, items: Sequence[tuple[str, object]], *, batch_size: int = 64) -> list[tuple]:
        """(prediction, feature) for (task name, example) pairs, batched across tasks; the feature
        tells what was cut to fit max_length (``Feature.truncated``)."""
        return [(model.kind.decode_row(model, output, feature.num_words), feature)
                for model, _, output, feature in self._outputs(items, batch_size)]

    def predict_scored(self, items: Sequence[tuple[str, object]], *, batch_size: int = 64) -> list[tuple]:
        """(prediction, scores, feature) for (task name, example) pairs, batched across tasks: scores
        as ``TaskKind.scores_row`` gives them (classification: each label's probability)."""
        return [(model.kind.decode_row(model, output, feature.num_words),
                 model.kind.scores_row(model, output, feature.num_words), feature)
                for model, _, output, feature in self._outputs(items, batch_size)]

    def predict_records(self, items: Sequence[tuple[str, object]], *, top_k: int | None = None,
                        batch_size: int = 64) -> list[dict]:
        """The JSON record of each (task name, example) pair, as ``predict(..., scores=True)`` gives
        it: its kind's prediction, its scores (classification: the ``top_k`` likeliest labels when
        given) and what was cut to fit max_length."""
        out = []
        for (name, example), (prediction, scores, feature) in zip(items, self.predict_scored(items, batch_size=batch_size)):
            kind = self.models[name].kind
            out.append({**kind.record(example, prediction, scores, top_k=top_k), **kind.marks([example], [feature])[0]})
        return out

    @torch.no_grad()
    def _outputs(self, items: Sequence[tuple[str, object]], batch_size: int) -> list[tuple]:
        """(model, example, its head outputs, its feature) per pair, in order; one truncation warning
        for the whole call."""
        self.eval()
        out = []
        with truncation_collected() as cut:
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                encoded = self.encode(chunk)
                for (name, example), (_, feature), output in zip(chunk, encoded, self(self.collate(encoded))):
                    out.append((self.models[name], example, output, feature))
        report_truncation([f for features, _ in cut for f in features], [length for _, length in cut])
        return out


@torch.no_grad()
def ensemble_predict(models: Sequence[PromptModel], examples: Sequence, *, combine: Literal["vote", "mean"] = "mean",
                     batch_size: int = 64, scored: bool = False) -> list:
    """Predictions of N prompts for one task, combined, with ONE backbone pass per batch of
    examples: each example is repeated N times, each copy carrying a different prompt. With
    ``scored``, (prediction, scores) pairs: classification probabilities are the members' mean
    probabilities ("mean") or each label's share of the votes ("vote")."""
    kind = models[0].kind
    if not kind.mixable:
        raise PtuneError(f"ensembles of {kind.name} prompts are not supported yet; evaluate each prompt alone")
    labels = models[0].labels
    if any(m.labels != labels or m.kind is not kind for m in models):
        raise PtuneError("ensemble members must be prompts for the same task (same labels and head)")
    bank = PromptBank({str(i): m for i, m in enumerate(models)}).eval()
    n = len(models)
    out = []
    per_batch = max(1, batch_size // n)
    firsts: list = []  # the first member's feature of each example: what the truncation warning counts
    with truncation_collected() as cut:
        for start in range(0, len(examples), per_batch):
            chunk = examples[start : start + per_batch]
            items = [(str(i), example) for example in chunk for i in range(n)]
            encoded = bank.encode(items)
            outputs = bank(bank.collate(encoded))
            for j in range(len(chunk)):
                members = torch.stack(outputs[j * n : (j + 1) * n])  # [N, C], [N, W, C] or [N]
                feature = encoded[j * n][1]
                firsts.append(feature)
                combined = kind.combine(members, combine)
                prediction = kind.decode_row(models[0], combined, feature.num_words)
                out.append((prediction, kind.scores_row(models[0], combined, feature.num_words)) if scored else prediction)
    report_truncation(firsts, [length for _, length in cut])
    return out
