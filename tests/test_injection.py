"""Deep prompts reach every layer on families whose attention modules carry no ``layer_idx``
(DistilBERT: tagged at load; ALBERT: one shared layer run L times, resolved by call order), and a
family whose attention bypasses transformers' attention interface (DeBERTa-v2) is refused when
the model is built, never silently left without prompts."""

from __future__ import annotations

import pytest
import torch
from transformers import (AlbertConfig, AlbertModel, AutoTokenizer, DebertaV2Config, DebertaV2Model, DistilBertConfig,
                          DistilBertModel)

import ptune
from ptune.errors import PtuneError
from ptune.model.backbones import resolve

FAMILIES = {
    "distilbert": (DistilBertModel, lambda v: DistilBertConfig(vocab_size=v, dim=32, n_layers=3, n_heads=4, hidden_dim=64)),
    "albert": (AlbertModel, lambda v: AlbertConfig(vocab_size=v, embedding_size=16, hidden_size=32, num_hidden_layers=3,
                                                   num_attention_heads=4, intermediate_size=64)),
    "deberta-v2": (DebertaV2Model, lambda v: DebertaV2Config(vocab_size=v, hidden_size=32, num_hidden_layers=3,
                                                            num_attention_heads=4, intermediate_size=64)),
}


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(resolve("minilm"))
    out = {}
    for name, (cls, config) in FAMILIES.items():
        folder = tmp_path_factory.mktemp(name)
        torch.manual_seed(0)
        cls(config(len(tokenizer))).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        out[name] = ptune.load_backbone(str(folder))
    return out


def outputs(model, texts):
    model.eval()
    with torch.no_grad():
        return model(model.collate(model.encode([ptune.TextExample(t) for t in texts])))


@pytest.mark.parametrize("family", ["distilbert", "albert"])
def test_each_selected_layer_prefix_changes_the_output(backbones, family):
    model = ptune.PromptModel(backbones[family], ptune.MethodConfig(method="deep", length=3), ["a", "b"])
    model.initialise(seed=0)
    assert model.deep_prompt.layers == [0, 1, 2]
    texts = ["a short one", "a somewhat longer sentence to pad against"]
    before = outputs(model, texts)
    prefix = model.deep_prompt.prefix
    per_layer = prefix.view(prefix.shape[0], 3, -1)  # [P, layers, 2 * kvH * D], the layout DeepPrompt.forward reads
    for layer in range(3):
        saved = prefix.detach().clone()
        with torch.no_grad():
            per_layer[:, layer].add_(torch.randn_like(per_layer[:, layer]) * 5)
        changed = {k for k, (keys, _) in model.deep_prompt(1).items()
                   if not torch.equal(keys, _layer_keys(saved, model, k))}
        assert changed == {layer}
        assert (outputs(model, texts) - before).abs().max() > 1e-4, f"{family}: layer {layer}'s prefix has no effect"
        with torch.no_grad():
            prefix.copy_(saved)


def _layer_keys(flat: torch.Tensor, model, layer: int) -> torch.Tensor:
    prompt = model.deep_prompt
    view = flat.view(prompt.length, len(prompt.layers), 2, prompt.kv_heads, prompt.head_dim).permute(1, 2, 3, 0, 4)
    return view[prompt.layers.index(layer), 0].unsqueeze(0)


@pytest.mark.parametrize("family", ["distilbert", "albert"])
def test_alone_equals_padded_in_a_batch(backbones, family):
    model = ptune.PromptModel(backbones[family], ptune.MethodConfig(method="deep", length=3), ["a", "b"])
    model.initialise(seed=0)
    texts = ["short", "a much longer sentence than the first one, with padding"]
    together = outputs(model, texts)
    for i, text in enumerate(texts):
        assert torch.allclose(outputs(model, [text])[0], together[i], atol=1e-5)


def test_top_layers_on_shared_layers_run_every_layer(backbones):
    model = ptune.PromptModel(backbones["albert"], ptune.MethodConfig(method="deep", length=2, layers="top:1"), ["a", "b"])
    assert model.deep_prompt.layers == [2] and model.first_prompted_layer == 0  # no bottom cache to skip into


def test_distilbert_top_layers_cache_the_bottom(backbones):
    model = ptune.PromptModel(backbones["distilbert"], ptune.MethodConfig(method="deep", length=2, layers="top:1"),
                              ["a", "b"])
    model.initialise(seed=0)
    model.eval()
    assert model.first_prompted_layer == 2
    batch = model.collate(model.encode([ptune.TextExample("cached bottom layers"), ptune.TextExample("and another")]))
    with torch.no_grad():
        full = model(batch)
        bottom = _bottom_output(model, batch)
        cached = model({**batch, "bottom_hidden": bottom})
    assert torch.allclose(full, cached, atol=1e-5)


def _bottom_output(model, batch):
    """What layers 0..start-1 hand to layer ``start``: captured with a hook on the layer list."""
    from ptune.model.depth_cache import layer_list

    layers = layer_list(model.transformer, model.backbone.num_layers)
    seen = []
    handle = layers[model.first_prompted_layer].register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True)
    try:
        model.bottom_pass(batch)
    finally:
        handle.remove()
    return seen[0]


def test_family_bypassing_the_attention_interface_is_refused_at_build(backbones):
    backbone = backbones["deberta-v2"]
    with pytest.raises(PtuneError, match=r"deberta-v2.*deep prompts cannot reach.*use --method prompt or ptuning"):
        ptune.PromptModel(backbone, ptune.MethodConfig(method="deep"), ["a", "b"])
    model = ptune.PromptModel(backbone, ptune.MethodConfig(method="prompt", length=2), ["a", "b"])  # input level works
    model.initialise(seed=0)
    assert outputs(model, ["still served"]).shape == (1, 2)


@pytest.mark.parametrize("backbone_name", ["minilm", "tiny_llama"])
def test_the_mask_is_skipped_only_without_prefixes(request, backbone_name, monkeypatch):
    """An unpadded batch without deep prompts reaches SDPA with no mask (its fused kernel keeps no attention
    weights) and gives what the same texts give in a padded batch (a materialised mask); with deep prompts every
    layer gets the mask."""
    from ptune.model import injection

    backbone = request.getfixturevalue(backbone_name)
    seen: list = []
    attend = injection._attend

    def recording(module, query, key, value, mask, **kwargs):
        seen.append(mask)
        return attend(module, query, key, value, mask, **kwargs)

    monkeypatch.setattr(injection, "_attend", recording)
    texts = ["a gripping film", "a dull story"]  # the same number of tokens: no padding
    for method, skipped in (("prompt", True), ("deep", False)):
        model = ptune.PromptModel(backbone, ptune.MethodConfig(method=method, length=2), ["a", "b"])
        model.initialise(seed=0)
        features = model.encode([ptune.TextExample(t) for t in [*texts, "a much longer text than the two others"]])
        batch = model.collate(features[:2])
        assert bool(batch["attention_mask"].all())
        model.eval()
        seen.clear()
        with torch.no_grad():
            unpadded = model(batch)
        assert seen and all((mask is None) == skipped for mask in seen), (method, [type(m) for m in seen])
        seen.clear()
        with torch.no_grad():
            padded = model(model.collate(features))[:2]
        assert seen and all(mask is not None for mask in seen)
        assert torch.allclose(unpadded, padded, atol=1e-5), (method, (unpadded - padded).abs().max())
