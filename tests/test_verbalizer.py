"""The verbalizer head: options, masked-LM mechanics on a tiny BertForMaskedLM, causal LM on real
SmolLM2 with left and right padding, and saving/loading a prompt that trains nothing else."""

from __future__ import annotations

import pytest
import torch

from ptune.model.backbones import load_backbone
from ptune.config import MethodConfig, parse_verbalizer
from ptune.data import TextExample
from ptune.batch.encoding import collate
from ptune.errors import PtuneError
from ptune.model.prompt_model import PromptModel

LABELS = ["negative", "positive"]
WORDS = "negative=bad,terrible;positive=good,great"
TEXTS = ["a wonderful , moving film with a great cast", "boring", "not my kind of movie at all"]


@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory):
    """A 2-layer BertForMaskedLM with random weights (its own trained-looking head) and MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from ptune.model.backbones import resolve

    folder = tmp_path_factory.mktemp("tiny-mlm")
    tokenizer = AutoTokenizer.from_pretrained(resolve("minilm"))
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_mlm(tiny_mlm_dir):
    return load_backbone(str(tiny_mlm_dir))


@pytest.fixture(scope="module")
def smollm2():
    return load_backbone("smollm2")


def build(backbone, method, template, **options):
    config = MethodConfig(method=method, head="verbalizer", verbalizer=WORDS, template=template, **options)
    model = PromptModel(backbone, config, LABELS)
    model.initialise(seed=0)
    return model.eval()


def label_logits(model, texts, *, left_pad):
    features = model.encode([TextExample(t) for t in texts])
    with torch.no_grad():
        return model(collate(features, pad_id=model.encoder.pad_id, left_pad=left_pad))


# -- options ---------------------------------------------------------------------------------------
def test_parse_verbalizer():
    assert parse_verbalizer(WORDS) == {"negative": ["bad", "terrible"], "positive": ["good", "great"]}
    for bad, needle in [("negative", "label=word"), ("a=x;a=y", "twice"), ("a=x;b=x", "both"), (" ; ", "empty")]:
        with pytest.raises(PtuneError, match=needle):
            parse_verbalizer(bad)


def test_config_validation():
    with pytest.raises(PtuneError, match="--head verbalizer"):
        MethodConfig(verbalizer=WORDS)
    with pytest.raises(PtuneError, match="head 'lm' unknown"):
        MethodConfig(head="lm")
    with pytest.raises(PtuneError, match=r"\[P\] tokens"):
        MethodConfig(method="deep", template="[P] {text} {label}")
    config = MethodConfig(method="deep", head="verbalizer", template="{text} It was {label}")
    assert config.label_words(LABELS) == [["negative"], ["positive"]]  # default: the label's own name
    with pytest.raises(PtuneError, match="no words for positive"):
        MethodConfig(head="verbalizer", verbalizer="negative=bad").label_words(LABELS)
    assert MethodConfig.from_dict(MethodConfig(head="verbalizer", verbalizer=WORDS).to_dict()).verbalizer == WORDS


def test_minilm_has_no_mlm_head(minilm):
    with pytest.raises(PtuneError, match="no trained masked LM head.*--head linear"):
        PromptModel(minilm, MethodConfig(method="prompt", head="verbalizer", template="[P]*2 {text} {label}"),
                    LABELS)


def test_refusals(tiny_mlm):
    with pytest.raises(PtuneError, match=r"\{label\} slot"):
        PromptModel(tiny_mlm, MethodConfig(method="prompt", head="verbalizer"), LABELS)
    with pytest.raises(PtuneError, match="tagging"):
        PromptModel(tiny_mlm, MethodConfig(method="deep", head="verbalizer"), ["O", "B-PER"], kind="tagging")
    with pytest.raises(PtuneError, match="same token"):
        PromptModel(tiny_mlm, MethodConfig(method="prompt", head="verbalizer", verbalizer="negative=bad;positive=bad-ish",
                                           template="[P] {text} {label}"), LABELS)


# -- masked LM --------------------------------------------------------------------------------------
def test_mlm_label_logits_are_the_lm_head_at_the_mask(tiny_mlm, tiny_mlm_dir):
    from transformers import BertForMaskedLM

    model = build(tiny_mlm, "finetune", "{text} It was {label}")  # nothing prompted: plain BERT
    features = model.encode([TextExample(TEXTS[0])])
    batch = collate(features, pad_id=model.encoder.pad_id, left_pad=False)
    pool = features[0].pool
    assert features[0].input_ids[pool] == tiny_mlm.tokenizer.mask_token_id
    reference = BertForMaskedLM.from_pretrained(tiny_mlm_dir).eval()
    with torch.no_grad():
        vocab = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          token_type_ids=batch["token_type_ids"]).logits[0, pool]
        ours = model(batch)[0]
    ids = [[tiny_mlm.tokenizer.convert_tokens_to_ids(w) for w in words] for words in (["bad", "terrible"], ["good", "great"])]
    expected = torch.stack([vocab[i].logsumexp(0) for i in ids])
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method,template", [("prompt", "[P]*4 {text} It was {label}"),
                                             ("ptuning", "[P]*2 {text} [P] It was {label}"),
                                             ("deep", "{text} It was {label}")])
def test_mlm_alone_equals_padded_in_batch(tiny_mlm, method, template):
    model = build(tiny_mlm, method, template, **({"length": 3} if method == "deep" else {}))
    together = label_logits(model, TEXTS, left_pad=False)
    for row, text in enumerate(TEXTS):
        torch.testing.assert_close(label_logits(model, [text], left_pad=False)[0], together[row], rtol=1e-4, atol=1e-4)


def test_labels_init_uses_verbalizer_words(tiny_mlm):
    model = build(tiny_mlm, "prompt", "[P]*4 {text} It was {label}", init="labels")
    tokenizer = tiny_mlm.tokenizer
    assert model.label_token_ids() == [tokenizer.convert_tokens_to_ids(["bad", "terrible"]),
                                       tokenizer.convert_tokens_to_ids(["good", "great"])]
    embeddings = tiny_mlm.model.get_input_embeddings().weight
    torch.testing.assert_close(model.input_prompt.embedding[1], embeddings[model.label_token_ids()[1]].mean(0))


def test_adds_no_parameters_and_round_trips(tiny_mlm, tmp_path):
    from ptune.storage.prompt_files import load_prompt, read_header, save_prompt

    model = build(tiny_mlm, "prompt", "[P]*4 {text} It was {label}")
    assert list(model.trainable_state()) == ["input_prompt.embedding"]
    assert model.num_trainable() == 4 * tiny_mlm.hidden_size
    with torch.no_grad():
        model.input_prompt.embedding.add_(0.3)
    path = tmp_path / "v.safetensors"
    save_prompt(path, model, task_name="sentiment", metric="accuracy")
    assert read_header(path)["method"]["verbalizer"] == WORDS
    loaded = load_prompt(path, tiny_mlm)
    assert loaded.config.head == "verbalizer"
    torch.testing.assert_close(label_logits(loaded, TEXTS, left_pad=False), label_logits(model, TEXTS, left_pad=False))


def test_gradient_reaches_only_the_prompt(tiny_mlm):
    model = build(tiny_mlm, "deep", "{text} It was {label}", length=2).train()
    features = model.encode([TextExample(t, label) for t, label in zip(TEXTS, ["positive", "negative", "negative"])])
    model.loss(collate(features, pad_id=model.encoder.pad_id, left_pad=False)).backward()
    assert model.deep_prompt.prefix.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_mlm.lm_head().parameters())


# -- causal LM (real SmolLM2) -----------------------------------------------------------------------
@pytest.mark.parametrize("method,template", [("prompt", "[P]*4 {text} It was {label}"),
                                             ("ptuning", "[P]*2 {text} [P] It was {label}"),
                                             ("deep", "{text} It was {label}")])
def test_causal_alone_equals_batched_left_and_right_padding(smollm2, method, template):
    model = build(smollm2, method, template, **({"length": 3} if method == "deep" else {}))
    alone = torch.cat([label_logits(model, [text], left_pad=True) for text in TEXTS])
    for left_pad in (True, False):
        torch.testing.assert_close(label_logits(model, TEXTS, left_pad=left_pad), alone, rtol=1e-4, atol=1e-3)


def test_causal_label_logits_are_next_token_logits(smollm2):
    from transformers import AutoModelForCausalLM

    model = build(smollm2, "finetune", "{text} It was {label}")
    features = model.encode([TextExample(TEXTS[0])])
    ids = torch.tensor([features[0].input_ids])
    assert smollm2.tokenizer.decode(ids[0, -2:]) == " It was"  # the next token is the label word
    reference = AutoModelForCausalLM.from_pretrained(smollm2.path, dtype=torch.float32).eval()
    with torch.no_grad():
        vocab = reference(input_ids=ids).logits[0, -1]
        ours = model(collate(features, pad_id=model.encoder.pad_id, left_pad=True))[0]
    words = [[smollm2.tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in pair]
             for pair in (["bad", "terrible"], ["good", "great"])]
    torch.testing.assert_close(ours, torch.stack([vocab[w].logsumexp(0) for w in words]), rtol=1e-4, atol=1e-3)
    assert ours.argmax().item() == 1  # "... great cast It was" -> good/great


def test_inspect_names_the_verbalizer(tiny_mlm, tmp_path, capsys):
    from ptune.storage.prompt_files import save_prompt
    from ptune.cli import main

    path = tmp_path / "v.safetensors"
    save_prompt(path, build(tiny_mlm, "prompt", "[P]*2 {text} It was {label}"), task_name="s", metric="accuracy")
    assert main(["inspect", str(path)]) == 0
    assert "verbalizer head" in capsys.readouterr().out
