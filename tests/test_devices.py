"""Devices and dtypes (model/placement.py, model/checkpointing.py): no tensor created off the model's
device, bf16 training on CPU, a device map, gradient checkpointing with unchanged gradients, 4-bit
backbones, and the options that choose them. What needs a GPU is marked ``cuda`` / ``multi_gpu``."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.fx.experimental._config  # noqa: F401 - the meta nonzero switch
from torch.overrides import TorchFunctionMode

from ptune.config import DeviceConfig, MethodConfig, TrainConfig
from ptune.data.examples import ChoiceExample, QAExample, TaggedExample, TextExample
from ptune.errors import PtuneError
from ptune.model.backbones import load_backbone
from ptune.model.prompt_model import PromptModel

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
CONTEXT = "Peter went to Brussels . The EU rejects the call ."
EXAMPLES = {
    "classification": ([TextExample("a good film", "pos"), TextExample("dull and long", "neg")], ["neg", "pos"]),
    "regression": ([TextExample("a good film", 4.5), TextExample("dull", 1.0)], []),
    "tagging": ([TaggedExample(("Peter", "went", "to", "Brussels"), ("B-PER", "O", "O", "B-LOC")),
                 TaggedExample(("The", "EU"), ("O", "B-ORG"))], ["O", "B-PER", "B-LOC", "B-ORG"]),
    "qa": ([QAExample("q1", "Where did Peter go ?", CONTEXT, ("Brussels",), (CONTEXT.index("Brussels"),)),
            QAExample("q2", "Who rejects the call ?", CONTEXT, ("The EU",), (CONTEXT.index("The EU"),))], []),
    "multiple_choice": ([ChoiceExample("The glass fell", ("so it broke .", "so it sang ."), 0),
                         ChoiceExample("He was hungry", ("so he slept .", "so he ate .", "so he ran ."), 1)], []),
}
METHODS = ("prompt", "ptuning", "deep", "finetune")


# Factory functions: each call inside a forward pass must say where its tensor goes (``device=``), or it
# lands on the CPU whatever device the model is on.
FACTORIES = {"tensor", "as_tensor", "zeros", "ones", "full", "empty", "arange", "rand", "randn", "randint", "eye",
             "linspace", "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like"}
# Kinds whose forward pass reads values on the host (``int(counts.max())``), which the meta device cannot:
# checked on the CPU for factory calls without ``device=`` only.
HOST_VALUES = {"multiple_choice"}


class OffDevice(TorchFunctionMode):
    """Records every torch call that returns a tensor off ``device`` (an op mixing in a CPU tensor) and
    every factory call without ``device=``: while the model is declared on another device, none may."""

    def __init__(self, device: str):
        super().__init__()
        self.device, self.calls = torch.device(device), []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        out = func(*args, **kwargs)
        like = name.endswith("_like") and "device" not in kwargs  # follows its argument's device
        if name in FACTORIES and "device" not in kwargs and not like and getattr(func, "__self__", None) is None:
            self.calls.append(f"{name} without device=")
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if torch.is_tensor(tensor) and tensor.device != self.device:
                self.calls.append(f"{name} -> {tensor.device} {tuple(tensor.shape)}")
        return out


def _models(backbone) -> dict:
    models = {}
    for kind, (examples, labels) in EXAMPLES.items():
        for method in METHODS:
            config = MethodConfig(method=method, length=4 if method != "ptuning" else None, max_length=64,
                                  init="random")  # no encoder fitting: the fixture stays quick
            model = PromptModel(backbone, config, labels, kind=kind)
            model.initialise(seed=0)
            models[kind, method] = (model, model.encode(examples))
    return models


@pytest.fixture(scope="module")
def meta_models(tiny_bert_dir):
    """A model per method and kind on one tiny BERT, built on the CPU and then declared on the ``meta``
    device (no storage: any CPU tensor meeting a meta tensor fails, any created one is recorded); the
    kinds that read values on the host stay on a CPU copy of the backbone."""
    on_cpu = _models(load_backbone(str(tiny_bert_dir), device="cpu"))
    models = _models(load_backbone(str(tiny_bert_dir), device="cpu"))
    for model, _ in models.values():
        model.to("meta")  # moves the shared backbone too
    return {key: on_cpu[key] if key[0] in HOST_VALUES else value for key, value in models.items()}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_no_tensor_is_made_off_the_models_device(meta_models, kind, method):
    model, features = meta_models[kind, method]
    device = "cpu" if kind in HOST_VALUES else "meta"
    assert model.device.type == device and model.backbone.model.get_input_embeddings().weight.device.type == device
    batch = model.collate(features)
    assert {value.device.type for value in batch.values()} == {device}, "collate left tensors on the CPU"
    model.train()
    # Tagging selects words by mask (nonzero): on meta, assume every element is chosen.
    with OffDevice(device) as mode, torch.fx.experimental._config.patch(meta_nonzero_assume_all_nonzero=True):
        loss = model.loss(batch)
        loss.backward()
    assert not mode.calls, f"{kind}/{method} created tensors off the model's device: {mode.calls[:5]}"
    grads = [p.grad for p in model.trainable_parameters() if p.grad is not None]  # finetune: the unused pooler has none
    assert grads and all(g.device.type == device for g in grads)


def test_the_hygiene_check_can_fail():
    with OffDevice("meta") as mode:
        torch.zeros(2, device="meta") + torch.ones(2, device="meta")  # fine
        torch.arange(3)  # a factory call without device=: a CPU tensor
    assert mode.calls == ["arange without device=", "arange -> cpu (3,)"]


def test_device_options_are_checked_before_loading():
    with pytest.raises(PtuneError, match="device 'gpu' unknown: use auto, cpu, cuda, cuda:N or mps"):
        DeviceConfig(device="gpu")
    with pytest.raises(PtuneError, match="dtype 'fp8' unknown"):
        DeviceConfig(dtype="fp8")
    with pytest.raises(PtuneError, match="quantize '3bit' unknown"):
        DeviceConfig(quantize="3bit")
    with pytest.raises(PtuneError, match="training option 'precision' must be one of auto, fp32, bf16, fp16"):
        TrainConfig(precision="fp8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is missing")
def test_a_missing_cuda_device_is_one_line(tiny_bert_dir):
    with pytest.raises(PtuneError, match=r"--device cuda:1: no CUDA device here") as error:
        load_backbone(str(tiny_bert_dir), device="cuda:1")
    assert "\n" not in str(error.value)


def test_auto_picks_the_cpu_here_and_says_so(tiny_bert_dir, caplog):
    from ptune.model.placement import resolve_device

    with caplog.at_level("INFO", logger="ptune.model.placement"):
        device = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert device.type == expected
    assert f"device auto: using {device}" in caplog.text


def _task(kind: str = "classification"):
    from ptune.data.tasks import Task

    good = ["a good film", "great fun", "a fine cast", "warm and witty", "lovely", "a triumph", "good", "great"]
    bad = ["dull and long", "a bore", "flat", "tedious", "awful", "a mess", "bad", "weak"]
    train = [TextExample(t, "pos") for t in good] + [TextExample(t, "neg") for t in bad]
    return Task("toy", kind, ["neg", "pos"], train, [], [], "accuracy")


def test_bf16_backbone_trains_on_cpu_with_fp32_prompts(tiny_bert_dir):
    from ptune.training.loop import train

    backbone = load_backbone(str(tiny_bert_dir), device="cpu", dtype="bf16")
    assert backbone.model.get_input_embeddings().weight.dtype == torch.bfloat16
    model = PromptModel(backbone, MethodConfig(method="deep", length=4, max_length=32), ["neg", "pos"])
    result = train(model, _task(), TrainConfig(epochs=6, batch_size=8, lr=3e-2, progress=False, checkpoint_every=0))
    losses = [record["train_loss"] for record in result.history]
    assert losses[-1] < losses[0], losses
    assert {p.dtype for p in model.trainable_parameters()} == {torch.float32}
    assert {p.dtype for p in backbone.model.parameters()} == {torch.bfloat16}  # the frozen weights, untouched
    logits = model(model.collate(model.encode(_task().train[:2])))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def _gradients(model, batch) -> list[torch.Tensor]:
    torch.manual_seed(0)  # the same dropout masks (prefix, head) in both runs
    model.zero_grad(set_to_none=True)
    model.loss(batch).backward()
    return [p.grad.clone() for p in model.trainable_parameters()]


@pytest.mark.parametrize("method", ["deep", "prompt"])
def test_gradient_checkpointing_leaves_the_prompt_gradients_unchanged(tiny_llama, method):
    from ptune.model.checkpointing import checkpointed
    from ptune.model.depth_cache import layer_list

    model = PromptModel(tiny_llama, MethodConfig(method=method, length=4, max_length=32, init="random"), ["neg", "pos"])
    model.initialise(seed=0)
    model.train()
    batch = model.collate(model.encode(_task().train[:6]))
    plain = _gradients(model, batch)
    runs = []
    layers = layer_list(model.transformer, tiny_llama.num_layers)
    # The replay calls a layer's forward directly: its attention (called as a module) counts both runs.
    hooks = [layer.self_attn.register_forward_hook(lambda *_: runs.append(1)) for layer in layers]
    try:
        with checkpointed(model.transformer, tiny_llama.num_layers):
            recomputed = _gradients(model, batch)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(runs) == 2 * len(layers), "each layer runs again in the backward pass"
    for a, b in zip(plain, recomputed):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not any("forward" in vars(layer) for layer in layers), "the layers' own forward is back"


def test_training_with_gradient_checkpointing_matches_training_without(tiny_bert_dir):
    from ptune.training.loop import train

    backbone = load_backbone(str(tiny_bert_dir), device="cpu")
    states = []
    for flag in (False, True):
        model = PromptModel(backbone, MethodConfig(method="deep", length=4, max_length=32), ["neg", "pos"])
        train(model, _task(), TrainConfig(epochs=2, batch_size=8, progress=False, checkpoint_every=0,
                                          gradient_checkpointing=flag))
        states.append(model.trainable_state())
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device_map", ["auto", {"": "cpu"}])
def test_a_device_map_goes_through_the_same_path(tiny_llama_dir, tiny_llama, device_map):
    """Without GPUs ``auto`` and a dict both place every layer on the CPU through from_pretrained's
    device map; the prompted outputs equal a plainly loaded backbone's."""
    if device_map == "auto" and torch.cuda.is_available():
        pytest.skip("with GPUs, auto spreads the layers: test_device_map_over_gpus")
    mapped = load_backbone(str(tiny_llama_dir), device_map=device_map)
    assert {p.device.type for p in mapped.model.parameters()} == {"cpu"}
    outputs = []
    for backbone in (tiny_llama, mapped):
        model = PromptModel(backbone, MethodConfig(method="deep", length=4, max_length=32), ["neg", "pos"])
        model.initialise(seed=0)
        model.eval()
        outputs.append(model(model.collate(model.encode(_task().train[:4]))))
    torch.testing.assert_close(outputs[0], outputs[1])


def test_device_and_device_map_together_are_refused(tiny_llama_dir):
    with pytest.raises(PtuneError, match="--device-map auto places the layers itself; drop --device cpu"):
        load_backbone(str(tiny_llama_dir), device="cpu", device_map="auto")


@pytest.mark.cuda
@pytest.mark.multi_gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_device_map_over_gpus(tiny_llama_dir):
    """Layers spread over two GPUs: the prompt on the first layer's device, each prefix reaches its layer."""
    from ptune.training.loop import train

    backbone = load_backbone(str(tiny_llama_dir), device_map="balanced")
    assert len(set(backbone.model.hf_device_map.values())) >= 2
    model = PromptModel(backbone, MethodConfig(method="deep", length=4, max_length=32), ["neg", "pos"])
    assert model.device == backbone.model.get_input_embeddings().weight.device
    result = train(model, _task(), TrainConfig(epochs=2, batch_size=8, progress=False, checkpoint_every=0))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_training_on_cuda(tiny_bert_dir, dtype):
    from ptune.training.loop import train

    backbone = load_backbone(str(tiny_bert_dir), device="cuda", dtype=dtype)
    model = PromptModel(backbone, MethodConfig(method="deep", length=4, max_length=32), ["neg", "pos"])
    assert model.device.type == "cuda" and all(p.is_cuda for p in model.parameters())
    result = train(model, _task(), TrainConfig(epochs=6, batch_size=8, lr=3e-2, progress=False, checkpoint_every=0))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


BNB = pytest.mark.skipif(__import__("importlib").util.find_spec("bitsandbytes") is None,
                         reason="needs bitsandbytes (pip install 'ptune[quant]')")


@BNB
def test_a_4bit_backbone_trains_a_prompt_on_cpu(tiny_bert_dir):
    """bitsandbytes 0.50 has a CPU backend: the frozen linear layers load as 4-bit (NF4) and a prompt trains."""
    import bitsandbytes as bnb

    from ptune.training.loop import train

    backbone = load_backbone(str(tiny_bert_dir), device="cpu", quantize="4bit", dtype="bf16")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in backbone.model.modules())
    model = PromptModel(backbone, MethodConfig(method="deep", length=4, max_length=32), ["neg", "pos"])
    result = train(model, _task(), TrainConfig(epochs=6, batch_size=8, lr=3e-2, progress=False, checkpoint_every=0))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert {p.dtype for p in model.trainable_parameters()} == {torch.float32}
    with pytest.raises(PtuneError, match="a quantised backbone cannot; load it without --quantize"):
        PromptModel(backbone, MethodConfig(method="finetune", max_length=32), ["neg", "pos"])


def test_quantize_without_bitsandbytes_is_one_line(tiny_bert_dir, monkeypatch):
    """A missing package cannot be produced for real where it is installed: find_spec is made to miss it."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(PtuneError, match=r"--quantize 8bit needs bitsandbytes: pip install 'ptune\[quant\]'"):
        load_backbone(str(tiny_bert_dir), device="cpu", quantize="8bit")


@pytest.mark.cuda
@CUDA
@BNB
def test_a_4bit_backbone_on_cuda(tiny_llama_dir):
    backbone = load_backbone(str(tiny_llama_dir), device="cuda", quantize="4bit", dtype="bf16")
    model = PromptModel(backbone, MethodConfig(method="deep", length=4, max_length=32), ["neg", "pos"])
    assert model.device.type == "cuda"
    assert torch.isfinite(model(model.collate(model.encode(_task().train[:4])))).all()


def test_train_help_lists_the_device_options():
    from ptune.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    text = commands["train"].format_help()
    for flag in ("--device", "--dtype", "--quantize", "--device-map", "--gradient-checkpointing", "--precision"):
        assert flag in text, flag
    for name in ("evaluate", "predict", "probe", "probe-sweep", "generate", "inspect", "serve", "benchmark", "sweep"):
        assert "--device " in commands[name].format_help() or "--device\n" in commands[name].format_help(), name
    args = parser.parse_args(["train", "--task", "rotten_tomatoes", "--device", "cpu", "--dtype", "bf16"])
    from ptune.cli.options import device_from

    assert device_from(args) == {"device": "cpu", "dtype": "bf16", "quantize": None, "device_map": None}
    assert device_from(parser.parse_args(["train"]), {"dtype": "auto"})["dtype"] == "auto"


def test_a_bad_device_on_the_command_line_is_one_line(capsys):
    from ptune.cli import main

    assert main(["train", "--task", "rotten_tomatoes", "--device", "gpu0"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


# -- several GPUs and machines through Accelerate -------------------------------------------------------
ACCELERATE = {"ddp.yaml": "MULTI_GPU", "shard_backbone.yaml": "MULTI_GPU", "zero3.yaml": "MULTI_GPU"}
SHARDING = {"shard_backbone.yaml": ["--shard-backbone"],  # FSDP2 over the layers
            "zero3.yaml": ["--shard-backbone", "--shard-with", "zero3"]}  # DeepSpeed ZeRO-3 over them
EXAMPLES_DIR = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "accelerate"


@pytest.mark.parametrize("name", sorted(ACCELERATE))
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(EXAMPLES_DIR / name))
    assert str(config.distributed_type).rsplit(".", 1)[-1] == ACCELERATE[name]
    assert config.mixed_precision == "no", "ptune's --dtype/--precision decide the dtypes, not Accelerate"
    assert not config.use_cpu


@pytest.mark.cuda
@pytest.mark.multi_gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two or more CUDA devices (DDP and sharded runs)")
@pytest.mark.parametrize("name", sorted(ACCELERATE))
def test_two_gpus_train_through_each_config(name, tmp_path):
    sharded = SHARDING.get(name, [])
    if "zero3" in sharded:
        pytest.importorskip("deepspeed", reason="pip install 'ptune[deepspeed]'")
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(EXAMPLES_DIR / name),
         "--num_processes", "2", "-m", "ptune.cli", "-q", "train", "--task", "rotten_tomatoes", "--method", "deep",
         "--length", "4", "--epochs", "1", "--train-limit", "64", "--eval-limit", "16", "--batch-size", "8",
         "--dtype", "bf16", "--out", str(tmp_path / "run"), *sharded], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = __import__("json").loads((tmp_path / "run" / "results.json").read_text())
    assert summary["processes"] == 2 and len(set(summary["prompt_sha256_per_process"])) == 1
    assert bool(sharded) == ("backbone_sharded" in summary)


# -- benchmarks/gpu.sh ------------------------------------------------------------------------------------
ROOT = EXAMPLES_DIR.parents[1]


def test_gpu_script_parses_and_refuses_without_cuda():
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu.sh")]).returncode == 0
    if torch.cuda.is_available():
        pytest.skip("CUDA is here: the script would run")
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip() == ("benchmarks/gpu.sh: no CUDA device here (torch sees none); run it on a GPU "
                                   "machine, or pass --dry-run")


@pytest.mark.slow
def test_gpu_benchmark_runs_tiny_on_the_cpu(tmp_path):
    """--dry-run: the same code path on tiny shapes on the CPU; the JSON has every figure the GPU run reports."""
    import json

    out = tmp_path / "gpu.json"
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["dry_run"] and record["dtype"] == "bf16"
    (model,) = record["models"].values()
    for method in ("ptune deep", "peft prefix tuning"):
        assert {"median_step_s", "steps_per_s", "tokens_per_s", "peak_memory_mb"} <= set(model["methods"][method])
    assert model["methods"]["ptune deep"]["vs peft prefix tuning"] > 0
