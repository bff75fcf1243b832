"""``ptune probe --facts``: P@1, P@10 and MRR of manual and learned probes on every relation of LAMA /
T-REx or TSV facts files, in one table and one results.json.

Files, templates and options are checked before the model loads; trained probes are saved beside
the results (``RELATION-METHOD-N.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ptune.analysis.probing.defaults import DEFAULT_PROMPTS
from ptune.analysis.probing.lama import FactsRelation, convert_template, read_facts, read_templates, read_vocabulary
from ptune.analysis.probing.learned import parse_probe_template, ptuning_template, soft_prompt_template
from ptune.errors import PtuneError

DEFAULT_METHODS = ("manual", "ptuning")


@dataclass(frozen=True)
class Run:
    """One probe to score on a relation: the method, the manual wording it starts from and its template."""

    method: str
    wording: str
    template: str


@dataclass(frozen=True)
class Plan:
    """A relation read from a facts file, where its wordings came from, and the runs on it."""

    facts: FactsRelation
    template_source: str
    runs: tuple[Run, ...]


def _wordings(args: argparse.Namespace, relation: FactsRelation, templates: dict) -> tuple[list[str], str]:
    if args.template:
        return [args.template], "--template"
    if args.manual:
        return list(args.manual), "--manual"
    if relation.name in templates:
        found = templates[relation.name]
        return [found.template], f"{found.where}: {found.source}"
    fix = "a line for it in --relations FILE" if args.relations else "--relations FILE (LAMA's relations.jsonl)"
    raise PtuneError(f"{relation.where}: relation {relation.name!r} has no template: give {fix}, or --manual "
                     f"'The capital of {{subject}} is'")


def _runs(methods: list[str], wordings: list[str], source: str, prompts: int | None) -> tuple[Run, ...]:
    runs = []
    for method in methods:
        for wording in wordings:
            if method == "manual":
                if "[P]" in wording:
                    raise PtuneError(f"{source}: template {wording!r} has [P] tokens; --method manual scores wordings "
                                     f"without them: use --method ptuning or give a wording without [P]")
                template = wording
            elif "[P]" in wording:
                template = wording
            elif method == "ptuning":
                template = ptuning_template(wording, prompts or DEFAULT_PROMPTS["ptuning"])
            else:
                template = soft_prompt_template(wording, prompts or DEFAULT_PROMPTS["prompt"])
            parse_probe_template(template)
            runs.append(Run(method, wording, template))
    return tuple(runs)


def plan_facts(args: argparse.Namespace) -> list[Plan]:
    """Read and check the facts, templates and options of a ``--facts`` run (no model needed)."""
    if args.relation is not None:
        raise PtuneError("give --relation (a built-in relation) or --facts (your facts files), not both")
    if args.probe:
        raise PtuneError("--probe scores saved probes on a built-in relation; with --facts, train with --method")
    if args.template and args.manual:
        raise PtuneError("give --manual wordings or one --template, not both")
    if args.limit is not None and args.limit < 1:
        raise PtuneError(f"--limit must be at least 1, got {args.limit}")
    methods = list(dict.fromkeys(args.method or DEFAULT_METHODS))
    try:
        manual = [convert_template(w) for w in args.manual or ()]
    except PtuneError as error:
        raise PtuneError(f"--manual: {error}") from None
    args.manual = manual or None
    try:
        args.template = convert_template(args.template) if args.template else None
    except PtuneError as error:
        raise PtuneError(f"--template: {error}") from None
    templates = read_templates(args.relations) if args.relations else {}
    relations: dict[str, FactsRelation] = {}
    for path in args.facts:
        for found in read_facts(path):
            if found.name in relations:
                raise PtuneError(f"{found.where}: relation {found.name!r} is also in {relations[found.name].where}; "
                                 f"give each relation's facts in one file")
            relations[found.name] = found
    plans = []
    for found in relations.values():
        wordings, source = _wordings(args, found, templates)
        plans.append(Plan(found, source, _runs(methods, wordings, source, args.prompts)))
    if args.candidates not in ("objects", "vocab"):
        args.vocabulary = read_vocabulary(args.candidates)
    return plans


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "relation"


def run_facts(args: argparse.Namespace, backbone=None) -> int:
    """Probe every relation of ``args.facts``; ``backbone``: one already loaded (``ptune probe-sweep`` loads it
    once for all its trials), else ``--backbone`` on ``--device``."""
    import torch
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ptune.analysis.probing.files import save_probe
    from ptune.analysis.probing.learned import ProbePrompt, init_vectors
    from ptune.analysis.probing.probe import head_weight
    from ptune.analysis.probing.ranking import prepare, rank_facts, rank_metrics, split_relation, split_subjects
    from ptune.analysis.probing.training import ProbeTrainConfig, train_probe
    from ptune.config import DeviceConfig
    from ptune.model.backbones import load_backbone
    from ptune.storage.atomic import atomic_write

    plans = plan_facts(args)
    config = ProbeTrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    out_dir = Path(args.out or f"runs/probe-facts-{_file_name(Path(args.facts[0]).stem)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise PtuneError(f"--out {out_dir}: is a file; choose a folder for results.json and the probe files")
    if backbone is None:
        backbone = load_backbone(args.backbone, trust_remote_code=args.trust_remote_code, **DeviceConfig.of(args))
    model, tokenizer = backbone.model, backbone.tokenizer
    try:
        weight = head_weight(model)
    except PtuneError as error:
        raise PtuneError(f"backbone {args.backbone!r}: {error}") from None
    embeddings = model.get_input_embeddings()
    split_seed = args.seed if args.split_seed is None else args.split_seed
    splits = split_subjects([plan.facts.relation for plan in plans], seed=split_seed)
    mode = args.candidates if args.candidates in ("objects", "vocab") else "file"
    progress = not args.quiet
    reports = []
    for plan in plans:
        relation, candidates = prepare(plan.facts.relation, tokenizer, mode=mode,
                                       vocabulary=getattr(args, "vocabulary", None), multi_token=args.multi_token,
                                       vocab_size=weight.shape[0])
        parts = {name: part[: args.limit] if args.limit else part
                 for name, part in split_relation(relation, splits).items()}
        report = {"relation": relation.name, "source": plan.facts.where, "template_source": plan.template_source,
                  "facts_in_file": len(plan.facts.relation.facts), "facts_probed": len(relation.facts),
                  "skipped": relation.skipped, "candidates": len(candidates.names),
                  "split_sizes": {name: len(part) for name, part in parts.items()}, "runs": []}
        reports.append(report)
        if not parts[args.split]:
            report["note"] = f"no {args.split} facts left to score (see skipped); nothing run"
            continue
        if not parts["train"] and any(run.method != "manual" for run in plan.runs):
            report["note"] = "no train facts left to train a probe on (see skipped); nothing run"
            continue
        for index, run in enumerate(plan.runs):
            row = {"method": run.method, "wording": run.wording, "template": run.template}
            prompt, history = run.template, None
            if run.method != "manual":
                torch.manual_seed(args.seed)
                how = args.init or ("words" if run.method == "ptuning" else "vocab")
                encoder = args.encoder if run.method == "ptuning" else "none"
                prompt = ProbePrompt(run.template, tokenizer, embeddings, encoder=encoder,
                                     init=init_vectors(run.template, tokenizer, embeddings.weight, how=how,
                                                       seed=args.seed))
                history = train_probe(model, tokenizer, prompt, parts["train"], parts["dev"], config, weight=weight,
                                      progress=progress)
                row.update(best_epoch=history.best_epoch, dev_nll=[round(x, 4) for x in history.dev_nll],
                           train_seconds=round(history.seconds, 1), encoder=encoder, init=how)
            ranked = rank_facts(model, tokenizer, parts[args.split], prompt, candidates, weight=weight,
                                progress=progress)
            row.update(facts=len(ranked), **rank_metrics([r.rank for r in ranked]))
            row["predictions"] = [{"subject": r.subject, "predicted": r.predicted, "rank": r.rank} for r in ranked]
            if history is not None:
                path = out_dir / f"{_file_name(relation.name)}-{run.method}-{index}.safetensors"
                save_probe(path, prompt, backbone, relation=relation.name,
                           metrics={f"{args.split}_{key}": row[key] for key in ("p_at_1", "p_at_10", "mrr")},
                           training={"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                                     "seed": args.seed, "split_seed": split_seed, "wording": run.wording,
                                     "best_epoch": history.best_epoch})
                row["probe"] = str(path)
            report["runs"].append(row)
    if not any(report["runs"] for report in reports):
        notes = "; ".join(f"{r['relation']}: {r['note']}" for r in reports)
        raise PtuneError(f"nothing to probe: {notes}; try --multi-token, --candidates objects or more facts")

    summary = {"facts": [str(p) for p in args.facts], "relations_file": args.relations, "backbone": args.backbone,
               "split": args.split, "split_seed": split_seed, "seed": args.seed, "candidates": args.candidates,
               "multi_token": args.multi_token, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
               "relations": reports}
    atomic_write(out_dir / "results.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    table = Table(title=escape(f"{args.split} split, candidates: {args.candidates}"
                               f"{' (multi-token)' if args.multi_token else ' (single-token objects)'}, {backbone.name}"))
    for column in ("relation", "method", "template", "facts", "candidates", "P@1", "P@10", "MRR"):
        table.add_column(column, justify="left" if column in ("relation", "method", "template") else "right")
    for report in reports:
        if not report["runs"]:
            table.add_row(escape(report["relation"]), "", escape(report["note"]), "0", str(report["candidates"]),
                          "", "", "")
        for row in report["runs"]:
            table.add_row(escape(report["relation"]), row["method"], escape(row["template"]), str(row["facts"]),
                          str(report["candidates"]), f"{100 * row['p_at_1']:.1f}", f"{100 * row['p_at_10']:.1f}",
                          f"{row['mrr']:.3f}")
    Console().print(table)
    Console(stderr=True).print(f"results: {out_dir / 'results.json'}", highlight=False, markup=False)
    return 0
