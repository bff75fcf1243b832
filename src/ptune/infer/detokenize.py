"""A generated continuation as text while its tokens arrive: decoded after the text's last token (so a
SentencePiece word keeps its leading space), cut before the first stop string, and handed out in
pieces that are never taken back.
"""

from __future__ import annotations

from typing import Sequence


class RowText:
    """One row's continuation. ``add(token)`` after each new token; ``piece()`` is the text that is
    safe to hand out since the last call; ``stopped`` once a stop string appeared (the text then ends
    just before it)."""

    def __init__(self, tokenizer, stops: Sequence[str], context: int | None = None):
        """``context``: the id of the text's last real token (None: none), decoded in front of the new
        tokens and removed again."""
        self.tokenizer, self.stops = tokenizer, tuple(stops)
        self.context = [context] if context is not None else []
        self.lead = self._decode(self.context)
        self.ids: list[int] = []
        self.text = ""
        self.sent = ""  # the pieces handed out so far, joined
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True) if ids else ""

    def add(self, token: int) -> None:
        self.ids.append(token)
        text = self._decode(self.context + self.ids)
        text = text[len(self.lead):] if text.startswith(self.lead) else self._decode(self.ids)
        found = [i for i in (text.find(stop) for stop in self.stops) if i >= 0]
        if found:
            text, self.stopped = text[: min(found)], True
        self.text = text

    def piece(self, *, final: bool = False) -> str:
        """The text not handed out yet that can no longer change: all of it when ``final`` or stopped;
        else without an unfinished character (U+FFFD from a partial UTF-8 sequence), trailing
        whitespace (a tokenizer's clean-up may still drop it) or an ending that may begin a stop string."""
        end = len(self.text) if final or self.stopped else self._settled()
        piece = self.text[len(self.sent): end] if end > len(self.sent) else ""
        self.sent += piece
        return piece

    def _settled(self) -> int:
        text = self.text
        end = len(text.rstrip("\ufffd").rstrip())
        for stop in self.stops:  # hold back the longest ending that a stop string starts with
            for size in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:size]):
                    end = min(end, len(text) - size)
                    break
        return end

    @property
    def result(self) -> str:
        """The whole continuation as handed out (call after the final ``piece``)."""
        return self.sent
