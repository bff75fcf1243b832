"""``ptune probe``: precision@1 of manual, P-tuned or prompt-tuned probes on a relation; table + JSON.

``--facts`` probes LAMA / T-REx or TSV facts files instead (``facts_command.py``). Trained probes are saved next to the results as safetensors files (``ptune probe --probe FILE``
scores one again).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ptune.bounds import COUNT, POSITIVE, SEED
from ptune.config import DeviceConfig
from ptune.analysis.probing.defaults import DEFAULT_PROMPTS, LEARNED_DEFAULTS
from ptune.errors import PtuneError

METHODS = ("manual", "ptuning", "prompt")
DEFAULT_MANUAL = "The capital of {subject} is"


def add_probe_parser(sub) -> None:
    """Register the ``probe`` subcommand on ``sub`` (argparse subparsers)."""
    probe = sub.add_parser("probe", help="knowledge probing (LAMA-style P@1): manual vs P-tuned vs prompt-tuned")
    add_probe_options(probe)
    probe.set_defaults(func=cmd_probe)


def add_probe_options(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """``ptune probe``'s options on ``parser``, less those whose destination is in ``skip`` (``ptune probe-sweep``
    searches some and fixes others)."""
    def option(*names: str, **kwargs) -> None:
        if names[0].lstrip("-").replace("-", "_") not in skip:
            parser.add_argument(*names, **kwargs)

    option("--relation", help="a built-in relation: capital-of (default), continent-of or borders")
    option("--facts", nargs="+", metavar="FILE",
           help="probe your facts instead: LAMA / T-REx JSONL (sub_label, obj_label, predicate_id) or "
                "TSV (subject, object); P@1, P@10 and MRR per relation")
    option("--relations", metavar="FILE",
           help="with --facts: templates per relation, LAMA's relations.jsonl (relation, template with "
                "[X] and [Y], or {subject} and [P])")
    option("--candidates", default="objects", metavar="objects|vocab|FILE",
           help="with --facts: rank against the file's objects, the whole vocabulary, or the words of "
                "a vocabulary file (one per line)")
    option("--multi-token", action="store_true",
           help="with --facts: keep multi-token objects, ranked by summed log-probability (default: "
                "single-token objects only, as LAMA)")
    option("--backbone", default="smollm2", help="a causal LM: smollm2, a hub id or a folder")
    option("--method", nargs="+", choices=METHODS,
           help="manual (score wordings as written), ptuning (learn [P] tokens around a wording) or "
                "prompt (learn a soft prompt in front of it); default manual, with --facts manual "
                "ptuning (several only with --facts)")
    option("--manual", nargs="+", metavar="TEMPLATE",
           help=f"manual wordings with one {{subject}}, one run each (default: {DEFAULT_MANUAL!r})")
    option("--template", help="a full probe template with [P] tokens, e.g. '[P]*3 {subject} capital [P]*3'")
    option("--probe", nargs="+", metavar="FILE", help="score saved probe files instead of training")
    option("--encoder", default=LEARNED_DEFAULTS["encoder"], choices=("none", "mlp", "lstm"),
           help=f"P-tuning prompt encoder (default {LEARNED_DEFAULTS['encoder']})")
    option("--prompts", type=COUNT, default=None,
           help=f"continuous tokens: per side for ptuning (default {DEFAULT_PROMPTS['ptuning']}), in front for "
                f"prompt (default {DEFAULT_PROMPTS['prompt']})")
    option("--init", choices=("words", "vocab"), help="initial [P] vectors (default: words for "
                "ptuning, vocab for prompt)")
    option("--epochs", type=COUNT, default=LEARNED_DEFAULTS["epochs"],
           help=f"training epochs of a learned probe, the best by dev kept (default {LEARNED_DEFAULTS['epochs']})")
    option("--lr", type=POSITIVE, default=LEARNED_DEFAULTS["lr"],
           help=f"learning rate of a learned probe (default {LEARNED_DEFAULTS['lr']}, the capital-of study's)")
    option("--batch-size", type=COUNT, default=16, help="facts per training step")
    option("--seed", type=SEED, default=0, help="split and training seed")
    option("--split-seed", type=SEED, help="with --facts: the split's seed when not --seed (e.g. one "
                "split, several training seeds)")
    option("--split", default="test", choices=("train", "dev", "test"), help="split scored")
    option("--limit", type=COUNT, help="at most N subjects per split (quick runs)")
    option("--out", help="folder for results.json and probe files (default runs/probe-RELATION-METHOD)")


def _templates(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(wording, template) per run, validated before any model loads."""
    from ptune.analysis.probing.learned import parse_probe_template, ptuning_template, soft_prompt_template
    from ptune.analysis.probing.relations import RELATIONS

    if args.relation not in RELATIONS:
        raise PtuneError(f"unknown relation {args.relation!r}; use one of {', '.join(RELATIONS)}")
    if args.limit is not None and args.limit < 1:
        raise PtuneError(f"--limit must be at least 1, got {args.limit}")
    if args.template and args.manual:
        raise PtuneError("give --manual wordings or one --template, not both")
    if args.template:
        if args.method == "manual" and "[P]" in args.template:
            raise PtuneError("--method manual scores templates without [P] tokens; use --method ptuning or prompt")
        parse_probe_template(args.template)
        return [(args.template, args.template)]
    wordings = args.manual or [DEFAULT_MANUAL]
    runs = []
    for wording in wordings:
        if "[P]" in wording:
            raise PtuneError(f"--manual {wording!r}: manual wordings have no [P]; give a full template with --template")
        parse_probe_template(wording)
        if args.method == "ptuning":
            runs.append((wording, ptuning_template(wording, args.prompts or DEFAULT_PROMPTS["ptuning"])))
        elif args.method == "prompt":
            runs.append((wording, soft_prompt_template(wording, args.prompts or DEFAULT_PROMPTS["prompt"])))
        else:
            runs.append((wording, wording))
    return runs


def cmd_probe(args: argparse.Namespace) -> int:
    if args.facts:
        from ptune.analysis.probing.facts_command import run_facts

        return run_facts(args)
    for option in ("relations", "split_seed"):
        if getattr(args, option) is not None:
            raise PtuneError(f"--{option.replace('_', '-')} goes with --facts FILE")
    if args.candidates != "objects" or args.multi_token:
        raise PtuneError("--candidates and --multi-token go with --facts FILE")
    if args.method and len(args.method) > 1:
        raise PtuneError("one --method per run on a built-in relation (several go with --facts)")
    args.method = args.method[0] if args.method else "manual"
    args.relation = args.relation or "capital-of"
    return _probe_relation(args)


def _probe_relation(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ptune.model.backbones import load_backbone
    from ptune.analysis.probing.files import load_probe, read_probe_header, save_probe
    from ptune.analysis.probing.learned import ProbePrompt, init_vectors
    from ptune.analysis.probing.probe import head_weight, precision_at_1, single_token_precision_at_1
    from ptune.analysis.probing.relations import load_relation, single_token, split_facts
    from ptune.analysis.probing.training import ProbeTrainConfig, train_probe

    if args.probe:
        headers = [read_probe_header(path) for path in args.probe]
        runs = [(h["template"], h["template"]) for h in headers]
    else:
        runs = _templates(args)
    config = ProbeTrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    out_dir = Path(args.out or f"runs/probe-{args.relation}-{'saved' if args.probe else args.method}")
    if out_dir.exists() and not out_dir.is_dir():
        raise PtuneError(f"--out {out_dir}: is a file; choose a folder for results.json and the probe files")
    backbone = load_backbone(args.backbone, trust_remote_code=args.trust_remote_code, **DeviceConfig.of(args))
    model, tokenizer = backbone.model, backbone.tokenizer
    try:
        weight = head_weight(model)
    except PtuneError as error:
        raise PtuneError(f"backbone {args.backbone!r}: {error}") from None
    embeddings = model.get_input_embeddings()
    relation = load_relation(args.relation)
    split = {name: part[: args.limit] if args.limit else part
             for name, part in split_facts(relation.facts, seed=args.seed).items()}
    facts = split[args.split]
    subjects = {f.subject for f in facts}
    # The split's facts whose object is one token (the same subjects: none leaks in from train).
    single_facts = [f for f in single_token(relation, tokenizer).facts if f.subject in subjects]
    progress = not args.quiet
    results = []
    for index, (wording, template) in enumerate(runs):
        row = {"method": "saved" if args.probe else args.method, "wording": wording, "template": template}
        prompt, history = template, None
        if args.probe:
            prompt = load_probe(args.probe[index], backbone)
            row["probe"] = str(args.probe[index])
        elif args.method != "manual":
            torch.manual_seed(args.seed)
            how = args.init or ("words" if args.method == "ptuning" else "vocab")
            encoder = args.encoder if args.method == "ptuning" else "none"
            prompt = ProbePrompt(template, tokenizer, embeddings, encoder=encoder,
                                 init=init_vectors(template, tokenizer, embeddings.weight, how=how, seed=args.seed))
            history = train_probe(model, tokenizer, prompt, split["train"], split["dev"], config, weight=weight,
                                  progress=progress)
            row.update(best_epoch=history.best_epoch, dev_nll=history.dev_nll, train_loss=history.train_loss,
                       train_seconds=round(history.seconds, 1), encoder=encoder, init=how)
        ranked = precision_at_1(model, tokenizer, relation, facts, prompt, weight=weight, progress=progress)
        row["p_at_1"] = ranked.precision
        row["single_token_p_at_1"] = (single_token_precision_at_1(model, tokenizer, single_facts, prompt, weight=weight)
                                      .precision if single_facts else None)
        row["predictions"] = [{"subject": p.subject, "predicted": p.predicted, "correct": p.correct}
                              for p in ranked.predictions]
        if history is not None:
            path = out_dir / f"{args.method}-{index}.safetensors"
            save_probe(path, prompt, backbone, relation=args.relation,
                       metrics={f"{args.split}_p_at_1": row["p_at_1"]},
                       training={"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                                 "seed": args.seed, "wording": wording, "best_epoch": history.best_epoch})
            row["probe"] = str(path)
        results.append(row)

    summary = {"relation": args.relation, "backbone": args.backbone, "split": args.split, "subjects": len(facts),
               "single_token_subjects": len(single_facts), "candidates": len(relation.candidates), "runs": results}
    from ptune.storage.atomic import atomic_write

    atomic_write(out_dir / "results.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    table = Table(title=escape(f"P@1, {args.relation}, {args.split} split ({len(facts)} subjects, "
                               f"{len(relation.candidates)} candidates), {backbone.name}"))
    for column in ("method", "template", "P@1", "P@1 single-token", "probe file"):
        table.add_column(column, justify="right" if column.startswith("P@1") else "left")
    for row in results:
        single = row["single_token_p_at_1"]
        table.add_row(row["method"], escape(row["template"]), f"{100 * row['p_at_1']:.1f}",
                      "" if single is None else f"{100 * single:.1f}", escape(row.get("probe", "")))
    Console().print(table)
    Console(stderr=True).print(f"results: {out_dir / 'results.json'}", highlight=False, markup=False)
    return 0
