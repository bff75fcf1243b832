"""Learned probes (ptune/probing/learned.py, training.py, files.py, command.py) on a tiny tied Llama."""

from __future__ import annotations

import json

import pytest
import torch

from ptune.errors import PtuneError
from ptune.analysis.probing import Fact, Relation, load_relation, precision_at_1, score_candidates, split_facts
from ptune.analysis.probing.learned import ProbePrompt, init_vectors, parse_probe_template, ptuning_template
from ptune.analysis.probing.training import ProbeTrainConfig, mean_nll, object_log_likelihood, pairs, train_probe


@pytest.fixture(scope="module")
def tied_llama(tied_llama_dir):
    from ptune.model.backbones import load_backbone

    return load_backbone(str(tied_llama_dir))


FACTS = (Fact("France", ("Paris",)), Fact("Japan", ("Tokyo",)), Fact("Peru", ("Lima",)),
         Fact("Egypt", ("Cairo",)), Fact("Chile", ("Santiago",)), Fact("Kenya", ("Nairobi",)))


def _probe(backbone, template="[P]*2 The capital of {subject} is [P]*2", encoder="lstm"):
    embeddings = backbone.model.get_input_embeddings()
    torch.manual_seed(0)
    return ProbePrompt(template, backbone.tokenizer, embeddings, encoder=encoder,
                       init=init_vectors(template, backbone.tokenizer, embeddings.weight))


# --- templates ---------------------------------------------------------------------------------

def test_probe_template_pieces_and_spacing():
    parsed = parse_probe_template("[P]*3 {subject}'s capital city is [P] {object}")
    assert [(p.kind, p.text, p.count, p.space) for p in parsed.pieces] == [
        ("prompt", "", 3, False), ("subject", "", 0, True), ("words", "'s capital city is", 0, False),
        ("prompt", "", 1, False)]
    assert parsed.num_prompts == 4
    assert ptuning_template("The capital of {subject} is") == "[P]*3 The capital of {subject} is [P]*3"


@pytest.mark.parametrize("bad, message", [
    ("The capital is [P]", "exactly one"),
    ("{subject} and {subject} [P]", "exactly one"),
    ("{object} is the capital of {subject}", "must come last"),
    ("[P]*0 {subject}", "at least 1"),
    ("{subject} {country} [P]", "cannot read"),
])
def test_probe_template_errors(bad, message):
    with pytest.raises(PtuneError, match=message):
        parse_probe_template(bad)


def test_probe_embeds_words_like_running_text_and_starts_at_its_init(tied_llama):
    probe = _probe(tied_llama)
    embeddings = tied_llama.model.get_input_embeddings()
    row = probe("France")
    ids = tied_llama.tokenizer.encode(" The capital of France is", add_special_tokens=False)
    assert row.shape == (2 + len(ids) + 2, 32)
    torch.testing.assert_close(row[2:-2], embeddings(torch.tensor(ids)))
    # The encoder's last layer starts at zero: the [P]s start exactly at their initial vectors.
    torch.testing.assert_close(probe.continuous(), probe.vectors.embedding)
    words = tied_llama.tokenizer.encode(" The capital of", add_special_tokens=False)
    torch.testing.assert_close(row[:2], embeddings.weight[words[:2]])


# --- training ----------------------------------------------------------------------------------

def test_teacher_forced_likelihood_equals_candidate_score(tied_llama):
    model, weight = tied_llama.model, tied_llama.model.get_input_embeddings().weight
    probe = _probe(tied_llama, encoder="mlp")
    batch = pairs(tied_llama.tokenizer, FACTS[:4])
    with torch.no_grad():
        teacher = object_log_likelihood(model, weight, probe, batch)
        for (subject, ids), value in zip(batch, teacher):
            torch.testing.assert_close(score_candidates(model, weight, probe(subject), [ids])[0], value,
                                       atol=1e-4, rtol=0)


@pytest.mark.parametrize("encoder", ["lstm", "none"])
def test_training_a_probe_reduces_its_loss_and_leaves_the_lm_frozen(tied_llama, encoder):
    model, weight = tied_llama.model, tied_llama.model.get_input_embeddings().weight
    probe = _probe(tied_llama, encoder=encoder)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters()}
    data = pairs(tied_llama.tokenizer, FACTS)
    before = mean_nll(model, weight, probe, data)
    history = train_probe(model, tied_llama.tokenizer, probe, FACTS, FACTS,
                          ProbeTrainConfig(epochs=3, lr=0.05, batch_size=3), weight=weight)
    after = mean_nll(model, weight, probe, data)
    assert after < before
    assert history.dev_nll[0] == pytest.approx(before) and history.best_epoch > 0
    assert min(history.dev_nll) == pytest.approx(after, abs=1e-4)  # the best epoch is restored
    assert all(torch.equal(p, frozen[name]) for name, p in model.named_parameters())


# --- files -------------------------------------------------------------------------------------

def test_saved_probe_reloads_to_identical_scores(tied_llama, tmp_path):
    from ptune.analysis.probing.files import load_probe, read_probe_header, save_probe

    model, weight = tied_llama.model, tied_llama.model.get_input_embeddings().weight
    probe = _probe(tied_llama)
    train_probe(model, tied_llama.tokenizer, probe, FACTS, FACTS, ProbeTrainConfig(epochs=1, lr=0.05, batch_size=3),
                weight=weight)
    path = tmp_path / "probe.safetensors"
    save_probe(path, probe, tied_llama, relation="capital-of", metrics={"test_p_at_1": 0.5})
    assert not list(tmp_path.glob("*.tmp")) and path.stat().st_size < 1_000_000
    header = read_probe_header(path)
    assert header["template"] == probe.template.source and header["encoder"] == "lstm"
    again = load_probe(path, tied_llama)
    relation = Relation("capital-of", FACTS, tuple(sorted(f.objects[0] for f in FACTS)))
    with torch.no_grad():
        first = precision_at_1(model, tied_llama.tokenizer, relation, FACTS, probe, weight=weight)
        second = precision_at_1(model, tied_llama.tokenizer, relation, FACTS, again, weight=weight)
        candidate_ids = [tied_llama.tokenizer.encode(" " + c, add_special_tokens=False) for c in relation.candidates]
        assert torch.equal(score_candidates(model, weight, probe("Peru"), candidate_ids),
                           score_candidates(model, weight, again("Peru"), candidate_ids))
    assert first == second

    damaged = tmp_path / "damaged.safetensors"
    data = path.read_bytes()
    damaged.write_bytes(data[:-8] + bytes(b ^ 0x55 for b in data[-8:]))  # flip bits in the last tensor
    with pytest.raises(PtuneError, match="damaged"):
        load_probe(damaged, tied_llama)
    with pytest.raises(PtuneError, match="not a ptune probe"):
        (tmp_path / "junk.safetensors").write_bytes(b"junk")
        read_probe_header(tmp_path / "junk.safetensors")


# --- CLI ---------------------------------------------------------------------------------------

def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_cli_probe_trains_saves_and_rescores_on_a_tiny_budget(tied_llama_dir, tmp_path, capsys):
    from ptune.cli import main

    out = tmp_path / "run"
    assert main(["-q", "probe", "--backbone", str(tied_llama_dir), "--method", "ptuning", "--epochs", "1",
                 "--limit", "3", "--prompts", "1", "--manual", "The capital of {subject} is", "{subject}'s capital is",
                 "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "P@1" in shown and "ptuning" in shown
    result = json.loads((out / "results.json").read_text())
    assert result["subjects"] == 3 and len(result["runs"]) == 2
    run = result["runs"][0]
    assert run["template"] == "[P]*1 The capital of {subject} is [P]*1" and 0 <= run["p_at_1"] <= 1
    assert len(run["predictions"]) == 3 and len(run["dev_nll"]) == 2
    probe_file = out / "ptuning-0.safetensors"
    assert probe_file.exists()

    again = tmp_path / "again"
    assert main(["-q", "probe", "--backbone", str(tied_llama_dir), "--probe", str(probe_file), "--limit", "3",
                 "--out", str(again)]) == 0
    rescored = json.loads((again / "results.json").read_text())["runs"][0]
    assert rescored["p_at_1"] == run["p_at_1"] and rescored["predictions"] == run["predictions"]


def test_cli_probe_manual_on_a_tiny_budget(tied_llama_dir, tmp_path, capsys):
    from ptune.cli import main

    assert main(["-q", "probe", "--backbone", str(tied_llama_dir), "--limit", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["runs"][0]["method"] == "manual" and result["runs"][0]["template"] == "The capital of {subject} is"


@pytest.mark.parametrize("argv, message", [
    (["--relation", "born-in"], "unknown relation"),
    (["--manual", "The capital is"], "exactly one {subject}"),
    (["--method", "ptuning", "--template", "[P]*3 capital [P]"], "exactly one {subject}"),
    (["--method", "manual", "--template", "[P] {subject} is"], "without [P]"),
    (["--limit", "0"], "--limit"),
    (["--probe", "missing.safetensors"], "no such probe file"),
])
def test_cli_probe_bad_input_is_one_line_and_exit_code_2(argv, message, capsys):
    from ptune.cli import main

    assert main(["probe", *argv]) == 2
    assert message in _error_line(capsys)


def test_split_subjects_of_the_real_relation_feed_the_trainer(tied_llama):
    split = split_facts(load_relation("capital-of").facts)
    data = pairs(tied_llama.tokenizer, split["train"][:5])
    assert len(data) == 5 and all(ids for _, ids in data)
