"""Probe files: a trained probe's tensors in safetensors, its template and provenance in the JSON header.

Written atomically (``storage.atomic.atomic_write``); the prompt encoder is kept, so a probe can resume
training. Never pickle.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ptune.model.backbones import Backbone
from ptune.storage.atomic import atomic_write
from ptune.storage.prompt_files import check_backbone, tensors_digest
from ptune.errors import PtuneError
from ptune.analysis.probing.learned import ProbePrompt

FORMAT = "ptune-probe"
VERSION = 1
HEADER_KEY = "ptune"


def save_probe(path: str | Path, probe: ProbePrompt, backbone: Backbone, *, relation: str,
               metrics: dict | None = None, training: dict | None = None) -> dict:
    """Write ``probe`` to ``path`` (.safetensors); returns the JSON header written with it."""
    tensors = {name: t.detach().contiguous().cpu() for name, t in probe.state_dict().items()}
    header = {
        "format": FORMAT, "version": VERSION, "relation": relation,
        "template": probe.template.source, "encoder": probe.encoder,
        "backbone": backbone.fingerprint(), "tensors_sha256": tensors_digest(tensors),
        "trainable_params": sum(t.numel() for t in tensors.values()),
        "metrics": metrics or {}, "training": training or {},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(header)}))
    return header


def read_probe_header(path: str | Path) -> dict:
    """The validated JSON header of a probe file."""
    path = Path(path)
    if not path.is_file():
        raise PtuneError(f"{path}: no such probe file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        header = json.loads(metadata[HEADER_KEY])
    except (SafetensorError, OSError, ValueError, KeyError) as error:
        raise PtuneError(f"{path}: not a ptune probe file ({error}); was it written by `ptune probe --out`?") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise PtuneError(f"{path}: not a ptune probe file (format {header.get('format') if isinstance(header, dict) else None!r})")
    if not isinstance(header.get("version"), int) or header["version"] > VERSION:
        raise PtuneError(f"{path}: probe format version {header.get('version')!r} is not one this ptune reads; upgrade ptune")
    for key, kind in (("template", str), ("encoder", str), ("relation", str), ("backbone", dict)):
        if not isinstance(header.get(key), kind):
            raise PtuneError(f"{path}: probe header field {key!r} is missing or has the wrong type; re-train the probe")
    return header


def load_probe(path: str | Path, backbone: Backbone) -> ProbePrompt:
    """Rebuild the probe saved at ``path`` on ``backbone`` (refused if trained on other weights)."""
    path = Path(path)
    header = read_probe_header(path)
    check_backbone(path, header, backbone)
    embeddings = backbone.model.get_input_embeddings()
    probe = ProbePrompt(header["template"], backbone.tokenizer, embeddings, encoder=header["encoder"])
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise PtuneError(f"{path}: tensors cannot be read ({error}); re-train or restore the probe") from None
    if header.get("tensors_sha256") != tensors_digest(tensors):
        raise PtuneError(f"{path}: tensor data does not match its checksum; the file is damaged")
    expected = {name: t.shape for name, t in probe.state_dict().items()}
    if {name: t.shape for name, t in tensors.items()} != expected:
        raise PtuneError(f"{path}: tensors do not fit template {header['template']!r} with encoder "
                         f"{header['encoder']!r}; re-train the probe")
    with torch.no_grad():
        probe.load_state_dict(tensors)
    probe.eval()
    return probe
