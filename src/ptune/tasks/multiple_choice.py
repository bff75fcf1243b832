"""Multiple choice (COPA, ReCoRD): each choice encoded with the text as a pair, one score per choice
from a one-output linear head on the pooled token, a softmax over an example's choices; trained with
cross-entropy against the right choice, scored by accuracy (or ReCoRD's F1/EM of the chosen entity)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch
from torch import nn

from ptune.batch.encoding import IGNORE, Feature, report_truncation, truncation_collected
from ptune.data.choices import choice_text, copa_row
from ptune.data.examples import ChoiceExample, TextExample
from ptune.errors import PtuneError
from ptune.heads import ChoiceHead
from ptune.tasks.base import TaskKind


@dataclass
class ChoiceFeature:
    """One example: a Feature per choice (the pair text + choice, laid out by the template) and the
    right choice's index (None when unlabelled)."""

    choices: list[Feature]
    label: int | None
    words_cut: ClassVar[int] = 0  # no words to cut: not a tagging feature

    @cached_property
    def input_ids(self) -> list[int]:
        """Every choice's ids, one after another (what batching by length and token counts read)."""
        return [i for row in self.choices for i in row.input_ids]

    @cached_property
    def prompt_index(self) -> list[int]:
        return [i for row in self.choices for i in row.prompt_index]

    @property
    def truncated(self) -> int:
        """Tokens cut from the example's rows to fit max_length, all choices together."""
        return sum(row.truncated for row in self.choices)


class MultipleChoice(TaskKind):
    name = "multiple_choice"
    metrics: ClassVar[tuple[str, ...]] = ("choice_accuracy", "record")
    has_labels = False  # a score per choice: no label set
    mixable = False  # an example is several rows of a batch
    pairs = True
    input_help = "a JSON object with a 'text' string and a 'choices' list of strings (or COPA's fields)"

    def check(self, model) -> None:
        if model.config.head == "verbalizer":
            raise PtuneError("the verbalizer head chooses among label words; a multiple-choice task scores each choice "
                             "with --head linear")
        if not model.template.has_slot("text_pair"):
            raise PtuneError(f"template {model.template.source!r}: multiple choice pairs the text with each choice; "
                             "give a template with {text} and {text_pair}")
        if model.config.has_input_prompt and model.config.init == "labels":
            raise PtuneError("--init labels starts the prompt from label words, and a multiple-choice task has none; "
                             "use --init vocab or --init random")

    def head(self, model) -> nn.Module:
        return ChoiceHead(model.backbone.output_size)

    def target(self, model, example) -> int | None:
        """The right choice's index; a choice's own row (a text pair) has none."""
        return example.label if isinstance(example, ChoiceExample) else None

    def encode(self, model, examples: Sequence) -> list[ChoiceFeature]:
        """Each example -> a Feature per choice, the text as the first text and the choice as the second."""
        if not all(isinstance(e, ChoiceExample) for e in examples):
            raise PtuneError("a multiple-choice task needs examples with choices: JSON lines with 'text', 'choices' and "
                             "'label', or --task superglue/copa (superglue/record)")
        rows = [TextExample(e.text, None, choice) for e in examples for choice in e.choices]
        with truncation_collected():  # reported once below, per example rather than per choice
            encoded = model.encoder.encode(rows)
        features, start = [], 0
        for example in examples:
            features.append(ChoiceFeature(encoded[start: start + len(example.choices)], example.label))
            start += len(example.choices)
        report_truncation(features, model.config.max_length)
        return features

    def collate(self, model, features: Sequence[ChoiceFeature]) -> dict[str, torch.Tensor]:
        """Every choice's row padded into [N, T] tensors (N rows of B examples, example by example), with
        choice_count [B] and labels [B], the right choice's index (IGNORE where unlabelled)."""
        batch = super().collate(model, [row for feature in features for row in feature.choices])
        batch.pop("num_words")  # per row, and no words are tagged
        batch["choice_count"] = torch.tensor([len(feature.choices) for feature in features])
        batch["labels"] = torch.tensor([IGNORE if f.label is None else f.label for f in features])
        return batch

    def rows(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> list:
        """outputs: [B, C] logits -> one [C_b] per example, its own choices only."""
        return [row[:count] for row, count in zip(outputs, batch["choice_count"].tolist())]

    def decode_row(self, model, output: torch.Tensor, num_words: int) -> int:
        """output: [C] logits -> the index of the likeliest choice."""
        return int(output.argmax(-1))

    def scores_row(self, model, output: torch.Tensor, num_words: int) -> dict:
        """output: [C] logits -> each choice's probability (softmax over the example's choices), in order."""
        return {"probabilities": output.float().softmax(-1).tolist()}

    def gold(self, examples) -> list:
        return list(examples)

    def example(self, row: dict, *, predicate: int | None = None) -> ChoiceExample:
        if "choice1" in row and "premise" in row:  # COPA's own fields
            try:
                return copa_row("", {**row, "label": None})
            except PtuneError as error:
                raise ValueError(str(error).removeprefix(": ")) from None
        text, choices = row.get("text"), row.get("choices")
        if not isinstance(text, str) or not isinstance(choices, list):
            raise ValueError(f"expected {self.input_help}")
        if not text.strip():
            raise ValueError("the text is empty; give the question or premise the choices answer")
        if len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
            raise ValueError("'choices' must be a list of two or more non-empty strings")
        return ChoiceExample(text, tuple(choices))

    def record(self, example, prediction, scores: dict | None = None, *, top_k: int | None = None) -> dict:
        """The choices, the chosen one's index (``choice``) and what it says (``answer``: ReCoRD's entity);
        with scores its ``probability`` and every choice's ``probabilities``, in choice order."""
        record = {"text": example.text, "choices": list(example.choices), "choice": prediction,
                  "answer": choice_text(example, prediction)}
        if scores and "probabilities" in scores:
            record["probability"] = scores["probabilities"][prediction]
            record["probabilities"] = scores["probabilities"]
        return record
