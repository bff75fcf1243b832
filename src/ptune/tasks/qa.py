"""The extractive question-answering kind, around a span head: examples -> overlapping token windows
with answer targets; span logits -> answers (``qa_answers``: text cut from the original context by
character offsets, with its scores).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import nn

from ptune.batch.encoding import SpecialLayout
from ptune.batch.spacing import Spacing
from ptune.data.examples import QAExample
from ptune.errors import PtuneError
from ptune.heads.span import SpanHead
from ptune.tasks.base import TaskKind
from ptune.tasks.qa_answers import (  # noqa: F401 - best_spans, window_best_span: imported from here before
    NO_ANSWER, Offset, best_answers, best_spans, unseen_context, window_best_span)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QAFeature:
    """One window of one example: question and a slice of the context, as the tokenizer pairs them.

    `offsets[t]` is token t's (start, end) character span in the example's context, None for
    question and special tokens. `start_position`/`end_position` are the first answer's token
    positions when it lies wholly inside this window, else `NO_ANSWER`.
    """

    example_index: int
    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None
    offsets: tuple[Offset | None, ...]
    start_position: int = NO_ANSWER
    end_position: int = NO_ANSWER
    prompts: int = 0  # virtual prompt positions 1..prompts, right after [CLS] (input-prompt methods)
    question_cut: int = 0  # question tokens cut to leave the context room (``_check_room``)

    @property
    def prompt_index(self) -> list[int]:
        """Each position's input-prompt vector index, -1 for real tokens (as `encoding.Feature`)."""
        rest = len(self.input_ids) - 1 - self.prompts
        return [-1, *range(self.prompts), *([-1] * rest)]


def featurize(
    examples: Sequence[QAExample],
    tokenizer,
    max_length: int = 384,
    stride: int = 128,
    question_first: bool = True,
    *,
    chunk: int = 1000,
) -> list[QAFeature]:
    """Tokenise question/context pairs; a context longer than one window becomes several windows,
    consecutive ones sharing `stride` context tokens. Needs a fast (offset-mapping) tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise PtuneError(
            f"{type(tokenizer).__name__} gives no character offsets — load a fast tokenizer"
            " (AutoTokenizer.from_pretrained(..., use_fast=True)) for question answering"
        )
    examples, cut = _check_room(examples, tokenizer, max_length, stride)
    lead = _pair_lead(tokenizer)
    features: list[QAFeature] = []
    for begin in range(0, len(examples), chunk):
        features.extend(_windows(examples, begin, begin + chunk, tokenizer, max_length, stride, question_first, lead))
    if any(cut):
        features = [replace(f, question_cut=cut[f.example_index]) if cut[f.example_index] else f for f in features]
    return features


def _pair_lead(tokenizer) -> str:
    """What goes before the pair's second text so that its first word reads as after the first text:
    the learned word separator where the tokenizer puts nothing between the two (byte-level BPE
    decoders: ``… Ġ? ĠPeter``, not ``… Ġ? Peter``), "" where special tokens separate them."""
    return "" if SpecialLayout.of(tokenizer).pair_middle else Spacing.of(tokenizer).separator


def _after(text: str, lead: str) -> str:
    return lead + text if lead and text and not text[0].isspace() else text


def _check_room(examples: Sequence[QAExample], tokenizer, max_length: int,
                stride: int) -> tuple[list[QAExample], list[int]]:
    """`examples` with each question that leaves its windows no more than `stride` context tokens
    (the tokenizer would panic rather than raise) cut to fit, with one warning, and the tokens each
    question lost; settings where even a one-token question leaves no room are refused."""
    if stride < 0:
        raise PtuneError(f"stride {stride} is negative — pass 0 or more overlapping tokens")
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    keep = max_length - specials - stride - 1  # the most question tokens that leave stride + 1 context tokens
    encoded = tokenizer([e.question for e in examples], add_special_tokens=False, return_offsets_mapping=True)
    out, cuts, lost = list(examples), [], [0] * len(examples)
    for i, (example, ids) in enumerate(zip(examples, encoded["input_ids"], strict=True)):
        if len(ids) <= keep:
            continue
        if keep < 1:
            raise PtuneError(
                f"question {example.id!r}: max_length {max_length} leaves no room for a question and more than"
                f" stride {stride} context tokens per window — raise max_length or lower stride"
            )
        out[i] = replace(example, question=_cut_question(tokenizer, example.question, encoded["offset_mapping"][i], keep))
        cuts.append(f"{example.id!r} lost {len(ids) - keep}")
        lost[i] = len(ids) - keep
    if cuts:
        shown = ", ".join(cuts[:5]) + (f" and {len(cuts) - 5} more" if len(cuts) > 5 else "")
        log.warning("%d question%s too long for max_length=%d with stride %d, cut to %d tokens (%s); raise "
                    "--max-length to keep them whole", len(cuts), "" if len(cuts) == 1 else "s", max_length,
                    stride, keep, shown)
    return out, lost


def _cut_question(tokenizer, question: str, offsets, keep: int) -> str:
    """`question` cut after its `keep`-th token, shorter still if the cut text tokenises longer."""
    while keep > 0:
        cut = question[: offsets[keep - 1][1]]
        if len(tokenizer(cut, add_special_tokens=False)["input_ids"]) <= keep:
            return cut
        keep -= 1
    return ""


def _windows(
    examples: Sequence[QAExample],
    begin: int,
    end: int,
    tokenizer,
    max_length: int,
    stride: int,
    question_first: bool,
    lead: str = "",
) -> list[QAFeature]:
    """The features of `examples[begin:end]`, tokenised in one call. The second text gets `lead`
    (`_pair_lead`); a context that got it has its offsets shifted back onto the original context."""
    part = examples[begin:end]
    questions, contexts = [e.question for e in part], [e.context for e in part]
    if question_first:
        contexts = [_after(c, lead) for c in contexts]
    else:
        questions = [_after(q, lead) for q in questions]
    encoded = tokenizer(
        questions if question_first else contexts,
        contexts if question_first else questions,
        truncation="only_second" if question_first else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    context_side = 1 if question_first else 0
    features = []
    for row, input_ids in enumerate(encoded["input_ids"]):
        index = begin + encoded["overflow_to_sample_mapping"][row]
        shift = len(contexts[index - begin]) - len(examples[index].context)
        offsets = tuple(
            _shifted(span, shift) if side == context_side else None
            for span, side in zip(encoded["offset_mapping"][row], encoded.sequence_ids(row), strict=True)
        )
        if offsets[NO_ANSWER] is not None:
            raise PtuneError(
                f"{type(tokenizer).__name__} puts a context token first, where the no-answer position"
                " must be — use question_first=True or a tokenizer that adds [CLS]/BOS"
            )
        types = encoded["token_type_ids"][row] if "token_type_ids" in encoded else None
        start, stop = answer_tokens(offsets, examples[index])
        features.append(QAFeature(index, tuple(input_ids), tuple(types) if types is not None else None, offsets, start, stop))
    return features


def _shifted(span, shift: int) -> Offset | None:
    """A context token's span in the original context, `shift` leading characters added before it;
    None for a token of those characters alone."""
    start, end = int(span[0]), int(span[1])
    if not shift:
        return start, end
    return (max(start - shift, 0), end - shift) if end > shift else None


def encode(
    examples: Sequence[QAExample], tokenizer, max_length: int, *, prompts: int = 0, pad_id: int = 0
) -> list[QAFeature]:
    """Windows of at most `max_length` tokens, prompts included, overlapping by a quarter of the
    context room; with `prompts` > 0 that many virtual positions follow [CLS] in every window."""
    if not all(isinstance(e, QAExample) for e in examples):
        raise PtuneError("a question answering task needs question/context examples (SQuAD JSON)")
    window = max_length - prompts
    features = featurize(examples, tokenizer, window, stride=window // 4)
    return [insert_prompts(f, prompts, pad_id) for f in features] if prompts else features


def insert_prompts(feature: QAFeature, count: int, placeholder: int) -> QAFeature:
    """`feature` with `count` virtual positions after [CLS]: they hold no context (offset None),
    so the span head never picks them, and answer targets shift past them."""
    def shift(position: int) -> int:
        return position + count if position != NO_ANSWER else NO_ANSWER

    types = feature.token_type_ids
    return replace(
        feature,
        input_ids=(feature.input_ids[0], *[placeholder] * count, *feature.input_ids[1:]),
        token_type_ids=(types[0], *[0] * count, *types[1:]) if types is not None else None,
        offsets=(feature.offsets[0], *[None] * count, *feature.offsets[1:]),
        start_position=shift(feature.start_position),
        end_position=shift(feature.end_position),
        prompts=count,
    )


def answer_tokens(offsets: Sequence[Offset | None], example: QAExample) -> tuple[int, int]:
    """(start, end) token positions of the example's first answer in a window with these offsets,
    or (NO_ANSWER, NO_ANSWER) when it has none or the window does not hold all of it."""
    if not example.answers:
        return NO_ANSWER, NO_ANSWER
    first_char = example.answer_starts[0]
    end_char = first_char + len(example.answers[0])
    context = [t for t, span in enumerate(offsets) if span is not None]
    if not context or offsets[context[0]][0] > first_char or offsets[context[-1]][1] < end_char:
        return NO_ANSWER, NO_ANSWER
    start = max(t for t in context if offsets[t][0] <= first_char)
    end = min(t for t in context if offsets[t][1] >= end_char)
    return start, end


def collate_qa(features: Sequence[QAFeature], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad features into a batch (positions stay those of the features' offsets).

    Returns input_ids, attention_mask, token_type_ids, prompt_index (-1 on real tokens), span_mask
    (True on context tokens and on the no-answer position): [B, T]; start_positions,
    end_positions: [B].
    """
    length = max(len(f.input_ids) for f in features)
    batch = len(features)
    input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, length), dtype=torch.long)
    types = torch.zeros((batch, length), dtype=torch.long)
    span_mask = torch.zeros((batch, length), dtype=torch.bool)
    prompt_index = torch.full((batch, length), -1, dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f.input_ids)
        input_ids[row, :n] = torch.tensor(f.input_ids)
        prompt_index[row, 1 : 1 + f.prompts] = torch.arange(f.prompts)
        attention[row, :n] = 1
        if f.token_type_ids is not None:
            types[row, :n] = torch.tensor(f.token_type_ids)
        span_mask[row, :n] = torch.tensor([span is not None for span in f.offsets])
    span_mask[:, NO_ANSWER] = True
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "token_type_ids": types,
        "prompt_index": prompt_index,
        "span_mask": span_mask,
        "start_positions": torch.tensor([f.start_position for f in features]),
        "end_positions": torch.tensor([f.end_position for f in features]),
    }


class SpanQA(TaskKind):
    """Extractive question answering: a start and an end logit per token (``SpanHead``); an example's
    answer is its best span over all its windows, or "" (SQuAD 2.0, metric squad_v2)."""

    name = "qa"
    metrics: ClassVar[tuple[str, ...]] = ("squad", "squad_v2")
    has_labels = False
    mixable = False
    input_help = "a JSON object with 'question' and 'context' strings"

    def check(self, model) -> None:
        if model.config.peft_layout:
            raise PtuneError("question answering keeps [CLS] first (the no-answer position); drop --peft-layout")
        if any(part.kind == "words" for part in model.template.parts):
            raise PtuneError(f"template {model.template.source!r}: question answering places only the continuous "
                             "tokens (after [CLS]); drop the words from the template")
        if model.config.head == "verbalizer":
            raise PtuneError("the verbalizer head classifies whole examples; use --head linear for QA tasks")

    def head(self, model) -> nn.Module:
        return SpanHead(model.backbone.output_size, causal=model.backbone.is_decoder)

    def encode(self, model, examples: Sequence) -> list[QAFeature]:
        """Strided windows of question + context; input prompts right after [CLS]."""
        prompts = model.template.num_prompts if model.input_prompt is not None else 0
        return encode(examples, model.backbone.tokenizer, model.config.max_length, prompts=prompts,
                      pad_id=model.encoder.pad_id)

    def collate(self, model, features: Sequence[QAFeature]) -> dict[str, torch.Tensor]:
        return collate_qa(features, pad_id=model.encoder.pad_id)

    def loss(self, model, outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model.head.loss(*outputs, *model.head.targets(batch))

    def rows(self, outputs, batch: dict[str, torch.Tensor]) -> list:
        """(start [B, T], end [B, T]) -> one (start [T], end [T]) per window."""
        return list(zip(*(logits.float().cpu().unbind(0) for logits in outputs)))

    def decode_row(self, model, output, num_words: int):
        return output  # a window's logits: answers need every window of the example (``finish``)

    def decode(self, model, outputs, batch: dict[str, torch.Tensor], *, scored: bool = False) -> list:
        return self.rows(outputs, batch)  # scored or not: the windows' logits, joined by ``finish``

    def finish(self, model, examples: Sequence, features: Sequence, decoded: list, *, scored: bool = False) -> list:
        """Each example's answer text; with ``scored``, (text, scores) pairs: ``score`` (the span's
        start + end logit), ``start``/``end`` (character offsets, None for no answer) and, when the
        metric allows no answer (squad_v2), ``no_answer_score``."""
        starts, ends = zip(*decoded) if decoded else ((), ())
        impossible = model.metric == "squad_v2"
        answers = best_answers(examples, features, starts, ends, allow_impossible=impossible)
        if not scored:
            return [answer.text for answer in answers]
        return [(a.text, {"score": a.score, "start": a.start, "end": a.end,
                          **({"no_answer_score": a.no_answer_score} if impossible else {})}) for a in answers]

    def marks(self, examples: Sequence, features: Sequence) -> list[dict]:
        """Per example: ``truncated``, the question tokens cut to leave the context room, and
        ``truncated_context``, the context characters that no window holds; {} if neither."""
        windows: list[list] = [[] for _ in examples]
        for feature in features:
            windows[feature.example_index].append(feature)
        out = []
        for example, mine in zip(examples, windows):
            cut, unseen = max((f.question_cut for f in mine), default=0), unseen_context(example.context, mine)
            out.append({**({"truncated": cut} if cut else {}), **({"truncated_context": unseen} if unseen else {})})
        return out

    def gold(self, examples) -> list:
        return list(examples)

    def labelled(self, example) -> bool:
        return True  # a question without answers is "no answer" (SQuAD 2.0), still scored

    def example(self, row: dict, *, predicate: int | None = None) -> QAExample:
        if not (isinstance(row.get("question"), str) and isinstance(row.get("context"), str)):
            raise ValueError(f"expected {self.input_help}")
        if not (row["question"].strip() and row["context"].strip()):
            raise ValueError("the question or the context is empty; give both")
        return QAExample(str(row.get("id", "")), row["question"], row["context"])

    def record(self, example, prediction, scores: dict | None = None, *, top_k: int | None = None) -> dict:
        return {"id": example.id, "question": example.question, "answer": prediction, **(scores or {})}
