"""Training on real data with real MiniLM weights: what changes, what must not, and that it learns."""

from __future__ import annotations

import logging

import pytest
import torch

from ptune.storage.prompt_files import load_prompt, read_header, save_prompt
from ptune.config import MethodConfig
from ptune.data import Task, get_task
from ptune.batch.encoding import collate
from ptune.infer.predict import evaluate, predict
from ptune.model.prompt_model import PromptModel
from ptune.training.loop import TrainConfig, train


def small_task(name: str, n_train: int, n_dev: int) -> Task:
    task = get_task(name)
    return Task(task.name, task.kind, task.labels, task.train[:n_train], task.dev[:n_dev], task.test[:n_dev], task.metric)


def test_frozen_backbone_is_bit_identical_and_only_prompt_and_head_get_gradients(minilm):
    task = small_task("conll2003", 32, 16)
    before = {name: p.detach().clone() for name, p in minilm.model.named_parameters()}
    for method in ("prompt", "ptuning", "deep"):
        model = PromptModel.for_task(minilm, task, MethodConfig(method=method, length=4))
        grads = {}
        hooks = [p.register_hook(lambda g, name=name: grads.__setitem__(name, g)) for name, p in model.named_parameters()
                 if p.requires_grad]
        train(model, task, TrainConfig(epochs=1, max_steps=2, batch_size=16, progress=False))
        for hook in hooks:
            hook.remove()
        prompt_names = {n for n in grads if n.startswith(("input_prompt.", "deep_prompt.", "head."))}
        assert grads and prompt_names == set(grads), method
        assert any(n.startswith("head.") for n in grads) and any(not n.startswith("head.") for n in grads)
        assert all(p.grad is None for p in minilm.model.parameters())
    for name, p in minilm.model.named_parameters():
        assert torch.equal(before[name], p), name


def test_finetune_trains_a_private_copy(minilm):
    task = small_task("rotten_tomatoes", 32, 16)
    before = minilm.model.embeddings.word_embeddings.weight.detach().clone()
    model = PromptModel.for_task(minilm, task, MethodConfig(method="finetune"))
    train(model, task, TrainConfig(epochs=1, max_steps=2, batch_size=16, progress=False))
    assert torch.equal(before, minilm.model.embeddings.word_embeddings.weight)
    assert not torch.equal(before, model.tuned_backbone.embeddings.word_embeddings.weight)


def test_save_load_identical_predictions(minilm, tmp_path):
    for name in ("rotten_tomatoes", "conll2003"):
        task = small_task(name, 32, 24)
        for method in ("prompt", "ptuning", "deep"):
            model = PromptModel.for_task(minilm, task, MethodConfig(method=method, length=4, reparam=method == "deep"))
            train(model, task, TrainConfig(epochs=1, max_steps=2, batch_size=16, progress=False))
            path = tmp_path / f"{name}-{method}.safetensors"
            save_prompt(path, model, task_name=task.name, metric=task.metric)
            loaded = load_prompt(path, minilm)
            assert predict(loaded, task.dev) == predict(model, task.dev)
            batch = loaded.encoder.encode(task.dev[:4])
            tensors = collate(batch, pad_id=0, left_pad=False)
            torch.testing.assert_close(loaded(tensors), model.eval()(tensors))
            if method == "ptuning":  # the encoder network is kept so training can resume
                assert any(k.startswith("input_prompt.lstm") for k in loaded.trainable_state())
            if method == "deep":
                assert any(k.startswith("deep_prompt.mlp") for k in loaded.trainable_state())
            assert read_header(path)["method"]["method"] == method


@pytest.mark.slow  # a real rotten_tomatoes run: over a minute on 2 cores
def test_a_short_real_training_run_improves_the_metric(minilm, tmp_path):
    """Deep prompts on 640 real rotten_tomatoes snippets beat the untrained model on held-out data."""
    task = small_task("rotten_tomatoes", 640, 200)
    model = PromptModel.for_task(minilm, task, MethodConfig(method="deep", length=8))
    model.initialise(seed=0)
    before = evaluate(model, task.dev, task.metric)["accuracy"]
    result = train(model, task, TrainConfig(epochs=3, batch_size=32, seed=0, progress=False), out_dir=tmp_path)
    after = evaluate(model, task.dev, task.metric)["accuracy"]
    assert after >= before + 0.1, (before, after)
    assert after > 0.65
    assert result.dev["accuracy"] == after  # the best epoch is what was kept
    assert (tmp_path / "prompt.safetensors").exists()


def test_the_console_bar_shows_each_steps_loss_and_examples_per_second(minilm, capsys, monkeypatch):
    """The progress bar's postfix is the latest step's loss and the epoch's examples/s, live (the bar set to
    redraw on every step, as it does when a real step takes longer than tqdm's 0.1 s)."""
    import functools
    import re

    from ptune.training import loop

    monkeypatch.setattr(loop, "tqdm", functools.partial(loop.tqdm, mininterval=0, miniters=1))
    task = small_task("rotten_tomatoes", 24, 8)
    model = PromptModel.for_task(minilm, task, MethodConfig(method="prompt", length=2))
    losses = []
    original = model.loss
    monkeypatch.setattr(model, "loss", lambda *a, **k: losses.append(loss := original(*a, **k)) or loss)
    train(model, task, TrainConfig(epochs=1, batch_size=8, seed=0, progress=True))
    shown = re.findall(r"(\d)/3 \[[^\]]*?loss=([0-9.]+), examples/s=([0-9.]+)\]", capsys.readouterr().err)
    steps = {int(step): (float(loss), float(rate)) for step, loss, rate in shown}
    assert sorted(steps) == [1, 2, 3], shown
    for step, (loss, rate) in steps.items():
        assert loss == pytest.approx(losses[step - 1].item(), abs=1e-4) and rate > 0


def test_a_run_whose_dev_score_stays_zero_says_so(minilm, caplog):
    """Dev F1 0.0 after every epoch (nothing found at all) is reported with what to do, not left silent."""
    from ptune.data import TaggedExample
    from ptune.training.loop import nothing_learned

    assert nothing_learned([{"dev_f1": 0.0}, {"dev_f1": 0.0}], "f1", 5e-3).startswith("dev f1 stayed 0.0")
    assert nothing_learned([{"dev_f1": 0.0}, {"dev_f1": 0.1}], "f1", 5e-3) is None
    assert nothing_learned([{"train_loss": 1.0}], "f1", 5e-3) is None  # no dev split: nothing to judge
    words = [["Peter", "lives", "in", "Paris"], ["a", "quiet", "town"]]
    examples = [TaggedExample(words[0], ["B-PER", "O", "O", "B-LOC"]), TaggedExample(words[1], ["O", "O", "O"])]
    dev = [TaggedExample(words[1], ["O", "O", "O"])]  # no entity to find: F1 is 0 whatever the model does
    task = Task(name="t", kind="tagging", labels=["O", "B-PER", "B-LOC"], train=examples, dev=dev, test=[],
                metric="entity_f1")
    model = PromptModel.for_task(minilm, task, MethodConfig(method="deep", length=2))
    with caplog.at_level(logging.WARNING, logger="ptune"):
        train(model, task, TrainConfig(epochs=2, batch_size=2, lr=1e-3, progress=False, checkpoint_every=0))
    assert any("dev f1 stayed 0.0 after every epoch" in r.getMessage() for r in caplog.records)
