"""Backbone loading: embedded short names offline, the fp32 cache for SmolLM2, and identity."""

from __future__ import annotations

import pytest
import torch

from ptune.model.backbones import load_backbone, resolve
from ptune.config import MethodConfig
from ptune.data import TextExample
from ptune.batch.encoding import collate
from ptune.errors import PtuneError
from ptune.model.prompt_model import PromptModel


def test_minilm_is_a_frozen_encoder(minilm):
    assert not minilm.is_decoder and minilm.num_layers == 6 and minilm.hidden_size == 384
    assert all(not p.requires_grad for p in minilm.model.parameters())
    assert minilm.model.config._attn_implementation == "ptune"


@pytest.mark.slow  # dequantises the GGUF weights afresh: 45 s of CI's 19 minutes on 2 cores
def test_smollm2_loads_offline_caches_fp32_and_takes_deep_prompts(tmp_path, monkeypatch):
    """The real SmolLM2 weights (GGUF, dequantised once): GQA prefixes and left padding."""
    monkeypatch.setenv("PTUNE_CACHE", str(tmp_path))
    backbone = load_backbone("smollm2")
    cached = tmp_path / "smollm2-135m-instruct-fp32"
    assert (cached / "config.json").exists() and list(cached.glob("*.safetensors"))
    assert resolve("smollm2") == str(cached)  # later loads read the fp32 copy
    assert backbone.is_decoder and backbone.num_layers == 30 and backbone.kv_heads == 3
    model = PromptModel(backbone, MethodConfig(method="deep", length=4), ["negative", "positive"]).eval()
    with torch.no_grad():
        model.deep_prompt.prefix.normal_(0, 1)
    examples = [TextExample("a fine film"), TextExample("a slow, dull and far too long film with nothing to say")]
    run = lambda ex: model(collate(model.encode(ex), pad_id=model.encoder.pad_id, left_pad=True))  # noqa: E731
    torch.testing.assert_close(run(examples[:1])[0], run(examples)[0], atol=1e-4, rtol=1e-4)
    assert backbone.fingerprint()["model_type"] == "llama"


def test_missing_backbone_is_a_clear_error(tmp_path):
    with pytest.raises(PtuneError, match="no such folder"):
        load_backbone(str(tmp_path / "no-such-model"))
