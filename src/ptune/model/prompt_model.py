"""Where a prompt, a backbone and a head compose: one model class for every method and task.

Input-level prompts replace the template's placeholder embeddings; deep prompts are handed to
the attention layers through ``injection``; the head reads the final hidden states.
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter
from typing import Iterable, Sequence

import torch
from torch import nn

from . import injection, qa
from .backbones import Backbone
from .config import MethodConfig
from .encoding import Encoder, Feature, collate
from .errors import PtuneError
from .heads import ClassificationHead, TokenHead, VerbalizerHead
from .heads.span import SpanHead
from .layer_cache import layer_list, starting_at
from .prompts import DeepPrompt, InputPrompt, from_labels, parse_layers, random_uniform, sampled_vocab
from .templates import default_template, parse_template


class PromptModel(nn.Module):
    """backbone (frozen unless fine-tuning) + optional input prompt + optional deep prompt + head."""

    def __init__(self, backbone: Backbone, config: MethodConfig, labels: Sequence[str], *, tagging: bool,
                 pair: bool = False, qa: bool = False, no_answer: bool = False):
        """``qa``: extractive question answering with a span head (``labels`` unused); ``no_answer``:
        SQuAD 2.0, the answer may be "" (no span)."""
        super().__init__()
        self.backbone_ref = backbone  # not a submodule: its weights are not ours to save
        self.config = config
        self.labels = list(labels)
        self.tagging = tagging
        self.qa, self.no_answer = qa, no_answer
        if qa and config.peft_layout:
            raise PtuneError("question answering keeps [CLS] first (the no-answer position); drop --peft-layout")
        template = config.template or default_template(config.method, prompt_length=config.length, pair=pair,
                                                       leading=config.peft_layout)
        self.template = parse_template(template)
        if qa and any(part.kind == "words" for part in self.template.parts):
            raise PtuneError(f"template {template!r}: question answering places only the continuous tokens "
                             "(after [CLS]); drop the words from the template")
        peft = config.peft_layout
        self.encoder = Encoder(backbone.tokenizer, self.template, self.labels, tagging=tagging,
                               decoder=backbone.is_decoder, max_length=config.max_length,
                               prompts_before_specials=peft and config.has_input_prompt,
                               position_offset=config.length if peft and config.method == "deep" else 0)
        hidden = backbone.hidden_size
        self.input_prompt = (InputPrompt(self.template.num_prompts, hidden, encoder=config.encoder if config.method == "ptuning" else "none")
                             if config.has_input_prompt and self.template.num_prompts else None)
        self.deep_prompt = (DeepPrompt(config.length, parse_layers(config.layers, backbone.num_layers), backbone.kv_heads,
                                       backbone.head_dim, hidden, reparam=config.reparam, reparam_hidden=config.reparam_hidden)
                            if config.method == "deep" else None)
        self.initialised = False  # set by initialise() or by loading trained tensors
        self.head = SpanHead(hidden) if qa else (TokenHead if tagging else ClassificationHead)(hidden, len(self.labels))
        if config.head == "verbalizer":
            self.head = VerbalizerHead(backbone.lm_head, self.verbalizer_ids(tagging or qa))
        if config.method == "finetune" or config.tune_backbone:
            # A private, trainable copy: the shared backbone stays frozen for every other task.
            self.tuned_backbone = copy.deepcopy(backbone.model).requires_grad_(True)

    @classmethod
    def for_task(cls, backbone: Backbone, task, config: MethodConfig | None = None) -> "PromptModel":
        """A model shaped for ``task`` (its labels, tagging or classification, sentence pairs)."""
        pair = any(getattr(e, "text_pair", None) is not None for e in task.train[:1000])
        return cls(backbone, config or MethodConfig(), task.labels, tagging=task.kind == "tagging", pair=pair,
                   qa=task.kind == "qa", no_answer=task.metric == "squad_v2")

    @property
    def kind(self) -> str:
        """The task kind a prompt file records: classification, tagging or qa."""
        return "qa" if self.qa else "tagging" if self.tagging else "classification"

    @property
    def backbone(self) -> Backbone:
        return self.backbone_ref

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
        with torch.no_grad():
            self.input_prompt.embedding.copy_(init)

    def label_words(self) -> list[list[str]]:
        """Each label's words: the verbalizer's when one is set, else from the name ("B-PER" -> "per")."""
        if self.config.head == "verbalizer":
            return self.config.label_words(self.labels)
        return [[label.split("-", 1)[-1].replace("_", " ").lower()] for label in self.labels]

    def label_token_ids(self) -> list[list[int]]:
        """Token ids of each label's words, all words together (decoders: each word after a space)."""
        tokenizer = self.backbone.tokenizer
        prefix = " " if self.backbone.is_decoder else ""
        return [[i for word in words for i in tokenizer(prefix + word, add_special_tokens=False)["input_ids"]]
                or [tokenizer.unk_token_id] for words in self.label_words()]

    def verbalizer_ids(self, per_token: bool) -> list[list[int]]:
        """First-token id of each verbalizer word, per label; refuses set-ups the verbalizer cannot read."""
        if per_token:
            raise PtuneError("the verbalizer head classifies whole examples; use --head linear for tagging and QA tasks")
        if not self.backbone.is_decoder and not self.template.has_slot("label"):
            raise PtuneError(f"template {self.template.source!r}: a masked LM's verbalizer reads the [MASK] at the "
                             "{label} slot; give a template with one, e.g. --template '[P]*8 {text} It was {label}'")
        self.backbone.lm_head()  # refuses a backbone without a trained LM head now, not at the first batch
        tokenizer = self.backbone.tokenizer
        prefix = " " if self.backbone.is_decoder else ""
        owner: dict[int, str] = {}
        out = []
        for label, words in zip(self.labels, self.label_words()):
            ids = []
            for word in words:
                pieces = tokenizer(prefix + word, add_special_tokens=False)["input_ids"]
                if not pieces:
                    raise PtuneError(f"verbalizer word {word!r} of label {label!r} is empty after tokenisation")
                if owner.get(pieces[0], label) != label:
                    raise PtuneError(f"verbalizer words of {owner[pieces[0]]!r} and {label!r} start with the same token "
                                     f"{tokenizer.convert_ids_to_tokens(pieces[0])!r}; choose words that differ at the start")
                owner[pieces[0]] = label
                if pieces[0] not in ids:
                    ids.append(pieces[0])
            out.append(ids)
        return out

    # -- forward --------------------------------------------------------------------------------
    def encode(self, examples) -> list[Feature] | list[qa.QAFeature]:
        if self.qa:  # strided windows of question + context; input prompts right after [CLS]
            prompts = self.template.num_prompts if self.input_prompt is not None else 0
            return qa.encode(examples, self.backbone.tokenizer, self.config.max_length, prompts=prompts,
                             pad_id=self.encoder.pad_id)
        return self.encoder.encode(examples)

    def collate(self, features: Sequence[Feature] | Sequence[qa.QAFeature]) -> dict[str, torch.Tensor]:
        """Pad features into a batch of tensors (see ``encoding.collate`` and ``qa.collate_qa``)."""
        if self.qa:
            return qa.collate_qa(features, pad_id=self.encoder.pad_id)
        return collate(features, pad_id=self.encoder.pad_id, left_pad=self.encoder.decoder)

    @property
    def first_prompted_layer(self) -> int:
        """Layers below this one see no trainable tensor: their outputs can be cached (layer_cache)."""
        if self.deep_prompt is None or self.input_prompt is not None or getattr(self, "tuned_backbone", None) is not None:
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
        with skip:
            return run_backbone(self.transformer, batch, prompt_vectors=vectors, prefixes=prefixes,
                                token_types=self.encoder.layout.uses_token_types, decoder=self.backbone.is_decoder)

    def bottom_pass(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The backbone without any prompt (what the un-prompted bottom layers see); draws no randomness."""
        return run_backbone(self.transformer, batch, prompt_vectors=None, prefixes=None,
                            token_types=self.encoder.layout.uses_token_types, decoder=self.backbone.is_decoder)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits: [B, C] (classification), [N, C] over the batch's N words (tagging), or start and
        end logits [B, T] (qa)."""
        return self.head(self.hidden_states(batch), batch)

    def loss(self, batch: dict[str, torch.Tensor], forward: nn.Module | None = None) -> torch.Tensor:
        """Cross-entropy of ``forward(batch)`` (this model, or a DDP wrapper around it)."""
        logits = (forward if forward is not None else self)(batch)
        if self.qa:
            return self.head.loss(*logits, *self.head.targets(batch))
        return nn.functional.cross_entropy(logits, self.head.targets(batch))

    @torch.no_grad()
    def predict_batch(self, batch: dict[str, torch.Tensor]) -> list:
        """Labels per example: a string (classification), a list of tags, one per word, or (qa) the
        window's start and end logits [T], [T], mapped to answers by ``qa.best_spans``."""
        if self.qa:
            return list(zip(*(logits.float().cpu().unbind(0) for logits in self(batch))))
        predicted = self(batch).argmax(-1).tolist()
        if not self.tagging:
            return [self.labels[i] for i in predicted]
        out, cursor = [], 0
        counts = (batch["word_index"] >= 0).sum(-1).tolist()
        for count, words in zip(counts, batch["num_words"].tolist()):
            tags = [self.labels[i] for i in predicted[cursor : cursor + count]]
            out.append(tags + ["O"] * (words - count))  # words cut by max_length
            cursor += count
        return out

    # -- bookkeeping ----------------------------------------------------------------------------
    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a prompt file holds: every parameter that training changes."""
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        return {name: t for name, t in self.state_dict().items() if name in names}


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
        embeds = torch.where((batch["prompt_index"] >= 0).unsqueeze(-1), chosen, embeds)
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
    with injection.prefixes_active(prefixes):
        return transformer(**kwargs).last_hidden_state


def default_frequent_ids(tokenizer, vocab_size: int) -> list[int]:
    """Without training text: non-special ids in vocabulary order (a frequency proxy for BPE)."""
    special = set(tokenizer.all_special_ids)
    return [i for i in range(vocab_size) if i not in special][:5000]


def frequent_ids(features: Sequence[Feature], tokenizer, top: int = 5000) -> list[int]:
    """The ``top`` most frequent non-special token ids in the encoded training data."""
    special = set(tokenizer.all_special_ids)
    counts = Counter(i for f in features for i, p in zip(f.input_ids, f.prompt_index) if p < 0 and i not in special)
    return [i for i, _ in counts.most_common(top)]
