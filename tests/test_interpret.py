"""Nearest-token interpretation of prompt vectors."""

from __future__ import annotations

import torch

from ptune.config import MethodConfig
from ptune.analysis.interpret import nearest_tokens
from ptune.model.prompt_model import PromptModel


def test_input_prompt_neighbours_recover_the_words_it_was_set_to(minilm):
    model = PromptModel(minilm, MethodConfig(method="prompt", length=2), ["a", "b"])
    table = minilm.model.get_input_embeddings().weight
    ids = minilm.tokenizer.convert_tokens_to_ids(["cinema", "boring"])
    with torch.no_grad():
        model.input_prompt.embedding.copy_(table[ids])
    found = nearest_tokens(model, k=3)
    assert [row[0] for row in found.tokens] == ["cinema", "boring"]
    assert all(abs(row[0] - 1) < 1e-5 for row in found.similarities)


def test_deep_prompt_neighbours_in_layer_zero_key_space(minilm):
    """A prefix whose layer-0 keys equal a token's own keys has that token as nearest neighbour."""
    from ptune.model import injection

    model = PromptModel(minilm, MethodConfig(method="deep", length=1), ["a", "b"]).eval()
    token = minilm.tokenizer.convert_tokens_to_ids("paris")
    with torch.no_grad(), injection.capturing_keys(0) as store:
        minilm.model(input_ids=torch.tensor([[token]]), attention_mask=torch.ones(1, 1, dtype=torch.long))
        keys = store[0][0, :, 0, :]  # [kvH, D]
        width = minilm.kv_heads * minilm.head_dim
        model.deep_prompt.prefix[0, :width] = keys.reshape(-1)  # layer 0 keys come first
    found = nearest_tokens(model, k=2)
    assert found.space == "layer 0 keys" and found.tokens[0][0] == "paris"
