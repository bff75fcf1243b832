"""Facts files for ``ptune probe --facts``: LAMA / T-REx JSONL, plain TSV, LAMA's relation templates.

Readers group facts by relation and subject and remember each relation's first line, so that later
errors name it; LAMA templates (``[X] is the capital of [Y] .``) become ptune's ``{subject}`` syntax.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ptune.analysis.probing.learned import parse_probe_template
from ptune.analysis.probing.relations import Fact, Relation
from ptune.data.files import json_type, parse_json, read_lines, short
from ptune.errors import PtuneError

FACT_FORMATS = (".jsonl", ".tsv")
TSV_HEADERS = (("subject", "object"), ("sub_label", "obj_label"))


@dataclass(frozen=True)
class FactsRelation:
    """One relation read from a facts file: its facts (grouped by subject, every object a correct
    answer), ``where`` (``path:line`` of its first fact) and the lines left out, per reason."""

    relation: Relation
    where: str

    @property
    def name(self) -> str:
        return self.relation.name


@dataclass(frozen=True)
class RelationTemplate:
    """A relation's template in ptune's syntax (``{subject}``, ``[P]``; the object follows it), the
    text it was read from and where (``path:line``)."""

    relation: str
    template: str
    source: str
    where: str


def read_facts(path: str | Path) -> list[FactsRelation]:
    """The relations in a facts file, in order of first appearance.

    ``.jsonl``: LAMA / T-REx lines with ``sub_label``, ``obj_label`` and ``predicate_id`` (other fields
    ignored; a line without ``predicate_id`` belongs to the relation named by the file's stem).
    ``.tsv``: ``subject<TAB>object`` per line, an optional ``subject object`` header; one relation named
    by the file's stem. Lines with the same subject are one fact with several objects; a repeated
    (subject, object) line is counted in ``skipped["duplicate fact"]``.
    """
    path = Path(path)
    if path.suffix.lower() not in FACT_FORMATS:
        raise PtuneError(f"{path}: unknown facts format {path.suffix or '(no suffix)'!r}; give LAMA JSONL (.jsonl with "
                         f"sub_label, obj_label, predicate_id) or TSV (.tsv: subject, object)")
    rows = _jsonl_rows(path) if path.suffix.lower() == ".jsonl" else _tsv_rows(path)
    if not rows:
        raise PtuneError(f"{path}: no facts in the file; give one fact per line")
    objects: dict[str, dict[str, list[str]]] = {}
    first: dict[str, int] = {}
    duplicates: dict[str, int] = {}
    for line, relation, subject, obj in rows:
        first.setdefault(relation, line)
        subjects = objects.setdefault(relation, {})
        known = subjects.setdefault(subject, [])
        if obj in known:
            duplicates[relation] = duplicates.get(relation, 0) + 1
        else:
            known.append(obj)
    relations = []
    for name, subjects in objects.items():
        facts = tuple(Fact(subject, tuple(objs)) for subject, objs in subjects.items())
        candidates = tuple(sorted({obj for fact in facts for obj in fact.objects}))
        skipped = {"duplicate fact": duplicates[name]} if name in duplicates else {}
        relations.append(FactsRelation(Relation(name, facts, candidates, skipped), f"{path}:{first[name]}"))
    return relations


def _text_field(path: Path, number: int, record: dict, key: str) -> str:
    if key not in record:
        raise PtuneError(f"{path}:{number}: missing field {key!r} (LAMA lines have sub_label, obj_label and "
                         f"predicate_id); fix or remove this line")
    value = record[key]
    if not isinstance(value, str):
        raise PtuneError(f"{path}:{number}: field {key!r} is {json_type(value)}, not text; fix this line")
    if not value.strip():
        raise PtuneError(f"{path}:{number}: field {key!r} is empty; fix or remove this line")
    return value.strip()


def _jsonl_rows(path: Path) -> list[tuple[int, str, str, str]]:
    rows = []
    for number, text in enumerate(read_lines(path), start=1):
        if not text.strip():
            continue
        record = parse_json(path, number, text)
        if not isinstance(record, dict):
            raise PtuneError(f"{path}:{number}: expected a JSON object with sub_label, obj_label and predicate_id, "
                             f"got {json_type(record)}")
        relation = _text_field(path, number, record, "predicate_id") if "predicate_id" in record else path.stem
        rows.append((number, relation, _text_field(path, number, record, "sub_label"),
                     _text_field(path, number, record, "obj_label")))
    return rows


def _tsv_rows(path: Path) -> list[tuple[int, str, str, str]]:
    rows = []
    for number, text in enumerate(read_lines(path), start=1):
        if not text.strip():
            continue
        fields = [field.strip() for field in text.split("\t")]
        if not rows and tuple(f.lower() for f in fields) in TSV_HEADERS:
            continue
        if len(fields) != 2:
            raise PtuneError(f"{path}:{number}: expected 2 tab-separated fields (subject, object), found "
                             f"{len(fields)} in {short(text)}; fix this line")
        for name, field in zip(("subject", "object"), fields):
            if not field:
                raise PtuneError(f"{path}:{number}: empty {name}; fix or remove this line")
        rows.append((number, path.stem, fields[0], fields[1]))
    return rows


def convert_template(text: str) -> str:
    """A template in ptune's syntax, the object left to follow it.

    LAMA's ``[X] is the capital of [Y] .`` becomes ``{subject} is the capital of``: a causal LM predicts
    the object from the words before it, so the text after ``[Y]`` is dropped. ptune's own syntax
    (``{subject}``, ``[P]``, an optional final ``{object}``) passes through, ``{object}`` dropped.
    """
    if "[X]" in text or "[Y]" in text:
        if text.count("[X]") != 1 or text.count("[Y]") != 1:
            raise PtuneError(f"template {text!r} needs exactly one [X] (subject) and one [Y] (object)")
        if text.index("[Y]") < text.index("[X]"):
            raise PtuneError(f"template {text!r} puts [Y] before [X]; a causal LM predicts the object after the "
                             f"subject: write it with [Y] after [X], e.g. '[X] is the capital of [Y] .'")
        text = text[: text.index("[Y]")].replace("[X]", "{subject}")
    else:
        parse_probe_template(text)  # {object}, if any, must come last
        text = text.replace("{object}", "")
    text = text.strip()
    parse_probe_template(text)
    return text


def read_templates(path: str | Path) -> dict[str, RelationTemplate]:
    """LAMA's ``relations.jsonl``: per line ``relation`` (e.g. ``P36``) and ``template`` in LAMA's
    ``[X]``/``[Y]`` syntax or ptune's ``{subject}``/``[P]`` one; other fields ignored."""
    path = Path(path)
    templates: dict[str, RelationTemplate] = {}
    for number, text in enumerate(read_lines(path), start=1):
        if not text.strip():
            continue
        record = parse_json(path, number, text)
        if not isinstance(record, dict):
            raise PtuneError(f"{path}:{number}: expected a JSON object with relation and template, got {json_type(record)}")
        for key in ("relation", "template"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise PtuneError(f"{path}:{number}: missing or empty field {key!r} (LAMA's relations.jsonl lines have "
                                 f"relation and template); fix this line")
        relation = record["relation"].strip()
        if relation in templates:
            raise PtuneError(f"{path}:{number}: relation {relation!r} again (first at {templates[relation].where}); "
                             f"keep one template per relation")
        try:
            template = convert_template(record["template"])
        except PtuneError as error:
            raise PtuneError(f"{path}:{number}: {error}") from None
        templates[relation] = RelationTemplate(relation, template, record["template"], f"{path}:{number}")
    if not templates:
        raise PtuneError(f"{path}: no relation templates in the file; give lines like "
                         f"{{\"relation\": \"P36\", \"template\": \"The capital of [X] is [Y] .\"}}")
    return templates


def read_vocabulary(path: str | Path) -> tuple[str, ...]:
    """Candidate objects, one per line (LAMA's common_vocab files), blank lines skipped, repeats dropped."""
    path = Path(path)
    words = tuple(dict.fromkeys(line.strip() for line in read_lines(path) if line.strip()))
    if not words:
        raise PtuneError(f"{path}: no candidates in the vocabulary file; give one candidate object per line")
    return words


def lama_records(relation: Relation, predicate_id: str) -> list[dict]:
    """``relation`` as LAMA / T-REx lines: one ``{sub_label, obj_label, predicate_id}`` per (subject, object)."""
    return [{"sub_label": fact.subject, "obj_label": obj, "predicate_id": predicate_id}
            for fact in relation.facts for obj in fact.objects]


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    """One JSON object per line, UTF-8 (names as written, not escaped)."""
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
