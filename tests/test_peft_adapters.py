"""PEFT interop on real MiniLM weights: ptune -> PEFT and PEFT -> ptune give the same outputs."""

from __future__ import annotations

import json

import pytest
import torch

from ptune.storage.prompt_files import load_prompt, save_prompt
from ptune.config import MethodConfig
from ptune.data import TextExample
from ptune.batch.encoding import collate
from ptune.errors import PtuneError
from ptune.model.prompt_model import PromptModel
from ptune.interop.peft import export_peft, import_peft

peft = pytest.importorskip("peft")
TEXTS = ["a gripping , beautifully acted film", "dull", "not bad at all , really", "the worst thing this year"]


@pytest.fixture(scope="module")
def base_model():
    from transformers import AutoModel

    from ptune.model.backbones import resolve

    return lambda: AutoModel.from_pretrained(resolve("minilm")).eval()


def ptune_logits(model: PromptModel, texts=TEXTS) -> torch.Tensor:
    features = model.encode([TextExample(t) for t in texts])
    with torch.no_grad():
        return model(collate(features, pad_id=model.encoder.pad_id, left_pad=False))


def peft_hidden(peft_model, tokenizer, texts=TEXTS) -> torch.Tensor:
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state


def trained_like(minilm, method: str, **options) -> PromptModel:
    """A prompt with random, non-trivial weights (as training would leave them)."""
    model = PromptModel(minilm, MethodConfig(method=method, length=5, peft_layout=True, **options),
                        ["negative", "neutral", "positive"])
    model.initialise(seed=1)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


@pytest.mark.parametrize("method, options", [("prompt", {}), ("ptuning", {"encoder": "lstm"}), ("deep", {}),
                                             ("deep", {"reparam": True})])
def test_ptune_to_peft_same_predictions(minilm, base_model, tmp_path, method, options):
    model = trained_like(minilm, method, **options)
    save_prompt(tmp_path / "p.safetensors", model, task_name="rt", metric="accuracy")
    folder = export_peft(tmp_path / "p.safetensors", tmp_path / "adapter", minilm)

    loaded = peft.PeftModel.from_pretrained(base_model(), folder).eval()
    hidden = peft_hidden(loaded, minilm.tokenizer)
    head = json.loads(__import__("safetensors").safe_open(str(folder / "ptune_head.safetensors"), "pt").metadata()["task"])
    via_peft = model.head.linear(hidden[:, head["pool_position"]])
    ours = ptune_logits(model)
    assert torch.allclose(via_peft, ours, atol=1e-4), (via_peft - ours).abs().max()
    assert via_peft.argmax(-1).tolist() == ours.argmax(-1).tolist()


PEFT_CONFIGS = {
    "prompt tuning": lambda: peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=6),
    "p-tuning lstm": lambda: peft.PromptEncoderConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=6,
                                                      encoder_reparameterization_type="LSTM"),
    "p-tuning mlp": lambda: peft.PromptEncoderConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=6),
    "prefix tuning": lambda: peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=6),
    "prefix + projection": lambda: peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=6,
                                                           prefix_projection=True, encoder_hidden_size=64),
}


@pytest.mark.parametrize("kind", list(PEFT_CONFIGS))
def test_peft_to_ptune_same_outputs(minilm, base_model, tmp_path, kind):
    torch.manual_seed(0)
    made = peft.get_peft_model(base_model(), PEFT_CONFIGS[kind]())
    with torch.no_grad():
        for p in made.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    made.save_pretrained(tmp_path / "adapter")
    reference = peft.PeftModel.from_pretrained(base_model(), tmp_path / "adapter").eval()

    model = import_peft(tmp_path / "adapter", minilm, out=tmp_path / "imported.safetensors", labels=["neg", "pos"])
    model = load_prompt(tmp_path / "imported.safetensors", minilm)  # through the file, as a user would
    expected = peft_hidden(reference, minilm.tokenizer)
    features = model.encode([TextExample(t) for t in TEXTS])
    batch = collate(features, pad_id=model.encoder.pad_id, left_pad=False)
    with torch.no_grad():
        ours = model.hidden_states(batch)
    # PEFT's output has the same layout (virtual tokens first for input prompts): compare real tokens.
    assert expected.shape == ours.shape
    real = batch["attention_mask"].bool() & (batch["prompt_index"] < 0)
    assert torch.allclose(ours[real], expected[real], atol=1e-4), (ours[real] - expected[real]).abs().max()
    # and the same predictions with one head on both
    pool = batch["pool_index"]
    assert model.head.linear(expected[torch.arange(len(TEXTS)), pool]).argmax(-1).tolist() == \
        ptune_logits(model).argmax(-1).tolist()


def test_round_trip_keeps_the_task(minilm, tmp_path):
    model = trained_like(minilm, "deep")
    save_prompt(tmp_path / "p.safetensors", model, task_name="rt", metric="accuracy")
    export_peft(tmp_path / "p.safetensors", tmp_path / "adapter", minilm)
    back = import_peft(tmp_path / "adapter", minilm, out=tmp_path / "back.safetensors")
    assert back.labels == model.labels
    assert torch.equal(ptune_logits(back), ptune_logits(model))


def test_export_refuses_what_peft_cannot_reproduce(minilm, tmp_path):
    plain = PromptModel(minilm, MethodConfig(method="deep", length=4), ["a", "b"])
    plain.initialise(seed=0)
    save_prompt(tmp_path / "plain.safetensors", plain, task_name="t", metric="accuracy")
    with pytest.raises(PtuneError, match="--peft-layout"):
        export_peft(tmp_path / "plain.safetensors", tmp_path / "out", minilm)
    top = PromptModel(minilm, MethodConfig(method="deep", length=4, layers="top:2", peft_layout=True), ["a", "b"],
                      )
    top.initialise(seed=0)
    save_prompt(tmp_path / "top.safetensors", top, task_name="t", metric="accuracy")
    with pytest.raises(PtuneError, match="every layer"):
        export_peft(tmp_path / "top.safetensors", tmp_path / "out", minilm)


def test_import_refuses_pickles_and_other_adapters(minilm, tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4}))
    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(PtuneError, match="pickle"):
        import_peft(tmp_path, minilm, out=tmp_path / "x.safetensors", labels=["a"])
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    with pytest.raises(PtuneError, match="not a prompt adapter"):
        import_peft(tmp_path, minilm, out=tmp_path / "x.safetensors", labels=["a"])


def test_cli_export_and_import(minilm, tmp_path, capsys):
    from ptune.cli import main

    model = trained_like(minilm, "prompt")
    save_prompt(tmp_path / "p.safetensors", model, task_name="rt", metric="accuracy")
    assert main(["export", str(tmp_path / "p.safetensors"), "--peft", str(tmp_path / "adapter")]) == 0
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert main(["import-peft", str(tmp_path / "adapter"), "--out", str(tmp_path / "back.safetensors")]) == 0
    assert main(["import-peft", str(tmp_path / "adapter"), "--out", str(tmp_path / "back.safetensors")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    back = load_prompt(tmp_path / "back.safetensors", minilm)
    assert torch.allclose(ptune_logits(back), ptune_logits(model), atol=1e-6)


def test_peft_layout_prompts_mix_with_others_in_one_batch(minilm):
    from ptune.infer.bank import PromptBank

    models = {"peft-deep": trained_like(minilm, "deep"), "peft-prompt": trained_like(minilm, "prompt")}
    plain = PromptModel(minilm, MethodConfig(method="deep", length=3), ["a", "b"])
    plain.initialise(seed=3)
    models["plain"] = plain.eval()
    bank = PromptBank(models).eval()
    items = [(name, TextExample(text)) for text in TEXTS for name in models]
    with torch.no_grad():
        mixed = bank(bank.collate(bank.encode(items)))
    for (name, example), logits in zip(items, mixed):
        alone = ptune_logits(models[name], [example.text])[0]
        assert torch.allclose(logits, alone, atol=1e-5), name


def test_benchmark_command_runs_side_by_side(capsys):
    from ptune.cli import main

    from ptune.analysis.benchmark import FLOOR

    assert main(["-q", "benchmark", "--batches", "2", "--rounds", "1", "--examples", "200", "--json",
                 "--configs", "ptune deep", "peft prefix", "ptune deep top:3 (cached)", FLOOR]) == 0
    result = json.loads(capsys.readouterr().out)["configs"]
    assert set(result) == {"ptune deep", "peft prefix", "ptune deep top:3 (cached)", FLOOR}
    assert all(r["median_step_s"] > 0 and r["steps"] == 2 for r in result.values())
    deep = result["ptune deep"]
    low, high = deep["vs peft prefix interval"]  # paired per-step ratios: their median lies in their range
    assert low <= deep["vs peft prefix"] <= high and f"vs {FLOOR}" in deep


def test_the_peft_ptuning_baseline_has_ptunes_encoder_shapes(minilm):
    """The speed comparison's P-tuning rows train encoders of the same shapes, so the same parameter count."""
    import peft
    from transformers import AutoModel

    from ptune.analysis.benchmark import peft_ptuning_config
    from ptune.config import MethodConfig
    from ptune.model.backbones import resolve
    from ptune.model.prompt_model import PromptModel

    ours = PromptModel(minilm, MethodConfig(method="ptuning", template="[P]*16 {text}", encoder="lstm"), ["a", "b"])
    theirs = peft.get_peft_model(AutoModel.from_pretrained(resolve("minilm")), peft_ptuning_config(16, 384))
    encoder = theirs.prompt_encoder["default"]
    shapes = sorted(tuple(p.shape) for name, p in encoder.named_parameters() if "embedding" not in name)
    ours_shapes = sorted(tuple(p.shape) for name, p in ours.input_prompt.named_parameters() if name != "embedding")
    assert shapes == ours_shapes
