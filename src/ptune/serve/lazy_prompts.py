"""Prompt files read for serving: the header alone at startup, the tensors on first use, without copying.

``index_file`` validates what the header says (format, backbone, a servable kind and method) and keeps
a small ``Entry``. ``Loader.load`` maps the file's tensors straight from disk (``mmap``, private pages:
the page cache is shared, nothing is copied on CPU) and binds them into a shallow copy of one
``PromptModel`` built per distinct header: a cold task costs a checksum and a few objects, not a
model construction.
"""

from __future__ import annotations

import copy
import json
import mmap
import os
import threading
from dataclasses import dataclass, field

import torch
from torch import nn

from ptune.config import MethodConfig
from ptune.errors import PtuneError
from ptune.model.backbones import Backbone
from ptune.model.prompt_model import PromptModel
from ptune.storage.prompt_files import check_backbone, header_of, tensors_digest
from ptune.tasks import KINDS

# safetensors dtype names -> torch dtypes (the ones a prompt file can hold)
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
# What a resident task costs beyond its tensors: the shallow module copies, their dicts and the mapping
# (measured: about 12 KB per deep prompt on CPython 3.11; benchmarks/serve.py checks the total by RSS).
OVERHEAD_BYTES = 16 * 1024
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


@dataclass(slots=True)
class Entry:
    """One indexed prompt file: where it is, which model shape it has, how many bytes it will hold."""

    name: str
    path: str
    mtime_ns: int
    shape: "Shape"
    data_bytes: int
    digest: str | None
    verified: bool = False  # its tensors matched the checksum once: a reload of the same file skips it
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one load at a time per task

    @property
    def cost(self) -> int:
        """Bytes a resident copy is charged against the budget."""
        return self.data_bytes + OVERHEAD_BYTES


@dataclass(frozen=True)
class Shape:
    """Everything a PromptModel is built from, shared by every file whose header says the same."""

    key: str
    method: dict
    kind: str
    labels: tuple[str, ...]
    pair: bool
    metric: str

    def describe(self) -> dict:
        return {"method": self.method["method"], "kind": self.kind, "labels": list(self.labels)}


def read_raw_header(path: str) -> tuple[dict, int, int]:
    """A safetensors file's validated ptune header, read from its bytes (no tensor is touched), with the
    file's modification time and the size of its tensor data; PtuneError when the layout does not add up."""
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            length = int.from_bytes(handle.read(8), "little")
            if not 2 <= length <= min(MAX_HEADER, stat.st_size - 8):
                raise ValueError(f"header length {length} does not fit a file of {stat.st_size} bytes")
            layout = json.loads(handle.read(length))
        metadata = layout.pop("__metadata__", None) or {}
        ends = [info["data_offsets"][1] for info in layout.values()]
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise PtuneError(f"{path}: not a readable safetensors prompt file ({error}); re-save or re-train it") from None
    data = stat.st_size - 8 - length
    if max(ends, default=0) != data:
        raise PtuneError(f"{path}: its tensors need {max(ends, default=0)} bytes of data but the file holds {data}; "
                         "the file is cut short or damaged — re-train or restore it")
    return header_of(path, metadata), stat.st_mtime_ns, data


class Indexer:
    """Reads headers into Entries; equal headers share one ``Shape`` (and later one prototype model)."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone
        self.shapes: dict[str, Shape] = {}

    def index_file(self, name: str, path: str) -> Entry:
        """An Entry for ``path``, or a PtuneError saying why it cannot be served."""
        header, mtime_ns, data = read_raw_header(path)
        check_backbone(path, header, self.backbone)
        task = header["task"]
        key = json.dumps([header["method"], task["kind"], task["labels"], task.get("pair", False), task["metric"]],
                         sort_keys=True)
        shape = self.shapes.get(key)
        if shape is None:
            config = MethodConfig.from_dict(header["method"], source=f"{path} header 'method'")
            if not KINDS[task["kind"]].mixable:  # e.g. a span head answers question/context pairs, not texts
                raise PtuneError(f"{path}: {task['kind']} prompts are not served yet; use `ptune predict` with "
                                 "this prompt file")
            if config.method == "finetune" or config.tune_backbone:
                raise PtuneError(f"{path}: a {config.method} prompt tunes its own backbone copy; the server shares "
                                 "one frozen backbone, so use `ptune predict` with this file")
            shape = self.shapes[key] = Shape(key, header["method"], task["kind"], tuple(task["labels"]),
                                             bool(task.get("pair", False)), task["metric"])
        return Entry(name, os.fspath(path), mtime_ns, shape, data, header.get("tensors_sha256"))


def map_tensors(path: str, mtime_ns: int | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as views of a private memory map of it (no copy is made);
    with ``mtime_ns``, refused when the file has changed since."""
    try:
        with open(path, "rb") as handle:
            if mtime_ns is not None and os.fstat(handle.fileno()).st_mtime_ns != mtime_ns:
                raise PtuneError(f"{path}: changed since it was indexed; GET /tasks re-reads the folder")
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        length = int.from_bytes(mapped[:8], "little")
        layout = json.loads(mapped[8 : 8 + length])
    except (OSError, ValueError) as error:
        raise PtuneError(f"{path}: tensors cannot be read ({error}); the file is damaged — re-train or restore it") from None
    base, out = 8 + length, {}
    for name, info in layout.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = DTYPES[info["dtype"]], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise PtuneError(f"{path}: tensor {name} has an unreadable entry; the file is damaged — re-train it") from None
        count = 1
        for size in shape:
            count *= size
        if end - start != count * dtype.itemsize or base + end > len(mapped) or start < 0:
            raise PtuneError(f"{path}: tensor {name} does not fit the file; the file is damaged — re-train or restore it")
        out[name] = (torch.frombuffer(mapped, dtype=dtype, count=count, offset=base + start).view(shape) if count
                     else torch.empty(shape, dtype=dtype))
    return out


def _bound(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> nn.Module:
    """A shallow copy of ``module`` whose parameters named in ``tensors`` are those tensors; submodules
    without any are shared with the original (the backbone's LM head under a verbalizer, say)."""
    clone = copy.copy(module)
    clone._parameters = {name: (nn.Parameter(tensors[prefix + name], requires_grad=False)
                                if prefix + name in tensors else param)
                         for name, param in module._parameters.items()}
    clone._modules = {name: (_bound(sub, tensors, f"{prefix}{name}.")
                             if sub is not None and any(key.startswith(f"{prefix}{name}.") for key in tensors) else sub)
                      for name, sub in module._modules.items()}
    if isinstance(clone, nn.RNNBase):  # an LSTM keeps a list of its weights beside its parameters
        clone._init_flat_weights()
    return clone


class Loader:
    """Builds served PromptModels: one prototype per Shape (its own weights released), then a bound copy
    per task whose parameters are the file's mapped tensors."""

    def __init__(self, backbone: Backbone, max_prototypes: int = 64):
        self.backbone = backbone
        self.max_prototypes = max_prototypes
        self._prototypes: dict[str, tuple[PromptModel, dict[str, tuple]]] = {}
        self._lock = threading.Lock()

    def prototype(self, shape: Shape) -> tuple[PromptModel, dict[str, tuple]]:
        """The prototype model of ``shape`` and its trainable tensors' shapes."""
        with self._lock:
            found = self._prototypes.get(shape.key)
            if found is not None:
                return found
            config = MethodConfig.from_dict(shape.method, source="prompt file header 'method'")
            model = PromptModel(self.backbone, config, list(shape.labels), kind=shape.kind, pair=shape.pair,
                                metric=shape.metric)
            state = model.trainable_state()
            shapes = {name: (tuple(t.shape), t.dtype) for name, t in state.items()}
            with torch.no_grad():  # never run: every task binds its own tensors in their place
                for name, param in model.named_parameters():
                    if name in state:
                        param.data = param.data.new_empty(0)
            model.eval()
            if len(self._prototypes) >= self.max_prototypes:
                self._prototypes.pop(next(iter(self._prototypes)))
            self._prototypes[shape.key] = (model, shapes)
            return model, shapes

    def load(self, entry: Entry) -> PromptModel:
        """The served model of ``entry``: checked against the file's checksum and the method's tensors."""
        path = entry.path
        prototype, shapes = self.prototype(entry.shape)
        tensors = map_tensors(path, entry.mtime_ns)
        if entry.digest is not None and not entry.verified and entry.digest != tensors_digest(tensors):
            raise PtuneError(f"{path}: tensor data does not match its checksum; the file is damaged — re-train or restore it")
        if set(tensors) != set(shapes):
            missing, extra = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
            raise PtuneError(f"{path}: tensors do not match the method (missing {missing[:3]}, unexpected {extra[:3]}); "
                             "re-train")
        for name, tensor in tensors.items():
            if (tuple(tensor.shape), tensor.dtype) != shapes[name]:
                raise PtuneError(f"{path}: tensor {name} has shape {tuple(tensor.shape)} {tensor.dtype}, expected "
                                 f"{shapes[name][0]} {shapes[name][1]}")
        device = prototype.device
        if device.type != "cpu":  # a copy is unavoidable off the CPU
            tensors = {name: t.to(device) for name, t in tensors.items()}
        model = _bound(prototype, tensors, "")
        entry.verified = True
        model.initialised = True
        return model
