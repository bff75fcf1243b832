"""Generation for a batch whose texts each carry their own task: one frozen causal LM, every row with
its own prompt (input vectors, deep prefixes of any length and layers, or none) and its own options.

As ``bank.PromptBank`` does for prediction, each text is encoded by its task's template, the batch is
left-padded together, every row gets its task's input prompt vectors and deep prefixes (padded to the
longest, masked per row), and one cached step per token runs for the whole batch (``MixedSteps``, the
mixed-task ``decoding.CachedSteps``). Each row keeps its own limits and sampling, with its own seeded
generator: a row generates what ``generate.generate`` gives for its text alone (greedy ids equal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from ptune.batch.encoding import Feature, collate
from ptune.errors import PtuneError
from ptune.infer.decoding import CachedSteps, check_decoder, end_ids, prompt_features
from ptune.infer.detokenize import RowText
from ptune.infer.generate import Limits, settings, write
from ptune.infer.sampling import Sampling
from ptune.model import injection
from ptune.model.prompt_model import PromptModel


@dataclass(frozen=True)
class Request:
    """One text to continue with one task's prompt, and its options (``request`` validates them)."""

    model: PromptModel
    text: str
    limits: Limits = field(default_factory=Limits)
    sampling: Sampling = field(default_factory=Sampling)


def request(model: PromptModel, text: str, **options) -> Request:
    """A ``Request``; ``options`` as ``generate.generate`` takes them (a ``PtuneError`` names a bad one)."""
    if not isinstance(text, str):
        raise PtuneError(f"a text to continue must be a string, got {type(text).__name__}")
    return Request(model, text, *settings(**options))


def check_shared(models: Sequence[PromptModel]) -> None:
    """Refuse models that cannot share one batch: other backbones, a tuned backbone copy, an encoder."""
    first = models[0].backbone
    check_decoder(models[0])
    if getattr(first.config, "is_encoder_decoder", False):  # check_decoder may come to accept them: not here
        raise PtuneError(f"backbone {first.name!r} is an encoder-decoder; mixed-task generation serves decoder-only "
                         "causal LMs (generate with one task at a time)")
    for model in models:
        if model.backbone is not first:
            raise PtuneError(f"prompts on different backbone objects ({first.name!r}, {model.backbone.name!r}) cannot "
                             "share a generation batch; load every prompt on one backbone")
        if model.transformer is not first.model:
            raise PtuneError(f"a {model.config.method} prompt tunes its own backbone copy; it cannot share a batch "
                             "with other tasks (generate with it alone)")


class MixedGeneration:
    """One generation call over requests of any tasks: iterate ``pieces()`` (or call ``run()``), then read
    ``texts``, ``ids`` (new token ids, end-of-sequence excluded), ``finish`` (``generate.FINISH``) and
    ``prompt_tokens`` (the real tokens each prompted text fed the model: template words and text,
    not the virtual prompt positions), one per request."""

    def __init__(self, requests: Sequence[Request]):
        self.requests = list(requests)
        self.models: list[PromptModel] = []
        for r in self.requests:
            if not any(m is r.model for m in self.models):
                self.models.append(r.model)
        if self.models:
            check_shared(self.models)
        self.texts: list[str] = []
        self.ids: list[list[int]] = []
        self.finish: list[str] = []
        self.prompt_tokens: list[int] = []

    def run(self) -> "MixedGeneration":
        for _ in self.pieces():
            pass
        return self

    def _features(self) -> tuple[list[Feature], list[int]]:
        """Each request's prompted text, encoded by its own task, and its task's index in ``models``."""
        features: list[Feature | None] = [None] * len(self.requests)
        tasks = [next(i for i, m in enumerate(self.models) if m is r.model) for r in self.requests]
        for task, model in enumerate(self.models):
            rows = [row for row, t in enumerate(tasks) if t == task]
            for row, feature in zip(rows, prompt_features(model, [self.requests[row].text for row in rows])):
                features[row] = feature
        return features, tasks  # type: ignore[return-value]

    def pieces(self) -> Iterator[tuple[int, str]]:
        """Yields (request index, piece) as pieces are decided; a request's pieces join to its continuation."""
        requests = self.requests
        if not requests:
            return
        backbone = self.models[0].backbone
        tokenizer = backbone.tokenizer
        features, tasks = self._features()
        self.prompt_tokens = [sum(1 for p in f.prompt_index if p < 0) for f in features]
        special = set(tokenizer.all_special_ids)
        rows = [RowText(tokenizer, r.limits.stop, _last_word(f, special)) for r, f in zip(requests, features)]
        self.finish = [""] * len(rows)
        modes = [m.training for m in self.models]
        for model in self.models:
            model.eval()
        try:
            with torch.inference_mode():
                steps = MixedSteps(self.models, tasks, features)
                logits = steps.start()
                ends = [e for e in sorted(end_ids(backbone)) if e < logits.shape[-1]]
                penalised = any(r.sampling.repetition_penalty != 1 for r in requests)
                seen = _text_tokens(features, logits.shape[-1], logits.device) if penalised else None
                generators = [r.sampling.generator(logits.device) for r in requests]
            yield from write(steps, logits, rows, self.finish, [r.limits for r in requests], ends, seen,
                             lambda logits, active, seen: self._choose(logits, active, seen, generators))
        finally:
            for model, mode in zip(self.models, modes):
                model.train(mode)
        self.texts = [row.result for row in rows]
        self.ids = [row.ids for row in rows]

    def _choose(self, logits: torch.Tensor, active: list[int], seen: torch.Tensor | None, generators) -> list[int]:
        """The next token of each active row: one argmax for the plain greedy rows, each other row by its own
        sampling (penalty, temperature, top-k/p) and generator, so that it draws what it would alone."""
        chosen = logits.argmax(-1).tolist()
        for position, row in enumerate(active):
            sampling = self.requests[row].sampling
            if sampling.greedy and sampling.repetition_penalty == 1:
                continue
            row_seen = seen[position : position + 1] if seen is not None else None
            chosen[position] = int(sampling.choose(logits[position : position + 1], row_seen, generators[row])[0])
        return chosen


def _last_word(feature: Feature, special: set[int]) -> int | None:
    """The id of the text's last real token (not a prompt placeholder, not a special token), or None."""
    for token, prompt in zip(reversed(feature.input_ids), reversed(feature.prompt_index)):
        if prompt < 0 and token not in special:
            return token
    return None


def _text_tokens(features: Sequence[Feature], vocab: int, device) -> torch.Tensor:
    """bool [B, V]: the tokens of each prompted text (placeholders excluded), for the repetition penalty."""
    seen = torch.zeros(len(features), vocab, dtype=torch.bool, device=device)
    for row, f in enumerate(features):
        seen[row, [t for t, p in zip(f.input_ids, f.prompt_index) if p < 0 and 0 <= t < vocab]] = True
    return seen


class MixedSteps(CachedSteps):
    """``decoding.CachedSteps`` for rows of different tasks: each row's own input prompt and deep prefixes
    (padded per row, a row attending only its own prefix columns). Run under ``torch.inference_mode()``
    with the models in eval mode."""

    def __init__(self, models: Sequence[PromptModel], tasks: Sequence[int], features: Sequence[Feature]):
        first = models[0]
        self._setup(first, collate(features, pad_id=first.encoder.pad_id, left_pad=True))
        task = torch.tensor(list(tasks), device=self.mask.device)
        self.vectors = _prompt_table(models, task)  # [B, P_max, H] or None
        self.deep = _prefix_table(models, task)  # {layer: (keys, values [B, kvH, P_max, D], attend [B, P_max])}

    def _prompted(self, embeds: torch.Tensor) -> torch.Tensor:
        if self.vectors is None:
            return embeds
        index = self.batch["prompt_index"]
        rows = torch.arange(index.shape[0], device=index.device).unsqueeze(1)
        return torch.where((index >= 0).unsqueeze(-1), self.vectors[rows, index.clamp(min=0)].to(embeds.dtype), embeds)

    def _prefixes(self) -> injection.Prefixes | None:
        return self.deep

    def _keep(self, keep: torch.Tensor) -> None:
        if self.deep is not None:
            self.deep = {layer: tuple(t[keep] for t in entry) for layer, entry in self.deep.items()}


def _prompt_table(models: Sequence[PromptModel], task: torch.Tensor) -> torch.Tensor | None:
    """task: [B] -> each row's input prompt vectors [B, P_max, H] (zeros past its own), or None if no row has any."""
    vectors = {i: m.input_prompt() for i, m in enumerate(models) if m.input_prompt is not None}
    if not vectors:
        return None
    sample = next(iter(vectors.values()))
    table = sample.new_zeros(len(task), max(v.shape[0] for v in vectors.values()), sample.shape[1])
    for i, v in vectors.items():
        table[task == i, : v.shape[0]] = v
    return table


def _prefix_table(models: Sequence[PromptModel], task: torch.Tensor) -> injection.Prefixes | None:
    """task: [B] -> {layer: (keys, values [B, kvH, P_max, D], attend bool [B, P_max])} over every layer any
    row's deep prompt reaches; a row attends only its own task's prefix columns."""
    deep = {i: m.deep_prompt for i, m in enumerate(models) if m.deep_prompt is not None}
    if not deep:
        return None
    backbone = models[0].backbone
    rows, longest = len(task), max(p.length for p in deep.values())
    shape = (rows, backbone.kv_heads, longest, backbone.head_dim)
    out: dict = {}
    for i, prompt in deep.items():
        mine = task == i
        for layer, (keys, values) in prompt(1).items():
            if layer not in out:
                out[layer] = (keys.new_zeros(shape), keys.new_zeros(shape),
                              torch.zeros(rows, longest, dtype=torch.bool, device=keys.device))
            all_keys, all_values, attend = out[layer]
            all_keys[mine, :, : prompt.length] = keys[0]
            all_values[mine, :, : prompt.length] = values[0]
            attend[mine, : prompt.length] = True
    return out


def generate_mixed(items: Sequence[tuple[PromptModel, str]], **options) -> list[str]:
    """Continue each (task's model, text) pair in one mixed-task batch; ``options`` as ``generate.generate``
    (the same for every pair; build ``Request``s with ``request`` for options per pair)."""
    return MixedGeneration([request(model, text, **options) for model, text in items]).run().texts


def generate_mixed_ids(items: Sequence[tuple[PromptModel, str]], **options) -> list[list[int]]:
    """The new token ids of each pair, as ``generate_mixed`` generates them."""
    return MixedGeneration([request(model, text, **options) for model, text in items]).run().ids
