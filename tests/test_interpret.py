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



def test_special_tokens_are_never_neighbours(minilm):
    """A prompt set to [CLS]'s own embedding reports ordinary tokens only."""
    model = PromptModel(minilm, MethodConfig(method="prompt", length=1), ["a", "b"])
    table = minilm.model.get_input_embeddings().weight
    with torch.no_grad():
        model.input_prompt.embedding[0] = table[minilm.tokenizer.cls_token_id]
    found = nearest_tokens(model, k=4)
    specials = set(minilm.tokenizer.convert_ids_to_tokens(sorted(set(minilm.tokenizer.all_special_ids))))
    assert not specials & set(found.tokens[0])


def test_an_excluded_token_loses_even_to_opposite_vectors():
    """Every ordinary row points away from the query (cosine -1): an excluded row must still not win,
    as a zeroed row (cosine 0) would."""
    from ptune.analysis.interpret import _top_k

    table = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    sims, ids = _top_k(torch.tensor([[-1.0, 0.0]]), table, 3, torch.tensor([2]))
    assert 2 not in ids[0].tolist() and torch.allclose(sims, torch.full((1, 3), -1.0))
