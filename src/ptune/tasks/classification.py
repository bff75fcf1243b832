"""Classification: one label per text or text pair, from a linear head on the pooled token or from
label words through the LM head (verbalizer); scored by accuracy, F1, macro-F1, Matthews correlation
or MultiRC's F1a and exact match."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from ptune.data.examples import GroupedTextExample
from ptune.errors import PtuneError
from ptune.heads import ClassificationHead
from ptune.tasks.base import TaskKind
from ptune.tasks.glue_metrics import GroupedLabels


def label_id(model, label: str) -> int:
    """The id of ``label`` in the model's label set; refuses a label unseen in training."""
    if label not in model.label_ids:
        raise PtuneError(f"label {label!r} was not seen in training (known: {', '.join(model.labels)}); "
                         "remove it or retrain with it in the training data")
    return model.label_ids[label]


class Classification(TaskKind):
    name = "classification"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "f1", "macro_f1", "matthews", "multirc")
    verbalizer = True

    def head(self, model) -> nn.Module:
        return ClassificationHead(model.backbone.output_size, len(model.labels))

    def target(self, model, example) -> int | None:
        return None if example.label is None else label_id(model, example.label)

    def decode_row(self, model, output, num_words: int) -> str:
        """output: [C] logits -> the label."""
        return model.labels[int(output.argmax(-1))]

    def scores_row(self, model, output, num_words: int) -> dict:
        """output: [C] logits -> each label's probability (softmax over the labels), in label order."""
        return {"probabilities": dict(zip(model.labels, output.float().softmax(-1).tolist()))}

    def record(self, example, prediction, scores: dict | None = None, *, top_k: int | None = None) -> dict:
        """The label; with scores also its ``probability`` and ``probabilities``, likeliest first
        (the ``top_k`` likeliest only, when given)."""
        if top_k is not None and top_k < 1:
            raise PtuneError(f"top_k is {top_k}; keep at least 1 label")
        record = {"text": example.text, "label": prediction}
        if scores and "probabilities" in scores:
            ranked = sorted(scores["probabilities"].items(), key=lambda item: -item[1])
            record["probability"] = scores["probabilities"][prediction]
            record["probabilities"] = dict(ranked[:top_k] if top_k is not None else ranked)
        return record

    def gold(self, examples) -> list:
        """The labels; of grouped examples (MultiRC's answer options) with their groups, for "multirc"."""
        labels = [e.label for e in examples]
        if examples and all(isinstance(e, GroupedTextExample) for e in examples):
            return GroupedLabels(labels, [e.group for e in examples])
        return labels
