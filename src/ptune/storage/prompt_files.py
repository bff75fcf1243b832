"""Prompt files: one safetensors file of tensors with ptune's JSON description in its header.

Written atomically (temporary file, fsync, rename): a crash never leaves a half-written file in
place of a good one. Never pickle.
"""

from __future__ import annotations

import hashlib
import logging
import json
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ptune.model.backbones import Backbone, load_backbone
from ptune.config import MethodConfig
from ptune.errors import PtuneError
from ptune.storage.atomic import atomic_write
from ptune.storage.headers import FORMAT, HEADER_KEY, VERSION, header_of
from ptune.storage.locations import locate_prompt
from ptune.model.prompt_model import PromptModel

log = logging.getLogger(__name__)

# Files without it were written when word spacing followed "is this a decoder" (see _old_spacing).
SPACING = "tokenizer"


def save_prompt(path: str | Path, model: PromptModel, *, task_name: str, metric: str,
                metrics: dict | None = None, source: dict | None = None) -> dict:
    """Write ``model``'s trainable tensors and description to ``path``; returns the header. ``source`` is
    where the user's data came from (`Task.source`: columns, dataset), kept so evaluate can read more alike."""
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.trainable_state().items()}
    header = {
        "tensors_sha256": tensors_digest(tensors),
        "format": FORMAT,
        "version": VERSION,
        "method": model.config.to_dict(),
        "task": {"name": task_name, "kind": model.kind.name,
                 "labels": model.labels, "metric": metric, "pair": model.template.has_slot("text_pair")}
                | ({"source": source} if source else {}),
        "backbone": model.backbone.fingerprint(),
        "trainable_params": model.num_trainable(),
        "backbone_params": model.backbone.num_parameters(),
        "metrics": metrics or {},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spacing": SPACING,
    }
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(header)}))
    return header


def read_header(path: str | Path) -> dict:
    """The JSON description of a prompt file, validated; ``path`` may also name a folder holding
    ``prompt.safetensors`` or a hub repo ``user/name`` (``storage.locations``)."""
    path = locate_prompt(path)
    if not path.is_file():
        raise PtuneError(f"{path}: no such prompt file; check the path")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise PtuneError(f"{path}: not a readable safetensors prompt file ({error}); re-save or re-train it") from error
    return header_of(path, metadata)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of the tensors' names, shapes and bytes: detects corruption inside the data section."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        if tensor.numel():
            digest.update(tensor.view(torch.uint8).reshape(-1).numpy())  # the bytes in place, not a copy
    return digest.hexdigest()[:32]


def check_backbone(path: Path, header: dict, backbone: Backbone) -> None:
    """Refuse a prompt trained on other weights, naming both backbones."""
    expected, actual = header["backbone"], backbone.fingerprint()
    keys = ("model_type", "num_layers", "hidden_size", "kv_heads", "head_dim", "vocab_size", "embedding_sha256")
    if any(expected.get(k) != actual.get(k) for k in keys):
        raise PtuneError(
            f"{path}: trained for backbone {expected.get('name')!r} ({expected.get('model_type')}, "
            f"{expected.get('num_layers')} layers, hidden {expected.get('hidden_size')}) but the loaded backbone is "
            f"{actual['name']!r} ({actual['model_type']}, {actual['num_layers']} layers, hidden {actual['hidden_size']}); "
            f"load it with --backbone {expected.get('name')}"
        )


def recorded_backbone(path: str | Path, header: dict, *, trust_remote_code: bool = False, **device) -> Backbone:
    """The backbone the prompt file at ``path`` (its ``header``) was trained on, by the name recorded: an
    embedded name, a hub id or an absolute folder. A folder that has moved is reported with what to do.
    ``device``: ``load_backbone``'s device, dtype, quantize and device_map."""
    name = header["backbone"]["name"]
    try:
        return load_backbone(name, trust_remote_code=trust_remote_code, **device)
    except PtuneError as error:
        raise PtuneError(f"{path}: its backbone cannot be loaded ({error}); give the backbone it was trained on "
                         "(--backbone FOLDER, e.g. a moved copy; it is checked by its weights)") from None


def load_prompt(path: str | Path, backbone: Backbone | None = None) -> PromptModel:
    """Rebuild the PromptModel saved at ``path`` on ``backbone`` (loaded from the header if None). ``path``: a
    prompt file, a folder holding ``prompt.safetensors`` (a run folder, a ``ptune save-pretrained`` folder) or a
    hub repo id ``user/name`` (downloaded once into the hub cache)."""
    path = locate_prompt(path)
    header = read_header(path)
    if backbone is None:
        backbone = recorded_backbone(path, header)
    check_backbone(path, header, backbone)
    config = MethodConfig.from_dict(header["method"], source=f"{path} header 'method'")
    task = header["task"]
    model = PromptModel(backbone, config, task["labels"], kind=task["kind"], pair=task.get("pair", False),
                        metric=task["metric"])
    tensors = {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise PtuneError(f"{path}: tensors cannot be read ({error}); the file is damaged — re-train or restore it") from None
    if "tensors_sha256" in header and header["tensors_sha256"] != tensors_digest(tensors):
        raise PtuneError(f"{path}: tensor data does not match its checksum; the file is damaged — re-train or restore it")
    expected = set(model.trainable_state())
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise PtuneError(f"{path}: tensors do not match the method (missing {missing[:3]}, unexpected {extra[:3]}); re-train")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, tensor in tensors.items():
            if params[name].shape != tensor.shape:
                raise PtuneError(f"{path}: tensor {name} has shape {tuple(tensor.shape)}, expected {tuple(params[name].shape)}")
            params[name].copy_(tensor)
    model.header = header
    if header.get("spacing") != SPACING and (change := _old_spacing(model)):
        log.warning("%s: written by an older ptune that %s; this version tokenises as the model reads running "
                    "text, so predictions may differ from when it was trained — retrain it for the corrected "
                    "input", path, change)
    model.initialised = True
    model.eval()
    return model


def _old_spacing(model: PromptModel) -> str | None:
    """How the word spacing of files written before tokenizer-driven spacing differs for ``model``
    (None when it does not): pre-split words were glued without spaces, and template, pair and
    label words got a leading space exactly when the model was a decoder."""
    separator = model.encoder.spacing.separator
    if model.kind.word_level and separator == " ":
        return "glued pre-split words together without their spaces for this tokenizer"
    old = " " if model.backbone.is_decoder else ""
    uses_words = (any(part.kind == "words" for part in model.template.parts) or model.config.head == "verbalizer"
                  or model.template.has_slot("text_pair"))
    if uses_words and old != separator:
        return f"spaced template, pair and label words as {'a decoder' if old else 'an encoder'} instead of as this tokenizer does"
    return None
