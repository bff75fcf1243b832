"""Encoder-decoders (T5, BART) and the text-to-text kind, on the tiny random models of tests/families.py:
deep prompts at three sites per layer, each reaching its own site only; text targets scored as the
family's own LM scores them (rank classification); prompt files keep the kind; --target text."""

from __future__ import annotations

import pytest
import torch
from families import TEXTS, Zoo

from ptune.config import MethodConfig
from ptune.data.examples import QAExample, TextExample
from ptune.errors import PtuneError
from ptune.model import injection
from ptune.model.prompt_model import PromptModel

SEQ2SEQ = ("t5", "bart")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    torch.set_num_threads(1)
    return Zoo(tmp_path_factory.mktemp("seq2seq"))


def _items():
    return [TextExample(text, label) for text, label, _ in TEXTS]


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_loads_as_an_encoder_decoder(zoo, name):
    backbone = zoo.backbone(name)
    assert backbone.is_encoder_decoder and not backbone.is_decoder
    assert backbone.prefix_problem() is None


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_every_site_and_layer_resolves_once(zoo, name):
    """One forward pass calls the attention of each (site, layer) once: encoder self-attention, decoder
    self-attention and cross-attention, layers 0..L-1 each."""
    model = zoo.backbone(name).model
    ids = torch.tensor([[5, 6, 7, 8]])
    resolved: list = []
    token = injection._resolved.set(resolved)
    try:
        with torch.no_grad(), injection.prefixes_active({}):
            model(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=ids[:, :2])
    finally:
        injection._resolved.reset(token)
    assert sorted(resolved) == sorted((site, layer) for site in injection.SITES for layer in range(2))


def _states(model, prefixes):
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad(), injection.prefixes_active(prefixes):
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=ids[:, :3],
                    output_hidden_states=True)
    return out.encoder_hidden_states, out.decoder_hidden_states


def _changed(a, b) -> list[int]:
    return [j for j, (x, y) in enumerate(zip(a, b)) if not torch.allclose(x, y, atol=1e-6)]


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_a_prefix_reaches_its_site_and_layer_only(zoo, name):
    """A prefix on encoder layer k leaves decoder layer k untouched (the decoder's input embeddings and the
    encoder up to layer k are as without it), and a decoder or cross-attention prefix on layer k leaves the
    whole encoder, and decoder layers below k, untouched."""
    backbone = zoo.backbone(name)
    generator = torch.Generator().manual_seed(0)

    def prefix():
        return tuple(torch.randn(1, backbone.kv_heads, 3, backbone.head_dim, generator=generator) * 3 for _ in range(2))

    base_encoder, base_decoder = _states(backbone.model, None)
    for site in injection.SITES:
        for layer in range(backbone.num_layers):
            encoder, decoder = _states(backbone.model, {(site, layer): prefix()})
            if site == "encoder":
                assert _changed(encoder, base_encoder)[0] == layer + 1
                assert 0 not in _changed(decoder, base_decoder)
            else:
                assert _changed(encoder, base_encoder) == []
                assert _changed(decoder, base_decoder)[0] == layer + 1
    # a plain layer index (a decoder-only key) reaches no encoder-decoder site
    encoder, decoder = _states(backbone.model, {0: prefix(), 1: prefix()})
    assert _changed(encoder, base_encoder) == [] and _changed(decoder, base_decoder) == []


def test_prefix_sites_choose_where_prefixes_go(zoo):
    backbone = zoo.backbone("t5")
    model = PromptModel(backbone, MethodConfig(method="deep", length=2, prefix_sites="cross,encoder", layers="top:1"),
                        ["negative", "positive"])
    assert model.deep_prompt.keys == [("encoder", 1), ("cross", 1)]
    assert model.deep_prompt.prefix.shape == (2, 2 * 2 * backbone.kv_heads * backbone.head_dim)
    for bad in ("encoder,encoder", "self", ""):
        with pytest.raises(PtuneError, match="prefix_sites") as error:
            MethodConfig(method="deep", prefix_sites=bad)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_no_prefix_equals_the_familys_eager_attention(zoo, name):
    """ptune's attention on T5 keeps its relative position bias (and BART its masks): without a prompt the
    decoder states equal the family's own eager implementation, padded or not."""
    backbone, reference = zoo.backbone(name), zoo.reference(name)
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        ours = backbone.model(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :3]).last_hidden_state
        theirs = reference(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :3]).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ("t5", "bart", "gpt2"))
def test_rank_classification_is_the_lms_own_log_likelihood(zoo, name):
    """Each label's score is the full log-likelihood of its target after the input, as the family's own
    *ForConditionalGeneration / *ForCausalLM computes it (no prompt: a fine-tuning copy before any step)."""
    backbone = zoo.backbone(name)
    model = PromptModel(backbone, MethodConfig(method="finetune", template="{text}"), ["negative", "positive"],
                        kind="text_to_text").eval()
    lm, tokenizer = zoo.language_model(name), backbone.tokenizer
    items = _items()
    with torch.no_grad():
        scores = model(model.collate(model.encode(items)))
        for row, example in enumerate(items):
            for column, label in enumerate(model.labels):
                if backbone.is_encoder_decoder:
                    inputs = tokenizer(example.text, return_tensors="pt")
                    target = tokenizer(label, return_tensors="pt")["input_ids"]
                    logits = lm(**inputs, labels=target).logits
                else:
                    prompt = tokenizer(example.text)["input_ids"]
                    target = torch.tensor([tokenizer(" " + label)["input_ids"] + [tokenizer.eos_token_id]])
                    full = torch.tensor([prompt + target[0].tolist()])
                    logits = lm(input_ids=full).logits[:, len(prompt) - 1 : -1]
                expected = logits.log_softmax(-1).gather(-1, target.unsqueeze(-1)).sum()
                assert abs(float(scores[row, column]) - float(expected)) < 1e-4, (example.text, label)


@pytest.mark.slow  # twelve short training runs
@pytest.mark.parametrize("name", ("t5", "bart", "gpt2"))
@pytest.mark.parametrize("method", ("prompt", "ptuning", "deep", "finetune"))
def test_text_to_text_trains_and_is_batch_invariant(zoo, name, method):
    backbone = zoo.backbone(name)
    config = MethodConfig(method=method, length=4, init="labels" if method == "prompt" else "vocab", layers="top:1"
                          if method == "deep" else "all")
    model = PromptModel(backbone, config, ["negative", "positive"], kind="text_to_text")
    model.initialise(seed=0)
    items = _items()
    batch = model.collate(model.encode(items))
    model.train()
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trainable_parameters())
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        together = model(batch)
        for row, example in enumerate(items):
            alone = model(model.collate(model.encode([example])))
            torch.testing.assert_close(alone[0], together[row], atol=1e-4, rtol=1e-4)


def test_teacher_forcing_learns_the_targets(zoo):
    """A few teacher-forced steps (fine-tuning the tiny random T5) halve the loss, and rank classification
    then picks each example's own label."""
    backbone = zoo.backbone("t5")
    model = PromptModel(backbone, MethodConfig(method="finetune"), ["negative", "positive"], kind="text_to_text")
    model.initialise(seed=0)
    items = _items()
    batch = model.collate(model.encode(items))
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.train()
    first = float(model.loss(batch).detach())
    for _ in range(50):
        optimiser.zero_grad()
        model.loss(batch).backward()
        optimiser.step()
    assert float(model.loss(batch).detach()) < first / 2
    from ptune.infer.predict import evaluate, predict

    model.eval()
    assert predict(model, items) == [e.label for e in items]
    assert evaluate(model, items) == {"accuracy": 1.0}


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_prompt_files_keep_the_text_to_text_kind(zoo, name, tmp_path):
    from ptune.infer.predict import predict
    from ptune.storage.prompt_files import load_prompt, read_header, save_prompt

    backbone = zoo.backbone(name)
    model = PromptModel(backbone, MethodConfig(method="deep", length=3, prefix_sites="decoder,cross"),
                        ["negative", "positive"], kind="text_to_text").eval()
    model.initialise(seed=0)
    save_prompt(tmp_path / "p.safetensors", model, task_name="rt", metric="accuracy")
    assert read_header(tmp_path / "p.safetensors")["task"]["kind"] == "text_to_text"
    loaded = load_prompt(tmp_path / "p.safetensors", backbone)
    assert loaded.kind.name == "text_to_text" and loaded.deep_prompt.keys == model.deep_prompt.keys
    items = _items()
    batch = model.collate(model.encode(items))
    with torch.no_grad():
        torch.testing.assert_close(model(batch), loaded.eval()(batch), atol=0, rtol=0)
    assert predict(model, items, scores=True) == predict(loaded, items, scores=True)


def test_free_generation_without_labels(zoo):
    """Without a label set the kind writes text (greedy), scored by exact match."""
    from ptune.infer.predict import evaluate, predict

    backbone = zoo.backbone("t5")
    model = PromptModel(backbone, MethodConfig(method="deep", length=2), [], kind="text_to_text",
                        metric="exact_match")
    model.initialise(seed=0)
    items = [TextExample("question: who went ? context: Peter went", "Peter")]
    texts = predict(model, items)
    assert len(texts) == 1 and isinstance(texts[0], str)
    assert evaluate(model, items)["exact_match"] == float(texts[0].lower() == "peter")


def test_target_text_converts_tasks():
    from ptune.data.tasks import Task
    from ptune.data.text_targets import as_text_to_text
    from ptune.data.examples import TaggedExample

    texts = Task("rt", "classification", ["negative", "positive"], _items(), [], [], "f1")
    converted = as_text_to_text(texts)
    assert (converted.kind, converted.labels, converted.metric) == ("text_to_text", ["negative", "positive"], "accuracy")
    qa = Task("sq", "qa", [], [QAExample("1", "Who?", "Peter went.", ("Peter",), (0,)),
                               QAExample("2", "Why?", "No idea.", (), (), True)], [], [], "squad_v2")
    converted = as_text_to_text(qa)
    assert converted.metric == "exact_match" and converted.labels == []
    assert [e.label for e in converted.train] == ["Peter", "unanswerable"]
    assert converted.train[0].text == "question: Who? context: Peter went."
    with pytest.raises(PtuneError, match="--target text"):
        as_text_to_text(Task("ner", "tagging", ["O"], [TaggedExample(("a",), ("O",))], [], [], "entity_f1"))


def test_text_to_text_refuses_what_it_cannot_serve(zoo, minilm):
    with pytest.raises(PtuneError, match="drop --head verbalizer"):
        PromptModel(zoo.backbone("t5"), MethodConfig(method="prompt", head="verbalizer"), ["a", "b"], kind="text_to_text")
    with pytest.raises(PtuneError, match="LM head") as error:
        PromptModel(minilm, MethodConfig(method="prompt"), ["a", "b"], kind="text_to_text")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", SEQ2SEQ)
@pytest.mark.parametrize("method", ("prompt", "ptuning", "deep"))
def test_cached_generation_equals_full_recompute(zoo, name, method):
    """Greedy generation on an encoder-decoder: the cached decoder (encoder once, decoder and cross-attention
    prefixes at every step) writes the same ids as recomputing the whole decoder per token."""
    from ptune.infer.generate import Generation
    from ptune.infer.recompute import RecomputeSteps

    backbone = zoo.backbone(name)
    model = PromptModel(backbone, MethodConfig(method=method, length=4), [], kind="text_to_text",
                        metric="exact_match")
    model.initialise(seed=0)
    if model.deep_prompt is not None:  # large prefixes, so a prefix that a step loses changes the text
        with torch.no_grad():
            model.deep_prompt.prefix.normal_(0, 3, generator=torch.Generator().manual_seed(1))
    texts = [text for text, _, _ in TEXTS]
    cached = Generation(model, texts, max_new_tokens=8, min_new_tokens=8).run()
    reference = Generation(model, texts, steps=RecomputeSteps, max_new_tokens=8, min_new_tokens=8).run()
    assert cached.ids == reference.ids and all(len(ids) == 8 for ids in cached.ids)
    # and the prompt is in the cached path: without it the first step's logits differ
    from ptune.infer.decoding import prompt_features
    from ptune.infer.seq2seq_steps import Seq2SeqSteps

    plain = PromptModel(backbone, MethodConfig(method="finetune"), [], kind="text_to_text", metric="exact_match")
    with torch.inference_mode():
        ours = Seq2SeqSteps(model.eval(), prompt_features(model, texts)).start()
        bare = Seq2SeqSteps(plain.eval(), prompt_features(plain, texts)).start()
    assert not torch.allclose(ours, bare, atol=1e-4)


def test_ptune_generate_with_a_t5_prompt(zoo, tmp_path, capsys):
    import json

    from ptune.cli import main
    from ptune.infer.generate import generate
    from ptune.storage.prompt_files import save_prompt

    model = PromptModel(zoo.backbone("t5"), MethodConfig(method="deep", length=4), [], kind="text_to_text",
                        metric="exact_match")
    model.initialise(seed=0)
    save_prompt(tmp_path / "t5.safetensors", model, task_name="gen", metric="exact_match")
    code = main(["generate", str(tmp_path / "t5.safetensors"), "--text", "the film was good", "--max-new-tokens", "5"])
    assert code == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["generated"] == generate(model, ["the film was good"], max_new_tokens=5)[0]


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_mixed_batch_of_encoder_decoder_prompts(zoo, name):
    """One batch whose rows carry different tasks' prompts on one T5/BART (deep prompts of equal and of
    different shapes, an input prompt) gives each row what its task gives alone."""
    from ptune.infer.bank import PromptBank

    backbone = zoo.backbone(name)

    def built(seed, **options):
        model = PromptModel(backbone, MethodConfig(**options), ["negative", "positive"])
        model.initialise(seed=seed)
        return model.eval()

    tasks = {"a": built(1, method="deep", length=3), "b": built(2, method="deep", length=3),
             "c": built(3, method="deep", length=5, layers="top:1", prefix_sites="cross"),
             "d": built(4, method="prompt", length=4)}
    items = [("a", _items()[0]), ("b", _items()[1]), ("c", _items()[2]), ("d", _items()[0]), ("a", _items()[2])]
    for subset in (items[:2], items):  # equal shapes (stacked), then mixed shapes
        bank = PromptBank({key: tasks[key] for key in {n for n, _ in subset}})
        with torch.no_grad():
            mixed = bank(bank.collate(bank.encode(subset)))
            for (task, example), got in zip(subset, mixed):
                alone = tasks[task](tasks[task].collate(tasks[task].encode([example])))[0]
                torch.testing.assert_close(got, alone, atol=1e-4, rtol=1e-4)


def recomputed_greedy(model, batch, max_new_tokens):
    """The reference: the whole continuation recomputed per token (the text-to-text kind's loop before it
    was cached), the likeliest token until end-of-sequence."""
    tokenizer = model.backbone.tokenizer
    eos, size = tokenizer.eos_token_id, batch["input_ids"].shape[0]
    rows = torch.arange(size)
    written = torch.zeros(size, 0, dtype=torch.long)
    done = torch.zeros(size, dtype=torch.bool)
    for _ in range(max_new_tokens):
        targets = torch.cat([written, written.new_full((size, 1), model.encoder.pad_id)], dim=1)
        logits = model.head(model.continuation_states(batch, targets, rows), batch)[:, -1]
        token = logits.argmax(-1).masked_fill(done, eos)
        written = torch.cat([written, token.unsqueeze(1)], dim=1)
        done |= token == eos
        if bool(done.all()):
            break
    return [ids[: ids.index(eos) + 1] if eos in ids else ids for ids in written.tolist()]  # up to the end, kept


@pytest.mark.parametrize("name", (*SEQ2SEQ, "llama"))
@pytest.mark.parametrize("method", ("prompt", "deep"))
def test_free_generation_in_predict_is_cached_and_equal_to_recomputing(zoo, name, method, monkeypatch):
    """`predict`/`evaluate` of a text-to-text prompt without labels write greedily with the key/value cache
    (one step per token), the same ids as recomputing the continuation per token. The random models' LM
    head is kept from choosing end-of-sequence (tiny BART chooses it first), so every step is compared."""
    from ptune.infer.generate import greedy_ids, greedy_texts

    backbone = zoo.backbone(name)
    head, eos = backbone.lm_head(), backbone.tokenizer.eos_token_id

    def no_end(states):
        logits = head(states)
        return logits.index_fill(-1, torch.tensor([eos]), -1e4)

    monkeypatch.setattr(backbone, "lm_head", lambda: no_end)
    model = PromptModel(backbone, MethodConfig(method=method, length=4), [], kind="text_to_text",
                        metric="exact_match")
    model.initialise(seed=0)
    if model.deep_prompt is not None:  # large prefixes: a step that lost them would write another text
        with torch.no_grad():
            model.deep_prompt.prefix.normal_(0, 3, generator=torch.Generator().manual_seed(1))
    model.eval()
    batch = model.collate(model.encode([TextExample(text) for text, _, _ in TEXTS]))
    with torch.no_grad():
        reference = recomputed_greedy(model, batch, 12)
        cached = greedy_ids(model, batch, 12)
        texts = greedy_texts(model, batch, 12)
    assert cached == reference and all(len(ids) == 12 for ids in cached), reference
    assert len(texts) == len(cached) and all(isinstance(text, str) for text in texts)
