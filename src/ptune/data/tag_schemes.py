"""Tag schemes: whether a tagging task's tags mark entities (IOB, IOE, IOBES, BILOU prefixes) or are
plain word classes (POS tags, chunk tags without prefixes); the scheme decides how tags are scored."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

Scheme = Literal["IOB", "IOE", "IOBES", "BILOU"]

OUTSIDE = "O"
_POSITIONS = frozenset("BIESLU")


def position(tag: str) -> str | None:
    """The position letter of an entity tag ("B" of "B-PER", or a bare "B"); None for any other tag."""
    head, dash, kind = tag.partition("-")
    return head if head in _POSITIONS and (not dash or kind) else None


def tag_scheme(tags: Iterable[str]) -> Scheme | None:
    """The entity scheme of a tag set, or None when its tags mark no entities.

    Every tag but "O" must carry a position prefix ("B-PER", or a bare "B"), and the prefixes must
    fit one scheme: B/I only -> "IOB" (IOB1 and IOB2 use the same tags, so a tag set cannot tell
    them apart); I/E only -> "IOE"; B/I/E/S with B or S -> "IOBES"; B/I/L/U with L or U -> "BILOU".
    POS tags (NN, VB), chunk tags without prefixes, a set of only "O" or a mix of schemes -> None.
    """
    prefixes: set[str] = set()
    for tag in set(tags):
        if tag == OUTSIDE:
            continue
        letter = position(tag)
        if letter is None:
            return None
        prefixes.add(letter)
    if not prefixes:
        return None
    if prefixes <= {"B", "I"}:
        return "IOB"
    if prefixes <= {"I", "E"}:
        return "IOE"
    if prefixes <= set("BIES"):
        return "IOBES"
    if prefixes <= set("BILU"):
        return "BILOU"
    return None


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) of each entity in one tag sequence, `end` inclusive, read as
    `ptune.tasks.metrics.entity_f1` reads them: IOBES and BILOU strictly, IOB and IOE by conlleval's
    rules; tags that mark no entities (`tag_scheme` None) give none."""
    scheme = tag_scheme(tags)
    if scheme is None:
        return []
    if scheme in ("IOBES", "BILOU"):
        from seqeval import scheme as schemes

        found = schemes.Tokens(list(tags), getattr(schemes, scheme)).entities
        return [(entity.tag, entity.start, entity.end - 1) for entity in found]
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, start, end) for kind, start, end in get_entities(list(tags))]
