"""Examples -> token ids -> padded batches, following a template.

Texts are tokenised once, in bulk, without special tokens; each example is then assembled as
``specials + template pieces + specials`` (SRL: ``+ predicate word + specials``, a second segment).
Every piece is tokenised as it reads in running text, with the word spacing the tokenizer itself
uses (``batch.spacing``). Continuous prompt positions carry a placeholder id and their index in
``prompt_index`` (-1 for real tokens); for tagging, ``word_index`` marks the first sub-token of
every word (-1 elsewhere), so virtual tokens never carry a label; a word with no sub-token has no
position (its prediction is "O") and every other word keeps its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import logging
import random
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from ptune.data.examples import TaggedExample, TextExample
from ptune.errors import PtuneError
from ptune.batch.spacing import Spacing
from ptune.batch.templates import Template

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass(frozen=True)
class SpecialLayout:
    """The special tokens a tokenizer wraps around one text or a pair, read off real encodings."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    pair_middle: tuple[int, ...]
    pair_suffix: tuple[int, ...]
    second_type: int
    uses_token_types: bool

    @classmethod
    def of(cls, tokenizer) -> "SpecialLayout":
        a = tokenizer("a", add_special_tokens=False)["input_ids"]
        b = tokenizer("b", add_special_tokens=False)["input_ids"]
        single = tokenizer("a")["input_ids"]
        pair = tokenizer("a", "b")
        start = _find(single, a)
        prefix, suffix = single[:start], single[start + len(a) :]
        pair_ids = pair["input_ids"]
        middle_start = len(prefix) + len(a)
        b_start = _find(pair_ids, b, middle_start)
        types = pair.get("token_type_ids")
        return cls(
            prefix=tuple(prefix),
            suffix=tuple(suffix),
            pair_middle=tuple(pair_ids[middle_start:b_start]),
            pair_suffix=tuple(pair_ids[b_start + len(b) :]),
            second_type=int(types[b_start]) if types else 0,
            uses_token_types=types is not None,
        )


def _find(haystack: Sequence[int], needle: Sequence[int], start: int = 0) -> int:
    for i in range(start, len(haystack) - len(needle) + 1):
        if list(haystack[i : i + len(needle)]) == list(needle):
            return i
    raise PtuneError("tokenizer special-token layout not understood: report this backbone to ptune")


@dataclass
class Feature:
    """One assembled example (before padding)."""

    input_ids: list[int]
    prompt_index: list[int]
    word_index: list[int]
    token_types: list[int]
    pool: int
    label: int | list[int] | float | None  # class id, tag ids per word, or a score
    num_words: int = 0
    position_offset: int = 0  # added to position ids (PEFT's prefix-tuning layout)
    truncated: int = 0  # text / text_pair tokens cut to fit max_length
    words_cut: int = 0  # tagging: words whose first sub-token was cut (predicted "O")


class Encoder:
    """Turns examples into Features for one tokenizer, template and label set."""

    def __init__(self, tokenizer, template: Template, *, words: bool, target: Callable[[object], object],
                 decoder: bool, max_length: int = 128, prompts_before_specials: bool = False,
                 position_offset: int = 0):
        """``words``: examples are pre-split words (tagging), the first sub-token of each is marked in
        ``word_index``; ``target``: an example's training target (the task kind's), None if unlabelled;
        ``decoder``: a causal LM (left padding, the head reads the token before the ``{label}`` slot).
        Word spacing is the tokenizer's (``spacing``), whatever the model."""
        self.tokenizer = tokenizer
        self.template = template
        self.target = target
        self.words = words
        self.decoder = decoder
        self.max_length = max_length
        # PEFT's layout: input prompts before the tokenizer's start tokens, no token types.
        self.prompts_before_specials = prompts_before_specials
        self.position_offset = position_offset
        if prompts_before_specials and (template.parts[0].kind != "prompt"
                                        or any(p.kind == "prompt" for p in template.parts[1:])):
            raise PtuneError(f"template {template.source!r}: the PEFT layout needs every [P] at the start, "
                             "as in '[P]*N {text}'")
        self.layout = SpecialLayout.of(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.slot_id = slot_id(tokenizer, self.pad_id)
        self.spacing = Spacing.of(tokenizer)
        # Whether each part follows real text (prompts and specials do not count): it then starts as a
        # word after a space. After a separator token (pairs on most encoders) a segment starts afresh.
        self._after_text: dict[int, bool] = {}
        seen = False
        for index, part in enumerate(template.parts):
            if part.kind == "prompt":
                continue
            self._after_text[index] = seen and not (part.value == "text_pair" and self.layout.pair_middle)
            seen = True
        label = next((i for i, p in enumerate(template.parts) if p.kind == "slot" and p.value == "label"), None)
        # A label word fills the {label} slot; without one (causal LMs) it is the next word after the text.
        self.label_after_text = self._after_text[label] if label is not None else True
        self._text_after = next(self._after_text[i] for i, p in enumerate(template.parts) if p.value == "text"
                                and p.kind == "slot")
        self._pair_after = not self.layout.pair_middle  # SRL's predicate: glued on without a separator
        # Discrete template words are tokenised once.
        self._word_ids = {
            index: self.spacing.ids([part.value], after_text=self._after_text[index])[0]
            for index, part in enumerate(template.parts) if part.kind == "words"
        }

    def label_word_ids(self, words: Sequence[str]) -> list[list[int]]:
        """Token ids of label words as they read at the ``{label}`` slot in running text (verbalizer
        words, label-word init), e.g. ``Ġgood`` on byte-level BPE, ``▁good`` on SentencePiece."""
        return self.spacing.ids(list(words), after_text=self.label_after_text)

    def encode(self, examples: Sequence[TextExample | TaggedExample]) -> list[Feature]:
        """Tokenise ``examples`` in bulk and assemble each with the template."""
        if not examples:
            return []
        with _collector_paused():
            features = self._encode(examples)
        collecting = _TRUNCATION.get()
        if collecting is None:
            report_truncation(features, self.max_length)
        else:
            collecting.append((features, self.max_length))
        return features

    def _encode(self, examples: Sequence[TextExample | TaggedExample]) -> list[Feature]:
        if self.words:
            if not all(isinstance(e, TaggedExample) for e in examples):
                raise PtuneError("a tagging task needs token/tag examples (CoNLL columns or a tokens field)")
            encoded = self.spacing.words([e.tokens for e in examples], after_text=self._text_after)
            texts = [(ids, _first_subtokens(owners)) for ids, owners in encoded]
            empty = sum(len(e.tokens) - sum(keep for _, keep in firsts) for e, (_, firsts) in zip(examples, texts))
            if empty:
                log.warning("%d word%s no sub-tokens for this tokenizer and %s tagged O (every other word keeps "
                            "its own tag)", empty, " has" if empty == 1 else "s have", "is" if empty == 1 else "are")
            pairs = self._predicates(examples)
        else:
            if not all(isinstance(e, TextExample) for e in examples):
                raise PtuneError("a classification or regression task needs text examples (CSV/TSV/JSONL with a text field)")
            texts = [(ids, None) for ids in self.spacing.ids([e.text for e in examples], after_text=self._text_after)]
            has_pair = [e.text_pair is not None for e in examples]
            if any(has_pair) and not self.template.has_slot("text_pair"):
                raise PtuneError(f"examples have a text_pair but the template {self.template.source!r} has no {{text_pair}} slot")
            pair_texts = [e.text_pair if e.text_pair is not None else "" for e in examples]
            pair_index = next(i for i, p in enumerate(self.template.parts) if p.kind == "slot" and p.value == "text_pair") \
                if any(has_pair) else None
            pair_ids = self.spacing.ids(pair_texts, after_text=self._after_text[pair_index]) if any(has_pair) else None
            pairs = [pair_ids[i] if pair_ids and has_pair[i] else None for i in range(len(examples))]
        return [self._assemble(text, pair, self.target(example), example)
                for text, pair, example in zip(texts, pairs, examples)]

    def _predicates(self, examples: Sequence[TaggedExample]) -> list[list[int] | None]:
        """Token ids of each example's predicate word (SRL), None for examples without one."""
        marked = [i for i, e in enumerate(examples) if e.predicate is not None]
        for i in marked:
            if not 0 <= examples[i].predicate < len(examples[i].tokens):
                raise PtuneError(f"example {i + 1}: predicate {examples[i].predicate} is not the index of one of its "
                                 f"{len(examples[i].tokens)} words; give the predicate's 0-based word index")
        out: list[list[int] | None] = [None] * len(examples)
        if marked:
            words = [examples[i].tokens[examples[i].predicate] for i in marked]
            for i, ids in zip(marked, self.spacing.ids(words, after_text=self._pair_after)):
                out[i] = ids
        return out

    def _assemble(self, text, pair, label, example) -> Feature:
        text_ids, firsts = text
        pair_ids = pair or []
        layout = self.layout
        # SRL (P-tuning v2): the predicate word follows the sentence as a second segment, with no word index.
        predicate = self.words and pair is not None
        use_pair = self.template.has_slot("text_pair") or predicate
        fixed = len(layout.prefix) + (len(layout.pair_middle) + len(layout.pair_suffix) if use_pair else len(layout.suffix))
        for index, part in enumerate(self.template.parts):
            if part.kind == "prompt":
                fixed += part.count
            elif part.kind == "words":
                fixed += len(self._word_ids[index])
            elif part.value == "label" and not self.decoder:
                fixed += 1
        budget = self.max_length - fixed
        if budget < 1:
            raise PtuneError(f"template {self.template.source!r} leaves no room for text within max_length={self.max_length}")
        keep_text, keep_pair = fit(len(text_ids), len(pair_ids), budget)
        truncated = len(text_ids) + len(pair_ids) - keep_text - keep_pair
        words_cut = sum(keep for _, keep in firsts[keep_text:]) if firsts is not None else 0
        text_ids, pair_ids = text_ids[:keep_text], pair_ids[:keep_pair]

        ids: list[int] = []
        prompt_index: list[int] = []
        word_index: list[int] = []
        types: list[int] = []
        next_prompt = 0
        segment = 0
        parts = self.template.parts

        def extend(new_ids, *, prompts=None, words=None):
            ids.extend(new_ids)
            prompt_index.extend(prompts if prompts is not None else [-1] * len(new_ids))
            word_index.extend(words if words is not None else [-1] * len(new_ids))
            types.extend([segment] * len(new_ids))

        start = 0
        if self.prompts_before_specials:
            extend([self.pad_id] * parts[0].count, prompts=list(range(parts[0].count)))
            next_prompt, start = parts[0].count, 1
        pool = len(ids) if not self.decoder else -1  # encoders: the start token ([CLS])
        extend(list(layout.prefix))
        for index, part in enumerate(parts[start:], start):
            if part.kind == "prompt":
                extend([self.pad_id] * part.count, prompts=list(range(next_prompt, next_prompt + part.count)))
                next_prompt += part.count
            elif part.kind == "words":
                extend(self._word_ids[index])
            elif part.value == "text":
                words = [w if keep else -1 for w, keep in firsts] if firsts is not None else None
                extend(text_ids, words=words[: len(text_ids)] if words is not None else None)
            elif part.value == "text_pair":
                extend(list(layout.pair_middle))
                segment = layout.second_type
                extend(pair_ids)
            else:  # label slot: the head reads here
                if self.decoder:
                    pool = len(ids) - 1
                else:
                    pool = len(ids)
                    extend([self.slot_id])
        if predicate:
            extend(list(layout.pair_middle))
            segment = layout.second_type
            extend(pair_ids)
        extend(list(layout.pair_suffix if use_pair else layout.suffix))
        if pool == -1:
            pool = len(ids) - 1
        num_words = len(example.tokens) if self.words else 0
        if self.prompts_before_specials:
            types = [0] * len(ids)
        return Feature(ids, prompt_index, word_index, types, pool, label, num_words, self.position_offset,
                       truncated, words_cut)


def slot_id(tokenizer, pad_id: int) -> int:
    """The token at a masked LM's ``{label}`` slot: its mask token, T5's first sentinel ``<extra_id_0>``
    (what T5 was pretrained to fill), else the pad token."""
    if tokenizer.mask_token_id is not None:
        return tokenizer.mask_token_id
    sentinel = tokenizer.convert_tokens_to_ids("<extra_id_0>")
    return sentinel if isinstance(sentinel, int) and sentinel != tokenizer.unk_token_id else pad_id


def fit(text: int, pair: int, budget: int) -> tuple[int, int]:
    """How many text and text_pair tokens to keep so that both fit ``budget``: the longer is cut first
    down to the shorter, then both in turn (text first), as cutting one token at a time would."""
    if text + pair <= budget:
        return text, pair
    short = min(text, pair)
    if budget >= 2 * short:
        return (budget - short, pair) if text >= pair else (text, budget - short)
    return budget // 2, budget - budget // 2


def report_truncation(features: Sequence, max_length: int | Sequence[int]) -> None:
    """Log once how many features were cut to ``max_length`` (one, or each model's in a mixed call) and
    how many tokens (and tagged words) they lost."""
    cut = [f.truncated for f in features if getattr(f, "truncated", 0)]
    if not cut:
        return
    words = sum(getattr(f, "words_cut", 0) for f in features)
    lengths = "/".join(map(str, sorted(set(max_length)))) if isinstance(max_length, Sequence) else max_length
    log.warning("%d of %d examples were cut to max_length=%s, losing %d tokens (up to %d per example)%s; "
                "raise --max-length to keep them", len(cut), len(features), lengths, sum(cut), max(cut),
                f" and {words} words, tagged O" if words else "")


_TRUNCATION: contextvars.ContextVar[list | None] = contextvars.ContextVar("ptune_truncation", default=None)


@contextlib.contextmanager
def truncation_collected() -> Iterator[list[tuple[list, int]]]:
    """Inside, ``Encoder.encode`` logs nothing about what it cut and appends (features, max_length) to
    the list this yields instead, so that a call encoding in chunks (or per task) warns once
    (``report_truncation`` over what it chooses)."""
    collected: list[tuple[list, int]] = []
    token = _TRUNCATION.set(collected)
    try:
        yield collected
    finally:
        _TRUNCATION.reset(token)


def truncation_marks(feature) -> dict[str, int]:
    """What a prediction record adds for a cut feature: ``"truncated"``, the tokens cut to fit
    max_length, and for tagging ``"truncated_words"``, the words past the cut (tagged O); {} if uncut."""
    marks = {}
    if getattr(feature, "truncated", 0):
        marks["truncated"] = feature.truncated
        if feature.words_cut:
            marks["truncated_words"] = feature.words_cut
    return marks


def truncation_counts(features: Sequence) -> dict[str, int]:
    """``{"examples": features cut, "tokens": tokens lost}`` over ``features`` (0s for kinds that never cut)."""
    cut = [getattr(f, "truncated", 0) for f in features]
    return {"examples": sum(1 for n in cut if n), "tokens": sum(cut)}


@contextlib.contextmanager
def _collector_paused():
    """Encoding makes millions of small lists and no reference cycles; Python's cyclic collector would
    rescan all of them again and again (conll2003 x16: 1.6x slower than linear; paused: 1.07x)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _first_subtokens(word_ids: list[int | None]) -> list[tuple[int, bool]]:
    """(word, is first sub-token) for each token of a pre-split sentence."""
    out, previous = [], None
    for word in word_ids:
        out.append((word if word is not None else -1, word is not None and word != previous))
        previous = word
    return out


def collate(features: Sequence[Feature], *, pad_id: int, left_pad: bool) -> dict[str, torch.Tensor]:
    """Pad a list of Features into tensors.

    Returns input_ids, attention_mask, token_type_ids, prompt_index, word_index: [B, T];
    pool_index: [B]; num_words: [B]; for labelled features, labels: [B] (class ids), tags: [B, W]
    (tag ids per word, IGNORE-padded) and/or scores: [B] (regression targets, NaN where none).
    """
    length = max(len(f.input_ids) for f in features)
    batch = len(features)
    input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, length), dtype=torch.long)
    types = torch.zeros((batch, length), dtype=torch.long)
    prompt_index = torch.full((batch, length), -1, dtype=torch.long)
    word_index = torch.full((batch, length), -1, dtype=torch.long)
    pool = torch.zeros(batch, dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f.input_ids)
        start = length - n if left_pad else 0
        span = slice(start, start + n)
        input_ids[row, span] = torch.tensor(f.input_ids)
        attention[row, span] = 1
        types[row, span] = torch.tensor(f.token_types)
        prompt_index[row, span] = torch.tensor(f.prompt_index)
        word_index[row, span] = torch.tensor(f.word_index)
        pool[row] = start + f.pool
    out = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "token_type_ids": types,
        "prompt_index": prompt_index,
        "word_index": word_index,
        "pool_index": pool,
        "num_words": torch.tensor([f.num_words for f in features]),
    }
    if any(f.position_offset for f in features):
        out["position_offset"] = torch.tensor([f.position_offset for f in features])
    # Class ids go to "labels" [B], tag ids to "tags" [B, W]; a batch mixing tasks may have both
    # (IGNORE where a row has none).
    labels = [f.label for f in features]
    if any(isinstance(label, float) for label in labels):  # regression scores
        out["scores"] = torch.tensor([label if isinstance(label, float) else float("nan") for label in labels])
    if any(isinstance(label, int) for label in labels):
        out["labels"] = torch.tensor([label if isinstance(label, int) else IGNORE for label in labels])
    if any(isinstance(label, list) for label in labels):
        width = max(1, max(len(label) for label in labels if isinstance(label, list)))
        tags = torch.full((batch, width), IGNORE, dtype=torch.long)
        for row, label in enumerate(labels):
            if isinstance(label, list):
                tags[row, : len(label)] = torch.tensor(label, dtype=torch.long)
        out["tags"] = tags
    return out


def batches(features: Sequence[Feature], batch_size: int, *, shuffle: bool, seed: int = 0,
            bucket: int = 50) -> Iterator[list[int]]:
    """Index batches; when shuffling, group similar lengths (within windows of ``bucket`` batches)
    so dynamic padding wastes little, then shuffle the batch order."""
    order = list(range(len(features)))
    if not shuffle:
        order.sort(key=lambda i: len(features[i].input_ids))
        yield from (order[i : i + batch_size] for i in range(0, len(order), batch_size))
        return
    rng = random.Random(seed)
    rng.shuffle(order)
    window = batch_size * bucket
    groups = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(features[i].input_ids))
        groups.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(groups)
    yield from groups
