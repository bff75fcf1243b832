"""Hyperparameter search over ptune runs with Optuna: a study in an Optuna storage (continued after a kill,
shared by several machines), TPE sampling, pruning on the per-epoch dev score, and the study's report:
the trials as a table, the best configuration and a plot of each setting's effect."""

from __future__ import annotations

import json
import math
import os
import socket
import warnings
from pathlib import Path

from ptune.errors import PtuneError
from ptune.storage.atomic import atomic_write
from ptune.training.search_space import Setting

HEARTBEAT_S = 60  # a running trial writes a heartbeat this often; one silent for GRACE_S is failed
GRACE_S = 300
FINISHED = ("COMPLETE", "PRUNED")


def optuna_module():
    """Optuna, or what to install."""
    try:
        import optuna
    except ImportError:
        raise PtuneError("ptune sweep needs Optuna: pip install 'ptune[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_study(storage_url: str, name: str, *, startup_trials: int, record: dict):
    """Create the study ``name`` in ``storage_url``, or continue it: it must have been started with the same
    ``record`` (search space and run options). Trials a killed process left running are marked failed."""
    optuna = optuna_module()
    import sqlalchemy.exc

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(storage_url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", load_if_exists=True,
            sampler=optuna.samplers.TPESampler(n_startup_trials=startup_trials),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0))
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, ImportError) as error:
        raise PtuneError(f"--storage {hide_password(storage_url)}: cannot open the study ({' '.join(str(error).split())})"
                         "; give a reachable database URL, e.g. sqlite:///sweep.db") from None
    started_with = study.user_attrs.get("ptune")
    if started_with is None:
        study.set_user_attr("ptune", record)
    elif started_with != record:
        changed = sorted(key for part in ("space", "options")
                         for key in set(started_with.get(part, {})) | set(record[part])
                         if started_with.get(part, {}).get(key) != record[part].get(key))
        raise PtuneError(f"study {name!r} in {hide_password(storage_url)} was started with other options "
                         f"({', '.join(changed) or 'its record'}); rerun the same command to continue it, or give "
                         "another --study-name or --out")
    return study


def to_enqueue(space: dict[str, Setting], given: list[str] | None) -> list[dict]:
    """The ``--enqueue`` JSON objects, checked against the searched settings: each a trial to run ahead of the
    sampler's (a configuration known to be good: the defaults, a paper's); settings it leaves out are sampled."""
    searched = {name: setting for name, setting in space.items() if not setting.fixed}
    out = []
    for text in given or ():
        try:
            values, problem = json.loads(text), ""
        except ValueError as error:
            values, problem = None, f" ({error})"
        if not isinstance(values, dict):
            raise PtuneError(f"--enqueue {text!r}: not a JSON object of settings{problem}; "
                             """e.g. --enqueue '{"lr": 0.01, "length": 16}'""")
        for name, value in values.items():
            setting = searched.get(name)
            if setting is None:
                raise PtuneError(f"--enqueue: {name!r} is not searched here; searched: {', '.join(searched) or 'nothing'}")
            if setting.choices and value not in setting.choices:
                raise PtuneError(f"--enqueue {name}={value!r}: not one of its choices {list(setting.choices)}")
            if not setting.choices and (isinstance(value, bool) or not isinstance(value, (int, float))
                                        or not setting.low <= value <= setting.high
                                        or (setting.whole and value != int(value))):
                raise PtuneError(f"--enqueue {name}={value!r}: outside its range {setting.text}")
        out.append(values)
    return out


def enqueue(study, trials: list[dict]) -> int:
    """Queue ``to_enqueue``'s trials; one already queued or run with the same settings is not queued again.
    Returns how many were queued."""
    queued = 0
    for values in trials:
        before = len(study.get_trials(deepcopy=False))
        study.enqueue_trial(values, skip_if_exists=True)
        queued += len(study.get_trials(deepcopy=False)) > before
    return queued


def fail_orphans(study) -> list[int]:
    """Mark failed the running trials of this machine whose process is gone (killed mid-way); those of other
    machines are failed by Optuna once their heartbeat is older than GRACE_S. Returns their numbers."""
    optuna = optuna_module()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", {})
        if worker.get("host") == socket.gethostname() and not _alive(worker.get("pid")):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            failed.append(trial.number)
    return failed


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def mark_worker(trial) -> None:
    """Record which process runs ``trial``, so a rerun on this machine can tell that it was killed."""
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})


def finished_count(study) -> int:
    """Trials that count towards --trials: completed and pruned ones (failed ones do not)."""
    return sum(trial.state.name in FINISHED for trial in study.get_trials(deepcopy=False))


class EpochPruning:
    """An ``on_epoch`` for ``training.loop.train``: reports each epoch's dev score to the Optuna trial and stops
    the run when the pruner gives up on it (the median of earlier trials' scores at that epoch is higher)."""

    def __init__(self, trial):
        self.trial, self.best, self.pruned_at = trial, -math.inf, None

    def __call__(self, record: dict) -> bool:
        if not any(key.startswith("dev_") for key in record):
            raise PtuneError("ptune sweep compares trials by their dev score, and this task has no dev split; "
                             "give --dev FILE (or a dataset with a validation split)")
        self.best = max(self.best, record["score"])
        self.trial.report(record["score"], record["epoch"])
        if self.trial.should_prune():
            self.pruned_at = record["epoch"]
            return True
        return False


# -- the report --------------------------------------------------------------------------------------
def trial_rows(study, space: dict[str, Setting]) -> list[dict]:
    """One row per trial: number, state, dev score (a pruned trial: its best epoch's), settings, best epoch."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        score = trial.value if trial.value is not None else max(trial.intermediate_values.values(), default=None)
        settings = {name: trial.params.get(name, setting.choices[0] if setting.fixed else None)
                    for name, setting in space.items()}
        rows.append({"trial": trial.number, "state": trial.state.name.lower(), "dev": score, **settings,
                     "best_epoch": trial.user_attrs.get("best_epoch"), "run": trial.user_attrs.get("run")})
    return rows


def best_trial(study):
    """The completed trial with the highest dev score, or None."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return max(complete, key=lambda t: t.value, default=None)


def write_report(out_dir: Path, rows: list[dict], space: dict[str, Setting], metric: str) -> None:
    """``trials.json``, ``trials.md`` and ``effects.png`` in ``out_dir``, each written atomically."""
    text = json.dumps(rows, indent=2) + "\n"
    atomic_write(out_dir / "trials.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    columns = ["trial", "state", "dev", *space, "best_epoch"]
    lines = ["| " + " | ".join(f"dev {metric}" if c == "dev" else c.replace("_", " ") for c in columns) + " |",
             "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(show(row[c]) for c in columns) + " |" for row in rows]
    table = "\n".join(lines) + "\n"
    atomic_write(out_dir / "trials.md", lambda tmp: tmp.write_text(table, encoding="utf-8"))
    plot_effects(rows, space, out_dir / "effects.png", metric=metric)


def show(value, missing: str = "") -> str:
    """A setting or score as tables and logs write it: on/off, 4 significant digits, ``missing`` for None."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.4g}"
    return missing if value is None else str(value)


def plot_effects(rows: list[dict], space: dict[str, Setting], path: Path, *, metric: str) -> None:
    """One panel per searched setting: each finished trial's dev score against the setting's value
    (filled: completed, hollow: pruned), written atomically as a PNG."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    searched = [setting for setting in space.values() if not setting.fixed] or list(space.values())[:1]
    done = [row for row in rows if row["state"] in ("complete", "pruned") and row["dev"] is not None]
    fig = Figure(figsize=(3.2 * max(len(searched), 1), 3.2))
    axes = fig.subplots(1, max(len(searched), 1), squeeze=False)[0]
    for ax, setting in zip(axes, searched):
        labels = [show(choice) for choice in setting.choices]
        for state, fill in (("complete", "tab:blue"), ("pruned", "none")):
            points = [row for row in done if row["state"] == state]
            xs = [labels.index(show(r[setting.name])) if setting.choices else r[setting.name] for r in points]
            if points:
                ax.scatter(xs, [r["dev"] for r in points], facecolors=fill, edgecolors="tab:blue", label=state)
        if setting.choices:
            ax.set_xticks(range(len(labels)), labels)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        else:
            if setting.log:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # the decades only: minor labels overlap
            ax.set_xlim(setting.low, setting.high)
        ax.set(xlabel=setting.name, ylabel=f"dev {metric}")
    if done:
        axes[0].legend(loc="best", fontsize="small")
    fig.suptitle(f"dev {metric} by setting ({len(done)} trials)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def hide_password(url: str) -> str:
    """``url`` with any password replaced by ***, for messages."""
    head, sep, tail = url.partition("://")
    if not sep or "@" not in tail:
        return url
    credentials, _, host = tail.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{head}://{user}:***@{host}" if ":" in credentials else url
