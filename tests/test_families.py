"""Conformance of every model family: tiny random models with their real tokenizer classes (built in
tests/families.py, which also holds the checks that benchmarks/families.py runs), across methods and
task kinds. A cell passes, is refused with a one-line PtuneError when the model is built (deep
prompts only), or fails.

Known failures are marked xfail with their owner and cause (``families.KNOWN``), and only when
every failing check of the cell matches a known one.
"""

from __future__ import annotations

import pytest
from families import FAMILIES, KINDS, METHODS, Zoo, known_reason, run_case

# The whole grid runs by default: about 65 s on 2 busy cores (the issue's budget is 5 minutes).
CELLS = [pytest.param(family, method, kind, id=f"{family}-{method}-{kind}")
         for family in FAMILIES for method in METHODS for kind in KINDS]


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    return Zoo(tmp_path_factory.mktemp("families"))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine two threads make the
    P-tuning encoder's init fit 30-80x slower (measured: 0.5 s vs 16-42 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("family,method,kind", CELLS)
def test_family(zoo, family, method, kind):
    record = run_case(zoo, family, method, kind)
    if record["status"] == "fail":
        reason = known_reason(record)
        if reason is not None:
            pytest.xfail(reason)
        pytest.fail(f"{family} {method} {kind}: {record['detail']}", pytrace=False)
    if record["status"] == "refused":
        assert "\n" not in record["detail"].strip()


def test_the_grid_covers_the_issue():
    """Every family the issue names, every method (deep with all layers and with top:k) and kind."""
    assert set(METHODS) == {"prompt", "ptuning", "deep", "deep:top1", "finetune"}
    assert set(KINDS) == {"classification", "tagging", "regression", "qa", "verbalizer"}
    assert len(FAMILIES) >= 16 and {"bert", "roberta", "xlm_roberta", "deberta_v2", "distilbert", "albert", "electra",
                                    "modernbert", "gpt2", "gpt_neox", "llama", "qwen2", "mistral", "gemma2", "phi3",
                                    "opt", "t5", "bart"} <= set(FAMILIES)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_tokenizer_is_the_familys_own(zoo, name):
    """Each family loads with its own tokenizer class, and the tokenizer behaves as its kind does:
    WordPiece '##' continuations, byte-level 'Ġ' for a space, SentencePiece '▁' word starts."""
    backbone = zoo.backbone(name)
    tokenizer, spec = backbone.tokenizer, FAMILIES[name]
    tokens = tokenizer.tokenize("United Arab Emirates hospitalisation")
    marker = {"wordpiece": "##", "bpe-bytelevel": "\u0120", "sentencepiece-unigram": "\u2581",
              "sentencepiece-bpe": "\u2581"}[spec.tokenizer_kind]
    assert any(marker in t for t in tokens), tokens
    expected = {"bert": "BertTokenizer", "distilbert": "DistilBertTokenizer", "electra": "BertTokenizer",
                "roberta": "RobertaTokenizer", "xlm_roberta": "XLMRobertaTokenizer", "albert": "AlbertTokenizer",
                "deberta_v2": "DebertaV2Tokenizer", "gpt2": "GPT2Tokenizer", "opt": "GPT2Tokenizer",
                "opt_350m": "GPT2Tokenizer", "gpt_neox": "GPTNeoXTokenizer", "qwen2": "Qwen2Tokenizer",
                "qwen3": "Qwen2Tokenizer", "llama": "LlamaTokenizer",
                "gemma2": "GemmaTokenizer", "gemma3": "GemmaTokenizer",
                # transformers 5's T5Tokenizer is the fast (tokenizers) class T5TokenizerFast was; BartTokenizer
                # is RobertaTokenizer under another name
                "t5": "T5Tokenizer", "bart": "RobertaTokenizer",
                # transformers 5 loads Mistral, Phi-3 and ModernBERT checkpoints with its generic tokenizers
                # backend (from tokenizer.json), whatever tokenizer_class the checkpoint names
                "mistral": "TokenizersBackend", "phi3": "TokenizersBackend", "modernbert": "TokenizersBackend"}
    assert type(tokenizer).__name__ == expected[name]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_reference_code_options(zoo, name):
    """The reference code's choices (docs/RESULTS.md, "Deviations") on every family: --pool pooler runs
    through the family's own pooler or is refused when the model is built; --backbone-dropout and
    per-example prefix dropout train a step and leave the shared backbone in eval mode."""
    import torch

    from families import examples
    from ptune.batch.encoding import collate
    from ptune.config import MethodConfig
    from ptune.errors import PtuneError
    from ptune.model.prompt_model import PromptModel, backbone_pooler

    backbone = zoo.backbone(name)
    items = examples("classification")
    pooler = backbone_pooler(backbone.model)
    try:
        pooled = PromptModel(backbone, MethodConfig(method="prompt", pool="pooler"), ["negative", "positive"])
    except PtuneError as error:
        assert pooler is None and "has no pooler" in str(error) and "\n" not in str(error)
    else:
        assert pooler is not None
        pooled.initialise(seed=0)
        first = PromptModel(backbone, MethodConfig(method="prompt"), ["negative", "positive"])
        first.load_state_dict(pooled.state_dict())
        batch = collate(pooled.encode(items), pad_id=pooled.encoder.pad_id, left_pad=pooled.encoder.decoder)
        with torch.no_grad():
            hidden = pooled.eval().hidden_states(batch)
            states = hidden[torch.arange(len(items)), batch["pool_index"]]
            torch.testing.assert_close(pooled(batch), pooled.head.linear(pooler(states)))
            assert not torch.allclose(first.eval()(batch), pooled(batch))

    options = dict(method="deep", backbone_dropout=True, prefix_dropout="example", prefix_std=1.0)
    try:
        model = PromptModel(backbone, MethodConfig(**options), ["negative", "positive"])
    except PtuneError as error:  # deep prompts refused on this family (docs/FAMILIES.md)
        assert "deep prompts cannot reach" in str(error)
        return
    model.initialise(seed=0)
    assert 0.8 < model.deep_prompt.prefix.std().item() < 1.2
    model.train()
    batch = collate(model.encode(items), pad_id=model.encoder.pad_id, left_pad=model.encoder.decoder)
    model.loss(batch).backward()
    assert model.deep_prompt.prefix.grad.abs().sum() > 0
    model.eval()
    assert not backbone.model.training
