"""Initialising a P-tuning prompt from words: the words reach the prompt encoder's OUTPUT (what the
model sees), not only its input."""

from __future__ import annotations

import pytest
import torch

from ptune.config import MethodConfig
from ptune.model.prompt_model import PromptModel


@pytest.mark.parametrize("encoder", ["lstm", "mlp"])
@pytest.mark.parametrize("init", ["vocab", "labels"])
def test_encoder_output_starts_at_the_init_vectors(minilm, encoder, init):
    model = PromptModel(minilm, MethodConfig(method="ptuning", encoder=encoder, init=init), ["negative", "positive"])
    model.initialise(seed=0)
    raw = model.input_prompt.embedding.detach()
    seen = model.input_prompt().detach()
    assert (seen - raw).norm() / raw.norm() < 0.02
    assert torch.nn.functional.cosine_similarity(seen, raw).min() > 0.99
    if init == "labels":  # the first vectors are the label words' embeddings, and the model sees them
        table = minilm.model.get_input_embeddings().weight.detach()
        for row, ids in enumerate(model.label_token_ids()):
            word = table[ids].mean(0)
            assert torch.nn.functional.cosine_similarity(seen[row], word, dim=0) > 0.99


def test_initialisation_is_reproducible(minilm):
    first, second = (PromptModel(minilm, MethodConfig(method="ptuning", encoder="lstm", init="vocab"), ["a", "b"])
                     for _ in range(2))
    first.initialise(seed=3)
    second.initialise(seed=3)
    assert torch.equal(first.input_prompt(), second.input_prompt())
