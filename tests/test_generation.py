"""Generation with a soft or deep prompt: the cached loop against the full-recompute reference (logits
at every step on tiny models of every decoder family, greedy ids on real SmolLM2), sampling options
and their validation, stop strings, streaming, the CLI command, and refusal of encoders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from families import FAMILIES, Zoo, build

from ptune.cli import main
from ptune.config import MethodConfig
from ptune.errors import PtuneError
from ptune.infer.decoding import CachedSteps, prompt_features
from ptune.infer.generate import Generation, generate, generate_ids, stream, stream_batch
from ptune.infer.recompute import RecomputeSteps, reference_ids
from ptune.infer.sampling import keep_top_k, keep_top_p, penalise
from ptune.model.backbones import load_backbone
from ptune.model.prompt_model import PromptModel
from ptune.storage.prompt_files import save_prompt

TEXTS = ["The capital of France is", "Once upon a time, a small dog"]
# Four texts of different lengths: the batch is left-padded.
BATCH = ["The capital of France is", "Once upon a time, a small dog lived in a house by the sea and",
         "Water boils at", "My favourite recipe for a quick weeknight dinner starts with"]
METHODS = {
    "prompt": {"method": "prompt", "length": 4},
    "ptuning": {"method": "ptuning", "length": 4, "encoder": "lstm"},
    "deep": {"method": "deep", "length": 4},
    "deep-top1": {"method": "deep", "length": 4, "layers": "top:1"},
    "deep-peft-layout": {"method": "deep", "length": 4, "peft_layout": True},
    "finetune": {"method": "finetune"},
}


@pytest.fixture(scope="module")
def smollm2():
    return load_backbone("smollm2")


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads (and the P-tuning encoder's init fit is far slower with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def untrained(backbone, method, **options):
    model = PromptModel(backbone, MethodConfig(method=method, **options), ["a", "b"])
    model.initialise(seed=0)
    return model


def loud(model):
    """Deep prefixes of std 1 (not the init's 0.02), so that a prefix lost on any step shows."""
    if model.deep_prompt is not None:
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.deep_prompt.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
    return model.eval()


def step_differences(model, texts, steps: int = 8) -> list[float]:
    """Max |cached - recomputed| logit per step, feeding both the reference's greedy tokens; one row
    leaves the batch half-way (as a row does at its end-of-sequence token)."""
    features = prompt_features(model, texts)
    out = []
    with torch.inference_mode():
        cached, reference = CachedSteps(model, features), RecomputeSteps(model, features)
        a, b = cached.start(), reference.start()
        out.append(float((a - b).abs().max()))
        for step in range(steps):
            rows = torch.arange(len(b))
            keep = rows[rows != 1] if step == steps // 2 and len(rows) > 1 else rows
            tokens = b.argmax(-1)[keep]
            a, b = cached.advance(keep, tokens), reference.advance(keep, tokens)
            out.append(float((a - b).abs().max()))
    return out


# -- the cached loop computes what a full forward pass computes ------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_cached_logits_equal_recomputed_at_every_step(tiny_llama, one_thread, method):
    model = loud(untrained(tiny_llama, **METHODS[method]))
    differences = step_differences(model, BATCH)
    assert max(differences) < 1e-4, differences
    assert generate_ids(model, BATCH, max_new_tokens=6) == reference_ids(model, BATCH, max_new_tokens=6)


DECODERS = [name for name, family in FAMILIES.items() if family.decoder]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return Zoo(tmp_path_factory.mktemp("generation-families"))


@pytest.mark.parametrize("method", ["prompt", "deep"])
@pytest.mark.parametrize("family", DECODERS)
def test_every_decoder_family(zoo, one_thread, family, method):
    """GPT-2 (learned absolute positions), OPT (positions offset by 2, projected embeddings), NeoX
    (partial rotary), Gemma (sliding-window layers, soft-capped logits) and the Llama-likes."""
    model = build(zoo.backbone(family), method, "classification")
    differences = step_differences(model, ["a gripping film", "Dull , overlong and with a plot that goes nowhere"],
                                   steps=5)
    assert max(differences) < 1e-4, differences


@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_sliding_window_layers_keep_the_prefix(tiny_llama_dir, tmp_path, one_thread, family):
    """A window of 3 tokens, far shorter than the texts: the cache of a sliding layer drops old tokens,
    never the deep prefix (which every position attends, as in a full forward pass)."""
    import transformers as tf

    config, lm = {"mistral": (tf.MistralConfig, tf.MistralForCausalLM), "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM)}[family]
    tokenizer = tf.AutoTokenizer.from_pretrained(tiny_llama_dir)
    torch.manual_seed(0)
    lm(config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=256, sliding_window=3,
              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    backbone = load_backbone(str(tmp_path))
    for method in ("prompt", "deep"):
        differences = step_differences(loud(untrained(backbone, method, length=4)), BATCH, steps=8)
        assert max(differences) < 1e-4, (method, differences)


@pytest.mark.slow
def test_greedy_ids_equal_recomputed_on_smollm2(smollm2):
    """32 new tokens for 4 left-padded texts of different lengths, each method, on the real model."""
    input_words = smollm2.tokenizer("Die Hauptstadt Deutschlands ist Berlin", add_special_tokens=False)["input_ids"]
    outputs = {}
    for method in ("prompt", "ptuning", "deep"):
        model = untrained(smollm2, method, length=4)
        if model.input_prompt is not None:  # real words' embeddings: a prompt that steers (random noise may not)
            with torch.no_grad():
                model.input_prompt.embedding.copy_(smollm2.model.get_input_embeddings().weight[input_words[:4]])
        model = loud(model)
        options = dict(max_new_tokens=32, min_new_tokens=32)
        outputs[method] = generate_ids(model, BATCH, **options)
        assert outputs[method] == reference_ids(model, BATCH, **options), method
        assert all(len(ids) == 32 for ids in outputs[method])
    assert outputs["prompt"] != outputs["deep"]


# -- behaviour on the real model -------------------------------------------------------------------------
@pytest.mark.parametrize("method,options", [("prompt", {"length": 4}), ("deep", {"length": 4})])
def test_greedy_is_deterministic_and_batch_equals_alone(smollm2, method, options):
    model = untrained(smollm2, method, **options)
    together = generate_ids(model, TEXTS, max_new_tokens=6)
    assert together == generate_ids(model, TEXTS, max_new_tokens=6)
    assert [generate_ids(model, [text], max_new_tokens=6)[0] for text in TEXTS] == together
    assert all(1 <= len(ids) <= 6 for ids in together)
    assert all(isinstance(t, str) and t for t in generate(model, TEXTS, max_new_tokens=6))


def test_prompt_changes_the_continuation(smollm2):
    model = untrained(smollm2, "prompt", length=4)
    before = generate_ids(model, TEXTS[:1], max_new_tokens=5)
    # A prompt made of the embeddings of a German phrase (deterministic, unlike random noise, which
    # may leave a 5-token greedy continuation unchanged).
    ids = smollm2.tokenizer("Die Hauptstadt Deutschlands", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        model.input_prompt.embedding.copy_(smollm2.model.get_input_embeddings().weight[(ids * 4)[:4]])
    assert generate_ids(model, TEXTS[:1], max_new_tokens=5) != before


def test_stops_at_end_of_sequence_unless_too_early(smollm2):
    model = untrained(smollm2, "prompt", length=2)
    ids = generate_ids(model, TEXTS[:1], max_new_tokens=3)[0]
    saved = smollm2.config.eos_token_id
    smollm2.config.eos_token_id = ids[1]  # pretend the second token ends the text
    try:
        generation = Generation(model, TEXTS[:1], max_new_tokens=3).run()
        assert generation.ids[0] == ids[:1] and generation.finish == ["eos"]
        longer = generate_ids(model, TEXTS[:1], max_new_tokens=3, min_new_tokens=3)[0]
        assert len(longer) == 3 and ids[1] not in longer
    finally:
        smollm2.config.eos_token_id = saved


def test_sampling_is_seeded(smollm2):
    model = untrained(smollm2, "deep", length=2)
    first = generate_ids(model, TEXTS, max_new_tokens=4, temperature=1.0, seed=3)
    assert first == generate_ids(model, TEXTS, max_new_tokens=4, temperature=1.0, seed=3)
    with pytest.raises(PtuneError, match="temperature"):
        generate(model, TEXTS, temperature=-1)


def test_encoders_are_refused(minilm):
    with pytest.raises(PtuneError, match="causal LM"):
        generate(untrained(minilm, "prompt", length=2), TEXTS)


# -- sampling options ------------------------------------------------------------------------------------
def test_sampling_filters():
    logits = torch.tensor([[2.0, -1.0, 0.5, 1.0]])
    seen = torch.tensor([[True, True, False, False]])
    assert penalise(logits, seen, 2.0).tolist() == [[1.0, -2.0, 0.5, 1.0]]
    assert keep_top_k(logits, 2).isfinite().tolist() == [[True, False, False, True]]
    probs = logits.softmax(-1)[0]  # 0.61, 0.03, 0.14, 0.22
    assert keep_top_p(logits, 0.5).isfinite().tolist() == [[True, False, False, False]]
    assert keep_top_p(logits, float(probs[0]) + 0.01).isfinite().tolist() == [[True, False, False, True]]
    assert keep_top_p(logits, 1.0).isfinite().all()


def test_sampling_options(tiny_llama, one_thread):
    model = untrained(tiny_llama, "deep", length=2)
    greedy = generate_ids(model, BATCH, max_new_tokens=8)
    sampled = generate_ids(model, BATCH, max_new_tokens=8, temperature=1.0, seed=5)
    assert sampled == generate_ids(model, BATCH, max_new_tokens=8, temperature=1.0, seed=5)
    assert sampled != generate_ids(model, BATCH, max_new_tokens=8, temperature=1.0, seed=6)
    assert sampled == reference_ids(model, BATCH, max_new_tokens=8, temperature=1.0, seed=5)
    assert generate_ids(model, BATCH, max_new_tokens=8, temperature=1.0, top_k=1, seed=5) == greedy
    assert generate_ids(model, BATCH, max_new_tokens=8, temperature=2.0, top_p=1e-6, seed=5) == greedy
    narrow = generate_ids(model, BATCH, max_new_tokens=8, temperature=1.0, top_k=3, top_p=0.9, seed=5)
    assert narrow != sampled and all(len(ids) == 8 for ids in narrow)
    text_ids = [set(f.input_ids) for f in prompt_features(model, BATCH)]
    for ids, seen in zip(generate_ids(model, BATCH, max_new_tokens=12, repetition_penalty=1e9), text_ids):
        assert len(set(ids)) == len(ids) and not set(ids) & seen


@pytest.mark.parametrize("option,value,message", [
    ("top_p", 0.0, r"top_p \(--top-p\) must be in \(0, 1\].*got 0.0"),
    ("top_p", 1.5, r"top_p .*got 1.5"),
    ("top_p", float("nan"), r"top_p .*got nan"),
    ("top_k", 0, r"top_k \(--top-k\) must be an integer >= 1.*got 0"),
    ("top_k", 2.5, r"top_k .*got 2.5"),
    ("repetition_penalty", 0.0, r"repetition_penalty \(--repetition-penalty\) must be > 0.*got 0.0"),
    ("temperature", -0.5, r"temperature \(--temperature\) must be 0 .*got -0.5"),
    ("temperature", float("inf"), r"temperature .*got inf"),
    ("max_new_tokens", 0, r"max_new_tokens \(--max-new-tokens\) must be an integer >= 1, got 0"),
    ("min_new_tokens", 50, r"min_new_tokens \(--min-new-tokens\) must be an integer in 0..max_new_tokens \(40\), got 50"),
    ("stop", [""], r"stop \(--stop\) strings must be non-empty text, got ''"),
    ("seed", "x", r"seed \(--seed\) must be an integer, got 'x'"),
])
def test_options_are_validated(tiny_llama, option, value, message):
    model = untrained(tiny_llama, "prompt", length=2)
    with pytest.raises(PtuneError, match=message) as raised:
        generate(model, TEXTS, **{option: value})
    assert "\n" not in str(raised.value)


# -- stop strings and streaming --------------------------------------------------------------------------
def test_stop_strings_end_the_text_before_them(tiny_llama, one_thread):
    model = untrained(tiny_llama, "prompt", length=2)
    full = generate(model, BATCH, max_new_tokens=10)
    stop = full[0][len(full[0]) // 2:][:3]  # three characters from the middle of the first continuation
    cut = Generation(model, BATCH, max_new_tokens=10, stop=[stop, "\u2603never"]).run()
    assert cut.texts[0] == full[0][: full[0].index(stop)] and cut.finish[0] == "stop"
    assert all(stop not in text for text in cut.texts)
    for whole, text, finish in zip(full, cut.texts, cut.finish):  # the other rows: unchanged unless they hit it
        assert text == (whole[: whole.index(stop)] if stop in whole else whole)
        assert finish == ("stop" if stop in whole else "length")
    assert generate(model, BATCH[:1], max_new_tokens=10, stop=stop) == cut.texts[:1]  # one string, not a list


def test_stream_pieces_join_to_the_generated_text(tiny_llama, one_thread):
    model = untrained(tiny_llama, "deep", length=2)
    options = dict(max_new_tokens=12, temperature=0.9, seed=2)
    texts = generate(model, BATCH, **options)
    joined = [""] * len(BATCH)
    for index, piece in stream_batch(model, BATCH, **options):
        assert piece
        joined[index] += piece
    assert joined == texts
    (alone,) = generate(model, BATCH[1:2], **options)  # sampled: one text alone draws other numbers than in a batch
    pieces = list(stream(model, BATCH[1], **options))
    assert len(pieces) > 1 and "".join(pieces) == alone
    stop = alone[4:7]
    held = list(stream(model, BATCH[1], stop=stop, **options))
    assert "".join(held) == alone[: alone.index(stop)] and not any(stop in p for p in held)


def test_streaming_leaves_grad_mode_and_training_mode_alone(tiny_llama, one_thread):
    model = untrained(tiny_llama, "prompt", length=2).train()
    pieces = stream(model, BATCH[0], max_new_tokens=4)
    next(pieces)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    list(pieces)
    assert model.training
    with pytest.raises(PtuneError, match="top_k"):
        stream(model, BATCH[0], top_k=0)  # refused when called, not at the first piece
    with pytest.raises(PtuneError, match="stream_batch"):
        stream(model, BATCH)


# -- the command -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_prompt(tiny_llama, tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "tiny.safetensors"
    save_prompt(path, untrained(tiny_llama, "deep", length=2), task_name="t", metric="accuracy")
    return path


def test_cli_options_and_streaming(tiny_prompt, one_thread, capsys):
    args = ["generate", str(tiny_prompt), "--max-new-tokens", "6", "--temperature", "0.8", "--top-p", "0.9",
            "--top-k", "40", "--repetition-penalty", "1.2", "--seed", "4"]
    assert main([*args, "--text", *BATCH[:2]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == BATCH[:2]
    assert all(line["generated"] and line["finish"] in ("eos", "length") for line in lines)
    assert main([*args, "--text", *BATCH[:2], "--stream"]) == 0
    streamed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pieces, finals = [s for s in streamed if "piece" in s], [s for s in streamed if "generated" in s]
    assert [f["generated"] for f in finals] == [line["generated"] for line in lines]
    for index in (0, 1):
        assert "".join(p["piece"] for p in pieces if p["index"] == index) == lines[index]["generated"]
    assert main([*args, "--text", BATCH[0]]) == 0  # sampled: alone, a text draws other numbers than in a batch
    alone = json.loads(capsys.readouterr().out)["generated"]
    assert main([*args, "--text", BATCH[0], "--stream"]) == 0
    assert capsys.readouterr().out == alone + "\n"
    stop = alone[2:5]
    assert main([*args, "--text", BATCH[0], "--stop", stop, "never"]) == 0
    (cut,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert cut["generated"] == alone[: alone.index(stop)] and cut["finish"] == "stop"


@pytest.mark.parametrize("flags,message", [(["--top-p", "1.5"], "top_p (--top-p) must be in (0, 1]"),
                                           (["--top-k", "0"], "top_k (--top-k) must be an integer >= 1"),
                                           (["--repetition-penalty", "0"], "repetition_penalty (--repetition-penalty)"),
                                           (["--stop", ""], "stop (--stop) strings must be non-empty")])
def test_cli_refuses_bad_options_before_loading(tmp_path, capsys, flags, message):
    missing = tmp_path / "never-read.safetensors"  # the options are checked before the prompt file is read
    assert main(["generate", str(missing), "--text", "hi", *flags]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and len(err.strip().splitlines()) == 1


def test_cli_generate(smollm2, minilm, tmp_path, capsys):
    path = tmp_path / "gen.safetensors"
    save_prompt(path, untrained(smollm2, "deep", length=2), task_name="t", metric="accuracy")
    assert main(["generate", str(path), "--text", *TEXTS, "--max-new-tokens", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == TEXTS and all(line["generated"] for line in lines)
    encoder = tmp_path / "enc.safetensors"
    save_prompt(encoder, untrained(minilm, "prompt", length=2), task_name="t", metric="accuracy")
    assert main(["generate", str(encoder), "--text", "hello"]) == 2
    assert "causal LM" in capsys.readouterr().err


def test_recorded_generation_speed_covers_every_method():
    """benchmarks/results/generation.json (rendered into docs/RESULTS.md, tests/test_results_doc.py) has a
    record per input-prompt and deep method, each with greedy ids equal to the full recompute."""
    root = Path(__file__).resolve().parents[1]
    record = json.loads((root / "benchmarks" / "results" / "generation.json").read_text())
    assert {"prompt", "ptuning", "deep"} == {r["method"] for r in record["records"]}
    assert all(r["greedy_identical"] for r in record["records"])
