"""Tiny random models of every family ptune supports, each with its family's real tokenizer class,
and the conformance checks that tests/test_families.py and benchmarks/families.py both run.

Models: 2 layers, hidden 32, 4 heads (2 key/value heads where the family has grouped-query
attention), saved as the family's *ForMaskedLM / *ForCausalLM (encoder-decoders: 2 encoder and 2
decoder layers, *ForConditionalGeneration) so the checkpoint has an LM head.
Tokenizers: MiniLM's WordPiece vocabulary, or a tiny byte-level BPE / SentencePiece Unigram /
SentencePiece BPE model trained offline on conll2003 and rotten_tomatoes text
(tests/fixtures/tokenizers, remade by ``python tests/families.py --train-tokenizers``), handed to
the family's own tokenizer class, which sets the family's normaliser, pre-tokeniser, decoder and
special tokens.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tokenizers"
TOKENIZER_FILES = {"bpe-bytelevel": "bytelevel_bpe.json", "sentencepiece-unigram": "sentencepiece_unigram.json",
                   "sentencepiece-bpe": "sentencepiece_bpe.json"}
SIZE = {"hidden": 32, "intermediate": 64, "layers": 2, "heads": 4, "kv_heads": 2, "positions": 256}


# -- tokenizers ---------------------------------------------------------------------------------------
def train_tokenizers(folder: Path = FIXTURES, vocab_size: int = 2000) -> None:
    """Train the three tiny tokenizer models on 6,000 conll2003 + 6,000 rotten_tomatoes sentences
    and write them as `tokenizers` JSON files (only the trained model matters: each family's class
    brings its own pipeline and special tokens)."""
    from tokenizers import ByteLevelBPETokenizer, SentencePieceBPETokenizer, SentencePieceUnigramTokenizer

    from ptune.data.tasks import conll2003, rotten_tomatoes

    texts = [" ".join(e.tokens) for e in conll2003().train[:6000]] + [e.text for e in rotten_tomatoes().train[:6000]]
    folder.mkdir(parents=True, exist_ok=True)
    bpe = {"vocab_size": vocab_size, "min_frequency": 2, "special_tokens": []}
    trainers = {
        "bpe-bytelevel": (ByteLevelBPETokenizer(), bpe),
        "sentencepiece-bpe": (SentencePieceBPETokenizer(), bpe),
        "sentencepiece-unigram": (SentencePieceUnigramTokenizer(),
                                  {"vocab_size": vocab_size, "special_tokens": ["<unk>"], "unk_token": "<unk>"}),
    }
    for kind, (tokenizer, options) in trainers.items():
        tokenizer.train_from_iterator(texts, **options)
        (folder / TOKENIZER_FILES[kind]).write_text(tokenizer._tokenizer.to_str())


def _trained(kind: str) -> dict:
    return json.loads((FIXTURES / TOKENIZER_FILES[kind]).read_text(encoding="utf-8"))["model"]


def _bpe(kind: str, specials: list[str], *, byte_tokens: bool = False) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of a trained BPE with ``specials`` first (then <0x00>..<0xFF> for byte fallback)."""
    model = _trained(kind)
    pieces = list(specials) + ([f"<0x{b:02X}>" for b in range(256)] if byte_tokens else [])
    taken = set(pieces)
    pieces += [p for p, _ in sorted(model["vocab"].items(), key=lambda item: item[1]) if p not in taken]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return {p: i for i, p in enumerate(pieces)}, merges


def _unigram(specials: list[str]) -> list[tuple[str, float]]:
    """The trained Unigram's (piece, log-probability) list with ``specials`` first (score 0)."""
    trained = [(p, s) for p, s in _trained("sentencepiece-unigram")["vocab"] if p not in specials]
    return [(s, 0.0) for s in specials] + trained


def _wordpiece(cls):
    from ptune.model.backbones import resolve

    return cls.from_pretrained(resolve("minilm"))


def _modernbert_tokenizer():
    """ModernBERT ships a generic fast tokenizer: byte-level BPE (no prefix space) with [CLS]/[SEP]."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    vocab, merges = _bpe("bpe-bytelevel", specials)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials[:4] + [AddedToken("[MASK]", lstrip=True)])
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", mask_token=AddedToken("[MASK]", lstrip=True))


def _tokenizer(name: str):
    """The family's tokenizer, built as its real checkpoint's tokenizer is."""
    import transformers as tf

    gpt = ["<|endoftext|>"]
    if name in ("bert", "distilbert", "electra"):
        return _wordpiece({"bert": tf.BertTokenizer, "distilbert": tf.DistilBertTokenizer,
                           "electra": tf.ElectraTokenizerFast}[name])
    if name == "roberta":
        vocab, merges = _bpe("bpe-bytelevel", ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        return tf.RobertaTokenizer(vocab=vocab, merges=merges)
    if name == "gpt2":
        return tf.GPT2Tokenizer(*_bpe("bpe-bytelevel", gpt))
    if name == "gpt_neox":
        return tf.GPTNeoXTokenizer(*_bpe("bpe-bytelevel", gpt + ["<|padding|>"]))
    if name in ("opt", "opt_350m"):  # OPT: GPT-2's BPE, "</s>" prepended as BOS
        vocab, merges = _bpe("bpe-bytelevel", ["<s>", "<pad>", "</s>", "<unk>"])
        return tf.GPT2Tokenizer(vocab=vocab, merges=merges, bos_token="</s>", eos_token="</s>", unk_token="</s>",
                                pad_token="<pad>", add_bos_token=True)
    if name in ("qwen2", "qwen3"):
        return tf.Qwen2Tokenizer(*_bpe("bpe-bytelevel", gpt + ["<|im_start|>", "<|im_end|>"]))
    if name == "modernbert":
        return _modernbert_tokenizer()
    if name == "xlm_roberta":
        return tf.XLMRobertaTokenizer(vocab=_unigram(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    if name == "albert":
        return tf.AlbertTokenizer(vocab=_unigram(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]))
    if name == "deberta_v2":
        return tf.DebertaV2Tokenizer(vocab=_unigram(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]))
    if name in ("llama", "mistral", "phi3"):  # Llama-2 / Mistral-7B-v0.1 / Phi-3-mini: SentencePiece BPE, byte fallback
        extra = ["<|endoftext|>"] if name == "phi3" else []
        vocab, merges = _bpe("sentencepiece-bpe", ["<unk>", "<s>", "</s>"] + extra, byte_tokens=True)
        return tf.LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True,
                                 **({"pad_token": "<|endoftext|>"} if extra else {}))
    if name == "t5":  # SentencePiece Unigram: <pad> 0, </s> 1, <unk> 2, then the pieces, then the sentinels
        return tf.T5Tokenizer(vocab=_unigram(["<pad>", "</s>", "<unk>"]), extra_ids=10)
    if name == "bart":  # RoBERTa's byte-level BPE and specials
        vocab, merges = _bpe("bpe-bytelevel", ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        return tf.BartTokenizer(vocab=vocab, merges=merges)
    if name in ("gemma2", "gemma3"):  # SentencePiece BPE, byte fallback, no dummy prefix
        vocab, merges = _bpe("sentencepiece-bpe", ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"], byte_tokens=True)
        return tf.GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    raise KeyError(name)


# -- models -------------------------------------------------------------------------------------------
def _ids(tokenizer) -> dict:
    """The tokenizer's special ids for the config (a config's defaults name ids of the full-size vocabulary)."""
    return {f"{k}_token_id": getattr(tokenizer, f"{k}_token_id") for k in ("pad", "bos", "eos")}


def _model(name: str, tokenizer):
    """The family's *ForMaskedLM / *ForCausalLM, tiny, randomly initialised (seed 0)."""
    import transformers as tf

    h, ff, n, heads, kv, pos = (SIZE[k] for k in ("hidden", "intermediate", "layers", "heads", "kv_heads", "positions"))
    v = len(tokenizer)
    ids = _ids(tokenizer)
    bert_like = dict(vocab_size=v, hidden_size=h, intermediate_size=ff, num_hidden_layers=n, num_attention_heads=heads,
                     max_position_embeddings=pos, **ids)
    llama_like = dict(vocab_size=v, hidden_size=h, intermediate_size=ff, num_hidden_layers=n, num_attention_heads=heads,
                      num_key_value_heads=kv, max_position_embeddings=pos, **ids)
    configs = {
        "bert": (tf.BertConfig, tf.BertForMaskedLM, bert_like),
        # electra-small's shape: embeddings narrower than the hidden states (128 vs 256)
        "electra": (tf.ElectraConfig, tf.ElectraForMaskedLM, dict(bert_like, embedding_size=h // 2)),
        "roberta": (tf.RobertaConfig, tf.RobertaForMaskedLM, dict(bert_like, max_position_embeddings=pos + 2)),
        "xlm_roberta": (tf.XLMRobertaConfig, tf.XLMRobertaForMaskedLM,
                        dict(bert_like, max_position_embeddings=pos + 2)),
        "distilbert": (tf.DistilBertConfig, tf.DistilBertForMaskedLM,
                       dict(vocab_size=v, dim=h, hidden_dim=ff, n_layers=n, n_heads=heads, max_position_embeddings=pos,
                            **ids)),
        "albert": (tf.AlbertConfig, tf.AlbertForMaskedLM, dict(bert_like, embedding_size=16)),
        # DeBERTa-v3's shape of config: relative positions, no absolute position input
        "deberta_v2": (tf.DebertaV2Config, tf.DebertaV2ForMaskedLM,
                       dict(bert_like, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=64,
                            max_relative_positions=-1, position_biased_input=False, norm_rel_ebd="layer_norm",
                            share_att_key=True)),
        "modernbert": (tf.ModernBertConfig, tf.ModernBertForMaskedLM,
                       dict(bert_like, global_attn_every_n_layers=2, local_attention=16,
                            cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id)),
        "gpt2": (tf.GPT2Config, tf.GPT2LMHeadModel,
                 dict(vocab_size=v, n_embd=h, n_layer=n, n_head=heads, n_inner=ff, n_positions=pos, **ids)),
        "gpt_neox": (tf.GPTNeoXConfig, tf.GPTNeoXForCausalLM, dict(bert_like, rotary_pct=0.25)),
        "opt": (tf.OPTConfig, tf.OPTForCausalLM,
                dict(vocab_size=v, hidden_size=h, ffn_dim=ff, num_hidden_layers=n, num_attention_heads=heads,
                     word_embed_proj_dim=h, max_position_embeddings=pos, **ids)),
        # opt-350m's shape: embeddings projected in and out (512 vs 1024), post-attention layer norm
        "opt_350m": (tf.OPTConfig, tf.OPTForCausalLM,
                     dict(vocab_size=v, hidden_size=h, ffn_dim=ff, num_hidden_layers=n, num_attention_heads=heads,
                          word_embed_proj_dim=h // 2, do_layer_norm_before=False, max_position_embeddings=pos, **ids)),
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, llama_like),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM, dict(llama_like, sliding_window=pos)),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, llama_like),
        "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, dict(llama_like, head_dim=h // heads)),
        "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, llama_like),
        "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM,
                   dict(llama_like, head_dim=h // heads, query_pre_attn_scalar=h // heads, sliding_window=pos)),
        "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM,
                   dict(llama_like, head_dim=h // heads, query_pre_attn_scalar=h // heads, sliding_window=pos)),
    }
    seq2seq = dict(vocab_size=v, d_model=h, **ids)
    configs.update({
        # t5-small's shape of config (T5 v1.0): relu feed-forward, tied embeddings (the LM head rescales by d_model^-0.5)
        "t5": (tf.T5Config, tf.T5ForConditionalGeneration,
               dict(seq2seq, d_kv=h // heads, d_ff=ff, num_layers=n, num_heads=heads, relative_attention_num_buckets=8,
                    decoder_start_token_id=tokenizer.pad_token_id)),
        "bart": (tf.BartConfig, tf.BartForConditionalGeneration,
                 dict(seq2seq, encoder_layers=n, decoder_layers=n, encoder_attention_heads=heads,
                      decoder_attention_heads=heads, encoder_ffn_dim=ff, decoder_ffn_dim=ff, max_position_embeddings=pos,
                      decoder_start_token_id=tokenizer.eos_token_id, forced_bos_token_id=None)),
    })
    config_class, model_class, options = configs[name]
    torch.manual_seed(0)
    return model_class(config_class(**options))


@dataclass(frozen=True)
class Family:
    name: str
    tokenizer_kind: str  # wordpiece | bpe-bytelevel | sentencepiece-unigram | sentencepiece-bpe
    decoder: bool
    note: str = ""
    seq2seq: bool = False  # an encoder-decoder (T5, BART): deep prompts at three sites per layer


FAMILIES = {f.name: f for f in [
    Family("bert", "wordpiece", False),
    Family("roberta", "bpe-bytelevel", False),
    Family("xlm_roberta", "sentencepiece-unigram", False, "no precompiled charsmap (needs sentencepiece)"),
    Family("deberta_v2", "sentencepiece-unigram", False, "DeBERTa-v3 config"),
    Family("distilbert", "wordpiece", False),
    Family("albert", "sentencepiece-unigram", False, "lower-cased, one shared layer"),
    Family("electra", "wordpiece", False, "electra-small shape: embeddings narrower than hidden states"),
    Family("modernbert", "bpe-bytelevel", False),
    Family("gpt2", "bpe-bytelevel", True),
    Family("gpt_neox", "bpe-bytelevel", True),
    Family("opt", "bpe-bytelevel", True, "opt-125m shape; BOS </s> prepended"),
    Family("opt_350m", "bpe-bytelevel", True, "opt-350m shape: embeddings projected in and out"),
    Family("llama", "sentencepiece-bpe", True, "Llama-2 tokenizer"),
    Family("mistral", "sentencepiece-bpe", True),
    Family("qwen2", "bpe-bytelevel", True),
    Family("qwen3", "bpe-bytelevel", True),
    Family("gemma2", "sentencepiece-bpe", True),
    Family("gemma3", "sentencepiece-bpe", True),
    Family("phi3", "sentencepiece-bpe", True),
    Family("t5", "sentencepiece-unigram", False, "encoder-decoder, t5-small shape: relative position bias, tied "
           "embeddings; deep prompts at encoder, decoder and cross-attention", seq2seq=True),
    Family("bart", "bpe-bytelevel", False, "encoder-decoder: learned absolute positions; deep prompts at encoder, "
           "decoder and cross-attention", seq2seq=True),
]}


class Zoo:
    """Builds each family's tiny checkpoint once under ``root`` and loads its backbone once."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="ptune-families-"))
        self._backbones: dict = {}

    def folder(self, name: str) -> Path:
        folder = self.root / name
        if not (folder / "config.json").exists():
            tokenizer = _tokenizer(name)
            tmp = self.root / f"{name}.tmp"
            _model(name, tokenizer).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            tmp.rename(folder)
        return folder

    def backbone(self, name: str):
        if name not in self._backbones:
            from ptune.model.backbones import load_backbone

            self._backbones[name] = load_backbone(str(self.folder(name)))
        return self._backbones[name]

    def reference(self, name: str):
        """The same checkpoint's base model with the family's own eager attention (no ptune)."""
        from transformers import AutoModel

        return self._load(name, "eager", lambda: AutoModel.from_pretrained(
            self.folder(name), dtype=torch.float32, attn_implementation="eager"))

    def language_model(self, name: str):
        """The checkpoint as its *ForMaskedLM / *ForCausalLM class (the LM head the verbalizer should apply)."""
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM

        spec = FAMILIES[name]
        auto = AutoModelForSeq2SeqLM if spec.seq2seq else AutoModelForCausalLM if spec.decoder else AutoModelForMaskedLM
        return self._load(name, "lm", lambda: auto.from_pretrained(self.folder(name), dtype=torch.float32))

    def _load(self, name: str, what: str, load: Callable):
        key = f"{name}:{what}"
        if key not in self._backbones:
            self._backbones[key] = load().eval()
        return self._backbones[key]


# -- what every family x method x kind is checked with ----------------------------------------------------
METHODS = {  # column -> MethodConfig options
    "prompt": {"method": "prompt", "length": 4},
    "ptuning": {"method": "ptuning", "length": 4, "encoder": "lstm"},
    "deep": {"method": "deep", "length": 4, "layers": "all"},
    "deep:top1": {"method": "deep", "length": 4, "layers": "top:1"},
    "finetune": {"method": "finetune"},
}
KINDS = ("classification", "tagging", "regression", "qa", "verbalizer")
VERBALIZER_TEMPLATES = {"prompt": "[P]*4 {text} It was {label}", "ptuning": "[P]*2 {text} [P]*2 It was {label}"}
LABELS = ["negative", "positive"]
VERBALIZER = "negative=bad;positive=good"
TAGS = ["O", "B-LOC", "I-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER"]
TEXTS = [("A gripping, beautifully acted film.", "positive", "0.9"),
         ("Dull , overlong and with a plot that goes nowhere at all in the end .", "negative", "-0.7"),
         ("Fine", "positive", "0.2")]
SENTENCES = [  # conll2003-like, pre-split
    (("AL-AIN", ",", "United", "Arab", "Emirates", "1996-12-06"), ("B-LOC", "O", "B-LOC", "I-LOC", "I-LOC", "O")),
    (("EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."),
     ("B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O")),
    (("Peter", "Blackburn"), ("B-PER", "I-PER")),
]
# Characters that some tokenizers turn into no token at all; the first that does is the "empty word".
EMPTY_CANDIDATES = ("\u200b", "\ufeff", "\u00ad", "\u200d", " ")
CONTEXTS = ["Peter Blackburn visited Brussels yesterday afternoon .",
            "The EU rejects German call to boycott British lamb ."]


def examples(kind: str) -> list:
    from ptune.data.examples import QAExample, TaggedExample, TextExample

    if kind in ("classification", "verbalizer"):
        return [TextExample(text, label) for text, label, _ in TEXTS]
    if kind == "regression":
        return [TextExample(text, score) for text, _, score in TEXTS]
    if kind == "tagging":
        return [TaggedExample(words, tags) for words, tags in SENTENCES]
    return [QAExample("q1", "Where did Peter go ?", CONTEXTS[0], ("Brussels",), (CONTEXTS[0].index("Brussels"),)),
            QAExample("q2", "Who rejects the call ?", CONTEXTS[1], ("The EU",), (0,)),
            QAExample("q3", "What is the capital of France ?", "Dull , overlong .", (), (), True)]


def build(backbone, method: str, kind: str):
    """The PromptModel of one grid cell, initialised, with prefixes large enough that a lost mask shows."""
    from ptune.config import MethodConfig
    from ptune.model.prompt_model import PromptModel

    options = dict(METHODS[method])
    if kind == "verbalizer":
        options.update(head="verbalizer", verbalizer=VERBALIZER,
                       template=VERBALIZER_TEMPLATES.get(options["method"], "{text} It was {label}"))
    labels = {"classification": LABELS, "verbalizer": LABELS, "tagging": TAGS}.get(kind, [])
    model = PromptModel(backbone, MethodConfig(**options), labels,
                        kind="classification" if kind == "verbalizer" else kind)
    model.initialise(seed=0)
    if model.deep_prompt is not None:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(1)
            for p in model.deep_prompt.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
    return model.eval()


class CheckFailed(AssertionError):
    """A conformance check found the model doing something other than what it says."""


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


def _batch(model, items) -> dict:
    return model.collate(model.encode(items) if not hasattr(items[0], "input_ids") else items)


def _flat(outputs) -> torch.Tensor:
    """Head outputs (a tensor, or QA's (start, end)) as one float64 vector."""
    parts = outputs if isinstance(outputs, tuple) else (outputs,)
    return torch.cat([p.detach().double().reshape(-1) for p in parts])


def _diff(a, b) -> float:
    a, b = _flat(a), _flat(b)
    return float((a - b).abs().max()) if a.shape == b.shape else math.inf


def _piece(model, outputs, batch, row: int, length: int):
    """One example's part of the head outputs (QA: its start/end logits over its own tokens)."""
    piece = model.kind.rows(outputs, batch)[row]
    return tuple(p[:length] for p in piece) if isinstance(piece, tuple) else piece


def check_train_step(model, backbone, family, method, kind) -> str:
    """One training step: a finite loss, and a gradient on every trainable prompt/head tensor."""
    model.train()
    try:
        batch = _batch(model, examples(kind))
        loss = model.loss(batch)
        _need(bool(torch.isfinite(loss.detach())), f"loss is {loss.item()}")
        loss.backward()
    finally:
        model.eval()
    missing, backbone_norm = [], 0.0
    for name, p in model.named_parameters():
        if not p.requires_grad or (kind == "qa" and name == "head.linear.bias"):
            continue  # a bias shared by every position cancels in the softmax over positions: never a gradient
        norm = 0.0 if p.grad is None else float(p.grad.norm())
        if name.startswith("tuned_backbone."):
            backbone_norm += norm
        elif not norm > 0:
            missing.append(name)
    _need(not missing, f"no gradient reaches {', '.join(missing[:4])}")
    _need(method != "finetune" or backbone_norm > 0, "fine-tuning: no gradient reaches the backbone copy")
    model.zero_grad(set_to_none=True)
    return f"loss {loss.item():.3f}"


def check_batch_invariance(model, backbone, family, method, kind) -> str:
    """Each example alone gives the head outputs it gets inside a padded batch of other lengths."""
    features = model.encode(examples(kind))
    with torch.no_grad():
        whole = _batch(model, features)
        together = model(whole)
        worst = 0.0
        for i, feature in enumerate(features):
            alone_batch = _batch(model, [feature])
            alone = _piece(model, model(alone_batch), alone_batch, 0, len(feature.input_ids))
            diff = _diff(alone, _piece(model, together, whole, i, len(feature.input_ids)))
            _need(diff <= 1e-4, f"example {i} alone vs in a padded batch: outputs differ by {diff:.2e}")
            worst = max(worst, diff)
    return f"max diff {worst:.1e}"


def _hidden_states(model, batch) -> tuple[object, list[torch.Tensor] | None]:
    """Head outputs and the backbone's hidden states (hidden_states[j] is the input of layer j)."""
    seen: dict = {}
    transformer = model.transformer

    def ask(module, args, kwargs):
        kwargs["output_hidden_states"] = True
        return args, kwargs

    def keep(module, args, output):
        seen["states"] = getattr(output, "hidden_states", None)

    handles = [transformer.register_forward_pre_hook(ask, with_kwargs=True), transformer.register_forward_hook(keep)]
    try:
        with torch.no_grad():
            outputs = model(batch)
    finally:
        for handle in handles:
            handle.remove()
    states = seen.get("states")
    return outputs, [s.detach().clone() for s in states] if states else None


def check_deep_layers(model, backbone, family, method, kind) -> str:
    """The prefix of each selected layer reaches that layer and no other: perturbing layer k's slice
    changes the output of layer k and leaves every layer's input up to k as it was. Encoder-decoders:
    each (site, layer) slice, and an encoder prefix leaves the decoder's input as it was, a decoder or
    cross-attention prefix the whole encoder."""
    num_layers = backbone.num_layers
    expected = list(range(num_layers)) if METHODS[method]["layers"] == "all" else [num_layers - 1]
    deep = model.deep_prompt
    _need(list(deep.layers) == expected, f"deep_prompt.layers is {deep.layers}, selection {METHODS[method]['layers']} "
                                         f"means {expected}")
    if family.seq2seq:
        return _check_deep_sites(model, backbone, kind)
    batch = _batch(model, examples(kind))
    base, base_states = _hidden_states(model, batch)
    per_layer = deep.prefix.view(deep.length, len(deep.layers), 2, deep.kv_heads, deep.head_dim)
    generator = torch.Generator().manual_seed(2)
    notes = []
    for slot, layer in enumerate(deep.layers):
        saved = per_layer[:, slot].clone()
        with torch.no_grad():
            per_layer[:, slot] += 3 * torch.randn(saved.shape, generator=generator)
        try:
            outputs, states = _hidden_states(model, batch)
        finally:
            with torch.no_grad():
                per_layer[:, slot] = saved
        change = _diff(outputs, base)
        _need(change > 1e-5, f"perturbing layer {layer}'s prefix changed nothing (max output change {change:.1e}): "
                             "the deep prompt never reaches that layer")
        if states is None or base_states is None:
            notes.append("no hidden states to localise")
            continue
        before = [j for j in range(layer + 1) if _diff(states[j], base_states[j]) > 1e-6]
        _need(not before, f"layer {layer}'s prefix changed the input of layer(s) {before}: it reaches a lower layer")
        _need(_diff(states[layer + 1], base_states[layer + 1]) > 1e-6,
              f"layer {layer}'s prefix left layer {layer}'s output unchanged: it reaches a later layer")
    return f"layers {deep.layers}" + (f" ({notes[0]})" if notes else "")


def _seq2seq_states(model, batch) -> tuple[object, list[torch.Tensor], list[torch.Tensor]]:
    """Head outputs, and an encoder-decoder's encoder and decoder hidden states (entry j: input of layer j)."""
    seen: dict = {}
    transformer = model.transformer

    def ask(module, args, kwargs):
        kwargs["output_hidden_states"] = True
        return args, kwargs

    def keep(module, args, output):
        seen["encoder"], seen["decoder"] = output.encoder_hidden_states, output.decoder_hidden_states

    handles = [transformer.register_forward_pre_hook(ask, with_kwargs=True), transformer.register_forward_hook(keep)]
    try:
        with torch.no_grad():
            outputs = model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, [s.detach().clone() for s in seen["encoder"]], [s.detach().clone() for s in seen["decoder"]]


def _check_deep_sites(model, backbone, kind) -> str:
    """Encoder-decoders: every (site, layer) slice reaches that site of that layer and no other. An
    encoder prefix at layer k leaves the encoder's input of layers 0..k and the whole decoder's input
    embeddings as they were and changes layer k's output; a decoder or cross-attention prefix at layer k
    leaves the whole encoder and the decoder's inputs of layers 0..k as they were and changes layer k's
    output: so a prefix on encoder layer k never touches decoder layer k, and the reverse."""
    deep = model.deep_prompt
    expected = [(site, layer) for site in ("encoder", "decoder", "cross") for layer in deep.layers]
    _need(deep.keys == expected, f"deep_prompt.keys is {deep.keys}, expected {expected}")
    batch = _batch(model, examples(kind))
    base, base_encoder, base_decoder = _seq2seq_states(model, batch)
    per_key = deep.prefix.view(deep.length, len(deep.keys), 2, deep.kv_heads, deep.head_dim)
    generator = torch.Generator().manual_seed(2)
    for slot, (site, layer) in enumerate(deep.keys):
        saved = per_key[:, slot].clone()
        with torch.no_grad():
            per_key[:, slot] += 3 * torch.randn(saved.shape, generator=generator)
        try:
            outputs, encoder, decoder = _seq2seq_states(model, batch)
        finally:
            with torch.no_grad():
                per_key[:, slot] = saved
        change = _diff(outputs, base)
        _need(change > 1e-5, f"perturbing the {site} prefix of layer {layer} changed nothing (max output change "
                             f"{change:.1e}): it never reaches that layer")
        mine, other = (encoder, decoder) if site == "encoder" else (decoder, encoder)
        mine_base, other_base = (base_encoder, base_decoder) if site == "encoder" else (base_decoder, base_encoder)
        before = [j for j in range(layer + 1) if _diff(mine[j], mine_base[j]) > 1e-6]
        _need(not before, f"the {site} prefix of layer {layer} changed the input of layer(s) {before}: it reaches a "
                          "lower layer")
        _need(_diff(mine[layer + 1], mine_base[layer + 1]) > 1e-6,
              f"the {site} prefix of layer {layer} left layer {layer}'s output unchanged: it reaches another layer")
        untouched = range(len(other)) if site != "encoder" else range(1)  # the encoder feeds every decoder layer
        moved = [j for j in untouched if _diff(other[j], other_base[j]) > 1e-6]
        _need(not moved, f"the {site} prefix of layer {layer} changed the {'encoder' if site != 'encoder' else 'decoder'}"
                         f"'s hidden states {moved}")
    return f"sites x layers {len(deep.keys)}"


def check_native_prefix(model, backbone, family, method, kind, reference=None) -> str:
    """Decoders with prefixes at every layer: ptune's hidden states equal the family's own eager
    attention given the same prefix as a key/value cache (same position ids)."""
    from transformers import DynamicCache

    batch = _batch(model, examples(kind))
    with torch.no_grad():
        ours = model.hidden_states(batch)
        mask = batch["attention_mask"]
        prefixes = model.deep_prompt(mask.shape[0])
        cache = DynamicCache(config=reference.config)
        for layer in range(backbone.num_layers):
            cache.update(*prefixes[layer][:2], layer)
        theirs = reference(inputs_embeds=reference.get_input_embeddings()(batch["input_ids"]),
                           attention_mask=torch.cat([torch.ones_like(mask[:, :1]).expand(-1, model.deep_prompt.length),
                                                     mask], dim=1),
                           position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=True,
                           **{_cache_argument(reference): cache}).last_hidden_state
    real = mask.bool()
    diff = float((ours[real] - theirs[real]).abs().max())
    _need(diff <= 1e-4, f"hidden states differ from the model's own past_key_values prefix path by {diff:.2e}")
    return f"max diff {diff:.1e}"


def _cache_argument(model) -> str:
    """transformers 5.24 renames ``past_key_values`` to ``cache`` (the old name warns until 5.40)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def check_lm_head(model, backbone, family, method, kind, language_model=None) -> str:
    """Verbalizer: the backbone's LM head gives the logits the family's own *ForMaskedLM /
    *ForCausalLM gives for the same input."""
    encoded = backbone.tokenizer(["It was a good film , not a bad one"], return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    if family.seq2seq:  # the decoder reads the input shifted right, as PromptModel runs it
        from ptune.model.seq2seq import shift_right, start_id

        inputs["decoder_input_ids"] = shift_right(encoded["input_ids"], start_id(backbone.config), backbone.config.pad_token_id)
    with torch.no_grad():
        ours = backbone.lm_head()(backbone.model(**inputs).last_hidden_state)
        theirs = language_model(**inputs).logits
    diff = _diff(ours, theirs)
    _need(diff <= 1e-4, f"LM head logits differ from {type(language_model).__name__}'s by {diff:.2e}")
    return f"max diff {diff:.1e}"


def check_pool_sees_input(model, backbone, family, method, kind) -> str:
    """The position the head reads sees the whole input: changing only the end of the text (QA: the
    context, as the no-answer score) changes the output."""
    from ptune.data.examples import QAExample, TextExample

    if kind == "qa":
        pair = [QAExample("a", "Who went ?", "Peter Blackburn visited Brussels ."),
                QAExample("b", "Who went ?", "Peter Blackburn visited Brussels today with his friends from the EU .")]
    else:
        pair = [TextExample("the film was good"), TextExample("the film was bad , dull and far too long")]
    with torch.no_grad():
        outputs = [model(_batch(model, [e])) for e in pair]
    if kind == "qa":  # the no-answer score lives at position 0
        scores = [float(start[0, 0] + end[0, 0]) for start, end in outputs]
        _need(abs(scores[0] - scores[1]) > 1e-6, "the no-answer score (position 0) is the same for two different "
                                                 "contexts: that position sees neither question nor context")
        return "no-answer score depends on the context"
    change = _diff(outputs[0], outputs[1])
    _need(change > 1e-6, f"outputs are identical for two different texts: the pooled position "
                         f"(index {int(_batch(model, [pair[0]])['pool_index'][0])}) sees none of the text")
    return f"output change {change:.1e}"


def _word_tokens(feature, tokenizer) -> dict[int, list[int]]:
    """word -> the feature's positions of its sub-tokens: from its first sub-token up to the next
    word's first sub-token, the last word up to the next special token or prompt position."""
    firsts = {w: i for i, w in enumerate(feature.word_index) if w >= 0}
    special = set(tokenizer.all_special_ids)
    spans = {}
    ordered = sorted(firsts, key=firsts.get)
    for n, word in enumerate(ordered):
        start = firsts[word]
        if n + 1 < len(ordered):
            stop = firsts[ordered[n + 1]]
        else:
            stop = start + 1
            while (stop < len(feature.input_ids) and feature.prompt_index[stop] < 0
                   and feature.input_ids[stop] not in special):
                stop += 1
        spans[word] = list(range(start, stop))
    return spans


def _running_tokens(tokenizer, words) -> list[list[str]]:
    """Each word's tokens when the words are written as running text, separated by spaces (a token
    of only whitespace or marker belongs to the word after it)."""
    text = " ".join(words)
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    out: list[list[str]] = [[] for _ in words]
    pending: list[str] = []
    for token, (begin, end) in zip(tokens, encoded["offset_mapping"]):
        owner = next((w for w, s in enumerate(starts) if begin < s + len(words[w]) and end > s and len(words[w])), None)
        if owner is None:
            pending.append(token)
            continue
        out[owner] += pending + [token]
        pending = []
    return out


def _normalised(tokenizer, text: str) -> str:
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    text = normalizer.normalize_str(text) if normalizer is not None else text
    return "".join(text.replace("\u2581", " ").split())


def check_word_alignment(model, backbone, family, method, kind) -> str:
    """Tagging: each word's sub-tokens are the tokens the word has in running text (the first word
    may or may not carry the leading space marker) and decode back to the word; its tag lands on
    its first sub-token."""
    tokenizer = backbone.tokenizer
    items = examples("tagging")
    features = model.encode(items)
    batch = model.collate(features)
    targets = model.head.targets(batch).tolist()
    rows, cols = (batch["word_index"] >= 0).nonzero(as_tuple=True)
    for example, feature in zip(items, features):
        spans = _word_tokens(feature, tokenizer)
        running = _running_tokens(tokenizer, example.tokens)
        for w, word in enumerate(example.tokens):
            _need(w in spans, f"word {w} {word!r} has no sub-token")
            ids = [feature.input_ids[i] for i in spans[w]]
            got = tokenizer.convert_ids_to_tokens(ids)
            allowed = [running[w]]
            if w == 0:
                spaced = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
                allowed.append(tokenizer.convert_ids_to_tokens(spaced))
            _need(got in allowed, f"{' '.join(example.tokens)!r}: word {w} {word!r} is tokenised {got}, "
                                  f"but in running text it is {running[w]}")
            decoded = tokenizer.decode(ids)
            _need(_normalised(tokenizer, decoded) == _normalised(tokenizer, word),
                  f"word {w} {word!r}: its sub-tokens decode to {decoded!r}")
    padded_start = {row: (batch["attention_mask"][row] == 0).sum().item() if model.encoder.decoder else 0
                    for row in range(len(features))}
    for row, col, target in zip(rows.tolist(), cols.tolist(), targets):
        word = int(batch["word_index"][row, col])
        position = col - padded_start[row]
        spans = _word_tokens(features[row], tokenizer)
        _need(spans[word][0] == position, f"word {word}'s label sits at position {position}, not its first sub-token")
        _need(TAGS[target] == items[row].tags[word], f"word {word} {items[row].tokens[word]!r} is trained on "
                                                     f"{TAGS[target]}, its tag is {items[row].tags[word]}")
    return f"{sum(len(e.tokens) for e in items)} words aligned"


def empty_word(tokenizer) -> str | None:
    """A character that this tokenizer turns into no token at all, as one word among others."""
    for candidate in EMPTY_CANDIDATES:
        word_ids = tokenizer(["Peter", candidate, "Blackburn"], is_split_into_words=True,
                             add_special_tokens=False).word_ids()
        if 1 not in word_ids:
            return candidate
    return None


def check_empty_word(model, backbone, family, method, kind) -> str:
    """Tagging: a word with no sub-token keeps every other word's tag in place, in training targets
    and in decoding; prediction still gives one tag per word."""
    from ptune.data.examples import TaggedExample
    from ptune.infer.predict import predict

    empty = empty_word(backbone.tokenizer)
    word = empty if empty is not None else "\u200b"
    tokens = ("EU", word, "rejects", "German", "call")
    example = TaggedExample(tokens, ("B-ORG", "O", "O", "B-MISC", "O"))
    batch = model.collate(model.encode([example]))
    rows, cols = (batch["word_index"] >= 0).nonzero(as_tuple=True)
    words = batch["word_index"][rows, cols].tolist()
    targets = model.head.targets(batch).tolist()
    for w, target in zip(words, targets):
        _need(TAGS[target] == example.tags[w],
              f"with an empty word, word {w} {tokens[w]!r} is trained on {TAGS[target]}, its tag is {example.tags[w]}")
    # Decode outputs whose row for word w votes for TAGS[w + 1]: a shifted decoder gives another word's tag.
    outputs = torch.full((len(words), len(TAGS)), -5.0)
    for row, w in enumerate(words):
        outputs[row, (w + 1) % len(TAGS)] = 5.0
    decoded = model.kind.decode(model, outputs, batch)[0]
    _need(len(decoded) == len(tokens), f"decoding gives {len(decoded)} tags for {len(tokens)} words")
    shifted = [w for w in words if decoded[w] != TAGS[(w + 1) % len(TAGS)]]
    _need(not shifted, f"with an empty word at position 1, decoding puts another word's tag on word(s) {shifted} "
                       f"(decoded {decoded})")
    predicted = predict(model, [example])[0]
    _need(len(predicted) == len(tokens), f"predict gives {len(predicted)} tags for {len(tokens)} words")
    return f"empty word {word!r}" if empty is not None else "no character gives this tokenizer an empty word"


def check_verbalizer_spacing(model, backbone, family, method, kind) -> str:
    """Verbalizer: each label word is scored by the token it has in running text ("It was good"),
    and a template without [P] lays the text and its words out as the running text does."""
    tokenizer = backbone.tokenizer
    words = [w for pair in VERBALIZER.split(";") for w in pair.split("=")[1].split(",")]
    for (label, ids), word in zip(zip(LABELS, model.verbalizer_ids()), words):
        text = f"It was {word}"
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        start = text.index(word)
        first = next(i for i, (b, e) in zip(encoded["input_ids"], encoded["offset_mapping"]) if b <= start < e)
        _need(ids[0] == first, f"label {label!r}: word {word!r} scored as {tokenizer.convert_ids_to_tokens(ids[:1])} "
                               f"but in running text it is {tokenizer.convert_ids_to_tokens([first])}")
    if "[P]" in (model.config.template or ""):
        return "label words"
    from ptune.data.examples import TextExample

    for text, _, _ in TEXTS:
        # The running text with the label word; its tokens (and a marker for the space before it)
        # give way to [MASK] on a masked LM, and to nothing on a causal LM (the head reads the next token).
        full = f"{text} It was good"
        encoded = tokenizer(full, return_offsets_mapping=True)
        ids, start = encoded["input_ids"], full.rindex(" good")
        word = [n for n, (b, e) in enumerate(encoded["offset_mapping"]) if e > b >= start]
        expected = ids[: word[0]] + ([] if model.encoder.decoder else [model.encoder.slot_id]) + ids[word[-1] + 1 :]
        got = model.encode([TextExample(text)])[0].input_ids
        _need(got == expected, f"template '{{text}} It was {{label}}' on {text!r} gives "
                               f"{tokenizer.convert_ids_to_tokens(got)}, running text gives "
                               f"{tokenizer.convert_ids_to_tokens(expected)}")
    return "label words and template"


def check_round_trip(model, backbone, family, method, kind) -> str:
    """save_prompt / load_prompt gives identical outputs and predictions."""
    from ptune.infer.predict import predict
    from ptune.storage.prompt_files import load_prompt, save_prompt

    items = examples(kind)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prompt.safetensors"
        save_prompt(path, model, task_name="families", metric=model.metric)
        loaded = load_prompt(path, backbone)
    batch = _batch(model, items)
    with torch.no_grad():
        diff = _diff(model(batch), loaded(batch))
    _need(diff == 0.0, f"outputs after load_prompt differ by {diff:.2e}")
    before, after = predict(model, items), predict(loaded, items)
    _need(before == after, f"predictions after load_prompt differ: {before} vs {after}")
    return "identical"


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable
    applies: Callable[[Family, str, str], bool]


CHECKS = [
    Check("train_step", check_train_step, lambda f, m, k: True),
    Check("batch_invariance", check_batch_invariance, lambda f, m, k: True),
    Check("deep_layers", check_deep_layers, lambda f, m, k: m.startswith("deep")),
    Check("native_prefix", check_native_prefix, lambda f, m, k: m == "deep" and f.decoder),
    Check("pool_sees_input", check_pool_sees_input, lambda f, m, k: k != "tagging"),
    Check("word_alignment", check_word_alignment, lambda f, m, k: k == "tagging"),
    Check("empty_word", check_empty_word, lambda f, m, k: k == "tagging"),
    Check("verbalizer_spacing", check_verbalizer_spacing, lambda f, m, k: k == "verbalizer"),
    Check("lm_head", check_lm_head, lambda f, m, k: k == "verbalizer"),
    Check("round_trip", check_round_trip, lambda f, m, k: True),
]


def _where(error: BaseException) -> str:
    """file:line of the innermost frame inside ptune (or the last frame) of an unexpected error."""
    frames = traceback.extract_tb(error.__traceback__)
    inside = [f for f in frames if "/ptune/" in f.filename] or frames
    frame = inside[-1]
    return f"{frame.filename.split('/src/')[-1]}:{frame.lineno}"


def may_refuse(method: str, message: str) -> bool:
    """only deep prompts may be refused, by a message about deep prompts (a family whose attention
    cannot take a prefix); input prompts, fine-tuning, every task kind and the verbalizer (each
    checkpoint here has its LM head) must work on every family"""
    return method.startswith("deep") and "deep" in message.lower()


def run_case(zoo: Zoo, family: str, method: str, kind: str) -> dict:
    """Build one grid cell and run every check that applies; the record benchmarks/families.py writes.

    status: pass | refused (a one-line PtuneError about deep prompts when the model is built) | fail
    (a check failed, a refusal came late, was not one line or refused something that must work, or
    another exception was raised). ``checks``: each check's result; ``known``: the owner and cause
    of a failure listed in KNOWN."""
    record = _run_case(zoo, family, method, kind)
    folder = f"{zoo.root}/"
    record["detail"] = record["detail"].replace(folder, "")
    record["checks"] = {name: result.replace(folder, "") for name, result in record["checks"].items()}
    record["known"] = known_reason(record) if record["status"] == "fail" else None
    return record


def _run_case(zoo: Zoo, family: str, method: str, kind: str) -> dict:
    from ptune.errors import PtuneError

    spec = FAMILIES[family]
    record = {"family": family, "model_type": None, "tokenizer": None, "tokenizer_kind": spec.tokenizer_kind,
              "method": method, "kind": kind, "status": "pass", "detail": "", "checks": {}}
    try:
        backbone = zoo.backbone(family)
    except Exception as error:  # noqa: BLE001 - recorded, never hidden
        problem = f"{type(error).__name__}: {error} ({_where(error)})"
        record["checks"]["load"] = f"fail: {problem}"
        return {**record, "status": "fail", "detail": f"load: {problem}"}
    record.update(model_type=backbone.config.model_type, tokenizer=type(backbone.tokenizer).__name__)
    try:
        model = build(backbone, method, kind)
    except PtuneError as error:
        message = str(error).strip()
        if "\n" in message:
            problem = f"refusal is not one line: {message!r}"
        elif not may_refuse(method, message):
            problem = f"refused, but {' '.join(may_refuse.__doc__.split())}: {message}"
        else:
            record["checks"]["build"] = f"refused: {message}"
            return {**record, "status": "refused", "detail": message}
        record["checks"]["build"] = f"fail: {problem}"
        return {**record, "status": "fail", "detail": f"build: {problem}"}
    except Exception as error:  # noqa: BLE001
        problem = f"{type(error).__name__}: {error} ({_where(error)})"
        record["checks"]["build"] = f"fail: {problem}"
        return {**record, "status": "fail", "detail": f"build: {problem}"}
    record["checks"]["build"] = "pass"
    failures = []
    for check in CHECKS:
        if not check.applies(spec, method, kind):
            continue
        try:
            extra = ({"reference": zoo.reference(family)} if check.name == "native_prefix" else
                     {"language_model": zoo.language_model(family)} if check.name == "lm_head" else {})
            result = check.run(model, backbone, spec, method, kind, **extra)
            record["checks"][check.name] = "pass" + (f": {result}" if result else "")
        except CheckFailed as error:
            record["checks"][check.name] = f"fail: {error}"
            failures.append(f"{check.name}: {error}")
        except PtuneError as error:
            record["checks"][check.name] = f"fail: refused after the build: {error}"
            failures.append(f"{check.name}: refused after the build: {error}")
        except Exception as error:  # noqa: BLE001
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} ({_where(error)})"
            record["checks"][check.name] = f"fail: {message}"
            failures.append(f"{check.name}: {message}")
    if failures:
        record.update(status="fail", detail="; ".join(failures))
    return record


# -- failures known today ------------------------------------------------------------------------------
# Failures known today, each with its owner. A cell is marked xfail only when EVERY failing check
# matches an entry here (check, message pattern, which cells); any other failure fails the test.
# Remove an entry when its fix lands.
@dataclass(frozen=True)
class Known:
    check: str  # regex over check names ("build" for the model's construction)
    pattern: str  # regex searched in the check's failure message
    cells: Callable[[str, str, str], bool]  # (family, method, kind) -> whether the entry covers the cell
    reason: str  # owner and cause, as pytest.xfail and docs/FAMILIES.md show it


BYTE_LEVEL = {name for name, f in FAMILIES.items() if f.tokenizer_kind == "bpe-bytelevel"}
KNOWN: list[Known] = [
    # Known(check regex, result regex, cells(family, method, kind) -> bool, reason): an expected failure,
    # listed with the issue that will fix it. None today.
]


def known_reason(record: dict) -> str | None:
    """The reasons of a failed cell when every failing check is a known failure, else None."""
    reasons = []
    for check, result in record["checks"].items():
        if not result.startswith("fail"):
            continue
        reason = next((k.reason for k in KNOWN if re.fullmatch(k.check, check) and re.search(k.pattern, result)
                       and k.cells(record["family"], record["method"], record["kind"])), None)
        if reason is None:
            return None
        if reason not in reasons:
            reasons.append(reason)
    return " | ".join(reasons) or None


if __name__ == "__main__":
    if sys.argv[1:] == ["--train-tokenizers"]:
        train_tokenizers()
    else:
        sys.exit("usage: python tests/families.py --train-tokenizers")
