"""Multi-task training: one shared prompt, separate heads, kept apart on save/load, continued per task."""

from __future__ import annotations

import json

import pytest
import torch

from ptune.storage.prompt_files import load_prompt
from ptune.cli import main
from ptune.config import MethodConfig
from ptune.data import Task, get_task
from ptune.infer.predict import predict
from ptune.training.multitask import shared_prompt_bank, train_multitask
from ptune.training.loop import TrainConfig


def small(name: str, n: int = 48) -> Task:
    task = get_task(name)
    return Task(task.name, task.kind, task.labels, task.train[:n], task.dev[:16], task.test[:16], task.metric)


def test_shared_prompt_separate_heads_saved_apart(minilm, tmp_path):
    tasks = [small("conll2003"), small("rotten_tomatoes")]
    bank = shared_prompt_bank(minilm, tasks, MethodConfig(method="deep", length=4))
    ner, sentiment = bank.models["conll2003"], bank.models["rotten_tomatoes"]
    assert ner.deep_prompt is sentiment.deep_prompt and ner.head is not sentiment.head
    before = {k: v.clone() for k, v in bank.state_dict().items()}
    results = train_multitask(bank, tasks, TrainConfig(epochs=1, max_steps=3, batch_size=16, progress=False),
                              out_dir=tmp_path)
    after = bank.state_dict()
    for prefix in ("models.conll2003.deep_prompt.", "models.conll2003.head.", "models.rotten_tomatoes.head."):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(prefix)), prefix
    assert all(not p.requires_grad for p in minilm.model.parameters())

    files = {t.name: results[t.name].prompt_path for t in tasks}
    loaded = {name: load_prompt(path, minilm) for name, path in files.items()}
    assert loaded["conll2003"].head.linear.out_features == len(tasks[0].labels)
    assert loaded["rotten_tomatoes"].head.linear.out_features == 2
    torch.testing.assert_close(loaded["conll2003"].deep_prompt.prefix, loaded["rotten_tomatoes"].deep_prompt.prefix)
    for task in tasks:
        assert predict(loaded[task.name], task.dev) == predict(bank.models[task.name], task.dev)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "dev_mean" in records[0] and "dev_conll2003_f1" in records[0]


@pytest.mark.slow
def test_cli_multitask_then_continue_one_task(tmp_path, capsys, minilm):
    out = tmp_path / "mt"
    assert main(["-q", "train", "--task", "conll2003", "rotten_tomatoes", "--method", "prompt", "--length", "4",
                 "--max-steps", "2", "--epochs", "1", "--train-limit", "32", "--eval-limit", "16", "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["per_task"]) == {"conll2003", "rotten_tomatoes"}
    for result in summary["per_task"].values():  # what was cut to max_length, per split
        assert set(result["truncated"]) == {"train", "dev", "test"}
    assert summary["per_task"]["conll2003"]["truncated"]["test"]["examples"] >= 1  # one test sentence is too long
    shared = load_prompt(out / "rotten_tomatoes.safetensors", minilm).input_prompt.embedding.detach().clone()
    cont = tmp_path / "cont"
    assert main(["-q", "train", "--task", "rotten_tomatoes", "--method", "prompt", "--length", "4", "--init-from",
                 str(out / "rotten_tomatoes.safetensors"), "--max-steps", "1", "--epochs", "1", "--lr", "1e-9",
                 "--train-limit", "16", "--eval-limit", "16", "--out", str(cont)]) == 0
    continued = load_prompt(cont / "prompt.safetensors", minilm).input_prompt.embedding
    torch.testing.assert_close(continued, shared, atol=1e-6, rtol=0)  # started from the shared prompt
    capsys.readouterr()
    assert main(["train", "--task", "conll2003", "--method", "prompt", "--init-from",
                 str(out / "rotten_tomatoes.safetensors")]) == 2
    assert "cannot start" in capsys.readouterr().err


def test_multitask_counts_truncation_per_task(minilm):
    tasks = [small("conll2003", 32), small("rotten_tomatoes", 32)]
    bank = shared_prompt_bank(minilm, tasks, MethodConfig(method="deep", length=4, max_length=12))
    results = train_multitask(bank, tasks, TrainConfig(epochs=1, max_steps=1, batch_size=16, progress=False))
    for task in tasks:
        features = bank.models[task.name].encode(task.train)
        expected = sum(1 for f in features if f.truncated)
        assert expected > 0
        assert results[task.name].truncated["train"]["examples"] == expected
        assert results[task.name].truncated["dev"]["examples"] == sum(
            1 for f in bank.models[task.name].encode(task.dev) if f.truncated)
