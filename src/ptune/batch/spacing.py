"""Word spacing as the tokenizer writes it: how a word is tokenised at the start of a text and after
another word, learned once from the tokenizer itself, never from the model's architecture.

WordPiece ignores spaces; byte-level BPE (GPT-2, Llama 3, RoBERTa) marks a word that follows a
space (``Ġgood``) and not the first word of a text; SentencePiece marks every word (``▁good``)
itself, and an explicit leading space may even add a token (``▁`` ``▁good``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Probe words after a first word "a": each votes for the prefix that reproduces running text.
_PROBES = ("b", "the", "good", "Paris", "1996", ",")


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def word_separator(tokenizer) -> str:
    """What to put before a word so that, tokenised alone, it gets the tokens it has after another
    word in running text: ``" "`` for byte-level BPE and SentencePiece without a dummy prefix,
    ``""`` where the tokenizer marks or ignores word starts itself (WordPiece, most SentencePiece).

    Learned by comparing ``tokenizer("a " + w)`` with ``tokenizer("a") + tokenizer(w)`` and
    ``tokenizer("a") + tokenizer(" " + w)`` for a few probe words (ties: ``""``, which never adds
    a token)."""
    lead = _ids(tokenizer, "a")
    votes: Counter[str] = Counter()
    for word in _PROBES:
        joint = _ids(tokenizer, "a " + word)
        if joint[: len(lead)] != lead:
            continue
        tail = joint[len(lead):]
        if tail == _ids(tokenizer, word):
            votes[""] += 1
        elif tail == _ids(tokenizer, " " + word):
            votes[" "] += 1
    if not votes:
        log.debug("%s: no probe word splits cleanly; words after text get a leading space", type(tokenizer).__name__)
        return " "
    return " " if votes[" "] > votes[""] else ""


@dataclass(frozen=True, eq=False)
class Spacing:
    """A tokenizer with its learned ``separator``; tokenises texts and pre-split words as running text.

    ``after_text``: the text follows other text in the sequence (template words, text, pair or label
    word after something real; prompts and special tokens do not count), so its first word is
    tokenised as a word after a space; otherwise as the start of a text.
    """

    tokenizer: object
    separator: str
    pretokenized: bool  # the tokenizer's pre-split path gives each word the tokens it has alone

    @classmethod
    def of(cls, tokenizer) -> Spacing:
        separator = word_separator(tokenizer)
        return cls(tokenizer, separator, _pretokenized_matches(tokenizer, separator))

    def text(self, text: str, *, after_text: bool) -> str:
        """``text`` as it must be given to the tokenizer alone to get its running-text tokens."""
        return self.separator + text if after_text and text else text

    def ids(self, texts: Sequence[str], *, after_text: bool) -> list[list[int]]:
        """Token ids of each text (no special tokens), tokenised in one call."""
        if not texts:
            return []
        return self.tokenizer([self.text(t, after_text=after_text) for t in texts],
                              add_special_tokens=False)["input_ids"]

    def words(self, sentences: Sequence[Sequence[str]], *, after_text: bool) -> list[tuple[list[int], list[int]]]:
        """Pre-split sentences -> (token ids, the word index of each token) per sentence.

        Each word is tokenised as it is in the running text ``" ".join(words)``: the first as the
        start of a text (unless ``after_text``), every later one as a word after a space; so each
        word's tokens decode back to it. A word with no tokens (e.g. only control or zero-width
        characters for WordPiece) simply has no index in the list. One bulk call to the tokenizer.
        """
        if not sentences:
            return []
        spaced = [[self.text(w, after_text=after_text or i > 0) for i, w in enumerate(words)] for words in sentences]
        if self.pretokenized:
            encoded = self.tokenizer(spaced, is_split_into_words=True, add_special_tokens=False)
            return [(list(encoded["input_ids"][i]), list(encoded.word_ids(i))) for i in range(len(spaced))]
        # Slow tokenizers, or pre-split paths that tokenise words differently: every word alone.
        flat = [w for words in spaced for w in words]
        pieces = self.tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        out, cursor = [], 0
        for words in spaced:
            ids: list[int] = []
            owner: list[int] = []
            for index in range(len(words)):
                ids.extend(pieces[cursor + index])
                owner.extend([index] * len(pieces[cursor + index]))
            cursor += len(words)
            out.append((ids, owner))
        return out


def _pretokenized_matches(tokenizer, separator: str) -> bool:
    """Whether ``is_split_into_words=True`` (one fast bulk call, with word ids) gives every word
    exactly the tokens it gets alone; some pipelines add or drop markers per word there."""
    if not getattr(tokenizer, "is_fast", False):
        return False
    words = ["a", separator + "b", separator + "AL-AIN", separator + ",", separator + "1996-12-06"]
    try:
        encoded = tokenizer([words], is_split_into_words=True, add_special_tokens=False)
        word_ids = encoded.word_ids(0)
    except (ValueError, TypeError, AssertionError) as error:  # e.g. a wrapper that refuses pre-split input
        log.debug("%s: no pre-split path (%s); words are tokenised one by one", type(tokenizer).__name__, error)
        return False
    alone = [_ids(tokenizer, w) for w in words]
    return (list(encoded["input_ids"][0]) == [i for ids in alone for i in ids]
            and list(word_ids) == [k for k, ids in enumerate(alone) for _ in ids])
