"""``ptune probe --facts``: LAMA / T-REx and TSV readers, LAMA templates, the leakage-free split,
candidate modes, P@1 / P@10 / MRR, and end-to-end runs (ptune/analysis/probing/lama.py, ranking.py,
facts_command.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ptune.analysis.probing import (
    Fact,
    Relation,
    convert_template,
    load_relation,
    precision_at_1,
    prepare,
    rank_facts,
    rank_metrics,
    read_facts,
    read_templates,
    read_vocabulary,
    split_facts,
    split_subjects,
)
from ptune.analysis.probing.ranking import split_relation
from ptune.analysis.probing.relations import object_token_ids
from ptune.analysis.probing.scoring import score_candidates_uncached
from ptune.errors import PtuneError

FIXTURES = Path(__file__).parent / "fixtures" / "facts"
BUILTIN_FILES = {"P36": "capital-of", "P30": "continent-of", "P47": "borders"}


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
                    encoding="utf-8")
    return path


def _lama(sub, obj, pid="P36", **extra):
    return {"sub_label": sub, "obj_label": obj, "predicate_id": pid, **extra}


# --- readers -----------------------------------------------------------------------------------

def test_lama_jsonl_groups_by_predicate_and_subject(tmp_path):
    path = _write(tmp_path / "trex.jsonl", [
        _lama("France", "Paris", uuid="a", obj_uri="Q90", sub_uri="Q142", evidences=[{"masked_sentence": "x"}]),
        _lama("France", "Spain", "P47"),
        "",
        _lama("France", "Italy", "P47"),
        _lama("Japan", "Tokyo"),
        _lama("France", "Paris"),  # the same fact again
        {"sub_label": " Peru ", "obj_label": "Lima"},  # no predicate_id: the file's stem
    ])
    found = read_facts(path)
    assert [r.name for r in found] == ["P36", "P47", "trex"]
    capitals, borders, stem = (r.relation for r in found)
    assert capitals.facts == (Fact("France", ("Paris",)), Fact("Japan", ("Tokyo",)))
    assert capitals.candidates == ("Paris", "Tokyo") and capitals.skipped == {"duplicate fact": 1}
    assert borders.facts == (Fact("France", ("Spain", "Italy")),) and borders.candidates == ("Italy", "Spain")
    assert stem.facts == (Fact("Peru", ("Lima",)),)
    assert [r.where for r in found] == [f"{path}:1", f"{path}:2", f"{path}:7"]


def test_tsv_facts_with_and_without_header(tmp_path):
    path = _write(tmp_path / "capital.tsv", ["subject\tobject", "France\tParis", "", "Japan\t Tokyo", "France\tLyon"])
    (found,) = read_facts(path)
    assert found.name == "capital" and found.where == f"{path}:2"
    assert found.relation.facts == (Fact("France", ("Paris", "Lyon")), Fact("Japan", ("Tokyo",)))
    (plain,) = read_facts(_write(tmp_path / "p.tsv", ["Peru\tLima"]))
    assert plain.relation.facts == (Fact("Peru", ("Lima",)),)


def test_lama_relations_file_converts_x_and_y(tmp_path):
    path = _write(tmp_path / "relations.jsonl", [
        {"relation": "P36", "template": "The capital of [X] is [Y] .", "label": "capital", "type": "1-1"},
        {"relation": "P413", "template": "[X] plays in [Y] position ."},
        {"relation": "mine", "template": "[P]*2 {subject} borders [P] {object}"},
    ])
    templates = read_templates(path)
    assert templates["P36"].template == "The capital of {subject} is"
    assert templates["P36"].source == "The capital of [X] is [Y] ." and templates["P36"].where == f"{path}:1"
    assert templates["P413"].template == "{subject} plays in"  # the text after [Y] is dropped
    assert templates["mine"].template == "[P]*2 {subject} borders [P]"
    assert convert_template("{subject}'s capital is") == "{subject}'s capital is"


def test_vocabulary_file_drops_blanks_and_repeats(tmp_path):
    assert read_vocabulary(_write(tmp_path / "v.txt", ["Paris", "", " Lima ", "Paris"])) == ("Paris", "Lima")


def test_builtin_fixtures_are_the_builtin_relations_in_lama_format():
    """The files under tests/fixtures/facts are generated (benchmarks/probe_facts.py --write-fixtures)."""
    templates = read_templates(FIXTURES / "relations.jsonl")
    for predicate, name in BUILTIN_FILES.items():
        (found,) = read_facts(FIXTURES / f"{predicate}.jsonl")
        builtin = load_relation(name)
        assert found.name == predicate and found.relation.facts == builtin.facts
        assert found.relation.candidates == builtin.candidates
        assert predicate in templates
    assert templates["P36"].template == "The capital of {subject} is"


# --- the split ----------------------------------------------------------------------------------

_names = st.sampled_from([f"s{i}" for i in range(30)])
_relations = st.lists(st.lists(st.tuples(_names, st.sampled_from("abcdef")), min_size=1, max_size=25),
                      min_size=1, max_size=4)


def _relation(index: int, pairs) -> Relation:
    objects: dict[str, list[str]] = {}
    for subject, obj in pairs:
        objects.setdefault(subject, [])
        if obj not in objects[subject]:
            objects[subject].append(obj)
    facts = tuple(Fact(s, tuple(o)) for s, o in objects.items())
    return Relation(f"r{index}", facts, tuple(sorted({o for f in facts for o in f.objects})))


@settings(max_examples=60, deadline=None)
@given(_relations, st.integers(0, 2**31))
def test_split_has_no_leakage(raw, seed):
    relations = [_relation(i, pairs) for i, pairs in enumerate(raw)]
    splits = split_subjects(relations, seed=seed)
    assert splits == split_subjects(relations, seed=seed)
    test_subjects, train_subjects = set(), set()
    for relation in relations:
        parts = split_relation(relation, splits)
        assert Counter(f for part in parts.values() for f in part) == Counter(relation.facts)  # each fact once
        test_subjects |= {f.subject for f in parts["test"]}
        train_subjects |= {f.subject for f in parts["train"] + parts["dev"]}
        test_facts = {(f.subject, o) for f in parts["test"] for o in f.objects}
        train_facts = {(f.subject, o) for f in parts["train"] for o in f.objects}
        assert not test_facts & train_facts
    assert not test_subjects & train_subjects  # across relations too


def test_split_of_one_relation_is_the_builtin_split():
    relation = load_relation("capital-of")
    for seed in (0, 3):
        assert split_relation(relation, split_subjects([relation], seed=seed)) == split_facts(relation.facts, seed=seed)
    assert split_subjects([relation], seed=0) != split_subjects([relation], seed=1)


# --- metrics and candidates ---------------------------------------------------------------------

def test_metrics_against_hand_computed_values():
    metrics = rank_metrics([1, 3, 12, 2, 1])
    assert metrics["p_at_1"] == pytest.approx(2 / 5)
    assert metrics["p_at_10"] == pytest.approx(4 / 5)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 12 + 1 / 2 + 1) / 5)
    assert rank_metrics([10, 11]) == {"p_at_1": 0.0, "p_at_10": 0.5, "mrr": pytest.approx((0.1 + 1 / 11) / 2)}
    with pytest.raises(PtuneError):
        rank_metrics([0])


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    return tiny_llama.tokenizer


CITIES = Relation("capital", (Fact("France", ("Paris",)), Fact("Peru", ("Lima",)), Fact("Kenya", ("Nairobi",)),
                              Fact("Chile", ("Santiago", "Valparaiso"))), ("Lima", "Nairobi", "Paris", "Santiago",
                                                                            "Valparaiso"))


def test_candidate_modes(tokenizer):
    lengths = dict(zip(CITIES.candidates, map(len, object_token_ids(tokenizer, CITIES.candidates))))
    single = {name for name, n in lengths.items() if n == 1}
    assert single and single != set(CITIES.candidates)  # the example needs both kinds

    kept, candidates = prepare(CITIES, tokenizer)  # LAMA: single-token objects only
    assert set(candidates.names) == single
    assert all(set(f.objects) <= single for f in kept.facts)
    dropped = sum(not set(f.objects) & single for f in CITIES.facts)
    assert kept.skipped.get("multi-token object", 0) == dropped and len(kept.facts) == len(CITIES.facts) - dropped

    kept, candidates = prepare(CITIES, tokenizer, multi_token=True)
    assert kept.facts == CITIES.facts and set(candidates.names) == set(CITIES.candidates)

    kept, candidates = prepare(CITIES, tokenizer, mode="file", vocabulary=("Paris", "Rome", "Lima"), multi_token=True)
    assert candidates.names == ("Paris", "Rome", "Lima")
    assert {f.subject for f in kept.facts} == {"France", "Peru"}
    assert kept.skipped["object not among the candidates"] == 2

    kept, candidates = prepare(CITIES, tokenizer, mode="vocab")
    assert len(candidates.names) == len(tokenizer) and {f.subject for f in kept.facts} == {
        f.subject for f in CITIES.facts if set(f.objects) & single}
    _, with_multi = prepare(CITIES, tokenizer, mode="vocab", multi_token=True)
    assert len(with_multi.names) == len(tokenizer) + len(set(CITIES.candidates) - single)


def test_ranks_match_an_independent_full_sequence_ranking(tiny_llama):
    model, tokenizer = tiny_llama.model, tiny_llama.tokenizer
    weight = model.get_input_embeddings().weight  # a random body: any [V, H] head will do
    kept, candidates = prepare(CITIES, tokenizer, multi_token=True)
    template = "The capital of {subject} is"
    ranked = rank_facts(model, tokenizer, kept.facts, template, candidates, weight=weight)
    for fact, row in zip(kept.facts, ranked):
        ids = tokenizer(template.format(subject=fact.subject), return_tensors="pt").input_ids[0]
        with torch.inference_mode():
            scores = score_candidates_uncached(model, weight, ids, [list(c) for c in candidates.ids]).tolist()
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        first_gold = next(position for position, i in enumerate(order, start=1) if candidates.names[i] in fact.objects)
        assert row.rank == first_gold and row.predicted == candidates.names[order[0]]
    p1 = precision_at_1(model, tokenizer, kept, kept.facts, template, weight=weight).precision
    assert rank_metrics([r.rank for r in ranked])["p_at_1"] == p1


# --- the command --------------------------------------------------------------------------------

def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_cli_facts_tsv_with_vocab_candidates_on_a_tiny_llama(tied_llama_dir, tmp_path, capsys):
    from ptune.cli import main

    facts = _write(tmp_path / "capitals.tsv", [f"{f.subject}\t{o}" for f in load_relation("capital-of").facts[:40]
                                                for o in f.objects])
    out = tmp_path / "run"
    assert main(["-q", "probe", "--facts", str(facts), "--manual", "[X] has the capital [Y] .", "--backbone",
                 str(tied_llama_dir), "--candidates", "vocab", "--method", "manual", "prompt", "--epochs", "1",
                 "--prompts", "2", "--split-seed", "1", "--out", str(out)]) == 0
    assert "capitals" in capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    (relation,) = result["relations"]
    assert relation["candidates"] > 40000 and result["split_seed"] == 1
    assert relation["facts_in_file"] == 40 and relation["facts_probed"] + relation["skipped"]["multi-token object"] == 40
    assert [run["method"] for run in relation["runs"]] == ["manual", "prompt"]
    manual, prompt = relation["runs"]
    assert manual["template"] == "{subject} has the capital" and prompt["template"] == "[P]*2 {subject} has the capital"
    assert manual["facts"] == relation["split_sizes"]["test"] == len(manual["predictions"])
    assert all(0 <= run["p_at_1"] <= run["p_at_10"] <= 1 and 0 < run["mrr"] <= 1 for run in relation["runs"])
    assert Path(prompt["probe"]).exists()


@pytest.mark.slow
def test_cli_facts_on_smollm2_lama_fixtures(tmp_path, capsys):
    """The embedded decoder on the generated LAMA files: manual and P-tuning on two relations at once (one
    subject split for both), the manual predictions the same as the built-in relations'."""
    from ptune.cli import main

    out = tmp_path / "facts"
    assert main(["-q", "probe", "--facts", str(FIXTURES / "P36.jsonl"), str(FIXTURES / "P30.jsonl"), "--relations",
                 str(FIXTURES / "relations.jsonl"), "--multi-token", "--epochs", "1", "--limit", "3", "--prompts", "1",
                 "--encoder", "none", "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "P36" in shown and "P30" in shown and "MRR" in shown
    result = json.loads((out / "results.json").read_text())
    capital, continent = result["relations"]
    assert (capital["relation"], continent["relation"], continent["candidates"]) == ("P36", "P30", 5)
    for relation in (capital, continent):
        assert [run["method"] for run in relation["runs"]] == ["manual", "ptuning"]
        assert all(run["facts"] == 3 for run in relation["runs"])
    assert capital["runs"][1]["template"] == "[P]*1 The capital of {subject} is [P]*1"

    # The manual runs agree with the built-in relations' precision_at_1 on the same subjects.
    from ptune.model.backbones import load_backbone

    smollm2 = load_backbone("smollm2")
    for report, name in ((capital, "capital-of"), (continent, "continent-of")):
        builtin = load_relation(name)
        manual = report["runs"][0]
        by_subject = {f.subject: f for f in builtin.facts}
        facts = [by_subject[p["subject"]] for p in manual["predictions"]]
        expected = precision_at_1(smollm2.model, smollm2.tokenizer, builtin, facts, manual["template"])
        assert [(p["subject"], p["predicted"]) for p in manual["predictions"]] == [
            (p.subject, p.predicted) for p in expected.predictions]
        assert manual["p_at_1"] == expected.precision


@pytest.mark.parametrize("lines, suffix, extra, message", [
    ([_lama("France", "Paris"), {"sub_label": "Peru", "predicate_id": "P36"}], ".jsonl", [],
     "facts.jsonl:2: missing field 'obj_label'"),
    ([_lama("France", "  ")], ".jsonl", [], "facts.jsonl:1: field 'obj_label' is empty"),
    ([_lama("France", "Paris"), '{"sub_label": "Peru",'], ".jsonl", [], "facts.jsonl:2: invalid JSON"),
    ([_lama("France", 3)], ".jsonl", [], "facts.jsonl:1: field 'obj_label' is the value 3"),
    (["[1, 2]"], ".jsonl", [], "facts.jsonl:1: expected a JSON object"),
    ([_lama("France", "Paris"), _lama("Peru", "Lima", "P99")], ".jsonl", ["--relations", "{rel}"],
     "facts.jsonl:2: relation 'P99' has no template"),
    ([_lama("France", "Paris")], ".jsonl", [], "facts.jsonl:1: relation 'P36' has no template: give --relations"),
    (["France\tParis", "Peru\tLima\textra"], ".tsv", ["--manual", "{subject} x"], "facts.tsv:2: expected 2 tab-separated"),
    (["France\t"], ".tsv", ["--manual", "{subject} x"], "facts.tsv:1: empty object"),
    ([], ".tsv", ["--manual", "{subject} x"], "no facts in the file"),
    (["France,Paris"], ".csv", [], "unknown facts format '.csv'"),
    ([_lama("France", "Paris")], ".jsonl", ["--relations", "{bad}"], "relations.jsonl:1: template"),
    ([_lama("France", "Paris")], ".jsonl", ["--manual", "[X] is [Y]", "--candidates", "{missing}"],
     "missing.txt: file not found"),
    ([_lama("France", "Paris")], ".jsonl", ["--template", "[P] {subject} is", "--method", "manual"], "has [P] tokens"),
    ([_lama("France", "Paris")], ".jsonl", ["--manual", "[Y] of [X]"], "--manual: template '[Y] of [X]' puts [Y]"),
    ([_lama("France", "Paris")], ".jsonl", ["--relation", "capital-of"], "not both"),
])
def test_cli_facts_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, lines, suffix, extra, message):
    from ptune.cli import main

    facts = _write(tmp_path / f"facts{suffix}", lines)
    rel = _write(tmp_path / "relations.jsonl", [{"relation": "P36", "template": "The capital of [X] is [Y] ."}])
    (tmp_path / "bad").mkdir()
    bad = _write(tmp_path / "bad" / "relations.jsonl", [{"relation": "P36", "template": "[Y] is the capital of [X] ."}])
    paths = {"{rel}": rel, "{bad}": bad, "{missing}": tmp_path / "missing.txt"}
    argv = [str(paths.get(a, a)) for a in extra]
    assert main(["probe", "--facts", str(facts), *argv, "--out", str(tmp_path / "out")]) == 2
    assert message in _error_line(capsys)


def test_cli_options_of_facts_are_refused_without_it(capsys):
    from ptune.cli import main

    assert main(["probe", "--multi-token"]) == 2
    assert "--facts" in _error_line(capsys)
    assert main(["probe", "--method", "manual", "ptuning"]) == 2
    assert "one --method" in _error_line(capsys)
