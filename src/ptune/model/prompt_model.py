"""Where a prompt, a backbone and a head compose: one model class for every method and task.

Input-level prompts replace the template's placeholder embeddings; deep prompts are handed to
the attention layers through ``injection``; the head reads the final hidden states.
"""

from __future__ import annotations

import contextlib
import logging
import copy
from collections import Counter
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from ptune.model import injection, placement, seq2seq
from ptune.model.backbones import Backbone
from ptune.config import MethodConfig
from ptune.batch.encoding import Encoder, Feature
from ptune.errors import PtuneError
from ptune.tasks import TaskKind, get_kind
from ptune.heads import VerbalizerHead
from ptune.model.depth_cache import find_layers, layer_list, starting_at
from ptune.model.prompts import DeepPrompt, InputPrompt, from_labels, parse_layers, random_uniform, sampled_vocab
from ptune.batch.templates import default_template, parse_template

log = logging.getLogger(__name__)


def _check_positions(backbone: Backbone, config: MethodConfig) -> None:
    """Refuse a max_length past the positions the backbone reads: inputs that long would fail or read
    positions it never learned. PEFT's layout shifts the positions by the deep prompt's length."""
    limit, shift = backbone.max_positions, config.length if config.peft_layout and config.method == "deep" else 0
    if limit is not None and config.max_length + shift > limit:
        shifted = f" after the {shift} positions PEFT's layout shifts by" if shift else ""
        raise PtuneError(f"max_length {config.max_length} is more than backbone {backbone.name!r} "
                         f"({backbone.config.model_type}) reads: {limit} positions{shifted}; give --max-length "
                         f"{limit - shift} or less")


class PromptModel(nn.Module):
    """backbone (frozen unless fine-tuning) + optional input prompt + optional deep prompt + the task
    kind's head. Everything that depends on the kind (features, head, loss, decoding) goes through
    ``self.kind``."""

    def __init__(self, backbone: Backbone, config: MethodConfig, labels: Sequence[str], *,
                 kind: str | TaskKind = "classification", pair: bool = False, metric: str | None = None):
        """``labels``: the label set (empty for kinds without one: qa, regression); ``pair``: examples
        are text pairs; ``metric``: one of the kind's metrics (default its first; qa: squad_v2 allows
        "no answer")."""
        super().__init__()
        self.backbone_ref = backbone  # not a submodule: its weights are not ours to save
        self.config = config
        self.kind = get_kind(kind)
        self.metric = metric or self.kind.metrics[0]
        if self.metric not in self.kind.metrics:
            raise PtuneError(f"metric {self.metric!r} does not score {self.kind.name} tasks; "
                             f"use {' or '.join(self.kind.metrics)}")
        self.labels = list(labels)
        self.label_ids = {label: i for i, label in enumerate(self.labels)}
        template = config.template or default_template(config.method, prompt_length=config.length,
                                                       pair=pair or self.kind.pairs, leading=config.peft_layout)
        self.template = parse_template(template)
        peft = config.peft_layout
        _check_positions(backbone, config)
        self.encoder = Encoder(backbone.tokenizer, self.template, words=self.kind.word_level,
                               target=lambda example: self.kind.target(self, example),
                               decoder=backbone.is_decoder, max_length=config.max_length,
                               prompts_before_specials=peft and config.has_input_prompt,
                               position_offset=config.length if peft and config.method == "deep" else 0)
        hidden = backbone.hidden_size
        self.input_prompt = (InputPrompt(self.template.num_prompts, backbone.embedding_size,
                                         encoder=config.encoder if config.method == "ptuning" else "none")
                             if config.has_input_prompt and self.template.num_prompts else None)
        encoder_only = not (backbone.is_decoder or backbone.is_encoder_decoder)
        self.deep_prompt = (DeepPrompt(config.length, parse_layers(config.layers, backbone.num_layers), backbone.kv_heads,
                                       backbone.head_dim, hidden, reparam=config.reparam, reparam_hidden=config.reparam_hidden,
                                       std=config.prefix_init_std(encoder_only),
                                       per_example_dropout=config.prefix_dropout == "example",
                                       sites=config.sites if backbone.is_encoder_decoder else ())
                            if config.method == "deep" else None)
        self.kind.check(self)
        if self.deep_prompt is not None and (problem := backbone.prefix_problem()):
            raise PtuneError(f"backbone {backbone.name!r} ({backbone.config.model_type}): deep prompts cannot reach its "
                             f"attention layers ({problem}); use --method prompt or ptuning")
        if config.pool == "pooler":
            self._check_pooler()
        self.initialised = False  # set by initialise() or by loading trained tensors
        self.head = (VerbalizerHead(backbone.lm_head, self.verbalizer_ids()) if config.head == "verbalizer"
                     else self.kind.head(self))
        if config.method == "finetune" or config.tune_backbone:
            if getattr(backbone.model, "is_quantized", False):
                raise PtuneError(f"a {config.method} run trains the backbone's weights, which a quantised backbone "
                                 "cannot; load it without --quantize")
            # A private, trainable copy in fp32: the shared backbone stays frozen for every other task.
            self.tuned_backbone = copy.deepcopy(backbone.model).requires_grad_(True).float()
        # Trainable parameters live in fp32 where the backbone reads its input (a device map's first layer).
        super().to(self.device)

    def _check_pooler(self) -> None:
        if self.kind.name not in ("classification", "regression", "multiple_choice") or self.config.head != "linear":
            raise PtuneError(f"--pool pooler feeds a linear head on one pooled token (classification, regression, "
                             f"multiple_choice), not {self.kind.name} with head {self.config.head}; use --pool first")
        pool, size = backbone_pooler(self.backbone.model), self.backbone.hidden_size
        with torch.no_grad():
            probe = torch.zeros(1, size, device=self.device, dtype=placement.floating_dtype(self.backbone.model))
            works = pool is not None and tuple(pool(probe).shape) == (1, size)
        if not works:
            raise PtuneError(f"backbone {self.backbone.name!r} ({self.backbone.config.model_type}) has no pooler that "
                             "reads one token (or loaded without one); use --pool first")

    def train(self, mode: bool = True) -> "PromptModel":
        """Also switches the shared frozen backbone's dropout on for training with ``backbone_dropout``."""
        super().train(mode)
        if self.config.backbone_dropout:
            self.backbone.model.train(mode)
        return self

    @classmethod
    def for_task(cls, backbone: Backbone, task, config: MethodConfig | None = None) -> "PromptModel":
        """A model shaped for ``task`` (its kind, labels and metric; sentence pairs)."""
        pair = any(getattr(e, "text_pair", None) is not None for e in task.train[:1000])
        return cls(backbone, config or MethodConfig(), task.labels, kind=task.kind, pair=pair, metric=task.metric)

    @property
    def backbone(self) -> Backbone:
        return self.backbone_ref

    @property
    def device(self) -> torch.device:
        """Where batches, prompts and heads live: the device of the backbone's input embeddings."""
        return placement.input_device(self.transformer)

    def to(self, *args, **kwargs) -> "PromptModel":
        """Move this model and the shared backbone (with its LM head) to a device; a dtype casts only the
        frozen backbone, the trainable parameters stay fp32. Every model on that backbone follows it."""
        device, dtype, *_ = torch._C._nn._parse_to(*args, **kwargs)
        frozen = [self.backbone.model] + ([self.backbone._lm_head] if self.backbone._lm_head is not None else [])
        cast = {"dtype": dtype} if dtype is not None and dtype.is_floating_point else {}
        for module in frozen:
            module.to(device=device, **cast)
        return super().to(device=device) if device is not None else self

    @property
    def transformer(self) -> nn.Module:
        """The network the forward pass runs: the shared frozen one, or this model's tuned copy."""
        tuned = getattr(self, "tuned_backbone", None)
        return tuned if tuned is not None else self.backbone.model

    # -- initialisation -------------------------------------------------------------------------
    def initialise(self, *, frequent_ids: Sequence[int] | None = None, seed: int = 0) -> None:
        """Draw every trainable weight from ``seed``: the head, the deep prompt, the prompt encoder, and
        the input prompt per ``config.init`` (Lester et al. section 3.2)."""
        self.initialised = True
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for module in (self.head, self.deep_prompt, self.input_prompt):
                for part in module.modules() if module is not None else ():
                    if hasattr(part, "reset_parameters"):
                        part.reset_parameters()
        if self.input_prompt is None:
            return
        generator = torch.Generator().manual_seed(seed)
        embeddings = self.backbone.model.get_input_embeddings().weight.detach()
        length = self.input_prompt.length
        if self.config.init == "random":
            init = random_uniform(length, embeddings.shape[1], generator=generator)
        else:
            ids = list(frequent_ids) if frequent_ids else default_frequent_ids(self.backbone.tokenizer, embeddings.shape[0])
            init = sampled_vocab(embeddings, length, ids[:5000], generator=generator)
            if self.config.init == "labels":
                init = from_labels(embeddings, self.label_token_ids(), length, init)
        if self.config.init == "random" or self.input_prompt.encoder_kind == "none":
            with torch.no_grad():
                self.input_prompt.embedding.copy_(init)
            return
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            error = self.input_prompt.fit_output(init)
        log.info("prompt encoder fitted to start at the %s init vectors (relative error %.3f)", self.config.init, error)

    def label_words(self) -> list[list[str]]:
        """Each label's words: the verbalizer's when one is set, else from the name ("B-PER" -> "per")."""
        if self.config.head == "verbalizer":
            return self.config.label_words(self.labels)
        return [[label.split("-", 1)[-1].replace("_", " ").lower()] for label in self.labels]

    def label_token_ids(self) -> list[list[int]]:
        """Token ids of each label's words, all words together, each word tokenised as it reads at the
        ``{label}`` slot in running text (the tokenizer's own word spacing, e.g. ``Ġgood``, ``▁good``)."""
        unknown = [self.backbone.tokenizer.unk_token_id]
        return [[i for ids in self.encoder.label_word_ids(words) for i in ids] or unknown
                for words in self.label_words()]

    def verbalizer_ids(self) -> list[list[int]]:
        """First-token id of each verbalizer word, per label; refuses set-ups the verbalizer cannot read.

        Each word is tokenised as it reads at the ``{label}`` slot in running text, with the tokenizer's
        own word spacing (``Ġgood`` on byte-level BPE, ``▁good`` on SentencePiece, ``good`` on
        WordPiece), never by whether the model is a decoder. A word of several tokens is scored by its
        first token, with a warning: at one position that is the word's only real next-token evidence
        (zero-shot on SmolLM2 it picks the same label as the word's full log-likelihood in 99.3% of 300
        rotten_tomatoes examples, the mean of its pieces' logits in 83.3%)."""
        if not self.kind.verbalizer:
            raise PtuneError(f"the verbalizer head scores label words; a {self.kind.name} task needs --head linear")
        if not self.backbone.is_decoder and not self.template.has_slot("label"):
            raise PtuneError(f"template {self.template.source!r}: a masked LM's verbalizer reads the [MASK] at the "
                             "{label} slot; give a template with one, e.g. --template '[P]*8 {text} It was {label}'")
        self.backbone.lm_head()  # refuses a backbone without a trained LM head now, not at the first batch
        tokenizer = self.backbone.tokenizer
        owner: dict[int, str] = {}
        out = []
        several = []
        for label, words in zip(self.labels, self.label_words()):
            ids = []
            for word, pieces in zip(words, self.encoder.label_word_ids(words)):
                if len(pieces) > 1:
                    several.append(f"{word!r} ({' '.join(tokenizer.convert_ids_to_tokens(pieces))})")
                if not pieces:
                    raise PtuneError(f"verbalizer word {word!r} of label {label!r} is empty after tokenisation")
                if owner.get(pieces[0], label) != label:
                    raise PtuneError(f"verbalizer words of {owner[pieces[0]]!r} and {label!r} start with the same token "
                                     f"{tokenizer.convert_ids_to_tokens(pieces[0])!r}; choose words that differ at the start")
                owner[pieces[0]] = label
                if pieces[0] not in ids:
                    ids.append(pieces[0])
            out.append(ids)
        if several:
            log.warning("verbalizer words of several tokens are scored by their first token: %s", ", ".join(several))
        return out

    # -- forward --------------------------------------------------------------------------------
    def encode(self, examples: Sequence) -> list:
        """Examples -> features, as the task kind lays them out."""
        return self.kind.encode(self, examples)

    def collate(self, features: Sequence) -> dict[str, torch.Tensor]:
        """Pad features into a batch of tensors on this model's device (see ``batch.encoding.collate``)."""
        return placement.to_device(self.kind.collate(self, features), self.device)

    @property
    def first_prompted_layer(self) -> int:
        """Layers below this one see no trainable tensor: their outputs can be cached (depth_cache)."""
        if self.deep_prompt is None or self.input_prompt is not None or getattr(self, "tuned_backbone", None) is not None:
            return 0
        if self.backbone.is_encoder_decoder:  # the decoder's bottom layers read the encoder: never cached
            return 0
        if find_layers(self.transformer, self.backbone.num_layers) is None:  # shared layers (ALBERT): run them all
            return 0
        return self.deep_prompt.layers[0]

    def hidden_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """batch of [B, T] tensors -> final hidden states [B, T, H].

        With ``batch["bottom_hidden"]`` [B, T, H] (the cached output of the un-prompted bottom layers),
        only layers ``first_prompted_layer..L-1`` run.
        """
        vectors = self.input_prompt() if self.input_prompt is not None else None
        prefixes = self.deep_prompt(batch["input_ids"].shape[0]) if self.deep_prompt is not None else None
        bottom = batch.get("bottom_hidden")
        skip = (starting_at(layer_list(self.transformer, self.backbone.num_layers), self.first_prompted_layer, bottom)
                if bottom is not None else contextlib.nullcontext())
        with skip:  # the heads read fp32 hidden states (under autocast they still compute in half precision)
            return run_backbone(self.transformer, batch, prompt_vectors=vectors, prefixes=prefixes,
                                token_types=self.encoder.layout.uses_token_types,
                                decoder=self.backbone.is_decoder).float()

    def bottom_pass(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The backbone without any prompt (what the un-prompted bottom layers see); draws no randomness."""
        return run_backbone(self.transformer, batch, prompt_vectors=None, prefixes=None,
                            token_types=self.encoder.layout.uses_token_types, decoder=self.backbone.is_decoder)

    def forward(self, batch: dict[str, torch.Tensor]):
        """The head's outputs: logits [B, C] (classification), [N, C] over the batch's N words
        (tagging), start and end logits [B, T] (qa), scores [B] (regression)."""
        return self.kind.forward(self, batch)

    def continuation_states(self, batch: dict[str, torch.Tensor], targets: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """States [N, U, H] that predict text targets [N, U] after the inputs ``rows`` [N] of the batch (the
        text-to-text kind; see ``seq2seq.continuation_states``)."""
        return seq2seq.continuation_states(self, batch, targets, rows).float()

    def readout(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]):
        """The head on final hidden states [B, T, H]; with ``pool: pooler`` the pooled token's state
        first goes through the backbone's pooler (dense + tanh)."""
        if self.config.pool == "pooler":
            rows, index = torch.arange(hidden.shape[0], device=hidden.device), batch["pool_index"]
            hidden = hidden.clone()
            hidden[rows, index] = backbone_pooler(self.transformer)(hidden[rows, index])
        return self.head(hidden, batch)

    def loss(self, batch: dict[str, torch.Tensor], forward: nn.Module | None = None) -> torch.Tensor:
        """The kind's loss of ``forward(batch)`` (this model, or a DDP wrapper around it)."""
        return self.kind.loss(self, (forward if forward is not None else self)(batch), batch)

    @torch.no_grad()
    def predict_batch(self, batch: dict[str, torch.Tensor], *, scored: bool = False) -> list:
        """One prediction per feature of the batch, decoded by the kind (qa: a window's logits); with
        ``scored``, (prediction, scores) pairs (``TaskKind.scores_row``)."""
        return self.kind.decode(self, self(batch), batch, scored=scored)

    # -- bookkeeping ----------------------------------------------------------------------------
    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a prompt file holds: every parameter that training changes."""
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        return {name: t for name, t in self.state_dict().items() if name in names}


def backbone_pooler(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The backbone's own pooler as a function of one token's states [N, H] -> [N, H] (None without one)."""
    pooler = getattr(model, "pooler", None)
    if isinstance(pooler, nn.Linear):  # ALBERT: a bare linear layer, its activation beside it
        activation = getattr(model, "pooler_activation", None) or torch.tanh
        return lambda states: activation(pooler(states))
    if isinstance(pooler, nn.Module):  # BERT, RoBERTa, XLM-R: reads the first token of [N, T, H]
        return lambda states: pooler(states.unsqueeze(1))
    return None


def run_backbone(transformer: nn.Module, batch: dict[str, torch.Tensor], *, prompt_vectors: torch.Tensor | None,
                 prefixes: injection.Prefixes | None, token_types: bool, decoder: bool) -> torch.Tensor:
    """One forward pass with prompts in place; returns final hidden states [B, T, H].

    prompt_vectors: [P, H] shared by the batch, or [B, P, H] per example (mixed tasks); they
    replace the embeddings wherever ``batch["prompt_index"]`` [B, T] is >= 0.
    """
    input_ids = batch["input_ids"]
    embeds = transformer.get_input_embeddings()(input_ids)
    if prompt_vectors is not None:
        index = batch["prompt_index"].clamp(min=0)
        if prompt_vectors.dim() == 2:
            chosen = prompt_vectors[index]
        else:
            chosen = prompt_vectors[torch.arange(index.shape[0], device=index.device).unsqueeze(1), index]
        embeds = torch.where((batch["prompt_index"] >= 0).unsqueeze(-1), chosen.to(embeds.dtype), embeds)
    if seq2seq.is_seq2seq(transformer):  # T5, BART: the decoder's states for the shifted input
        return seq2seq.run(transformer, embeds, batch, prefixes)
    kwargs = {"inputs_embeds": embeds, "attention_mask": batch["attention_mask"]}
    if token_types:
        kwargs["token_type_ids"] = batch["token_type_ids"]
    offset = batch.get("position_offset")
    if decoder:
        # Left padding: count positions from each sequence's first real token.
        kwargs["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    elif offset is not None:
        kwargs["position_ids"] = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    if offset is not None:  # PEFT's prefix-tuning layout: positions start after the prefix
        kwargs["position_ids"] = kwargs["position_ids"] + offset.unsqueeze(1)
    with injection.prefixes_active(prefixes):  # a device map's last layer may sit elsewhere: back to the input's
        return transformer(**kwargs).last_hidden_state.to(embeds.device)


def default_frequent_ids(tokenizer, vocab_size: int) -> list[int]:
    """Without training text: non-special ids in vocabulary order (a frequency proxy for BPE)."""
    special = set(tokenizer.all_special_ids)
    return [i for i in range(vocab_size) if i not in special][:5000]


def frequent_ids(features: Sequence[Feature], tokenizer, top: int = 5000) -> list[int]:
    """The ``top`` most frequent non-special token ids in the encoded training data."""
    special = set(tokenizer.all_special_ids)
    counts = Counter(i for f in features for i, p in zip(f.input_ids, f.prompt_index) if p < 0 and i not in special)
    return [i for i, _ in counts.most_common(top)]
