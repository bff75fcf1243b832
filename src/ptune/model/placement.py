"""Where tensors live and in what dtype: the device a name means (``auto``: CUDA, then MPS, then CPU),
the frozen backbone's loading options (dtype, 4/8-bit quantisation, device map), moving a batch to
the model, and the autocast and gradient scaler a training step runs under."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from typing import Iterator

import torch
from torch import nn

from ptune.config import DeviceConfig
from ptune.errors import PtuneError

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """The device ``name`` means; ``auto`` picks CUDA, then MPS, then CPU and logs which. A device this
    machine lacks is refused in one line."""
    if name == "auto":
        if torch.cuda.is_available():  # under `accelerate launch` each process takes its LOCAL_RANK's GPU
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
        elif _mps_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
        log.info("device auto: using %s", device)
        return device
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PtuneError(f"--device {name}: no CUDA device here (torch {torch.__version__} sees none); "
                             "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PtuneError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if device.type == "mps" and not _mps_available():
        raise PtuneError(f"--device {name}: no MPS (Apple GPU) device here; use --device cpu or auto")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def load_options(config: DeviceConfig) -> tuple[dict, torch.device | None]:
    """``from_pretrained`` keyword arguments for ``config`` (dtype, quantization_config, device_map) and the
    device to move the loaded model to (None when a device map or the quantiser places it)."""
    options: dict = {"dtype": "auto" if config.dtype == "auto" else DTYPES[config.dtype]}
    if config.device_map is not None:
        if config.device != "auto":
            raise PtuneError(f"--device-map {config.device_map} places the layers itself; "
                             f"drop --device {config.device}")
        options["device_map"] = config.device_map
        target = None
    else:
        target = resolve_device(config.device)
    if config.quantize:
        options["quantization_config"] = quantization_config(config.quantize, target, config.dtype)
        if target is not None:
            options["device_map"] = {"": target}
            target = None
    return options, target


def place(model: nn.Module, target: torch.device | None) -> None:
    """Move a loaded backbone to ``target`` (None: a device map or the quantiser placed it). On the CPU,
    bitsandbytes repacks a 4-bit layer for a faster kernel at its first forward without gradients, after
    which no gradient flows back through it to the prompt (an in-place bias add): that repacking is off."""
    if target is not None:
        model.to(target)
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False


def quantization_config(quantize: str, device: torch.device | None, dtype: str):
    """A bitsandbytes config for a frozen ``4bit`` (NF4, double quantisation) or ``8bit`` backbone;
    refused in one line without bitsandbytes or on a device its installed build cannot run."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise PtuneError(f"--quantize {quantize} needs bitsandbytes: pip install 'ptune[quant]'")
    if device is not None and device.type != "cuda" and not bnb_runs_on(device):
        raise PtuneError(f"--quantize {quantize}: the installed bitsandbytes cannot run on {device.type} here "
                         "(it needs a CUDA device); drop --quantize or use --device cuda")
    from transformers import BitsAndBytesConfig

    compute = DTYPES.get(dtype, torch.bfloat16) if dtype != "fp32" else torch.float32
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def bnb_runs_on(device: torch.device) -> bool:
    """Whether bitsandbytes quantises and multiplies on ``device`` here (its CPU backend: a real 4-bit
    round trip on a small matrix)."""
    try:
        import bitsandbytes.functional as bnb_functional

        weight = torch.randn(64, 64)
        packed, state = bnb_functional.quantize_4bit(weight.to(device), quant_type="nf4")
        restored = bnb_functional.dequantize_4bit(packed, state)
        return bool((restored.float().cpu() - weight).abs().mean() < 0.2)
    except Exception as error:  # noqa: BLE001 - any failure of the native backend means "cannot run here"
        log.info("bitsandbytes cannot run on %s: %s", device, str(error).splitlines()[0] if str(error) else error)
        return False


def input_device(model: nn.Module) -> torch.device:
    """The device of a model's input embeddings: where batches and input prompts go (with a device map,
    the first layer's device)."""
    return model.get_input_embeddings().weight.device


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of ``batch`` on ``device`` (one copy each; nothing is copied when already there)."""
    blocking = device.type != "cuda"
    return {key: value.to(device, non_blocking=not blocking) if torch.is_tensor(value) else value
            for key, value in batch.items()}


def floating_dtype(model: nn.Module) -> torch.dtype:
    """The dtype the backbone computes in: its input embeddings' (a quantised model keeps them unquantised)."""
    return model.get_input_embeddings().weight.dtype


def compute_dtype(precision: str, backbone_dtype: torch.dtype) -> torch.dtype | None:
    """The autocast dtype of a training step (None: none). ``auto`` follows the backbone's storage dtype;
    ``fp32`` runs the trainable parameters in fp32 while a half-precision backbone computes in its own
    dtype (``run_backbone`` casts at the borders)."""
    if precision == "auto":
        return backbone_dtype if backbone_dtype in (torch.bfloat16, torch.float16) else None
    return AUTOCAST.get(precision)


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device``'s type (a no-op for None): trainable fp32 parameters meet the
    half-precision backbone inside it."""
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (its small range underflows gradients); None otherwise."""
    if dtype != torch.float16:
        return None
    return torch.amp.GradScaler(device.type)
