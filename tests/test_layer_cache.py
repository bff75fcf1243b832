"""Deep prompts on the top layers only: cached bottom-layer outputs give the same model outputs."""

from __future__ import annotations

import pytest
import torch

from ptune.config import MethodConfig
from ptune.data import TextExample
from ptune.batch.encoding import collate
from ptune.model.depth_cache import BottomCache, layer_list
from ptune.model.prompt_model import PromptModel

TEXTS = ["a gripping , beautifully acted film", "dull", "not bad at all , really", "the worst thing this year",
         "an unexpectedly tender and funny story about growing up"]


@pytest.mark.parametrize("backbone_name", ["minilm", "tiny_llama"])
def test_cached_bottom_layers_give_the_same_outputs(request, backbone_name):
    backbone = request.getfixturevalue(backbone_name)
    model = PromptModel(backbone, MethodConfig(method="deep", length=3, layers="top:1"), ["a", "b"])
    model.initialise(seed=0)
    model.eval()
    assert model.first_prompted_layer == backbone.num_layers - 1
    features = model.encode([TextExample(t) for t in TEXTS])
    cache = BottomCache(layer_list(model.transformer, backbone.num_layers), model.first_prompted_layer,
                        limit_bytes=1 << 30)
    full = collate(features, pad_id=model.encoder.pad_id, left_pad=model.encoder.decoder)
    with torch.no_grad():
        expected = model(full)
        # fill the cache from batches of other compositions (other padding), then read it back
        for rows in ([0, 1], [2, 3, 4]):
            part = collate([features[i] for i in rows], pad_id=model.encoder.pad_id, left_pad=model.encoder.decoder)
            cache.hidden(rows, part, lambda: model.bottom_pass(part))
        assert cache.misses == 5 and len(cache.store) == 5
        full["bottom_hidden"] = cache.hidden(list(range(5)), full, lambda: model.bottom_pass(full))
        assert cache.hits == 5
        cached = model(full)
    assert torch.allclose(cached, expected, atol=1e-5), (cached - expected).abs().max()


def test_gradients_flow_to_the_prompt_with_the_cache(minilm):
    model = PromptModel(minilm, MethodConfig(method="deep", length=3, layers="top:2"), ["a", "b"])
    model.initialise(seed=0)
    features = model.encode([TextExample(t, label="a") for t in TEXTS])
    batch = collate(features, pad_id=model.encoder.pad_id, left_pad=False)
    cache = BottomCache(layer_list(model.transformer, 6), 4, limit_bytes=1 << 30)
    batch["bottom_hidden"] = cache.hidden(list(range(5)), batch, lambda: model.bottom_pass(batch))
    model.loss(batch).backward()
    assert model.deep_prompt.prefix.grad is not None and model.deep_prompt.prefix.grad.abs().sum() > 0


def test_cache_cap_recomputes_instead_of_growing(minilm):
    model = PromptModel(minilm, MethodConfig(method="deep", length=3, layers="top:2"), ["a", "b"])
    features = model.encode([TextExample(t) for t in TEXTS])
    batch = collate(features, pad_id=model.encoder.pad_id, left_pad=False)
    cache = BottomCache(layer_list(model.transformer, 6), 4, limit_bytes=10_000)
    with torch.no_grad():
        cache.hidden(list(range(5)), batch, lambda: model.bottom_pass(batch))
    assert cache.bytes <= 10_000 and len(cache.store) < 5


def test_training_records_what_the_cache_holds(minilm):
    """Each epoch's record says the cache's size: every training example's non-padding tokens x hidden x 4 bytes
    (fp32) once the first epoch has passed over them all, and no key without a cache (full depth)."""
    from ptune.data.tasks import Task
    from ptune.training.loop import TrainConfig, train

    task = Task(name="t", kind="classification", labels=["a", "b"], metric="accuracy",
                train=[TextExample(t, label="ab"[i % 2]) for i, t in enumerate(TEXTS)],
                dev=[TextExample(t, label="a") for t in TEXTS[:2]], test=[])
    tokens = sum(len(f.input_ids) for f in PromptModel(minilm, MethodConfig(method="deep", length=3), ["a", "b"])
                 .encode(task.train))
    top = PromptModel.for_task(minilm, task, MethodConfig(method="deep", length=3, layers="top:2"))
    history = train(top, task, TrainConfig(epochs=2, batch_size=2, progress=False, checkpoint_every=0)).history
    assert [record["cache_mb"] for record in history] == [round(tokens * 384 * 4 / 2**20, 1)] * 2
    full = PromptModel.for_task(minilm, task, MethodConfig(method="deep", length=3))
    assert all("cache_mb" not in record for record in train(full, task, TrainConfig(
        epochs=1, batch_size=2, progress=False, checkpoint_every=0)).history)
