"""Prompt files as users move them around: written with the user's umask like every other output, the
backbone recorded as given (a local folder made absolute) with its identity, so a prompt loads from any
directory, `--backbone` points it at a moved copy, and other weights of the same shape are refused."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from ptune.cli import main
from ptune.config import MethodConfig
from ptune.errors import PtuneError
from ptune.model.backbones import load_backbone
from ptune.model.prompt_model import PromptModel
from ptune.storage.prompt_files import load_prompt, read_header, save_prompt
from ptune.training.loop import log_epoch

LABELS = ["negative", "positive"]


def saved_prompt(backbone, path):
    model = PromptModel(backbone, MethodConfig(method="deep", length=2), LABELS)
    model.initialise(seed=0)
    save_prompt(path, model, task_name="rt", metric="accuracy")
    return model


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_follow_the_umask(minilm, tmp_path, umask):
    old = os.umask(umask)
    try:
        saved_prompt(minilm, tmp_path / "prompt.safetensors")
        log_epoch(tmp_path, [{"epoch": 1, "train_loss": 0.5}])
    finally:
        os.umask(old)
    for name in ("prompt.safetensors", "metrics.jsonl"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_a_local_backbone_is_recorded_absolute_and_found_again(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    shutil.copytree(tiny_bert_dir, tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    backbone = load_backbone("./model")
    assert backbone.name == str((tmp_path / "model").resolve())
    prompt = tmp_path / "prompt.safetensors"
    model = saved_prompt(backbone, prompt)
    recorded = read_header(prompt)["backbone"]
    assert recorded["name"] == backbone.name and recorded["embedding_sha256"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recorded folder is absolute: it loads from any directory
    again = load_prompt(prompt)
    for name, tensor in model.trainable_state().items():
        assert torch.equal(again.trainable_state()[name], tensor)

    (tmp_path / "model").rename(tmp_path / "moved")  # the folder moved: say what to do, then follow --backbone
    with pytest.raises(PtuneError, match="--backbone"):
        load_prompt(prompt)
    assert main(["predict", str(prompt), "--backbone", str(tmp_path / "moved"), "--text", "a fine film"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in LABELS


def test_other_weights_of_the_same_shape_are_refused_by_identity(tiny_bert_dir, tmp_path):
    from transformers import BertModel

    prompt = tmp_path / "prompt.safetensors"
    saved_prompt(load_backbone(str(tiny_bert_dir)), prompt)
    impostor = tmp_path / "impostor"
    shutil.copytree(tiny_bert_dir, impostor)
    torch.manual_seed(1)
    BertModel(BertModel.config_class.from_pretrained(impostor)).save_pretrained(impostor)  # same shapes, new weights
    with pytest.raises(PtuneError, match="trained for backbone"):
        load_prompt(prompt, load_backbone(str(impostor)))
