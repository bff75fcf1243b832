"""Generation with a soft or deep prompt on real SmolLM2: greedy determinism, stopping, batching,
the CLI command, and refusal of encoders."""

from __future__ import annotations

import json

import pytest
import torch

from ptune.model.backbones import load_backbone
from ptune.storage.prompt_files import save_prompt
from ptune.cli import main
from ptune.config import MethodConfig
from ptune.errors import PtuneError
from ptune.infer.generate import generate, generate_ids
from ptune.model.prompt_model import PromptModel

TEXTS = ["The capital of France is", "Once upon a time, a small dog"]


@pytest.fixture(scope="module")
def smollm2():
    return load_backbone("smollm2")


def untrained(backbone, method, **options):
    model = PromptModel(backbone, MethodConfig(method=method, **options), ["a", "b"])
    model.initialise(seed=0)
    return model


@pytest.mark.parametrize("method,options", [("prompt", {"length": 4}), ("deep", {"length": 4})])
def test_greedy_is_deterministic_and_batch_equals_alone(smollm2, method, options):
    model = untrained(smollm2, method, **options)
    together = generate_ids(model, TEXTS, max_new_tokens=6)
    assert together == generate_ids(model, TEXTS, max_new_tokens=6)
    assert [generate_ids(model, [text], max_new_tokens=6)[0] for text in TEXTS] == together
    assert all(1 <= len(ids) <= 6 for ids in together)
    assert all(isinstance(t, str) and t for t in generate(model, TEXTS, max_new_tokens=6))


def test_prompt_changes_the_continuation(smollm2):
    model = untrained(smollm2, "prompt", length=4)
    before = generate_ids(model, TEXTS[:1], max_new_tokens=5)
    # A prompt made of the embeddings of a German phrase (deterministic, unlike random noise, which
    # may leave a 5-token greedy continuation unchanged).
    ids = smollm2.tokenizer("Die Hauptstadt Deutschlands", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        model.input_prompt.embedding.copy_(smollm2.model.get_input_embeddings().weight[(ids * 4)[:4]])
    assert generate_ids(model, TEXTS[:1], max_new_tokens=5) != before


def test_stops_at_end_of_sequence(smollm2):
    model = untrained(smollm2, "prompt", length=2)
    ids = generate_ids(model, TEXTS[:1], max_new_tokens=3)[0]
    saved = smollm2.config.eos_token_id
    smollm2.config.eos_token_id = ids[1]  # pretend the second token ends the text
    try:
        assert generate_ids(model, TEXTS[:1], max_new_tokens=3)[0] == ids[:1]
    finally:
        smollm2.config.eos_token_id = saved


def test_sampling_is_seeded(smollm2):
    model = untrained(smollm2, "deep", length=2)
    first = generate_ids(model, TEXTS, max_new_tokens=4, temperature=1.0, seed=3)
    assert first == generate_ids(model, TEXTS, max_new_tokens=4, temperature=1.0, seed=3)
    with pytest.raises(PtuneError, match="temperature"):
        generate(model, TEXTS, temperature=-1)


def test_encoders_are_refused(minilm):
    with pytest.raises(PtuneError, match="causal LM"):
        generate(untrained(minilm, "prompt", length=2), TEXTS)


def test_cli_generate(smollm2, minilm, tmp_path, capsys):
    path = tmp_path / "gen.safetensors"
    save_prompt(path, untrained(smollm2, "deep", length=2), task_name="t", metric="accuracy")
    assert main(["generate", str(path), "--text", *TEXTS, "--max-new-tokens", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == TEXTS and all(line["generated"] for line in lines)
    encoder = tmp_path / "enc.safetensors"
    save_prompt(encoder, untrained(minilm, "prompt", length=2), task_name="t", metric="accuracy")
    assert main(["generate", str(encoder), "--text", "hello"]) == 2
    assert "causal LM" in capsys.readouterr().err
