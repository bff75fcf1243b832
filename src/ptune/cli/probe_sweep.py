"""``ptune probe-sweep``: search a learned probe's settings on facts files with Optuna (learning rate, [P] tokens,
init, P-tuning encoder and, given several ``--manual`` wordings, the wording). Each trial is a ``ptune probe
--facts`` run scored on the dev split (mean P@1 over the relations); the backbone loads once for every trial.
The study, its report and ``best.json`` (the winner as a ``ptune probe`` command) are those of ``ptune sweep``."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
from pathlib import Path

from ptune.analysis.probing.command import add_probe_options
from ptune.cli.options import add_device_options
from ptune.cli.output import err, print_json
from ptune.cli.sweep import add_search_options
from ptune.errors import PtuneError
from ptune.training.search_space import Setting, lr_space, length_space

SEARCHED = ("lr", "prompts", "init", "encoder", "wording")
FIXED = ("facts", "relations", "candidates", "multi_token", "backbone", "epochs", "batch_size", "seed", "split_seed",
         "limit")
DEFAULTS = {"ptuning": {"lr": "1e-3:3e-2:log", "prompts": "1,2,3,4,6", "init": "words,vocab",
                        "encoder": "lstm,mlp,none"},
            "prompt": {"lr": "1e-3:3e-2:log", "prompts": "4,8,16", "init": "words,vocab"}}
CHOICES = {"init": ("words", "vocab"), "encoder": ("lstm", "mlp", "none")}


def choice_space(name: str):
    """A parser of comma-separated choices among ``CHOICES[name]``."""
    def parse(text: str) -> Setting:
        parts = [part.strip() for part in text.split(",")]
        bad = [part for part in parts if part not in CHOICES[name]]
        if bad or len(set(parts)) != len(parts):
            raise argparse.ArgumentTypeError(f"{text!r}: give some of {', '.join(CHOICES[name])}, each once, "
                                             "separated by commas")
        return Setting(name, text, choices=tuple(parts))
    return parse


def prompts_space(text: str) -> Setting:
    setting = length_space(text)
    return Setting("prompts", setting.text, setting.choices, setting.low, setting.high, setting.log, setting.whole)


PARSERS = {"lr": lr_space, "prompts": prompts_space, "init": choice_space("init"), "encoder": choice_space("encoder")}
HELP = {"lr": "learning rate: LOW:HIGH:log, LOW:HIGH or choices A,B",
        "prompts": "[P] tokens (per side for ptuning, in front for prompt): choices A,B,C or LOW:HIGH",
        "init": "initial [P] vectors: some of words, vocab",
        "encoder": "ptuning: the prompt encoder, some of lstm, mlp, none"}


def add_parser(sub) -> None:
    parser = sub.add_parser("probe-sweep", help="search a learned probe's settings on facts files with Optuna")
    add_probe_options(parser, skip=("relation", "probe", "template", "split", "out", "method", "manual", *SEARCHED))
    parser.add_argument("--method", choices=tuple(DEFAULTS), default="ptuning",
                        help="the probe searched: ptuning ([P] tokens around the wording) or prompt (in front of it)")
    parser.add_argument("--manual", nargs="+", metavar="TEMPLATE",
                        help="wordings the probe starts from, with one {subject} (LAMA's [X] also read); several: "
                             "the wording is searched too (default: each relation's --relations template)")
    parser.add_argument("--out", help="the sweep's folder: study.db, trials/, best.json, trials.md, trials.json and "
                                      "effects.png (default: runs/probe-sweep-FACTS)")
    space = parser.add_argument_group("search space", "a range or choices; one value fixes the setting; left out: the "
                                                      "method's default range")
    for name, parse in PARSERS.items():
        defaults = ", ".join(f"{method} {ranges[name]}" for method, ranges in DEFAULTS.items() if name in ranges)
        space.add_argument(f"--{name}", dest=f"{name}_space", type=parse, metavar="SPACE",
                           help=f"{HELP[name]} (default: {defaults})")
    add_search_options(parser, study_name="ptune-probe")
    add_device_options(parser)
    parser.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> dict[str, Setting]:
    """The searched and fixed settings: the command line's, else the method's default range."""
    space = {}
    for name in ("lr", "prompts", "init", "encoder"):
        given = getattr(args, f"{name}_space")
        if given is not None and name not in DEFAULTS[args.method]:
            raise PtuneError(f"--{name} {given.text}: --method {args.method} has no {name}; drop --{name}")
        if given is not None or name in DEFAULTS[args.method]:
            space[name] = given or PARSERS[name](DEFAULTS[args.method][name])
    if args.manual:
        if any("[P]" in wording for wording in args.manual):
            raise PtuneError("--manual: wordings have no [P] tokens; the sweep places them (--prompts)")
        space["wording"] = Setting("wording", " | ".join(args.manual), choices=tuple(dict.fromkeys(args.manual)))
    return space


def run(args: argparse.Namespace) -> int:
    from ptune.analysis.probing.facts_command import plan_facts
    from ptune.training.sweep import (best_trial, enqueue, fail_orphans, finished_count, hide_password,
                                      open_study, optuna_module, show, to_enqueue, trial_rows, write_report)

    if not args.facts:
        raise PtuneError("ptune probe-sweep searches probes of your facts: give --facts FILE (LAMA / T-REx JSONL or "
                         "TSV), e.g. --facts P36.jsonl --relations relations.jsonl")
    optuna = optuna_module()
    space = resolve(args)
    if all(setting.fixed for setting in space.values()):
        raise PtuneError("nothing to search: every setting is fixed; give a range (--lr 1e-3:3e-2:log) or several "
                         "choices (--prompts 1,3)")
    plan_facts(_probe_args(args, {name: s.choices[0] if s.choices else s.low for name, s in space.items()},
                           Path(".")))  # files, templates and options checked before the model loads
    queue = to_enqueue(space, args.enqueue)  # refused before anything is written
    out_dir = Path(args.out or f"runs/probe-sweep-{Path(args.facts[0]).stem}")
    if out_dir.exists() and not out_dir.is_dir():
        raise PtuneError(f"--out {out_dir}: is a file, not a folder; choose a folder for the sweep")
    storage = args.storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    options = {name: getattr(args, name) for name in FIXED} | {"method": args.method}
    out_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(storage, args.study_name, startup_trials=args.startup_trials,
                       record={"space": {name: s.text for name, s in space.items()}, "options": options})
    for number in fail_orphans(study):
        err().log(f"trial {number}: killed mid-way by an earlier run; marked failed (not counted)", markup=False)
    if queued := enqueue(study, queue):
        err().log(f"{queued} trial(s) queued ahead of the sampler's (--enqueue)", markup=False)
    backbone = _backbone(args)

    def report() -> None:
        best = best_trial(study)
        write_report(out_dir, trial_rows(study, space), space, "P@1")
        if best is not None:
            from ptune.storage.atomic import atomic_write

            text = json.dumps({"settings": _values(space, best.params), "dev_p_at_1": best.value,
                               "command": command(args, _values(space, best.params))}, indent=2) + "\n"
            atomic_write(out_dir / "best.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def finished(study, trial) -> None:
        report()
        best = best_trial(study)
        shown = ", ".join(f"{name} {show(value, '-')}" for name, value in trial.params.items())
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no completed trial yet"
        err().log(f"trial {trial.number} {trial.state.name.lower()}: dev P@1 {show(trial.value, '-')} ({shown}); "
                  f"{best_text}; {finished_count(study)}/{args.trials}", markup=False)

    def objective(trial) -> float:
        return _trial(trial, args, space, out_dir, backbone)

    missing = args.trials - finished_count(study)
    if missing > 0:
        study.optimize(objective, n_trials=missing, timeout=args.timeout,
                       callbacks=[optuna.study.MaxTrialsCallback(args.trials), finished])
    report()
    best = best_trial(study)
    states = [trial.state.name.lower() for trial in study.get_trials(deepcopy=False)]
    print_json({"study": args.study_name, "storage": hide_password(storage),
                "trials": {state: states.count(state) for state in ("complete", "fail", "running")},
                "best": {"trial": best.number, "dev_p_at_1": best.value, "settings": _values(space, best.params),
                         "command": command(args, _values(space, best.params))} if best else None,
                "config": str(out_dir / "best.json") if best else None, "table": str(out_dir / "trials.md"),
                "plot": str(out_dir / "effects.png")})
    return 0


def _values(space: dict[str, Setting], params: dict) -> dict:
    """A trial's value of every setting, fixed ones included."""
    return {name: params.get(name, setting.choices[0] if setting.fixed else None) for name, setting in space.items()}


def _trial(trial, args: argparse.Namespace, space: dict[str, Setting], out_dir: Path, backbone) -> float:
    """One ``ptune probe --facts`` run on the dev split with the trial's settings; its mean P@1 over relations."""
    from ptune.analysis.probing.facts_command import run_facts
    from ptune.training.sweep import mark_worker

    mark_worker(trial)
    values = {name: setting.choices[0] if setting.fixed else setting.suggest(trial) for name, setting in space.items()}
    run_dir = out_dir / "trials" / f"trial-{trial.number:04d}"
    trial.set_user_attr("run", str(run_dir))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its results.json
        # holds the run's table; the sweep logs one line per trial
        run_facts(_probe_args(args, values, run_dir), backbone=backbone)
    relations = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["relations"]
    learned = [run for relation in relations for run in relation["runs"] if run["method"] == args.method]
    if not learned:
        raise PtuneError(f"trial {trial.number}: no relation had dev facts to score; see {run_dir / 'results.json'}")
    trial.set_user_attr("best_epoch", max(run["best_epoch"] for run in learned))
    return sum(run["p_at_1"] for run in learned) / len(learned)


def _probe_args(args: argparse.Namespace, values: dict, run_dir: Path) -> argparse.Namespace:
    """``ptune probe --facts``'s options for one trial: the fixed ones, the trial's values, the dev split."""
    return argparse.Namespace(**{
        **vars(args), "relation": None, "probe": None, "template": None, "split": "dev", "out": str(run_dir),
        "quiet": True, "method": [args.method],
        "manual": [values["wording"]] if "wording" in values else args.manual, "lr": values["lr"],
        "prompts": values["prompts"], "init": values["init"], "encoder": values.get("encoder", "none")})


def command(args: argparse.Namespace, values: dict) -> str:
    """The ``ptune probe`` command that trains the winner and scores it on test."""
    words = ["ptune", "probe", "--facts", *args.facts]
    if args.relations:
        words += ["--relations", args.relations]
    if "wording" in values or args.manual:
        words += ["--manual", values.get("wording") or args.manual[0]]
    words += ["--method", args.method, "--backbone", args.backbone, "--candidates", args.candidates,
              *(["--multi-token"] if args.multi_token else []), "--epochs", str(args.epochs), "--lr",
              f"{values['lr']:.4g}", "--prompts", str(values["prompts"]), "--init", values["init"],
              *(["--encoder", values["encoder"]] if "encoder" in values else []), "--batch-size", str(args.batch_size),
              "--seed", str(args.seed), *(["--split-seed", str(args.split_seed)] if args.split_seed is not None else [])]
    return shlex.join(words)


def _backbone(args: argparse.Namespace):
    from ptune.config import DeviceConfig
    from ptune.model.backbones import load_backbone

    return load_backbone(args.backbone, trust_remote_code=args.trust_remote_code, **DeviceConfig.of(args))
