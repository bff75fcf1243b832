"""PromptModel mechanics on real MiniLM weights (and a tiny GQA Llama for the decoder path)."""

from __future__ import annotations

import pytest
import torch

from ptune.config import MethodConfig
from ptune.data import TaggedExample, TextExample
from ptune.batch.encoding import collate
from ptune.model.prompt_model import PromptModel

METHODS = ["prompt", "ptuning", "deep", "finetune"]
SENTENCES = [TextExample("a gripping , beautifully acted film", "positive"),
             TextExample("dull , overlong and with a plot that goes nowhere at all in the end", "negative"),
             TextExample("fine", "positive")]
TAGGED = [TaggedExample(("EU", "rejects", "German", "call"), ("B-ORG", "O", "B-MISC", "O")),
          TaggedExample(("Peter", "Blackburn", "visited", "Brussels", "yesterday", "afternoon"),
                        ("B-PER", "I-PER", "O", "B-LOC", "O", "O"))]
TAGS = ["O", "B-ORG", "B-MISC", "B-PER", "I-PER", "B-LOC"]


def build(backbone, method, *, tagging=False, **options):
    labels = TAGS if tagging else ["negative", "positive"]
    model = PromptModel(backbone, MethodConfig(method=method, **options), labels, kind="tagging" if tagging else "classification")
    model.initialise(seed=1)
    if model.deep_prompt is not None:  # non-trivial prefixes so that a masking bug would show
        with torch.no_grad():
            for p in model.deep_prompt.parameters():
                p.normal_(0, 1)
    return model.eval()


def run(model, examples):
    encoder = model.encoder
    return model(collate(model.encode(examples), pad_id=encoder.pad_id, left_pad=encoder.decoder))


@pytest.mark.parametrize("method", METHODS)
def test_alone_equals_padded_in_batch_encoder(minilm, method):
    model = build(minilm, method)
    batch = run(model, SENTENCES)
    for i, example in enumerate(SENTENCES):
        torch.testing.assert_close(run(model, [example])[0], batch[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_alone_equals_padded_in_batch_decoder_left_padding(tiny_llama, method):
    model = build(tiny_llama, method)
    assert model.encoder.decoder
    batch = run(model, SENTENCES)
    for i, example in enumerate(SENTENCES):
        torch.testing.assert_close(run(model, [example])[0], batch[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_tagging_alone_equals_padded(minilm, method):
    model = build(minilm, method, tagging=True)
    batch = run(model, TAGGED)
    first = run(model, TAGGED[:1])
    torch.testing.assert_close(first, batch[: len(first)], atol=1e-5, rtol=1e-4)


def test_padding_columns_are_masked_under_deep_prompts(minilm):
    """Padding must stay masked when prefixes are injected (the AttentionMaskInterface trap)."""
    model = build(minilm, "deep")
    features = model.encode(SENTENCES[:1])
    padded = collate(features, pad_id=model.encoder.pad_id, left_pad=False)
    extra = {k: torch.cat([v, torch.zeros_like(v[:, :5]) + (0 if k != "prompt_index" and k != "word_index" else -1)], dim=1)
             if v.dim() == 2 else v for k, v in padded.items()}
    extra["input_ids"][:, -5:] = 1000  # junk tokens, masked out
    torch.testing.assert_close(model(padded), model(extra), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", ["prompt", "ptuning", "deep"])
def test_prompts_change_outputs(minilm, method):
    model = build(minilm, method)
    before = run(model, SENTENCES).detach().clone()
    with torch.no_grad():
        prompt = model.input_prompt if model.input_prompt is not None else model.deep_prompt
        for p in prompt.parameters():
            p.add_(torch.randn_like(p))
    assert not torch.allclose(before, run(model, SENTENCES), atol=1e-3)


def test_deep_prompt_reaches_only_selected_layers(minilm):
    """With prefixes at the top layer only, the layer below sees exactly the unprompted states."""
    model = build(minilm, "deep", layers="top:1")
    batch = collate(model.encode(SENTENCES), pad_id=0, left_pad=False)
    from ptune.model import injection

    kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "output_hidden_states": True}
    plain = minilm.model(**kwargs).hidden_states
    with injection.prefixes_active(model.deep_prompt(len(SENTENCES))):
        prompted = minilm.model(**kwargs).hidden_states
    for layer in range(minilm.num_layers):  # hidden_states[i] is the input of layer i
        torch.testing.assert_close(plain[layer], prompted[layer])
    assert not torch.allclose(plain[-1], prompted[-1], atol=1e-3)


def test_gqa_prefix_shapes(tiny_llama):
    model = build(tiny_llama, "deep", length=5)
    keys, values = model.deep_prompt(3)[0]
    assert keys.shape == values.shape == (3, tiny_llama.kv_heads, 5, tiny_llama.head_dim)
    assert tiny_llama.kv_heads < tiny_llama.config.num_attention_heads


@pytest.mark.parametrize("method", METHODS)
def test_token_labels_line_up_with_words(minilm, method):
    model = build(minilm, method, tagging=True)
    features = model.encode(TAGGED)
    batch = collate(features, pad_id=0, left_pad=False)
    tokens_per_row = [minilm.tokenizer.convert_ids_to_tokens(f.input_ids) for f in features]
    targets = model.head.targets(batch).tolist()
    rows, cols = (batch["word_index"] >= 0).nonzero(as_tuple=True)
    assert len(targets) == sum(len(e.tokens) for e in TAGGED) == len(model(batch))
    for row, col, target in zip(rows.tolist(), cols.tolist(), targets):
        word = batch["word_index"][row, col].item()
        example = TAGGED[row]
        assert batch["prompt_index"][row, col] == -1  # never a virtual position
        assert tokens_per_row[row][col] == minilm.tokenizer.tokenize(example.tokens[word])[0]
        assert TAGS[target] == example.tags[word]


def test_template_places_prompts_exactly(minilm):
    template = "[P]*3 {text} [P] It was [P]*2 {label}"
    model = build(minilm, "ptuning", template=template, encoder="none")
    feature = model.encode([TextExample("good movie", "positive")])[0]
    tokens = minilm.tokenizer.convert_ids_to_tokens(feature.input_ids)
    shown = [f"P{p}" if p >= 0 else t for t, p in zip(tokens, feature.prompt_index)]
    assert shown == ["[CLS]", "P0", "P1", "P2", "good", "movie", "P3", "it", "was", "P4", "P5", "[MASK]", "[SEP]"]
    assert feature.pool == shown.index("[MASK]")
    # The continuous vectors land exactly there in the embeddings the backbone receives.
    batch = collate([feature], pad_id=0, left_pad=False)
    vectors = model.input_prompt()
    captured = {}
    handle = minilm.model.embeddings.register_forward_hook(lambda m, a, kw, o: captured.update(kw), with_kwargs=True)
    try:
        model(batch)
    finally:
        handle.remove()
    embeds = captured["inputs_embeds"][0]
    for position, p in enumerate(feature.prompt_index):
        if p >= 0:
            torch.testing.assert_close(embeds[position], vectors[p])
        else:
            torch.testing.assert_close(embeds[position], minilm.model.get_input_embeddings().weight[feature.input_ids[position]])


def test_labels_init_is_mean_of_label_word_embeddings(minilm):
    labels = ["negative", "very positive"]
    model = PromptModel(minilm, MethodConfig(method="prompt", init="labels", length=4), labels)
    model.initialise(seed=0)
    table = minilm.model.get_input_embeddings().weight
    for row, label in enumerate(labels):
        ids = minilm.tokenizer(label, add_special_tokens=False)["input_ids"]
        assert len(ids) == (1 if row == 0 else 2)
        torch.testing.assert_close(model.input_prompt.embedding[row], table[ids].mean(0))
    # remaining rows are vocabulary embeddings
    rest = model.input_prompt.embedding[2:]
    assert all((table == vector).all(-1).any() for vector in rest)


def test_random_init_is_uniform_half(minilm):
    model = PromptModel(minilm, MethodConfig(method="prompt", init="random", length=50), ["a", "b"])
    model.initialise(seed=0)
    values = model.input_prompt.embedding
    assert values.min() >= -0.5 and values.max() <= 0.5 and values.std() > 0.25


def test_trainable_parameters_per_method(minilm):
    total = minilm.num_parameters()
    counts = {m: build(minilm, m).num_trainable() for m in METHODS}
    assert counts["finetune"] > total  # backbone copy + head
    assert counts["deep"] < 0.03 * total
    assert counts["prompt"] < counts["deep"]
    assert all(not p.requires_grad for p in minilm.model.parameters())
