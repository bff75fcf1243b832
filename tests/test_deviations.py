"""The options that keep the papers' reference-code behaviour where ptune's defaults differ from it
(prefix init scale, prefix dropout masks, backbone dropout, the pooler); docs/RESULTS.md measures them."""

from __future__ import annotations

import pytest
import torch

from ptune.batch.encoding import collate
from ptune.config import MethodConfig
from ptune.data import TaggedExample, TextExample
from ptune.errors import PtuneError
from ptune.model.prompt_model import PromptModel

TEXTS = [TextExample("a gripping , beautifully acted film", "positive"),
         TextExample("dull , overlong and with a plot that goes nowhere", "negative")]


def batch_of(model, examples):
    return collate(model.encode(examples), pad_id=model.encoder.pad_id, left_pad=model.encoder.decoder)


def test_prefix_std_sets_the_init_scale(minilm):
    for std in (0.02, 1.0):
        model = PromptModel(minilm, MethodConfig(method="deep", prefix_std=std), ["negative", "positive"])
        model.initialise(seed=0)
        assert model.deep_prompt.prefix.std().item() == pytest.approx(std, rel=0.05)
    with pytest.raises(PtuneError, match="prefix_std.*above 0"):
        MethodConfig(method="deep", prefix_std=0.0)


def test_prefix_std_default_follows_the_backbone(minilm, tiny_llama):
    """N(0, 1) on an encoder (measured better on minilm), N(0, 0.02) on a decoder, where N(0, 1) drowned
    smollm2's own keys (benchmarks/lm.py); an explicit --prefix-std holds on both."""
    for backbone, default in ((minilm, 1.0), (tiny_llama, 0.02)):
        for config, std in ((MethodConfig(method="deep"), default), (MethodConfig(method="deep", prefix_std=0.5), 0.5)):
            model = PromptModel(backbone, config, ["negative", "positive"])
            model.initialise(seed=0)
            assert model.deep_prompt.prefix.std().item() == pytest.approx(std, rel=0.05), backbone.name


@pytest.mark.parametrize("mode", ["batch", "example"])
def test_prefix_dropout_masks(minilm, mode):
    model = PromptModel(minilm, MethodConfig(method="deep", prefix_dropout=mode), ["negative", "positive"])
    model.initialise(seed=0)
    model.train()
    keys, _ = model.deep_prompt(4)[0]  # [B, kvH, P, D]
    differs = [not torch.equal(keys[0], keys[i]) for i in range(1, 4)]
    assert all(differs) if mode == "example" else not any(differs)
    model.eval()  # no dropout at inference, whatever the mode
    keys, _ = model.deep_prompt(4)[0]
    assert torch.equal(keys[0], keys[3])
    assert torch.equal(keys[0], model.deep_prompt.flat().view(16, 6, 2, *keys.shape[1:2], -1)[:, 0, 0].permute(1, 0, 2))


def test_backbone_dropout_switches_the_shared_backbone_only_while_training(minilm):
    plain = PromptModel(minilm, MethodConfig(method="deep"), ["negative", "positive"])
    dropped = PromptModel(minilm, MethodConfig(method="deep", backbone_dropout=True), ["negative", "positive"])
    for model in (plain, dropped):
        model.initialise(seed=0)
    try:
        plain.train()
        assert not minilm.model.training
        batch = batch_of(plain, TEXTS)
        assert torch.equal(plain.bottom_pass(batch), plain.bottom_pass(batch))  # the backbone as at inference
        dropped.train()
        assert minilm.model.training
        torch.manual_seed(0)
        assert not torch.equal(dropped.bottom_pass(batch), dropped.bottom_pass(batch))
        dropped.eval()
        assert not minilm.model.training
    finally:
        minilm.model.eval()
    with pytest.raises(PtuneError, match="backbone_dropout is for a frozen backbone"):
        MethodConfig(method="finetune", backbone_dropout=True)


def test_pooler_reads_the_backbones_own_pooler(minilm):
    model = PromptModel(minilm, MethodConfig(method="prompt", pool="pooler"), ["negative", "positive"])
    model.initialise(seed=0)
    model.eval()
    batch = batch_of(model, TEXTS)
    hidden = model.hidden_states(batch)
    rows = torch.arange(2)
    pooled = minilm.model.pooler.activation(minilm.model.pooler.dense(hidden[rows, batch["pool_index"]]))
    expected = model.head.linear(pooled)
    torch.testing.assert_close(model(batch), expected)
    first = PromptModel(minilm, MethodConfig(method="prompt"), ["negative", "positive"])
    first.load_state_dict(model.state_dict())
    assert not torch.allclose(first.eval()(batch), expected)


def test_pooler_refused_where_it_cannot_apply(minilm, tiny_llama):
    with pytest.raises(PtuneError, match="has no pooler"):
        PromptModel(tiny_llama, MethodConfig(method="prompt", pool="pooler"), ["negative", "positive"])
    with pytest.raises(PtuneError, match="not tagging"):
        PromptModel(minilm, MethodConfig(method="deep", pool="pooler"), ["O", "B-PER"], kind="tagging")


def test_pooler_in_a_mixed_batch_matches_the_task_alone(minilm):
    from ptune.infer.bank import PromptBank

    pooled = PromptModel(minilm, MethodConfig(method="deep", pool="pooler"), ["negative", "positive"])
    tags = PromptModel(minilm, MethodConfig(method="deep"), ["O", "B-PER"], kind="tagging")
    for seed, model in enumerate((pooled, tags)):
        model.initialise(seed=seed)
    bank = PromptBank({"sentiment": pooled, "ner": tags}).eval()
    alone = pooled.eval()(batch_of(pooled, TEXTS))
    items = [("sentiment", TEXTS[0]), ("ner", TaggedExample(("Peter", "left"), ("B-PER", "O"))), ("sentiment", TEXTS[1])]
    mixed = bank(bank.collate(bank.encode(items)))
    torch.testing.assert_close(torch.stack([mixed[0], mixed[2]]), alone, atol=1e-5, rtol=1e-4)


def test_defaults_follow_the_measurement():
    """Each default is the side that benchmarks/deviations.py measured better (a tie keeps ptune's)."""
    import json
    from pathlib import Path

    verdicts = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/deviations.json").read_text())["verdicts"]
    reference = {"positions": ("peft_layout", True, False), "prefix_std": ("prefix_std", 1.0, 0.02),
                 "prefix_dropout": ("prefix_dropout", "example", "batch"),
                 "backbone_dropout": ("backbone_dropout", True, False), "pooler": ("pool", "pooler", "first")}
    assert set(verdicts) == set(reference)
    for variant, (name, theirs, ours) in reference.items():
        switched = verdicts[variant]["decision"] == "reference becomes the default"
        default = (MethodConfig().prefix_init_std(encoder_only=True) if name == "prefix_std"  # measured on minilm
                   else getattr(MethodConfig(), name))
        assert default == (theirs if switched else ours), variant
