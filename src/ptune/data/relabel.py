"""Domain shift: map another data set's label names onto the labels a prompt was trained with
(``ptune evaluate PROMPT --data OTHER --label-map "pos=positive,neg=negative"``)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from ptune.errors import PtuneError
from ptune.data.examples import TaggedExample


def parse_label_map(text: str) -> dict[str, str]:
    """'pos=positive,neg=negative' -> {"pos": "positive", "neg": "negative"}."""
    mapping: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        source, sep, target = (part.strip() for part in entry.partition("="))
        if not sep or not source or not target:
            raise PtuneError(f"--label-map entry {entry!r} must read 'their_label=prompt_label', e.g. 'pos=positive,neg=negative'")
        if mapping.get(source, target) != target:
            raise PtuneError(f"--label-map maps {source!r} twice ({mapping[source]!r} and {target!r}); keep one")
        mapping[source] = target
    if not mapping:
        raise PtuneError("--label-map is empty: give 'their_label=prompt_label' pairs separated by commas")
    return mapping


def relabel(examples: Sequence, mapping: dict[str, str], known: Sequence[str], source: str) -> list:
    """``examples`` with labels (or tags) renamed by ``mapping``; labels already in ``known`` pass
    through. Refuses a mapping onto a label the prompt does not know, and any label left unknown."""
    known_set = set(known)
    bad_targets = sorted({t for t in mapping.values() if t not in known_set})
    if bad_targets:
        raise PtuneError(f"--label-map maps onto {', '.join(map(repr, bad_targets))}, not labels of the prompt "
                         f"(its labels: {', '.join(known)}); map onto those")
    out, unknown = [], {}
    for row, example in enumerate(examples, start=1):
        if isinstance(example, TaggedExample):
            tags = None if example.tags is None else tuple(mapping.get(t, t) for t in example.tags)
            for tag in tags or ():
                if tag not in known_set:
                    unknown.setdefault(tag, row)
            out.append(dataclasses.replace(example, tags=tags))
        else:
            label = None if example.label is None else mapping.get(example.label, example.label)
            if label is not None and label not in known_set:
                unknown.setdefault(label, row)
            out.append(dataclasses.replace(example, label=label))
    if unknown:
        listed = ", ".join(f"{label!r} (first at row {row})" for label, row in list(unknown.items())[:5])
        raise PtuneError(f"{source}: label(s) {listed} neither mapped by --label-map nor labels of the prompt "
                         f"({', '.join(known)}); add e.g. '{next(iter(unknown))}={known[0]}' to --label-map")
    return out
