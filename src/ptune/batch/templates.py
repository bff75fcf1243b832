"""P-tuning templates: where continuous prompt tokens, discrete words and input slots go.

A template is whitespace-separated parts: ``[P]`` or ``[P]*N`` (continuous tokens), ``{text}``,
``{text_pair}``, ``{label}`` (slots) and any other words (discrete tokens), e.g.
``"[P]*3 {text} [P] It was [P]*2 {label}"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ptune.errors import PtuneError

SLOTS = ("text", "text_pair", "label")
_VIRTUAL = re.compile(r"^\[P\](?:\*(\d+))?$")
_SLOT = re.compile(r"^\{(\w*)\}$")


@dataclass(frozen=True)
class Part:
    """One piece of a template: ``kind`` is "prompt" (``count`` tokens), "slot" or "words"."""

    kind: str
    value: str = ""
    count: int = 0


@dataclass(frozen=True)
class Template:
    source: str
    parts: tuple[Part, ...]

    @property
    def num_prompts(self) -> int:
        return sum(part.count for part in self.parts if part.kind == "prompt")

    def has_slot(self, name: str) -> bool:
        return any(part.kind == "slot" and part.value == name for part in self.parts)


def parse_template(source: str) -> Template:
    """Parse and validate a template string (raises PtuneError naming the offending part)."""
    parts: list[Part] = []
    words: list[str] = []

    def flush_words() -> None:
        if words:
            parts.append(Part("words", " ".join(words)))
            words.clear()

    for token in source.split():
        if virtual := _VIRTUAL.match(token):
            flush_words()
            count = int(virtual.group(1) or 1)
            if count < 1:
                raise PtuneError(f"template {source!r}: {token} needs a count of at least 1")
            parts.append(Part("prompt", count=count))
        elif slot := _SLOT.match(token):
            flush_words()
            if slot.group(1) not in SLOTS:
                raise PtuneError(f"template {source!r}: unknown slot {token}; use one of {{text}}, {{text_pair}}, {{label}}")
            parts.append(Part("slot", slot.group(1)))
        elif "[P]" in token or "{" in token or "}" in token:
            raise PtuneError(f"template {source!r}: cannot read {token!r}; write [P], [P]*N or a slot, separated by spaces")
        else:
            words.append(token)
    flush_words()
    template = Template(source, tuple(parts))
    for name in SLOTS:
        count = sum(1 for part in parts if part.kind == "slot" and part.value == name)
        if count > 1:
            raise PtuneError(f"template {source!r}: slot {{{name}}} appears {count} times; use it once")
    if not template.has_slot("text"):
        raise PtuneError(f"template {source!r}: needs a {{text}} slot for the input")
    return template


def default_template(method: str, *, prompt_length: int, pair: bool, leading: bool = False) -> str:
    """The template each method uses when the user gives none (``leading``: every prompt first)."""
    text = "{text} {text_pair}" if pair else "{text}"
    if method == "prompt" or (method == "ptuning" and leading):
        return f"[P]*{prompt_length} {text}"
    if method == "ptuning":
        half = max(1, prompt_length // 2)
        return f"[P]*{half} {text} [P]*{max(1, prompt_length - half)}"
    return text
