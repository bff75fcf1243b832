"""Side-by-side training speed: ptune's methods against Hugging Face PEFT and full fine-tuning.

Every configuration trains on the same real batches (same token ids, batch size and prompt
length) in one process, round-robin, so load on the machine hits them alike; the same linear head
and loss sit on top of each. Reported: median step time after warm-up, examples/s, and ratios to the
references (fine-tuning, PEFT prefix tuning, the floor): the median of the paired per-step ratios (the
same batch in the same round) with the 2.5-97.5% range of those ratios.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ptune.model.backbones import Backbone, resolve
from ptune.config import MethodConfig
from ptune.batch.encoding import collate
from ptune.errors import PtuneError
from ptune.model.depth_cache import BottomCache, layer_list
from ptune.model.placement import to_device
from ptune.model.prompt_model import PromptModel

Step = Callable[[int], float]  # runs one training step on batch i; returns its seconds


@dataclass
class Setting:
    batch_size: int = 32
    prompt_length: int = 16
    batches: int = 12  # distinct batches cycled through
    rounds: int = 4  # each round runs every configuration on every batch once
    warmup: int = 3
    top_k: int = 3
    lr: float = 1e-2
    configs: list[str] = field(default_factory=list)  # empty: all


def _peft():
    try:
        import peft
    except ImportError:
        raise PtuneError("the PEFT comparison needs PEFT: pip install peft==0.21.2 (a benchmark-only dependency)") from None
    return peft


def _sgd_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def ptune_step(model: PromptModel, batches: list[dict], *, cache: bool = False, bf16: bool = False,
               compiled: bool = False) -> Step:
    """One AdamW step of a ptune model on batch i (top:k deep prompts may use the bottom cache)."""
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    bottom = (BottomCache(layer_list(model.transformer, model.backbone.num_layers), model.first_prompted_layer,
                          limit_bytes=1 << 32) if cache and model.first_prompted_layer else None)
    model.train()

    def step(i: int) -> float:
        started = time.perf_counter()
        batch = dict(batches[i])
        if bottom is not None:
            keys = [i * 10_000 + row for row in range(batch["input_ids"].shape[0])]
            batch["bottom_hidden"] = bottom.hidden(keys, batch, lambda: model.bottom_pass(batch))
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(batch, forward=forward)
        _sgd_step(loss, optimizer)
        return time.perf_counter() - started
    return step


def peft_step(backbone: Backbone, peft_config, head: nn.Module, batches: list[dict], virtual: int) -> Step:
    """One AdamW step of a PEFT model (FEATURE_EXTRACTION) with the same head and loss as ptune."""
    from transformers import AutoModel

    peft = _peft()
    frozen = backbone.model.get_input_embeddings().weight  # PEFT's copy on the backbone's device and dtype
    base = AutoModel.from_pretrained(resolve(backbone.name), dtype=frozen.dtype, attn_implementation="sdpa")
    base.to(frozen.device)
    model = peft.get_peft_model(base, peft_config)
    head = copy.deepcopy(head)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    base.eval()  # as ptune: the frozen backbone runs without dropout

    def step(i: int) -> float:
        batch = batches[i]
        started = time.perf_counter()
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        hidden = hidden[:, virtual:] if virtual else hidden
        logits = head(hidden, batch)
        _sgd_step(nn.functional.cross_entropy(logits, head.targets(batch)), optimizer)
        return time.perf_counter() - started
    return step


FLOOR = "floor (forward + backward to the inputs)"
# Each ptune configuration's counterpart: the same method in PEFT (top:k deep prompts: full depth, which is the
# same method; top:k is a trade-off, reported with its accuracy).
COUNTERPART = {"ptune deep": "peft prefix", "ptune prompt": "peft prompt tuning",
               "ptune ptuning (lstm)": "peft p-tuning (lstm)"}
REFERENCES = ("finetune", "peft prefix", FLOOR, "ptune deep", "peft prompt tuning", "peft p-tuning (lstm)")


def counterpart(name: str) -> str | None:
    """The configuration ``name`` is compared with as the same method, if any."""
    return "ptune deep" if name.startswith("ptune deep ") else COUNTERPART.get(name)


def floor_step(backbone: Backbone, batches: list[dict]) -> Step:
    """The frozen backbone's forward pass and its backward pass down to the input embeddings, with no
    prompt, head or optimizer: what any method that trains something at the input must at least run."""
    def step(i: int) -> float:
        batch = batches[i]
        started = time.perf_counter()
        embeds = backbone.model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
        hidden = backbone.model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).last_hidden_state
        hidden.float().square().mean().backward()
        return time.perf_counter() - started
    return step


def build(backbone: Backbone, examples: list, labels: list[str], setting: Setting) -> dict[str, Step]:
    """Every configuration's step function, on the same batches of ``examples``."""
    peft = _peft()
    P, size = setting.prompt_length, setting.batch_size

    def model_for(method: str, **options) -> PromptModel:
        model = PromptModel(backbone, MethodConfig(method=method, length=P if method != "ptuning" else None,
                                                   **options), labels, kind="tagging")
        model.initialise(seed=0)
        return model

    def batches_for(model: PromptModel) -> list[dict]:
        encoded = model.encode(examples)
        return [to_device(collate([encoded[i] for i in group], pad_id=model.encoder.pad_id, left_pad=False), model.device)
                for group in groups]

    plain = model_for("deep")
    features = plain.encode(examples)
    by_length = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
    # Batches of similar lengths, as length bucketing gives, spread over the length range.
    stride = max(1, len(by_length) // (setting.batches * size))
    chosen = by_length[::stride][: setting.batches * size]
    groups = [chosen[i * size : (i + 1) * size] for i in range(setting.batches)]
    plain_batches = batches_for(plain)
    head = plain.head
    steps: dict[str, Callable[[], Step]] = {
        FLOOR: lambda: floor_step(backbone, plain_batches),
        "finetune": lambda: ptune_step(model_for("finetune"), plain_batches),
        "ptune deep": lambda: ptune_step(plain, plain_batches),
        "ptune deep (bf16 autocast)": lambda: ptune_step(model_for("deep"), plain_batches, bf16=True),
        "ptune deep (torch.compile)": lambda: ptune_step(model_for("deep"), plain_batches, compiled=True),
        "peft prefix": lambda: peft_step(backbone, peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION",
                                                                           num_virtual_tokens=P), head, plain_batches, 0),
        "peft prefix+projection": lambda: peft_step(backbone, peft.PrefixTuningConfig(
            task_type="FEATURE_EXTRACTION", num_virtual_tokens=P, prefix_projection=True), head, plain_batches, 0),
        f"ptune deep top:{setting.top_k} (cached)": lambda: ptune_step(
            model_for("deep", layers=f"top:{setting.top_k}"), plain_batches, cache=True),
        f"ptune deep top:{setting.top_k} (no cache)": lambda: ptune_step(
            model_for("deep", layers=f"top:{setting.top_k}"), plain_batches),
        "ptune prompt": lambda: _input_prompt_step(model_for("prompt", peft_layout=True), batches_for),
        "peft prompt tuning": lambda: peft_step(backbone, peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION",
                                                                                  num_virtual_tokens=P), head, plain_batches, P),
        "ptune ptuning (lstm)": lambda: _input_prompt_step(
            model_for("ptuning", template=f"[P]*{P} {{text}}", encoder="lstm", peft_layout=True), batches_for),
        "peft p-tuning (lstm)": lambda: peft_step(backbone, peft_ptuning_config(P, backbone.hidden_size), head,
                                                  plain_batches, P),
    }
    wanted = setting.configs or list(steps)
    unknown = [name for name in wanted if name not in steps]
    if unknown:
        raise PtuneError(f"unknown benchmark configuration(s) {unknown}; known: {list(steps)}")
    return {name: steps[name]() for name in wanted}


def peft_ptuning_config(length: int, hidden: int):
    """PEFT's P-tuning with an LSTM encoder of exactly the shapes of ptune's: encoder_hidden_size = H/2 (PEFT's
    default, H, makes its encoder about 3x larger)."""
    return _peft().PromptEncoderConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=length,
                                       encoder_reparameterization_type="LSTM", encoder_hidden_size=hidden // 2)


def _input_prompt_step(model: PromptModel, batches_for) -> Step:
    return ptune_step(model, batches_for(model))


def peak_memory(step: Step, steps: int = 3) -> int:
    """Bytes of resident memory that ``steps`` training steps add at their peak (Linux: resets VmHWM)."""
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts from the current size
    before = _status_kib("VmRSS")
    for i in range(steps):
        step(i)
    return (_status_kib("VmHWM") - before) * 1024


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise PtuneError("peak memory needs Linux /proc/self/status")


def run(backbone: Backbone, examples: list, labels: list[str], setting: Setting, *, progress: bool = True) -> dict:
    """Median step time and examples/s per configuration, measured round-robin in this process."""
    configs = build(backbone, examples, labels, setting)
    times: dict[str, list[float]] = {name: [] for name in configs}
    for name, step in configs.items():  # warm-up; the cached configuration sees every batch once (epoch 1)
        for i in range(setting.batches if "cached" in name else setting.warmup):
            step(i % setting.batches)
    total = setting.rounds * setting.batches * len(configs)
    with tqdm(total=total, desc="benchmark", disable=not progress) as bar:
        for _ in range(setting.rounds):
            for i in range(setting.batches):
                for name, step in configs.items():
                    times[name].append(step(i))
                    bar.update()
    result = {name: {"median_step_s": statistics.median(t), "examples_per_s": setting.batch_size / statistics.median(t),
                     "steps": len(t)} for name, t in times.items()}
    for name, r in result.items():
        for reference in REFERENCES:
            if reference in result and name != reference:
                ratios = sorted(a / b for a, b in zip(times[name], times[reference]))  # paired: same batch, same round
                r[f"vs {reference}"] = statistics.median(ratios)
                r[f"vs {reference} interval"] = [_quantile(ratios, 0.025), _quantile(ratios, 0.975)]
    return {"configs": result}


def _quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values, linearly interpolated."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
