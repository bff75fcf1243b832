"""``ptune sweep``: search learning rate, prompt length, depth, reparameterisation and init with Optuna. Each
trial is a ``ptune train`` run (every other option passes through); the study lives in an Optuna storage and
continues when the same command runs again."""

from __future__ import annotations

import argparse
import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path

from ptune.cli import train as train_command
from ptune.cli.options import config_of, dataclass_from, read_config
from ptune.cli.output import err, out, print_json
from ptune.bounds import COUNT, NON_NEGATIVE, POSITIVE
from ptune.config import MethodConfig, TrainConfig
from ptune.errors import PtuneError
from ptune.training.search_space import DEFAULTS, PARSERS, SETTINGS, describe, resolve_space

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
NONE = "-"  # how logs write a missing score
PATH_KEYS = ("train", "dev", "test", "dataset", "backbone")  # may differ between machines sharing a study
SPACE_HELP = {
    "lr": "learning rate: LOW:HIGH:log (log-uniform), LOW:HIGH or choices A,B",
    "length": "prompt length: choices A,B,C or a range LOW:HIGH of whole numbers",
    "layers": "deep: choices of all, top:K, bottom:K or layer numbers joined by '+' (0+2+5)",
    "reparam": "deep: MLP reparameterisation on, off or on,off",
    "init": "prompt and ptuning: some of vocab, labels, random",
}


def storage_url(text: str) -> str:
    if not URL.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a database URL; give e.g. sqlite:///sweep.db or "
                                         "postgresql://user@host/db")
    return text


def add_parser(sub) -> None:
    sweep = sub.add_parser("sweep", help="search hyperparameters with Optuna, each trial a ptune train run")
    train_command.add_options(sweep, skip=SETTINGS)
    sweep.add_argument("--out", help="the sweep's folder: study.db, trials/, best.json, trials.md, trials.json and "
                                     "effects.png (default: runs/sweep-TASK-METHOD)")
    space = sweep.add_argument_group(
        "search space", "a range or choices; one value fixes the option; left out: the config file's value, "
                        "else the method's default range")
    for name in SETTINGS:
        defaults = ", ".join(f"{method} {ranges[name]}" for method, ranges in DEFAULTS.items() if name in ranges)
        space.add_argument(f"--{name}", dest=f"{name}_space", type=PARSERS[name], metavar="SPACE",
                           help=f"{SPACE_HELP[name]} (default: {defaults})")
    add_search_options(sweep, study_name="ptune")
    sweep.set_defaults(func=run)


def add_search_options(parser: argparse.ArgumentParser, *, study_name: str) -> None:
    """The study's options, shared by ``ptune sweep`` and ``ptune probe-sweep``."""
    search = parser.add_argument_group("search")
    search.add_argument("--trials", type=COUNT, default=20,
                        help="finished (completed or pruned) trials the study should hold; a rerun adds the missing")
    search.add_argument("--timeout", type=POSITIVE, metavar="S",
                        help="start no trial after S seconds (a running one finishes) (default: no limit)")
    search.add_argument("--storage", type=storage_url, metavar="URL",
                        help="Optuna storage: a database URL several machines can share, e.g. "
                             "postgresql://user@host/db (default: sqlite:///OUT/study.db)")
    search.add_argument("--study-name", default=study_name, help="the study's name in the storage")
    search.add_argument("--enqueue", action="append", metavar="JSON",
                        help="""a trial to run before the sampler's, as a JSON object of searched settings, e.g. '{"lr": 0.01}' """
                             "(repeatable; settings left out are sampled; one run or queued already is skipped)")
    search.add_argument("--startup-trials", type=NON_NEGATIVE, default=5,
                        help="trials sampled at random (and never pruned) before TPE sampling (and median pruning)")


def run(args: argparse.Namespace) -> int:
    from ptune.training.sweep import (best_trial, enqueue, fail_orphans, finished_count, hide_password,
                                      open_study, optuna_module, show, to_enqueue, trial_rows, write_report)

    optuna = optuna_module()
    config_file = read_config(args.config)
    method = dataclass_from(MethodConfig, args, config_file)
    dataclass_from(TrainConfig, args, config_file, skip=("progress",))  # refused now, not in the first trial
    names = args.task or config_file.get("task")
    if isinstance(names, list) and len(names) > 1:
        raise PtuneError(f"--task {' '.join(names)}: ptune sweep searches one task's options; give one task")
    space = resolve_space(method.method, method.template, {name: getattr(args, f"{name}_space") for name in SETTINGS},
                          config_file)
    if all(setting.fixed for setting in space.values()):
        raise PtuneError(f"nothing to search: every setting of --method {method.method} is fixed; give a range "
                         "(--lr 1e-3:1e-1:log) or several choices (--length 4,8)")
    queue = to_enqueue(space, args.enqueue)  # refused before anything is written
    out_dir = Path(args.out or config_file.get("out") or f"runs/sweep-{_data_name(args, config_file)}-{method.method}")
    if out_dir.exists() and not out_dir.is_dir():
        raise PtuneError(f"--out {out_dir}: is a file, not a folder; choose a folder for the sweep")
    storage = args.storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    options = config_of(args, config_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(storage, args.study_name, startup_trials=args.startup_trials,
                       record={"space": describe(space),
                               "options": {k: v for k, v in options.items() if k not in PATH_KEYS}})
    for number in fail_orphans(study):
        err().log(f"trial {number}: killed mid-way by an earlier run; marked failed (not counted)", markup=False)
    if queued := enqueue(study, queue):
        err().log(f"{queued} trial(s) queued ahead of the sampler's (--enqueue)", markup=False)

    def objective(trial) -> float:
        return _trial(trial, args, space, out_dir, optuna)

    def finished(study, trial) -> None:
        best = best_trial(study)
        _report(study, trial_rows(study, space), space, out_dir, options, best, write_report)
        score = trial.value if trial.value is not None else max(trial.intermediate_values.values(), default=None)
        shown = ", ".join(f"{name} {show(value, NONE)}" for name, value in trial.params.items())
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no completed trial yet"
        err().log(f"trial {trial.number} {trial.state.name.lower()}: dev {show(score, NONE)} ({shown}); {best_text}; "
                  f"{finished_count(study)}/{args.trials}", markup=False)

    missing = args.trials - finished_count(study)
    if missing > 0:
        finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        study.optimize(objective, n_trials=missing, timeout=args.timeout,
                       callbacks=[optuna.study.MaxTrialsCallback(args.trials, states=finished_states), finished])
    best = best_trial(study)
    _report(study, trial_rows(study, space), space, out_dir, options, best, write_report)
    states = [trial.state.name.lower() for trial in study.get_trials(deepcopy=False)]
    print_json({"study": args.study_name, "storage": hide_password(storage),
                "trials": {state: states.count(state) for state in ("complete", "pruned", "fail", "running")},
                "best": {"trial": best.number, "dev": best.value, "settings": best.params,
                         "run": best.user_attrs.get("run")} if best else None,
                "config": str(out_dir / "best.json") if best else None, "table": str(out_dir / "trials.md"),
                "plot": str(out_dir / "effects.png")})
    return 0


def _trial(trial, args: argparse.Namespace, space: dict, out_dir: Path, optuna) -> float:
    """One trial: a `ptune train` run with the trial's settings into ``out_dir/trials/trial-NNNN``."""
    from ptune.storage.prompt_files import read_header
    from ptune.tasks.metrics import MAIN_KEY
    from ptune.training.sweep import EpochPruning, mark_worker, show

    mark_worker(trial)
    values = {name: setting.choices[0] if setting.fixed else setting.suggest(trial) for name, setting in space.items()}
    run_dir = out_dir / "trials" / f"trial-{trial.number:04d}"
    trial.set_user_attr("run", str(run_dir))
    trial_args = argparse.Namespace(**{**vars(args), **values, "out": str(run_dir), "overwrite": True, "resume": None,
                                       "seeds": None, "quiet": args.quiet or not args.verbose,
                                       "argv": None})  # no trial ran as `ptune sweep`'s command line
    pruning = EpochPruning(trial)
    try:
        with out().capture(), _trial_logs(args.verbose):  # the run's results.json holds what `train` prints
            train_command.run(trial_args, on_epoch=pruning)
    except PtuneError as error:
        raise PtuneError(f"trial {trial.number} ({', '.join(f'{k} {show(v, NONE)}' for k, v in values.items())}): "
                         f"{error}") from None
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    trial.set_user_attr("best_epoch", results["best_epoch"])
    trial.set_user_attr("metric", MAIN_KEY[read_header(run_dir / "prompt.safetensors")["task"]["metric"]])
    if pruning.pruned_at is not None:
        raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
    return pruning.best


def _report(study, rows, space, out_dir: Path, options: dict, best, write_report) -> None:
    """The table, the plot and, once a trial completed, the best configuration as a --config file."""
    metric = next((t.user_attrs["metric"] for t in study.get_trials(deepcopy=False) if "metric" in t.user_attrs),
                  "score")
    write_report(out_dir, rows, space, metric)
    if best is not None:
        from ptune.storage.atomic import atomic_write

        fixed = {name: setting.choices[0] for name, setting in space.items() if setting.fixed}
        text = json.dumps({**options, **fixed, **best.params}, indent=2) + "\n"
        atomic_write(out_dir / "best.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextmanager
def _trial_logs(verbose: bool):
    """A trial's per-epoch log lines only with -v: the sweep reports one line per trial."""
    logger = logging.getLogger("ptune")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _data_name(args: argparse.Namespace, config_file: dict) -> str:
    """A short name for the default folder: the task, the training file's name or the dataset's."""
    task = args.task[0] if args.task else config_file.get("task")
    where = args.train or config_file.get("train") or getattr(args, "dataset", None) or config_file.get("dataset")
    return task if isinstance(task, str) else Path(where).stem if where else "data"
