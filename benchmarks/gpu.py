"""Training speed and memory on one CUDA GPU, nothing downloaded: randomly initialised Llama models of
two real shapes (SmolLM2-135M's and Llama-3.2-1B's configs) in bf16, a deep prompt (ptune) against
PEFT prefix tuning in the same process, the same batches, head and loss.

    python benchmarks/gpu.py [--steps 10] [--out benchmarks/results/gpu.json]   # run by benchmarks/gpu.sh
    python benchmarks/gpu.py --dry-run --out /tmp/gpu.json                        # tiny shapes on the CPU

Per model and method: median step time (forward, backward, AdamW step) after warm-up, steps/s,
tokens/s and the peak CUDA memory of the steps (``torch.cuda.max_memory_allocated``). Without CUDA
(and without --dry-run) it stops with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import statistics
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, versions

RESULTS = ROOT / "benchmarks" / "results" / "gpu.json"
WORDS = 2000
# name -> (LlamaConfig keyword arguments, batch size, tokens per row)
SHAPES = {
    "smollm2-135m-shaped": (dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                                 num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True,
                                 max_position_embeddings=8192, rope_theta=100000.0), 32, 256),
    "llama-3.2-1b-shaped": (dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                                 num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
                                 max_position_embeddings=131072, rope_theta=500000.0), 8, 512),
}
TINY = {"tiny-llama (dry run)": (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, vocab_size=WORDS + 8, max_position_embeddings=512), 4, 32)}


def tokenizer():
    """A word-level tokenizer built in memory (w0 .. w1999): nothing to download, any vocabulary size above it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3, **{f"w{i}": i + 4 for i in range(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]")


def backbone_for(name: str, shape: dict, device, dtype):
    """A randomly initialised Llama of ``shape`` on ``device`` in ``dtype``, with ptune's attention, as a Backbone."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    from ptune.model import injection
    from ptune.model.backbones import Backbone

    config = LlamaConfig(**shape)
    config._attn_implementation = injection.register()
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaModel(config).to(dtype)
    model.requires_grad_(False).eval()
    return Backbone(name=name, model=model, tokenizer=tokenizer())


def rows(batch_size: int, tokens: int, count: int, seed: int = 0) -> list:
    import random

    from ptune.data.examples import TextExample

    rng = random.Random(seed)
    return [TextExample(" ".join(f"w{rng.randrange(WORDS)}" for _ in range(tokens - 8)), rng.choice(["a", "b"]))
            for _ in range(batch_size * count)]


def timed(step, steps: int, warmup: int, device) -> dict:
    """Median seconds of ``step(i)`` after ``warmup`` calls, and the peak memory of the measured steps."""
    import torch

    for i in range(warmup):
        step(i)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps):
        started = time.perf_counter()
        step(i)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return {"median_step_s": statistics.median(times), "steps": steps,
            "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}


def measure(name: str, shape: dict, batch_size: int, tokens: int, *, steps: int, warmup: int, device, dtype,
            length: int) -> dict:
    """ptune deep prompt and PEFT prefix tuning on one randomly initialised model."""
    import torch
    from torch import nn

    from ptune.config import MethodConfig
    from ptune.model.placement import autocast
    from ptune.model.prompt_model import PromptModel

    backbone = backbone_for(name, shape, device, dtype)
    model = PromptModel(backbone, MethodConfig(method="deep", length=length, max_length=tokens, init="random"),
                        ["a", "b"])
    model.initialise(seed=0)
    model.train()
    batches = [model.collate(model.encode(rows(batch_size, tokens, 1, seed=i))) for i in range(4)]
    real_tokens = int(batches[0]["attention_mask"].sum())
    half = dtype if dtype != torch.float32 else None
    optimizer = torch.optim.AdamW(list(model.trainable_parameters()), lr=1e-2)

    def ptune_step(i: int) -> None:
        with autocast(device, half):
            loss = model.loss(batches[i % len(batches)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    out = {"ptune deep": timed(ptune_step, steps, warmup, device)}

    import peft

    base = copy.deepcopy(backbone.model)
    base.config._attn_implementation = "sdpa"
    peft_model = peft.get_peft_model(base, peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION",
                                                                    num_virtual_tokens=length))
    head = copy.deepcopy(model.head)
    peft_optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad]
                                       + list(head.parameters()), lr=1e-2)

    def peft_step(i: int) -> None:
        batch = batches[i % len(batches)]
        with autocast(device, half):
            hidden = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            loss = nn.functional.cross_entropy(head(hidden.float(), batch), head.targets(batch))
        peft_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        peft_optimizer.step()

    peft_model.train()
    base.eval()
    out["peft prefix tuning"] = timed(peft_step, steps, warmup, device)
    for result in out.values():
        result["steps_per_s"] = 1 / result["median_step_s"]
        result["tokens_per_s"] = real_tokens / result["median_step_s"]
    out["ptune deep"]["vs peft prefix tuning"] = (out["ptune deep"]["median_step_s"]
                                                  / out["peft prefix tuning"]["median_step_s"])
    return {"shape": shape, "batch": [batch_size, tokens], "prompt_length": length,
            "parameters": backbone.num_parameters(), "trainable_ptune": model.num_trainable(), "methods": out}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="measured steps per method (default: 10)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps per method (default: 3)")
    parser.add_argument("--length", type=int, default=16, help="prompt length per layer (default: 16)")
    parser.add_argument("--out", default=str(RESULTS), help="the JSON to write (default: benchmarks/results/gpu.json)")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny shapes on the CPU in bf16, 2 steps: checks the script, measures nothing")
    args = parser.parse_args()
    import torch

    if args.dry_run:
        device, shapes, steps, warmup = torch.device("cpu"), TINY, 2, 1
    elif not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here (torch sees none); run it on a GPU machine, or --dry-run",
              file=sys.stderr)
        return 2
    else:
        device, shapes, steps, warmup = torch.device("cuda"), SHAPES, args.steps, args.warmup
    results = {}
    for name, (shape, batch_size, tokens) in shapes.items():
        results[name] = measure(name, shape, batch_size, tokens, steps=steps, warmup=warmup, device=device,
                                dtype=torch.bfloat16, length=args.length)
        print(name, json.dumps(results[name]["methods"]), flush=True)
    record = {"command": shlex.join(["python", "benchmarks/gpu.py", *sys.argv[1:]]), "date": date.today().isoformat(),
              "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (dry run)",
              "dry_run": args.dry_run, "dtype": "bf16", "weights": "random init (nothing downloaded)",
              "versions": versions("torch", "transformers", "peft"), "models": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
