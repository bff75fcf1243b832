"""``ptune generate``: continue texts with a causal LM under a trained prompt; one JSON line each."""

from __future__ import annotations

import argparse

from ptune.cli.options import add_backbone_override, load_prompt_and_backbone
from ptune.cli.output import print_line


def add_parser(sub) -> None:
    gen = sub.add_parser("generate", help="continue texts with a causal LM and a trained prompt (or deep prompt)")
    gen.add_argument("prompt", help="prompt file (.safetensors) trained on a causal LM, e.g. smollm2")
    gen.add_argument("--text", nargs="+", required=True, help="texts to continue (several run as one batch)")
    gen.add_argument("--max-new-tokens", type=int, default=40, help="tokens to generate per text")
    gen.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default); above 0: sampling")
    gen.add_argument("--seed", type=int, default=0, help="sampling seed")
    add_backbone_override(gen)
    gen.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptune.infer.generate import generate

    model = load_prompt_and_backbone(args)
    outputs = generate(model, args.text, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                       seed=args.seed)
    for text, continuation in zip(args.text, outputs):
        print_line({"text": text, "generated": continuation})
    return 0
