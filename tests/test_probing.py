"""Knowledge probing: relations and splits, cached candidate scoring, precision@1 (ptune/probing)."""

from __future__ import annotations

import pytest
import torch

from ptune.errors import PtuneError
from ptune.analysis.probing import (
    Fact,
    Relation,
    fill_template,
    load_relation,
    precision_at_1,
    score_candidates,
    score_candidates_uncached,
    single_token,
    single_token_precision_at_1,
    split_facts,
)
from ptune.analysis.probing.relations import build_relation


def _country(name, alpha3, alpha2, capital="", region="", borders=None):
    return {"name": name, "ISO": {"alpha3": alpha3, "alpha2": alpha2}, "capital": capital, "region": region,
            "borders": borders}


# --- relations -------------------------------------------------------------------------------

def test_builtin_relations_count_their_skips():
    capitals = load_relation("capital-of")
    assert capitals.skipped["missing capital"] == 5
    assert capitals.skipped["duplicate ISO code"] == 3  # Curaçao twice, Vatican and Palestine twice
    assert len(capitals.facts) == 246
    assert Fact("France", ("Paris",)) in capitals.facts
    assert set(capitals.candidates) == {o for f in capitals.facts for o in f.objects}
    assert len({f.subject for f in capitals.facts}) == len(capitals.facts)

    continents = load_relation("continent-of")
    assert continents.skipped["missing region"] == 2
    assert set(continents.candidates) == {"Africa", "Americas", "Asia", "Europe", "Oceania"}

    borders = load_relation("borders")
    france = next(f for f in borders.facts if f.subject == "France")
    assert {"Spain", "Italy", "Belgium"} <= set(france.objects)  # ISO codes mapped to names
    assert borders.skipped["no land borders"] > 0
    assert all(f.objects for f in borders.facts)


def test_borders_map_alpha2_and_alpha3_codes_and_count_unknown_ones():
    records = [
        _country("Italy", "ITA", "IT", borders=["FRA", "VAT"]),
        _country("France", "FRA", "FR", borders=["ITA"]),
        _country("Vatican", "VAT", "VA", borders=["IT"]),
        _country("Island", "ISL", "IS", borders=[]),
        _country("Serbia", "SRB", "RS", borders=["XKX"]),
    ]
    relation = build_relation("borders", records)
    assert relation.facts == (Fact("Italy", ("France", "Vatican")), Fact("France", ("Italy",)),
                              Fact("Vatican", ("Italy",)))
    assert relation.skipped == {"no land borders": 2, "unknown border code (dropped from objects)": 1}
    assert relation.candidates == ("France", "Italy", "Vatican")


def test_unknown_relation_is_a_user_error():
    with pytest.raises(PtuneError, match="unknown relation"):
        build_relation("born-in", [])


def test_split_is_disjoint_by_subject_complete_and_fixed_by_seed():
    facts = load_relation("capital-of").facts
    split = split_facts(facts)
    subjects = {name: {f.subject for f in part} for name, part in split.items()}
    assert not subjects["train"] & subjects["dev"]
    assert not subjects["train"] & subjects["test"]
    assert not subjects["dev"] & subjects["test"]
    assert sum(len(part) for part in split.values()) == len(facts)
    assert len(split["train"]) == int(len(facts) * 0.6)
    assert split_facts(facts, seed=0) == split
    reordered = split_facts(list(reversed(facts)), seed=0)  # input order does not matter
    assert {f.subject for f in reordered["test"]} == subjects["test"]
    assert split_facts(facts, seed=1)["test"] != split["test"]


def test_split_keeps_repeated_subjects_together():
    facts = [Fact(f"s{i % 10}", (f"o{i}",)) for i in range(30)]
    split = split_facts(facts, ratios=(0.5, 0.3, 0.2))
    seen = [{f.subject for f in part} for part in split.values()]
    assert sum(len(s) for s in seen) == 10 and len(set.union(*seen)) == 10


def test_split_rejects_bad_ratios():
    with pytest.raises(PtuneError, match="ratios"):
        split_facts([Fact("a", ("b",))], ratios=(0.6, 0.6, 0.2))


def test_single_token_filter_reports_drops(tiny_llama):
    relation = load_relation("capital-of")
    single = single_token(relation, tiny_llama.tokenizer)
    assert single.skipped["multi-token object"] == len(relation.facts) - len(single.facts)
    assert 40 <= len(single.facts) <= 60  # SmolLM2's tokenizer: about 52 of ~250 capitals
    assert Fact("France", ("Paris",)) in single.facts
    assert all(len(tiny_llama.tokenizer.encode(" " + c, add_special_tokens=False)) == 1 for c in single.candidates)


def test_fill_template_needs_one_subject_slot():
    assert fill_template("The capital of {subject} is", "France") == "The capital of France is"
    assert fill_template("{}'s capital city is", "France") == "France's capital city is"
    with pytest.raises(PtuneError, match="exactly one"):
        fill_template("The capital is", "France")


# --- scoring ---------------------------------------------------------------------------------

def _naive_scores(model, weight, prompt_embeds, candidate_ids):
    """Each prompt+candidate run alone, no cache, no padding: the definition of the score."""
    scores = []
    for ids in candidate_ids:
        ids = torch.tensor(ids)
        inputs = torch.cat([prompt_embeds, model.get_input_embeddings()(ids)])[None]
        logits = model(inputs_embeds=inputs, use_cache=False).last_hidden_state[0] @ weight.T
        log_probs = logits.log_softmax(-1)[len(prompt_embeds) - 1:-1]
        scores.append(log_probs.gather(-1, ids[:, None]).sum())
    return torch.stack(scores)


CANDIDATES = [[5], [17, 300, 42], [999, 3], [7, 8, 9, 10, 11], [123], [4000, 4001]]


@pytest.mark.parametrize("batch_size", [64, 2])
@pytest.mark.parametrize("candidates", [CANDIDATES, [[5], [6], [7]]], ids=["mixed-lengths", "single-tokens"])
def test_cached_scores_equal_naive_full_sequence_scores(tiny_llama, batch_size, candidates):
    model = tiny_llama.model
    weight = model.get_input_embeddings().weight
    prompt = torch.tensor([504, 3575, 282, 4649, 314])  # "The capital of France is"
    with torch.no_grad():
        expected = _naive_scores(model, weight, model.get_input_embeddings()(prompt), candidates)
        cached = score_candidates(model, weight, prompt, candidates, batch_size=batch_size)
        uncached = score_candidates_uncached(model, weight, prompt, candidates, batch_size=batch_size)
    assert cached.shape == (len(candidates),)
    torch.testing.assert_close(cached, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(uncached, expected, atol=1e-4, rtol=0)


def test_gold_bounded_scores_keep_every_rank_and_skip_what_cannot_rank_above_gold(tiny_llama):
    """score_candidates(gold=...): the gold scores and every score above the best of them equal the full
    scoring; a candidate whose first token already scores at most that best is not run on (-inf)."""
    model = tiny_llama.model
    weight = model.get_input_embeddings().weight
    prompt = torch.tensor([504, 3575, 282, 4649, 314])
    generator = torch.Generator().manual_seed(0)
    candidates = [torch.randint(5, 4000, (int(n),), generator=generator).tolist()
                  for n in torch.randint(1, 5, (60,), generator=generator)]
    with torch.no_grad():
        full = score_candidates(model, weight, prompt, candidates, batch_size=8)
        first = score_candidates(model, weight, prompt, [c[:1] for c in candidates])
        for gold in ([int(full.argmax())], [int(full.argsort()[len(candidates) // 2]), 3], [int(full.argmin())]):
            bounded = score_candidates(model, weight, prompt, candidates, batch_size=8, gold=gold)
            best = full[gold].max()
            kept = bounded > float("-inf")
            torch.testing.assert_close(bounded[kept], full[kept], atol=1e-4, rtol=0)
            assert set(gold) <= set(kept.nonzero()[:, 0].tolist())
            assert (full > best).sum() == (bounded > bounded[gold].max()).sum()  # the same rank
            assert torch.all(first[~kept] <= best + 1e-4)  # skipped only what could not end above the gold
            assert int(bounded.argmax()) == int(full.argmax())
    bounded = score_candidates(model, weight, prompt, candidates, gold=[int(full.argmax())])
    assert (bounded == float("-inf")).sum() > len(candidates) // 2  # the best-scored gold: nearly all skipped


def test_scoring_takes_prompt_embeddings_and_passes_gradients(tiny_llama):
    model = tiny_llama.model
    weight = model.get_input_embeddings().weight
    embeds = torch.randn(6, model.config.hidden_size, requires_grad=True)  # e.g. continuous prompt vectors
    scores = score_candidates(model, weight, embeds, CANDIDATES, batch_size=4)
    with torch.no_grad():
        expected = _naive_scores(model, weight, embeds, CANDIDATES)
    torch.testing.assert_close(scores.detach(), expected, atol=1e-4, rtol=0)
    scores.logsumexp(0).backward()
    assert embeds.grad is not None and embeds.grad.abs().sum() > 0


def test_scoring_rejects_batched_prompts_and_empty_candidates(tiny_llama):
    model = tiny_llama.model
    weight = model.get_input_embeddings().weight
    with pytest.raises(PtuneError, match="one example"):
        score_candidates(model, weight, torch.tensor([[1, 2]]), [[3]])
    with pytest.raises(PtuneError, match="at least one token"):
        score_candidates(model, weight, torch.tensor([1, 2]), [[3], []])


def test_precision_at_1_on_tiny_llama_returns_one_prediction_per_fact(tiny_llama):
    relation = load_relation("capital-of")
    facts = split_facts(relation.facts)["test"][:3]
    small = Relation(relation.name, facts, tuple(sorted({f.objects[0] for f in facts})))
    weight = tiny_llama.model.get_input_embeddings().weight
    result = precision_at_1(tiny_llama.model, tiny_llama.tokenizer, small, facts, "The capital of {} is",
                            weight=weight)
    assert [p.subject for p in result.predictions] == [f.subject for f in facts]
    assert all(p.predicted in small.candidates for p in result.predictions)
    assert result.precision == sum(p.correct for p in result.predictions) / 3


def test_untied_body_without_head_needs_an_explicit_weight(tiny_llama):
    relation = Relation("capital-of", (Fact("France", ("Paris",)),), ("Paris",))
    with pytest.raises(PtuneError, match="head_weight"):
        precision_at_1(tiny_llama.model, tiny_llama.tokenizer, relation, relation.facts, "The capital of {} is")


# --- real SmolLM2 (a handful of subjects and candidates: seconds) ------------------------------

@pytest.fixture(scope="module")
def smollm2():
    from ptune.model.backbones import load_backbone

    return load_backbone("smollm2")


def test_smollm2_ranks_paris_first_for_france(smollm2):
    capitals = load_relation("capital-of")
    subjects = ("France", "Germany", "Japan", "Egypt", "Peru")
    facts = tuple(f for f in capitals.facts if f.subject in subjects)
    relation = Relation("capital-of", facts, tuple(sorted(f.objects[0] for f in facts)) + ("Buenos Aires",))
    result = precision_at_1(smollm2.model, smollm2.tokenizer, relation, facts, "The capital of {subject} is")
    assert len(result.predictions) == len(subjects)
    assert 0.0 <= result.precision <= 1.0
    france = next(p for p in result.predictions if p.subject == "France")
    assert france.predicted == "Paris" and france.correct

    single = single_token_precision_at_1(smollm2.model, smollm2.tokenizer, (Fact("France", ("Paris",)),),
                                         "The capital of {subject} is")
    assert single.precision in (0.0, 1.0)
