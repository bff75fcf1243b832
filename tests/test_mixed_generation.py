"""Mixed-task generation (``infer.mixed_generation``): a batch whose rows carry different methods, prompt
lengths and depths generates, row by row, what each task generates alone, on tiny random decoders and on
the real SmolLM2; options are per row; prompts that cannot share a batch are refused."""

from __future__ import annotations

import pytest
import torch
from families import Zoo

from ptune.config import MethodConfig
from ptune.errors import PtuneError
from ptune.infer.decoding import CachedSteps, prompt_features
from ptune.infer.generate import Generation, generate_ids
from ptune.infer.mixed_generation import MixedGeneration, MixedSteps, generate_mixed, generate_mixed_ids, request
from ptune.model.backbones import load_backbone
from ptune.model.prompt_model import PromptModel

TEXTS = ["The capital of France is", "Once upon a time, a small dog lived in a house by the sea and",
         "Water boils at", "My favourite recipe for a quick weeknight dinner starts with"]
# Different methods, lengths and depths: an input prompt, a P-tuning template with words around the text,
# deep prompts on every layer, on the top layer only, and in PEFT's layout (positions shifted).
TASKS = {
    "prompt": {"method": "prompt", "length": 5},
    "ptuning": {"method": "ptuning", "length": 3, "encoder": "mlp", "template": "[P] Question: {text} [P]*2 Answer:"},
    "deep": {"method": "deep", "length": 4},
    "deep-top1": {"method": "deep", "length": 2, "layers": "top:1"},
    "deep-peft": {"method": "deep", "length": 3, "peft_layout": True},
}


@pytest.fixture(scope="module")
def smollm2():
    return load_backbone("smollm2")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def task_model(backbone, method, seed=0, **options):
    model = PromptModel(backbone, MethodConfig(method=method, **options), ["a", "b"])
    model.initialise(seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # loud prompts (std 1): a row that got another task's prompt, or none, shows
        for p in model.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def tiny_tasks(tiny_llama):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the P-tuning encoder's init fit is far slower with two threads on tiny models
    try:
        return {name: task_model(tiny_llama, seed=i, **options) for i, (name, options) in enumerate(TASKS.items())}
    finally:
        torch.set_num_threads(threads)


def mixed_items(tasks):
    """Every task with two texts, interleaved: neighbours always belong to other tasks."""
    names = list(tasks)
    return [(names[i % len(names)], TEXTS[(i + i // len(names)) % len(TEXTS)]) for i in range(2 * len(names))]


def test_first_logits_equal_each_task_alone(tiny_tasks, one_thread):
    items = mixed_items(tiny_tasks)
    models = list(tiny_tasks.values())
    features, tasks = [], []
    for name, text in items:
        features += prompt_features(tiny_tasks[name], [text])
        tasks.append(list(tiny_tasks).index(name))
    with torch.inference_mode():
        mixed = MixedSteps(models, tasks, features).start()
        for row, (name, text) in enumerate(items):
            alone = CachedSteps(tiny_tasks[name], prompt_features(tiny_tasks[name], [text])).start()
            assert torch.allclose(mixed[row], alone[0], atol=1e-4), (name, float((mixed[row] - alone[0]).abs().max()))


def test_mixed_greedy_ids_equal_each_task_alone(tiny_tasks, one_thread):
    items = mixed_items(tiny_tasks)
    got = generate_mixed_ids([(tiny_tasks[name], text) for name, text in items], max_new_tokens=8)
    alone = [generate_ids(tiny_tasks[name], [text], max_new_tokens=8)[0] for name, text in items]
    assert got == alone
    # The tasks really differ: the same text under two prompts continues differently.
    assert len({tuple(generate_ids(m, TEXTS[:1], max_new_tokens=8)[0]) for m in tiny_tasks.values()}) > 1


def test_options_are_per_row(tiny_tasks, one_thread):
    """A sampled row draws what it draws alone with its seed; a greedy row with a stop string and one with
    min_new_tokens and a short limit keep their own limits; prompt token counts exclude virtual tokens."""
    deep, soft = tiny_tasks["deep"], tiny_tasks["ptuning"]
    full = Generation(deep, TEXTS[:1], max_new_tokens=10).run().texts[0]
    stop = full[3:6]
    options = [dict(max_new_tokens=9, temperature=0.9, top_p=0.95, top_k=50, seed=7),
               dict(max_new_tokens=10, stop=[stop]),
               dict(max_new_tokens=3, min_new_tokens=3, repetition_penalty=1.5)]
    requests = [request(soft, TEXTS[1], **options[0]), request(deep, TEXTS[0], **options[1]),
                request(tiny_tasks["prompt"], TEXTS[2], **options[2])]
    mixed = MixedGeneration(requests).run()
    for r, opts, text, ids, finish in zip(requests, options, mixed.texts, mixed.ids, mixed.finish):
        alone = Generation(r.model, [r.text], **opts).run()
        assert (text, ids, finish) == (alone.texts[0], alone.ids[0], alone.finish[0])
    assert mixed.finish[1] == "stop" and mixed.texts[1] == full[: full.index(stop)]
    assert len(mixed.ids[2]) == 3
    question = prompt_features(soft, [TEXTS[1]])[0]
    assert mixed.prompt_tokens[0] == len(question.input_ids) - 3  # the 3 [P] positions are not tokens


def test_pieces_join_to_the_texts(tiny_tasks, one_thread):
    items = [(tiny_tasks[name], text) for name, text in mixed_items(tiny_tasks)]
    generation = MixedGeneration([request(m, t, max_new_tokens=6, temperature=1.0, seed=i)
                                  for i, (m, t) in enumerate(items)])
    joined = [""] * len(items)
    for row, piece in generation.pieces():
        joined[row] += piece
    assert joined == generation.texts and any(joined)


def test_refusals(tiny_llama, tiny_llama_dir, tiny_tasks, minilm):
    with pytest.raises(PtuneError, match="causal LM"):
        generate_mixed([(task_model(minilm, "prompt", length=2), "hello")])
    tuned = task_model(tiny_llama, "finetune")
    with pytest.raises(PtuneError, match="tunes its own backbone copy"):
        generate_mixed([(tiny_tasks["prompt"], "a"), (tuned, "b")])
    other = task_model(load_backbone(str(tiny_llama_dir)), "prompt", length=2)  # the same weights, another object
    with pytest.raises(PtuneError, match="one backbone"):
        generate_mixed([(tiny_tasks["prompt"], "a"), (other, "b")])
    with pytest.raises(PtuneError, match="top_p"):
        request(tiny_tasks["prompt"], "a", top_p=2.0)
    assert MixedGeneration([]).run().texts == []


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return Zoo(tmp_path_factory.mktemp("mixed-generation-families"))


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_other_decoder_families(zoo, one_thread, family):
    """Learned absolute positions (GPT-2) and a Qwen2 decoder: mixed rows equal each task alone."""
    backbone = zoo.backbone(family)
    models = [task_model(backbone, "prompt", length=3, seed=1), task_model(backbone, "deep", length=2, seed=2),
              task_model(backbone, "deep", length=4, layers="top:1", seed=3)]
    items = [(models[i % 3], TEXTS[i % 4]) for i in range(6)]
    got = generate_mixed_ids(items, max_new_tokens=6)
    assert got == [generate_ids(m, [t], max_new_tokens=6)[0] for m, t in items]


@pytest.mark.slow
def test_smollm2_mixed_equals_alone(smollm2):
    """The real model: an input prompt of real word embeddings, a P-tuning template, deep prompts on the
    top 10 of 30 layers, 12 greedy tokens each, mixed in one left-padded batch."""
    backbone = smollm2
    prompt = task_model(backbone, "prompt", length=4)
    words = backbone.tokenizer("Die Hauptstadt Deutschlands ist", add_special_tokens=False)["input_ids"][:4]
    with torch.no_grad():
        prompt.input_prompt.embedding.copy_(backbone.model.get_input_embeddings().weight[words])
    ptuning = task_model(backbone, "ptuning", length=3, encoder="mlp", template="[P] {text} [P]*2", seed=1)
    deep = task_model(backbone, "deep", length=4, layers="top:10", seed=2)
    items = [(prompt, TEXTS[0]), (ptuning, TEXTS[1]), (deep, TEXTS[2]), (prompt, TEXTS[3]), (deep, TEXTS[0])]
    got = generate_mixed_ids(items, max_new_tokens=12)
    assert got == [generate_ids(m, [t], max_new_tokens=12)[0] for m, t in items]
    assert got[0] != got[4]  # the same text under two tasks
