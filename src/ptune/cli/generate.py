"""``ptune generate``: continue texts with a causal LM under a trained prompt; one JSON line each, or
the text as it is generated (``--stream``)."""

from __future__ import annotations

import argparse
import json
import sys

from ptune.cli.options import add_backbone_override, load_prompt_and_backbone
from ptune.bounds import SEED

STREAM_HELP = ("print the continuation while it is generated: with one --text as plain text (then a newline); "
               'with several, one JSON line {"index": I, "piece": "..."} per piece (I: the text\'s place in --text), '
               "then the usual line per text")


def add_parser(sub) -> None:
    gen = sub.add_parser("generate", help="continue texts with a causal LM and a trained prompt (or deep prompt)",
                         description="Continue texts with a causal LM and a trained prompt. Output: one JSON line "
                                     'per text, {"text", "generated", "finish"} (finish: eos, stop or length).')
    gen.add_argument("prompt", help="prompt file (.safetensors) trained on a causal LM, e.g. smollm2")
    gen.add_argument("--text", nargs="+", required=True, help="texts to continue (several run as one batch)")
    gen.add_argument("--max-new-tokens", type=int, default=40, help="at most this many tokens per text")
    gen.add_argument("--min-new-tokens", type=int, default=0,
                     help="the end-of-sequence token is not chosen before this many tokens")
    gen.add_argument("--temperature", type=float, default=0.0, help="0: greedy; above 0: sampling")
    gen.add_argument("--top-p", type=float, default=1.0,
                     help="sampling: keep the most likely tokens whose probabilities sum to P, in (0, 1]")
    gen.add_argument("--top-k", type=int, default=None, help="sampling: keep the K most likely tokens (default: all)")
    gen.add_argument("--repetition-penalty", type=float, default=1.0,
                     help="> 0: divide the logits of tokens already in the text by it (1: off; 1.1-1.3 is usual)")
    gen.add_argument("--stop", nargs="+", action="extend", default=[], metavar="TEXT",
                     help="stop strings: a text ends just before the first it generates (not printed); "
                          "a newline in bash: $'\\n' (default: none)")
    gen.add_argument("--seed", type=SEED, default=0, help="sampling seed: same seed, texts and options, same output")
    gen.add_argument("--stream", action="store_true", help=STREAM_HELP)
    add_backbone_override(gen)
    gen.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptune.infer.generate import Generation, settings

    options = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens,
                   temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                   repetition_penalty=args.repetition_penalty, stop=args.stop, seed=args.seed)
    settings(**options)  # refuse bad options before the backbone loads
    generation = Generation(load_prompt_and_backbone(args), args.text, **options)
    plain = args.stream and len(args.text) == 1
    for index, piece in generation.pieces():
        if plain:
            _write(piece)
        elif args.stream:
            _write(json.dumps({"index": index, "piece": piece}, ensure_ascii=False) + "\n")
    if plain:
        _write("\n")
        return 0
    for index, text in enumerate(args.text):
        record = {"text": text, "generated": generation.texts[index], "finish": generation.finish[index]}
        _write(json.dumps({"index": index, **record} if args.stream else record, ensure_ascii=False) + "\n")
    return 0


def _write(text: str) -> None:
    # Plain writes: a console's markup would eat generated text such as "[link]".
    sys.stdout.write(text)
    sys.stdout.flush()
