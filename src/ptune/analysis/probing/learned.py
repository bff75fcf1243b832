"""Learned probes: P-tuning's continuous tokens mixed into a manual template, or a Lester soft prompt.

A probe maps a subject to the input embeddings [T, H] that precede the object; the LM stays frozen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ptune.analysis.probing.relations import spacing
from ptune.errors import PtuneError
from ptune.model.prompts.init import sampled_vocab
from ptune.model.prompts.input import ENCODERS, InputPrompt

_PIECE = re.compile(r"(\[P\](?:\*\d+)?|\{subject\}|\{\}|\{object\})")
_COUNT = re.compile(r"^\[P\](?:\*(\d+))?$")


@dataclass(frozen=True)
class Piece:
    """One part of a probe template: "prompt" (``count`` continuous tokens), "subject" or "words".

    ``space``: the discrete text follows a space (or a [P]) in the template, so it is tokenised
    with a leading space, as it would be inside running text.
    """

    kind: str
    text: str = ""
    count: int = 0
    space: bool = False


@dataclass(frozen=True)
class ProbeTemplate:
    """A parsed probe template such as ``"[P]*3 The capital of {subject} is [P]*3"``."""

    source: str
    pieces: tuple[Piece, ...]

    @property
    def num_prompts(self) -> int:
        return sum(piece.count for piece in self.pieces)


def parse_probe_template(source: str) -> ProbeTemplate:
    """Parse ``[P]``/``[P]*N`` (continuous tokens), one ``{subject}`` (or ``{}``) and words; an
    optional ``{object}`` must come last (the object always follows the template)."""
    if not isinstance(source, str) or not source.strip():
        raise PtuneError("probe template is empty: give e.g. 'The capital of {subject} is'")
    parts = [p for p in _PIECE.split(source.strip()) if p]
    if "{object}" in parts:
        if parts.index("{object}") != len(parts) - 1:
            raise PtuneError(f"template {source!r}: {{object}} must come last (the object follows the prompt)")
        parts = parts[:-1]
    pieces: list[Piece] = []
    space = False  # whether the next discrete text starts after a space or a [P]
    for part in parts:
        if match := _COUNT.match(part):
            count = int(match.group(1) or 1)
            if count < 1:
                raise PtuneError(f"template {source!r}: {part} needs a count of at least 1")
            pieces.append(Piece("prompt", count=count))
            space = True
        elif part in ("{subject}", "{}"):
            pieces.append(Piece("subject", space=space and bool(pieces)))
            space = False
        else:
            if "{" in part or "}" in part or "[P]" in part:
                raise PtuneError(f"template {source!r}: cannot read {part.strip()!r}; use [P], [P]*N, {{subject}} "
                                 f"and words")
            lead = (space or part[0].isspace()) and bool(pieces)
            if part.strip():
                pieces.append(Piece("words", part.strip(), space=lead))
            space = part[-1].isspace()
    slots = sum(piece.kind == "subject" for piece in pieces)
    if slots != 1:
        raise PtuneError(f"template {source!r} needs exactly one {{subject}} slot (found {slots}), "
                         f"e.g. 'The capital of {{subject}} is'")
    return ProbeTemplate(source, tuple(pieces))


def ptuning_template(manual: str, count: int = 3) -> str:
    """The paper's unidirectional pattern around a manual wording: ``[P]*n <manual> [P]*n``."""
    return f"[P]*{count} {manual.replace('{object}', '').strip()} [P]*{count}"


def soft_prompt_template(manual: str | None, count: int = 8) -> str:
    """Lester's soft prompt prepended to a manual template, or alone before the subject."""
    return f"[P]*{count} {manual.replace('{object}', '').strip() if manual else '{subject}'}"


def _words_ids(tokenizer: PreTrainedTokenizerBase, text: str, space: bool) -> list[int]:
    """``text``'s token ids, no special tokens: after a space (``space``) as a word after text in
    running text, with the tokenizer's learned spacing; otherwise as the start of a text."""
    return tokenizer.encode(spacing(tokenizer).text(text, after_text=space), add_special_tokens=False)


class ProbePrompt(nn.Module):
    """A frozen LM's input for each subject: template words and subject as token embeddings,
    the ``[P]`` slots filled by trainable vectors (optionally through a P-tuning prompt encoder).

    With an encoder, its output is added to the raw vectors and its last layer starts at zero,
    so training starts exactly from the initial vectors (e.g. real word embeddings) and the
    encoder reparameterises only the change.
    """

    def __init__(self, template: str, tokenizer: PreTrainedTokenizerBase, embeddings: nn.Embedding, *,
                 encoder: str = "lstm", init: torch.Tensor | None = None):
        super().__init__()
        if encoder not in ENCODERS:
            raise PtuneError(f"encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
        self.template = parse_probe_template(template)
        if self.template.num_prompts == 0:
            raise PtuneError(f"template {template!r} has no [P] tokens to train: add e.g. [P]*3, "
                             f"or use --method manual")
        self.tokenizer, self.encoder = tokenizer, encoder
        self._embeddings = [embeddings]  # a list: the frozen table is not a submodule (not saved)
        hidden = embeddings.weight.shape[1]
        self.vectors = InputPrompt(self.template.num_prompts, hidden, encoder=encoder, init=init)
        if encoder != "none":
            last = self.vectors.mlp[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.vectors.to(embeddings.weight.device)  # the encoder is built on CPU; the backbone may be elsewhere
        self._words = {i: _words_ids(tokenizer, p.text, p.space) for i, p in enumerate(self.template.pieces)
                       if p.kind == "words"}

    @property
    def embeddings(self) -> nn.Embedding:
        return self._embeddings[0]

    def continuous(self) -> torch.Tensor:
        """The [P] vectors in template order: [P, H]."""
        if self.encoder == "none":
            return self.vectors.embedding
        return self.vectors.embedding + self.vectors()

    def subject_ids(self, subject: str) -> list[int]:
        piece = next(p for p in self.template.pieces if p.kind == "subject")
        return _words_ids(self.tokenizer, subject, piece.space)

    def forward(self, subject: str) -> torch.Tensor:
        """The prompt for ``subject`` as input embeddings [T, H] (the object follows)."""
        return self.embed([subject])[0]

    def embed(self, subjects: list[str]) -> list[torch.Tensor]:
        """One [T_i, H] prompt per subject; the prompt encoder runs once for all of them."""
        vectors = self.continuous()
        device = vectors.device
        rows = []
        for subject in subjects:
            parts, used = [], 0
            for i, piece in enumerate(self.template.pieces):
                if piece.kind == "prompt":
                    parts.append(vectors[used:used + piece.count])
                    used += piece.count
                else:
                    ids = self._words[i] if piece.kind == "words" else self.subject_ids(subject)
                    parts.append(self.embeddings(torch.tensor(ids, dtype=torch.long, device=device)))
            rows.append(torch.cat(parts))
        return rows


def init_vectors(template: str, tokenizer: PreTrainedTokenizerBase, embeddings: torch.Tensor, *,
                 how: str = "words", seed: int = 0) -> torch.Tensor:
    """Initial [P] vectors [P, H]: ``words`` cycles through the embeddings of the template's own
    words' tokens (sampled vocabulary when it has none); ``vocab`` samples from the 5,000 first
    token ids (BPE merges: roughly the most frequent tokens)."""
    parsed = parse_probe_template(template)
    generator = torch.Generator().manual_seed(seed)
    vocab = sampled_vocab(embeddings, parsed.num_prompts, range(min(5000, len(embeddings))), generator=generator)
    if how == "vocab":
        return vocab
    if how != "words":
        raise PtuneError(f"init must be 'words' or 'vocab', got {how!r}")
    ids = [t for p in parsed.pieces if p.kind == "words" for t in _words_ids(tokenizer, p.text, True)]
    if not ids:
        return vocab
    return embeddings[torch.tensor([ids[i % len(ids)] for i in range(parsed.num_prompts)])].detach().clone()
