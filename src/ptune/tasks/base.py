"""The task-kind protocol: what a task asks of the model, from examples to a metric.

A kind is stateless; each method takes the ``PromptModel`` it serves (labels, encoder, head).
Shared code (training, prediction, the mixed-task bank, the server, the CLI) calls these and
never asks which kind it holds.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from ptune.batch.encoding import collate, truncation_marks
from ptune.errors import PtuneError


class TaskKind:
    """Base of every kind; subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]  # metric names this kind is scored with; the first is the default
    word_level: ClassVar[bool] = False  # examples are pre-split words, one prediction per word
    has_labels: ClassVar[bool] = True  # a fixed label set (False: spans, scores)
    mixable: ClassVar[bool] = True  # can share a mixed-task batch and an ensemble
    verbalizer: ClassVar[bool] = False  # may read label words through the LM head (--head verbalizer)
    pairs: ClassVar[bool] = False  # every example is encoded as text pairs (multiple choice: text and a choice)
    input_help: ClassVar[str] = "a JSON object with a 'text' field, or plain text"

    # -- building ---------------------------------------------------------------------------------
    def check(self, model) -> None:
        """Refuse a method configuration this kind cannot serve (called when a model is built)."""

    def head(self, model) -> nn.Module:
        """A freshly initialised head for ``model`` (hidden states [B, T, H] -> outputs)."""
        raise NotImplementedError

    def target(self, model, example) -> Any:
        """The training target of one example (class id, tag ids, score), None when unlabelled."""
        raise NotImplementedError

    def forward(self, model, batch: dict[str, torch.Tensor]):
        """The head's outputs for a batch: the backbone's final hidden states read by the head (a kind
        whose targets are text runs its own passes, ``text_to_text``)."""
        return model.readout(model.hidden_states(batch), batch)

    # -- batches ----------------------------------------------------------------------------------
    def encode(self, model, examples: Sequence) -> list:
        """Examples -> features (token ids with the template and prompt positions laid out)."""
        return model.encoder.encode(examples)

    def encoding_key(self, model) -> object:
        """What ``encode`` reads of ``model``: models with the same key encode any example alike, so a mixed-task
        batch tokenizes their examples in one call (the served copies of one prompt-file shape share their
        encoder). A kind whose ``encode`` reads more of the model returns the model."""
        return model.encoder

    def collate(self, model, features: Sequence) -> dict[str, torch.Tensor]:
        """Pad features into a batch of [B, T] tensors (see ``batch.encoding.collate``)."""
        return collate(features, pad_id=model.encoder.pad_id, left_pad=model.encoder.decoder)

    # -- loss and predictions ---------------------------------------------------------------------
    def loss(self, model, outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the head's logits against its targets (a scalar)."""
        return nn.functional.cross_entropy(outputs, model.head.targets(batch))

    def rows(self, outputs, batch: dict[str, torch.Tensor]) -> list:
        """The head's outputs cut into one piece per example of the batch."""
        return list(outputs)

    def decode_row(self, model, output, num_words: int) -> Any:
        """One example's prediction from its piece of the outputs."""
        raise NotImplementedError

    def scores_row(self, model, output, num_words: int) -> dict:
        """How sure one example's prediction is, from its piece of the outputs: the JSON-ready
        fields ``record`` adds (class probabilities, per-word probabilities); {} for none."""
        return {}

    def writes_text(self, model) -> bool:
        """Whether ``model``'s predictions are text it writes token by token (``infer.predict`` then generates
        them with the key/value cache instead of decoding one forward pass)."""
        return False

    def decode(self, model, outputs, batch: dict[str, torch.Tensor], *, scored: bool = False) -> list:
        """One prediction per feature of the batch; with ``scored``, (prediction, scores) pairs."""
        words = batch["num_words"].tolist() if "num_words" in batch else [0] * len(batch["input_ids"])
        rows = zip(self.rows(outputs, batch), words)
        if scored:
            return [(self.decode_row(model, row, n), self.scores_row(model, row, n)) for row, n in rows]
        return [self.decode_row(model, row, n) for row, n in rows]

    def finish(self, model, examples: Sequence, features: Sequence, decoded: list, *, scored: bool = False) -> list:
        """Per-feature predictions (with ``scored``, (prediction, scores) pairs) -> one per example
        (a kind whose example spans several features joins them here)."""
        return decoded

    def combine(self, members: torch.Tensor, how: str) -> torch.Tensor:
        """An ensemble's outputs for one example, [N, ..., C] logits -> the combined [..., C]: the log
        of the members' mean probabilities, or of each label's share of the votes (ties: the
        smallest label id), so that the softmax of the result is that mean or that share."""
        if how == "mean":
            shares = members.softmax(-1).mean(0)
        elif how == "vote":
            votes = nn.functional.one_hot(members.argmax(-1), members.shape[-1])  # [N, ..., C]
            shares = votes.float().mean(0)
        else:
            raise PtuneError(f"combine must be 'vote' or 'mean', got {how!r}")
        return shares.log()

    # -- gold, inputs, outputs --------------------------------------------------------------------
    def gold(self, examples: Sequence) -> list:
        """What predictions are scored against."""
        raise NotImplementedError

    def labelled(self, example) -> bool:
        """Whether ``example`` carries a gold answer (evaluation needs one)."""
        return getattr(example, "label", None) is not None

    def example(self, row: dict, *, predicate: int | None = None):
        """An unlabelled example from a JSON row of ``ptune predict`` or the server; raises
        ``ValueError`` naming what is missing."""
        from ptune.data.examples import TextExample

        text = row.get("text")
        if not isinstance(text, str):
            raise ValueError(f"expected {self.input_help}")
        if not text.strip():  # it would still get a label
            raise ValueError("the text is empty; give a text to label")
        pair = row.get("text_pair")
        return TextExample(text, text_pair=pair if isinstance(pair, str) else None)

    def marks(self, examples: Sequence, features: Sequence) -> list[dict]:
        """Per example, what its record adds when its input was cut to fit max_length ({} if uncut;
        see ``batch.encoding.truncation_marks``). Default: one feature per example."""
        return [truncation_marks(feature) for feature in features]

    def record(self, example, prediction, scores: dict | None = None, *, top_k: int | None = None) -> dict:
        """A prediction as the JSON record ``ptune predict`` prints and the server returns, with its
        ``scores`` (from ``scores_row`` / ``finish``) when given; ``top_k`` keeps the k likeliest
        labels where a kind ranks labels (classification), and is ignored elsewhere."""
        return {"text": example.text, "label": prediction, **(scores or {})}
