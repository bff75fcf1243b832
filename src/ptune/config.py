"""What a user chooses: the method and the training options, validated with messages that say what to
change. No torch here, so the CLI can build its options (and --help) without loading a model."""

from __future__ import annotations

import argparse
import importlib.util
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Collection, Literal, Sequence

from ptune.bounds import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, SEED, Bound, check_bounds, check_types
from ptune.errors import PtuneError

METHODS = ("prompt", "ptuning", "deep", "finetune")
INITS = ("random", "vocab", "labels")
ENCODERS = ("lstm", "mlp", "none")
HEADS = ("linear", "verbalizer")
POOLS = ("first", "pooler")
PREFIX_DROPOUTS = ("batch", "example")
PREFIX_SITES = ("encoder", "decoder", "cross")  # model/injection.py's SITES
SCHEDULERS = ("linear", "cosine", "constant_with_warmup", "constant")
DTYPES = ("auto", "fp32", "bf16", "fp16")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SHARD_ENGINES = ("fsdp", "zero3")  # --shard-with: what shards the frozen backbone's layers
QUANTIZE = ("4bit", "8bit")
# --report-to: Accelerate's tracker name -> the package it imports (also the name pip installs).
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def device_name(text: str) -> str:
    """argparse ``type`` of --device: ``text`` if it names a device kind ptune runs on."""
    if not DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: give auto, cpu, cuda, cuda:N or mps")
    return text

# Prompt methods need far higher learning rates than fine-tuning (Lester: 0.3 with Adafactor;
# P-tuning v2: 5e-3..3e-2 with AdamW). Measured on minilm in docs/RESULTS.md.
DEFAULT_LR = {"prompt": 3e-2, "ptuning": 1e-2, "deep": 3e-2, "finetune": 1e-4}
# The reparameterisation MLP diverges at the bare prefix's rate (dev F1 0.0 on conll2003 at 3e-2).
DEFAULT_LR_REPARAM = 5e-3
DEFAULT_LENGTH = {"prompt": 20, "ptuning": 8, "deep": 16, "finetune": 0}
DEFAULT_EPOCHS = {"prompt": 10, "ptuning": 10, "deep": 10, "finetune": 3}
# Defaults that depend on the task's kind, over the ones above. Deep prompts on tagging tasks: a longer prefix at
# a higher rate, chosen by the conll2003 study (benchmarks/results/sweeps/conll2003_deep: the five best of 30
# trials on dev all had length 64, at lr 0.04-0.05; length 16 reached 0.796 at best) and confirmed at the full
# budget over 3 seeds (core.json, conll2003 deep, variant `sweep`, against length 16 / lr 3e-2). P-tuning v2
# reports the same: sequence labelling wants prompts near 100, classification fewer than 20. With --reparam the
# rate stays DEFAULT_LR_REPARAM (the study's reparameterised trials diverged from 4e-3 up).
KIND_DEFAULTS = {("deep", "tagging"): {"length": 64, "lr": 5e-2}}


LAYERS = re.compile(r"^(all|(top|bottom):\d+|\d+(,\d+)*)$")


def parse_verbalizer(text: str) -> dict[str, list[str]]:
    """'negative=bad,terrible;positive=good' -> {"negative": ["bad", "terrible"], "positive": ["good"]}."""
    out: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        label, sep, words = entry.partition("=")
        label = label.strip()
        names = [w.strip() for w in words.split(",") if w.strip()]
        if not sep or not label or not names:
            raise PtuneError(f"verbalizer entry {entry!r} must read 'label=word[,word...]', "
                             "e.g. 'negative=bad,terrible;positive=good,great'")
        if label in out:
            raise PtuneError(f"verbalizer gives words for {label!r} twice; join them: '{label}=a,b'")
        for word in names:
            if word in seen and seen[word] != label:
                raise PtuneError(f"verbalizer word {word!r} belongs to both {seen[word]!r} and {label!r}; give it to one")
            seen[word] = label
        out[label] = names
    if not out:
        raise PtuneError("verbalizer is empty: give 'label=word[,word...]' per label, separated by ';'")
    return out


@dataclass
class MethodConfig:
    method: Literal["prompt", "ptuning", "deep", "finetune"] = field(
        default="deep", metadata={"help": "prompt (Lester), ptuning (Liu), deep (P-tuning v2) or finetune", "choices": METHODS})
    length: int | None = field(default=None, metadata={"bound": COUNT,
        "help": "number of prompt vectors (prompt, deep); ptuning takes it from the template (default: "
                + ", ".join(f"{m} {DEFAULT_LENGTH[m]}" for m in ("prompt", "ptuning", "deep"))
                + "".join(f"; {m} on {kind} tasks {v['length']}" for (m, kind), v in KIND_DEFAULTS.items()) + ")"})
    init: Literal["random", "vocab", "labels"] = field(
        default="vocab", metadata={"help": "prompt init: random U(-0.5,0.5), vocab (sampled frequent tokens), labels (label-word embeddings)", "choices": INITS})
    template: str | None = field(default=None, metadata={
        "help": "ptuning template, e.g. '[P]*3 {text} [P] It was [P]*2 {label}' (default: the prompt before the text; "
                "ptuning: half before, half after)"})
    encoder: Literal["lstm", "mlp", "none"] = field(default="lstm", metadata={"help": "ptuning prompt encoder", "choices": ENCODERS})
    tune_backbone: bool = field(default=False, metadata={"help": "ptuning: also train the backbone"})
    layers: str = field(default="all", metadata={"help": "deep: all, top:K, bottom:K or 0,2,5"})
    prefix_sites: str = field(default="encoder,decoder,cross", metadata={
        "help": "deep, encoder-decoders (T5, BART): where prefixes enter each selected layer, a comma list of "
                "encoder (self-attention), decoder (self-attention) and cross (the decoder's attention over the "
                "encoder)"})
    reparam: bool = field(default=False, metadata={"help": "deep: MLP reparameterisation of the prefixes"})
    reparam_hidden: int = field(default=512, metadata={
        "bound": COUNT, "help": "deep: hidden width of the reparameterisation MLP"})
    head: Literal["linear", "verbalizer"] = field(default="linear", metadata={
        "help": "linear (a new classifier on the pooled token) or verbalizer (the frozen LM head's logits for label words "
                "at the {label} slot: [MASK] for masked LMs, next token for causal LMs)", "choices": HEADS})
    verbalizer: str | None = field(default=None, metadata={
        "help": "label words for --head verbalizer, e.g. 'negative=bad,terrible;positive=good,great' (default: each "
                "label's own name)"})
    max_length: int = field(default=128, metadata={
        "bound": COUNT, "help": "maximum tokens per example, prompts included (at most the backbone's positions)"})
    peft_layout: bool = field(default=False, metadata={
        "help": "lay prompts out as Hugging Face PEFT does (input prompts before [CLS]; deep-prompt positions "
                "shifted by the prefix length), so `ptune export --peft` gives identical predictions"})
    # Choices where ptune's defaults differ from the papers' reference code; each default was decided by a
    # measured comparison (docs/RESULTS.md, "Deviations from the reference code").
    # Encoders: N(0, 1) as in P-tuning v2's and PEFT's code (nn.Embedding's default): +2.1 dev F1 on conll2003
    # over ptune's earlier N(0, 0.02), a tie on rotten_tomatoes (3 seeds each, minilm). Decoders and
    # encoder-decoders: N(0, 0.02); N(0, 1) left smollm2's deep verbalizer at chance (benchmarks/lm.py).
    prefix_std: float | None = field(default=None, metadata={"bound": POSITIVE,
        "help": "deep: standard deviation of the prefixes' normal init (default: 1.0 on encoder-only backbones, "
                "nn.Embedding's default as in P-tuning v2's and PEFT's code; 0.02 on decoders and encoder-decoders, "
                "where 1.0 drowns the model's own keys)"})
    prefix_dropout: Literal["batch", "example"] = field(default="batch", metadata={
        "help": "deep: one dropout mask on the prefix per batch, or one per example as P-tuning v2's code draws it",
        "choices": PREFIX_DROPOUTS})
    backbone_dropout: bool = field(default=False, metadata={
        "help": "train with the frozen backbone's own dropout on (P-tuning v2's code and the Trainer do); off runs "
                "it as at inference"})
    pool: Literal["first", "pooler"] = field(default="first", metadata={
        "help": "classification and regression: the linear head reads the pooled token's hidden state (first), or "
                "that state through the backbone's own pooler (dense + tanh, as BERT-style classifiers and P-tuning "
                "v2's code do)", "choices": POOLS})

    def __post_init__(self) -> None:
        check_types(self, "method option")
        if self.method not in METHODS:
            raise PtuneError(f"method {self.method!r} unknown: use one of {', '.join(METHODS)}")
        if self.init not in INITS:
            raise PtuneError(f"init {self.init!r} unknown: use one of {', '.join(INITS)}")
        if self.encoder not in ENCODERS:
            raise PtuneError(f"encoder {self.encoder!r} unknown: use one of {', '.join(ENCODERS)}")
        check_bounds(self, "method option", skip=("length",) if self.method == "finetune" else ())  # no prompt
        if self.length is None:
            self.length = DEFAULT_LENGTH[self.method]
        if not LAYERS.match(self.layers):
            raise PtuneError(f"method option 'layers' is {self.layers!r}: use all, top:K, bottom:K or a comma list "
                             "of layer numbers like 0,2,5")
        if self.layers.startswith(("top:", "bottom:")) and int(self.layers.partition(":")[2]) < 1:
            raise PtuneError(f"method option 'layers' is {self.layers!r}: K counts layers, give 1 or more")
        sites = [site.strip() for site in self.prefix_sites.split(",")]
        if not sites or any(site not in PREFIX_SITES for site in sites) or len(set(sites)) != len(sites):
            raise PtuneError(f"method option 'prefix_sites' is {self.prefix_sites!r}: give distinct sites among "
                             f"{', '.join(PREFIX_SITES)}, comma-separated, e.g. encoder,decoder,cross")
        if self.template is not None and self.method not in ("prompt", "ptuning") and "[P]" in self.template:
            raise PtuneError(f"[P] tokens in a template only apply to prompt/ptuning, not {self.method}; drop them "
                             "(a deep prompt may still use a template of words and slots, e.g. '{text} It was {label}')")
        if self.peft_layout and self.method == "finetune":
            raise PtuneError("peft_layout applies to prompt, ptuning and deep, not finetune")
        if self.head not in HEADS:
            raise PtuneError(f"head {self.head!r} unknown: use one of {', '.join(HEADS)}")
        if self.verbalizer is not None:
            if self.head != "verbalizer":
                raise PtuneError("--verbalizer gives label words for --head verbalizer; add --head verbalizer or drop it")
            parse_verbalizer(self.verbalizer)
        if self.prefix_dropout not in PREFIX_DROPOUTS:
            raise PtuneError(f"prefix_dropout {self.prefix_dropout!r} unknown: use batch or example")
        if self.pool not in POOLS:
            raise PtuneError(f"pool {self.pool!r} unknown: use first or pooler")
        if self.backbone_dropout and (self.method == "finetune" or self.tune_backbone):
            raise PtuneError("backbone_dropout is for a frozen backbone; a tuned one always trains with its dropout on")
        if self.tune_backbone and self.method != "ptuning":
            raise PtuneError("tune_backbone applies to ptuning only (finetune already tunes the backbone)")

    def label_words(self, labels: Sequence[str]) -> list[list[str]]:
        """Each label's verbalizer words, in ``labels`` order (a label's own name when none are given)."""
        words = parse_verbalizer(self.verbalizer) if self.verbalizer else {}
        unknown = sorted(set(words) - set(labels))
        missing = [label for label in labels if label not in words]
        if words and (unknown or missing):
            raise PtuneError(f"verbalizer {self.verbalizer!r} does not match the task's labels {', '.join(labels)}: "
                             + "; ".join(filter(None, [f"unknown {', '.join(unknown)}" if unknown else "",
                                                       f"no words for {', '.join(missing)}" if missing else ""]))
                             + " — give 'label=word,word' for every label")
        return [words.get(label, [label]) for label in labels]

    @property
    def sites(self) -> tuple[str, ...]:
        """The encoder-decoder attention sites that get prefixes, in ``PREFIX_SITES`` order."""
        chosen = {site.strip() for site in self.prefix_sites.split(",")}
        return tuple(site for site in PREFIX_SITES if site in chosen)

    def prefix_init_std(self, encoder_only: bool) -> float:
        """The deep prefixes' init standard deviation: ``prefix_std``, or the measured default for the backbone
        (1.0 on encoder-only models, 0.02 on decoders and encoder-decoders)."""
        if self.prefix_std is not None:
            return self.prefix_std
        return 1.0 if encoder_only else 0.02

    @property
    def has_input_prompt(self) -> bool:
        return self.method in ("prompt", "ptuning")

    @property
    def default_lr(self) -> float:
        return DEFAULT_LR_REPARAM if self.method == "deep" and self.reparam else DEFAULT_LR[self.method]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "config") -> "MethodConfig":
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise PtuneError(f"{source}: unknown method option(s) {', '.join(map(repr, extra))}; known: {', '.join(sorted(known))}")
        return cls(**data)


def trackers_of(report_to: str) -> tuple[str, ...]:
    """The trackers of a ``report_to`` value ("tensorboard,wandb" -> ("tensorboard", "wandb"); "none" -> ()), each
    known and its package installed, else a PtuneError naming the pip command to run."""
    names = [name.strip() for name in report_to.split(",")]
    if names == ["none"]:
        return ()
    if not all(names) or len(set(names)) != len(names) or any(name not in TRACKERS for name in names):
        raise PtuneError(f"training option 'report_to' is {report_to!r}: give none, or distinct trackers among "
                         f"{', '.join(TRACKERS)}, comma-separated, e.g. tensorboard,wandb")
    for name in names:
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise PtuneError(f"--report-to {name}: the {TRACKERS[name]} package is not installed; run "
                             f"`pip install {TRACKERS[name]}`, or drop {name} (--report-to none: metrics.jsonl only)")
    return tuple(names)


@dataclass
class TrainConfig:
    """How to train; ``epochs`` and ``lr`` left at None take the method's defaults (see ``resolved``)."""

    epochs: int | None = field(default=None, metadata={"bound": COUNT,
        "help": "epochs (default: " + ", ".join(f"{m} {DEFAULT_EPOCHS[m]}" for m in METHODS) + ")"})
    max_steps: int | None = field(default=None, metadata={"bound": COUNT,
        "help": "stop after this many optimiser steps (default: no limit)"})
    batch_size: int = field(default=32, metadata={"bound": COUNT, "help": "examples per step"})
    lr: float | None = field(default=None, metadata={"bound": POSITIVE,
        "help": f"learning rate (default: prompt {DEFAULT_LR['prompt']}, ptuning {DEFAULT_LR['ptuning']}, deep "
                f"{DEFAULT_LR['deep']} ({KIND_DEFAULTS['deep', 'tagging']['lr']} on tagging tasks) or "
                f"{DEFAULT_LR_REPARAM} with --reparam, finetune {DEFAULT_LR['finetune']})"})
    weight_decay: float = field(default=0.01, metadata={"bound": Bound(0), "help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.06, metadata={
        "bound": FRACTION, "help": "fraction of steps with linear warmup"})
    scheduler: str = field(default="linear", metadata={"help": " | ".join(SCHEDULERS), "choices": SCHEDULERS})
    max_grad_norm: float = field(default=1.0, metadata={"bound": POSITIVE, "help": "clip the gradient norm to this"})
    patience: int = field(default=3, metadata={
        "bound": NON_NEGATIVE, "help": "stop after this many epochs without dev improvement (0: never)"})
    seed: int = field(default=0, metadata={"bound": SEED, "help": "seed of the initialisation, shuffling and dropout"})
    train_limit: int | None = field(default=None, metadata={"bound": COUNT,
        "help": "use only the first N training examples (default: all)"})
    eval_limit: int | None = field(default=None, metadata={
        "bound": COUNT, "help": "use only the first N dev examples (default: all)"})
    cache_mb: int = field(default=2048, metadata={"bound": NON_NEGATIVE,
                                                  "help": "deep prompts on top layers only: memory for the cached "
                                                          "outputs of the un-prompted bottom layers (0: no cache)"})
    precision: str = field(default="auto", metadata={
        "help": "the forward pass's compute precision, autocast over fp32 trainable parameters: auto (the frozen "
                "backbone's --dtype: fp32 none, bf16 or fp16 autocast), fp32, bf16 or fp16 (with a gradient scaler); "
                "bf16 over an fp32 backbone was measured slower on CPU, see docs/RESULTS.md", "choices": PRECISIONS})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute the frozen backbone's layer activations in the backward pass instead of keeping them "
                "(less memory, one more forward; the prompt's gradients are unchanged)"})
    shard_backbone: bool = field(default=False, metadata={
        "help": "with several processes (accelerate launch --multi_gpu): shard the frozen backbone's layers across "
                "them with FSDP2, each process holding 1/N of every layer (gathered layer by layer in each pass); "
                "prompts, encoders and heads stay whole under DDP. Not with finetune"})
    shard_with: str = field(default="fsdp", metadata={
        "help": "with --shard-backbone: fsdp (torch's FSDP2) or zero3 (DeepSpeed ZeRO-3, pip install "
                "'ptune[deepspeed]'; examples/accelerate/zero3.yaml)", "choices": SHARD_ENGINES})
    compile: bool = field(default=False, metadata={"help": "torch.compile the forward pass (measured in docs/RESULTS.md)"})
    checkpoint_every: int = field(default=200, metadata={
        "bound": NON_NEGATIVE, "help": "write a resumable checkpoint every N steps (0: epoch ends only)"})
    report_to: str = field(default="none", metadata={
        "help": "experiment trackers, through Accelerate: " + ", ".join(TRACKERS) + ", several comma-separated, "
                "or none; they log the training loss, learning rate and examples/s every --log-every steps, the dev "
                "scores of each evaluation and the run's options, into OUT/tracking/"})
    log_every: int = field(default=10, metadata={
        "bound": COUNT, "help": "log the training loss, learning rate and examples/s to the trackers every N steps"})
    progress: bool = True

    def __post_init__(self) -> None:
        check_types(self, "training option")
        if self.precision not in PRECISIONS:
            raise PtuneError(f"training option 'precision' must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.scheduler not in SCHEDULERS:
            raise PtuneError(f"training option 'scheduler' must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        check_bounds(self, "training option")
        trackers_of(self.report_to)  # an unknown or uninstalled tracker is refused before anything loads

    @property
    def trackers(self) -> tuple[str, ...]:
        """The trackers ``report_to`` names (none: empty)."""
        return trackers_of(self.report_to)

    def resolved(self, method: MethodConfig) -> "TrainConfig":
        """A copy with the method's default epochs and learning rate filled in."""
        out = TrainConfig(**asdict(self))
        out.epochs = self.epochs if self.epochs is not None else DEFAULT_EPOCHS[method.method]
        out.lr = self.lr if self.lr is not None else method.default_lr
        if out.epochs < 1 or out.batch_size < 1 or out.lr <= 0:
            raise PtuneError("epochs and batch_size must be at least 1 and lr positive")
        return out


def with_kind_defaults(method: MethodConfig, train: TrainConfig, kind: str,
                       given: Collection[str]) -> tuple[MethodConfig, TrainConfig]:
    """``method`` and ``train`` with KIND_DEFAULTS for a task of ``kind`` in place of the method's defaults,
    except for the options in ``given`` (the ones the user set). The learning rate stays the reparameterised
    default with ``reparam``."""
    chosen = {name: value for name, value in KIND_DEFAULTS.get((method.method, kind), {}).items()
              if name not in given and not (name == "lr" and method.reparam)}
    if "length" in chosen:
        method = replace(method, length=chosen["length"])
    if "lr" in chosen:
        train = replace(train, lr=chosen["lr"])
    return method, train


@dataclass
class DeviceConfig:
    """Where and how the frozen backbone runs: device, storage dtype, quantisation, a device map.
    Trainable parameters (prompts, encoders, heads) always stay fp32, on the device of the backbone's
    input embeddings."""

    device: str = field(default="auto", metadata={
        "help": "auto (CUDA, else MPS, else CPU; the choice is logged), cpu, cuda, cuda:N or mps",
        "parse": device_name})
    dtype: str = field(default="fp32", metadata={
        "help": "storage dtype of the frozen backbone: fp32, bf16, fp16, or auto (the checkpoint's own)",
        "choices": DTYPES})
    quantize: str | None = field(default=None, metadata={
        "help": "load the frozen backbone in 4bit or 8bit (bitsandbytes: pip install 'ptune[quant]'; CUDA)",
        "choices": QUANTIZE})
    device_map: str | None = field(default=None, metadata={
        "help": "auto: spread the backbone's layers over every visible GPU (then CPU) for models larger than one "
                "GPU; prompts follow the first layer's device, each deep prefix its layer's"})

    def __post_init__(self) -> None:
        check_types(self, "device option")
        if not DEVICE.match(self.device):
            raise PtuneError(f"device {self.device!r} unknown: use auto, cpu, cuda, cuda:N or mps")
        if self.dtype not in DTYPES:
            raise PtuneError(f"dtype {self.dtype!r} unknown: use one of {', '.join(DTYPES)}")
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise PtuneError(f"quantize {self.quantize!r} unknown: use 4bit or 8bit")
        if self.device_map is not None and self.device_map not in ("auto", "balanced", "sequential"):
            raise PtuneError(f"device_map {self.device_map!r} unknown: use auto (or balanced, sequential); the "
                             "Python API also takes a dict of module name -> device")

    @classmethod
    def of(cls, options, config_file: dict | None = None) -> dict:
        """``load_backbone``'s keyword arguments from parsed options (``--device`` ...), then a config file's keys,
        then the defaults."""
        values = {f.name: getattr(options, f.name, None) for f in fields(cls)}
        values = {name: value if value is not None else (config_file or {}).get(name) for name, value in values.items()}
        return cls(**{name: value for name, value in values.items() if value is not None}).to_dict()

    def to_dict(self) -> dict:
        return asdict(self)
