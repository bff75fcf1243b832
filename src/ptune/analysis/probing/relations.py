"""Knowledge-probing relations (LAMA-style subject → object facts) built from countryinfo's data.

Also the fixed seeded train/dev/test split by subject and LAMA's single-token filter.
"""

from __future__ import annotations

import importlib.util
import json
import random
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from ptune.batch.spacing import Spacing, word_separator
from ptune.errors import PtuneError

RELATIONS = ("capital-of", "continent-of", "borders")
SPLITS = ("train", "dev", "test")
DEFAULT_RATIOS = (0.6, 0.2, 0.2)


@dataclass(frozen=True)
class Fact:
    """One subject and every object that counts as a correct answer for it."""

    subject: str
    objects: tuple[str, ...]


@dataclass(frozen=True)
class Relation:
    """A named relation: its facts, its candidate objects (the whole object set, sorted) and how
    many source records were left out, per reason (never dropped silently)."""

    name: str
    facts: tuple[Fact, ...]
    candidates: tuple[str, ...]
    skipped: dict[str, int] = field(default_factory=dict)


def countryinfo_dir() -> Path:
    """The folder of countryinfo's per-country JSON files."""
    spec = importlib.util.find_spec("countryinfo")
    if spec is None or not spec.submodule_search_locations:
        raise PtuneError("knowledge probing needs the package countryinfo: run `pip install countryinfo==1.0.1`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not folder.is_dir():
        raise PtuneError(f"countryinfo is installed but {folder} is missing: reinstall `countryinfo==1.0.1`")
    return folder


def read_countries(folder: Path | None = None) -> tuple[list[dict], dict[str, int]]:
    """Country records, one per ISO alpha-3 code, and the count of records left out per reason.

    Files are read in sorted name order; a later file with an ISO code already seen (countryinfo
    ships Curaçao twice and two records each for the Vatican and Palestine) is left out, so that
    no country can appear under two names in different splits.
    """
    folder = folder or countryinfo_dir()
    records: list[dict] = []
    seen: set[str] = set()
    skipped: Counter[str] = Counter()
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise PtuneError(f"cannot read country file {path}: {error} — reinstall `countryinfo==1.0.1`") from error
        code = (record.get("ISO") or {}).get("alpha3")
        if not record.get("name") or not code:
            skipped["no name or ISO code"] += 1
            continue
        if code in seen:
            skipped["duplicate ISO code"] += 1
            continue
        seen.add(code)
        records.append(record)
    return records, dict(skipped)


def _first_text(value) -> str:
    # countryinfo stores one capital as a one-element list; treat lists as their first entry.
    if isinstance(value, list):
        value = value[0] if value else ""
    return value.strip() if isinstance(value, str) else ""


def _capital(record: dict, names: dict[str, str]) -> tuple[tuple[str, ...], Counter]:
    capital = _first_text(record.get("capital"))
    return ((capital,), Counter()) if capital else ((), Counter({"missing capital": 1}))


def _continent(record: dict, names: dict[str, str]) -> tuple[tuple[str, ...], Counter]:
    region = _first_text(record.get("region"))
    return ((region,), Counter()) if region else ((), Counter({"missing region": 1}))


def _borders(record: dict, names: dict[str, str]) -> tuple[tuple[str, ...], Counter]:
    codes = record.get("borders") or []
    known = [names[code] for code in codes if code in names]
    # Codes with no country record (Kosovo's KOS/XKX) are counted per occurrence.
    notes = Counter({"unknown border code (dropped from objects)": len(codes) - len(known)})
    if not known:
        notes["no land borders"] += 1
    return tuple(sorted(set(known))), +notes


_OBJECTS: dict[str, Callable[[dict, dict[str, str]], tuple[tuple[str, ...], Counter]]] = {
    "capital-of": _capital,
    "continent-of": _continent,
    "borders": _borders,
}


def build_relation(name: str, records: Sequence[dict], skipped: dict[str, int] | None = None) -> Relation:
    """The relation ``name`` over country ``records``; ``skipped`` (earlier skip counts) is carried."""
    if name not in _OBJECTS:
        raise PtuneError(f"unknown relation {name!r}; use one of {', '.join(RELATIONS)}")
    # Border lists use alpha-3 codes, occasionally alpha-2 (the Vatican's "IT").
    names: dict[str, str] = {}
    for record in records:
        iso = record["ISO"]
        names.update({iso[key]: record["name"] for key in ("alpha3", "alpha2") if iso.get(key)})
    counts: Counter[str] = Counter(skipped or {})
    facts: list[Fact] = []
    for record in records:
        objects, notes = _OBJECTS[name](record, names)
        counts.update(notes)
        if objects:
            facts.append(Fact(record["name"], objects))
    candidates = tuple(sorted({obj for fact in facts for obj in fact.objects}))
    return Relation(name, tuple(facts), candidates, dict(counts))


def load_relation(name: str, folder: Path | None = None) -> Relation:
    """Built-in relation ``name`` (capital-of, continent-of, borders) from countryinfo's files."""
    records, skipped = read_countries(folder)
    return build_relation(name, records, skipped)


def split_facts(facts: Sequence[Fact], *, ratios: tuple[float, float, float] = DEFAULT_RATIOS,
                seed: int = 0) -> dict[str, tuple[Fact, ...]]:
    """Fixed split by subject into train/dev/test.

    Subjects are sorted, shuffled with ``random.Random(seed)`` and cut at the cumulative ratios
    (rounded down; test takes the rest), so a subject is in exactly one split and the same seed
    always gives the same split. Defaults: 60/20/20, seed 0.
    """
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise PtuneError(f"split ratios {ratios} must be three non-negative numbers summing to 1, e.g. (0.6, 0.2, 0.2)")
    by_subject: dict[str, list[Fact]] = {}
    for fact in facts:
        by_subject.setdefault(fact.subject, []).append(fact)
    subjects = sorted(by_subject)
    random.Random(seed).shuffle(subjects)
    n_train = int(len(subjects) * ratios[0])
    n_dev = int(len(subjects) * (ratios[0] + ratios[1])) - n_train
    groups = (subjects[:n_train], subjects[n_train:n_train + n_dev], subjects[n_train + n_dev:])
    return {split: tuple(f for s in group for f in by_subject[s]) for split, group in zip(SPLITS, groups)}


def object_token_ids(tokenizer: PreTrainedTokenizerBase, objects: Sequence[str]) -> list[list[int]]:
    """Token ids of each object as it follows a prompt, as a word after text in running text (the
    tokenizer's learned spacing: ``" Paris"`` for byte-level BPE, ``"Paris"`` for SentencePiece,
    which marks the word itself), no special tokens."""
    return [list(ids) for ids in spacing(tokenizer).ids(objects, after_text=True)]


_SEPARATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def spacing(tokenizer: PreTrainedTokenizerBase) -> Spacing:
    """The tokenizer's word spacing (``Spacing.of``); its separator is learned once per tokenizer
    (probing asks per fact). Pre-split words are not tokenised here, so ``pretokenized`` is not probed."""
    try:
        separator = _SEPARATORS.get(tokenizer)
    except TypeError:  # neither weakly referable nor hashable: learn it every time
        return Spacing.of(tokenizer)
    if separator is None:
        separator = _SEPARATORS[tokenizer] = word_separator(tokenizer)
    return Spacing(tokenizer, separator, pretokenized=False)


def single_token(relation: Relation, tokenizer: PreTrainedTokenizerBase) -> Relation:
    """LAMA's single-token variant: only objects that are one token for ``tokenizer``.

    Multi-token objects are removed from facts and candidates; facts left with no object are
    dropped and counted in ``skipped["multi-token object"]``.
    """
    single = {obj for obj, ids in zip(relation.candidates, object_token_ids(tokenizer, relation.candidates))
              if len(ids) == 1}
    facts: list[Fact] = []
    for fact in relation.facts:
        kept = tuple(obj for obj in fact.objects if obj in single)
        if kept:
            facts.append(Fact(fact.subject, kept))
    skipped = dict(relation.skipped)
    skipped["multi-token object"] = skipped.get("multi-token object", 0) + len(relation.facts) - len(facts)
    candidates = tuple(obj for obj in relation.candidates if obj in single)
    return replace(relation, facts=tuple(facts), candidates=candidates, skipped=skipped)
