"""Hugging Face PEFT adapter folders: export a ptune prompt to one, import one as a ptune prompt.

PEFT has prompt tuning, P-tuning (it keeps only the encoder's output) and prefix tuning, always at
every layer, with prompts before the start token and prefix positions shifted; ptune matches that
with ``peft_layout``. Reading and writing need no PEFT install; only safetensors and JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ptune.model.backbones import Backbone
from ptune.storage.atomic import atomic_write
from ptune.storage.prompt_files import load_prompt, save_prompt
from ptune.config import MethodConfig
from ptune.errors import PtuneError
from ptune.model.prompt_model import PromptModel

PEFT_TYPES = {"prompt": "PROMPT_TUNING", "ptuning": "P_TUNING", "deep": "PREFIX_TUNING"}
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HEAD_FILE = "ptune_head.safetensors"  # ptune's head and task, for the way back and for PEFT users


def export_peft(prompt_path: str | Path, out_dir: str | Path, backbone: Backbone) -> Path:
    """Write the prompt at ``prompt_path`` as a PEFT adapter folder (plus ptune's head) in ``out_dir``."""
    prompt_path, out_dir = Path(prompt_path), Path(out_dir)
    model = load_prompt(prompt_path, backbone)
    config = model.config
    if config.method not in PEFT_TYPES:
        raise PtuneError(f"{prompt_path}: PEFT has no {config.method} adapter; export prompt, ptuning or deep prompts")
    if not config.peft_layout:
        raise PtuneError(f"{prompt_path}: trained without --peft-layout, so PEFT (which puts prompts before [CLS] and "
                         "shifts prefix positions) would predict differently; retrain with --peft-layout to export")
    if config.method == "deep":
        if model.deep_prompt.layers != list(range(backbone.num_layers)):
            raise PtuneError(f"{prompt_path}: PEFT prefix tuning prompts every layer; this prompt has layers "
                             f"{config.layers!r} — retrain with --layers all to export")
        if backbone.kv_heads != backbone.config.num_attention_heads:
            raise PtuneError(f"{prompt_path}: grouped-query attention prefixes are not exported to PEFT yet")
    with torch.no_grad():
        weights = model.deep_prompt.flat() if config.method == "deep" else model.input_prompt()
    length = weights.shape[0]
    adapter = {
        "peft_type": PEFT_TYPES[config.method],
        "task_type": "FEATURE_EXTRACTION",
        "base_model_name_or_path": _base_path(backbone),
        "inference_mode": True,
        "num_virtual_tokens": length,
        "token_dim": backbone.hidden_size,
        "num_transformer_submodules": 1,
        "num_attention_heads": backbone.config.num_attention_heads,
        "num_layers": backbone.num_layers,
    }
    if config.method == "ptuning":
        adapter |= {"encoder_reparameterization_type": "MLP", "encoder_hidden_size": backbone.hidden_size}
    if config.method == "deep":
        adapter |= {"prefix_projection": False, "encoder_hidden_size": backbone.hidden_size}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / ADAPTER_WEIGHTS,
                 lambda tmp: save_file({"prompt_embeddings": weights.detach().contiguous()}, str(tmp)))
    atomic_write(out_dir / ADAPTER_CONFIG, lambda tmp: tmp.write_text(json.dumps(adapter, indent=2) + "\n"))
    head = {f"head.{k}": v.detach().contiguous() for k, v in model.head.state_dict().items()}
    task = model.header["task"] | {"pool_position": length if config.has_input_prompt else 0}
    atomic_write(out_dir / HEAD_FILE, lambda tmp: save_file(head, str(tmp), metadata={"task": json.dumps(task)}))
    return out_dir


def import_peft(adapter_dir: str | Path, backbone: Backbone, *, out: str | Path, labels: list[str] | None = None,
                tagging: bool = False, task_name: str | None = None, seed: int = 0) -> PromptModel:
    """Read a PEFT prompt adapter folder into a ptune prompt file at ``out``.

    The head comes from ``ptune_head.safetensors`` (a ptune export) when present; otherwise a new
    head for ``labels`` is initialised (train it with ``ptune train --init-from``).
    """
    folder = Path(adapter_dir)
    adapter, weights, (head_state, task) = read_adapter(folder)
    peft_type = adapter["peft_type"]
    length = adapter["num_virtual_tokens"]
    expected_width = backbone.hidden_size if peft_type != "PREFIX_TUNING" else backbone.num_layers * 2 * backbone.hidden_size
    if tuple(weights.shape) != (length, expected_width):
        raise PtuneError(f"{folder / ADAPTER_WEIGHTS}: prompt_embeddings has shape {tuple(weights.shape)}, expected "
                         f"({length}, {expected_width}) for {peft_type} on {backbone.name}; load the adapter's own base "
                         "model with --backbone")
    method = {"PROMPT_TUNING": "prompt", "P_TUNING": "ptuning", "PREFIX_TUNING": "deep"}[peft_type]
    config = MethodConfig(method=method, length=length, peft_layout=True, encoder="none",
                          template=f"[P]*{length} {{text}}" if method != "deep" else None)
    if task is not None:
        labels, kind, task_name = task["labels"], task["kind"], task["name"]
    elif not labels:
        raise PtuneError(f"{folder}: a PEFT adapter holds no task head; give the task's labels (--labels A,B,...)")
    else:
        kind = "tagging" if tagging else "classification"
    model = PromptModel(backbone, config, labels, kind=kind)
    model.initialise(seed=seed)
    with torch.no_grad():
        if method == "deep":
            model.deep_prompt.prefix.copy_(weights)
        else:
            model.input_prompt.embedding.copy_(weights)
        if head_state:
            model.head.load_state_dict(head_state)
    name = task_name or folder.name
    save_prompt(out, model, task_name=name, metric=model.metric,
                metrics={"imported_from_peft": str(folder), "head": "imported" if head_state else "untrained"})
    return model.eval()


def read_adapter(adapter_dir: str | Path) -> tuple[dict, torch.Tensor, tuple[dict[str, torch.Tensor], dict | None]]:
    """A PEFT adapter folder, checked: its config, its prompt weights [P, W] and ptune's head (state, task)."""
    folder = Path(adapter_dir)
    if not folder.is_dir():
        raise PtuneError(f"{folder}: {'is a file, not' if folder.exists() else 'no such folder; give'} a PEFT adapter "
                         "folder (adapter_config.json, adapter_model.safetensors)")
    return _read_adapter_config(folder), _read_adapter_weights(folder), _read_head(folder)


def _read_adapter_config(folder: Path) -> dict:
    path = folder / ADAPTER_CONFIG
    if not path.is_file():
        raise PtuneError(f"{folder}: no {ADAPTER_CONFIG}; give a folder written by PEFT's save_pretrained")
    try:
        adapter = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PtuneError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(adapter, dict):
        raise PtuneError(f"{path}: expected a JSON object")
    peft_type = adapter.get("peft_type")
    if peft_type not in PEFT_TYPES.values():
        raise PtuneError(f"{path}: peft_type {peft_type!r} is not a prompt adapter; ptune imports "
                         f"{', '.join(PEFT_TYPES.values())}")
    if not isinstance(adapter.get("num_virtual_tokens"), int) or adapter["num_virtual_tokens"] < 1:
        raise PtuneError(f"{path}: num_virtual_tokens must be a positive whole number")
    if adapter.get("num_transformer_submodules", 1) != 1:
        raise PtuneError(f"{path}: an encoder-decoder adapter ({adapter['num_transformer_submodules']} submodules); "
                         "ptune imports adapters of encoder-only or decoder-only models")
    return adapter


def _read_adapter_weights(folder: Path) -> torch.Tensor:
    path = folder / ADAPTER_WEIGHTS
    if not path.is_file():
        if (folder / "adapter_model.bin").is_file():
            raise PtuneError(f"{folder}: only adapter_model.bin (a pickle), which ptune never loads; re-save it with "
                             "PEFT's save_pretrained(..., safe_serialization=True)")
        raise PtuneError(f"{folder}: no {ADAPTER_WEIGHTS}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            if "prompt_embeddings" not in handle.keys():
                raise PtuneError(f"{path}: no prompt_embeddings tensor; is this a prompt-learning adapter?")
            return handle.get_tensor("prompt_embeddings").float()
    except (SafetensorError, OSError, ValueError) as error:
        raise PtuneError(f"{path}: not a readable safetensors file ({error})") from None


def _read_head(folder: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    path = folder / HEAD_FILE
    if not path.is_file():
        return {}, None
    try:
        with safe_open(str(path), framework="pt") as handle:
            task = json.loads((handle.metadata() or {}).get("task", "null"))
            state = {key.removeprefix("head."): handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise PtuneError(f"{path}: not a readable ptune head file ({error})") from None
    if not isinstance(task, dict) or not isinstance(task.get("labels"), list) or task.get("kind") not in (
            "classification", "tagging", "regression"):
        raise PtuneError(f"{path}: head file without its task description; re-export it with ptune")
    return state, task


def _base_path(backbone: Backbone) -> str:
    from ptune.model.backbones import resolve

    return resolve(backbone.name) if backbone.name == "minilm" else backbone.name
