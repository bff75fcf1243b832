"""``ptune train --shots K``: the few-shot setting's options (torch-free, for ``--help``) and what they
become: a `Shots` request, the candidate templates and learning rates, checked before anything loads."""

from __future__ import annotations

import argparse

from ptune.bounds import COUNT, POSITIVE, Bound
from ptune.errors import PtuneError

# Keys a config file (and a --seeds folder's config.json) may hold for the few-shot setting.
KEYS = ("shots", "shots_per", "cv_folds", "templates", "lrs")


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "few-shot setting", "FewGLUE/FewNLU: train on K drawn examples, select by cross-validation on them; the "
                            "dev split is not read, the test split is scored once at the end")
    group.add_argument("--shots", type=COUNT, metavar="K",
                       help="draw K labelled training examples (seeded by --seed; each of --seeds draws its own)")
    group.add_argument("--shots-per", choices=("total", "class"),
                       help="K examples in all (total, the default) or K of every label (class, stratified)")
    group.add_argument("--cv-folds", type=Bound(2, whole=True), metavar="F",
                       help="model selection by F-fold cross-validation of the K examples (default: 4)")
    group.add_argument("--templates", nargs="+", metavar="TEMPLATE",
                       help="candidate templates (as --template writes them); the cross-validation picks one")
    group.add_argument("--lrs", nargs="+", type=POSITIVE, metavar="LR",
                       help="candidate learning rates; the cross-validation picks one (instead of --lr)")


def requested(args: argparse.Namespace, config_file: dict) -> dict:
    """The few-shot options given on the command line, then in the config file (None where absent)."""
    return {key: getattr(args, key, None) if getattr(args, key, None) is not None else config_file.get(key)
            for key in KEYS}


def check(args: argparse.Namespace, config_file: dict, method=None):
    """The `Shots` request of the options, or None without --shots; refuses what cannot combine (and a
    candidate template that does not suit ``method``, a MethodConfig), before any data or model loads."""
    import dataclasses

    from ptune.batch.templates import parse_template
    from ptune.data.shots import Shots

    given = requested(args, config_file)
    if given["shots"] is None:
        extra = [f"--{key.replace('_', '-')}" for key in KEYS[1:] if given[key] is not None]
        if extra:
            raise PtuneError(f"{', '.join(extra)}: few-shot options; give --shots K too")
        return None
    names = getattr(args, "task", None) or config_file.get("task")
    if isinstance(names, list) and len(names) > 1:
        raise PtuneError("--shots draws from one task; multi-task training takes the full data")
    _check_lists(given)
    if given["templates"] and (getattr(args, "template", None) or config_file.get("template")):
        raise PtuneError("--template and --templates: give one template, or several candidates to choose from")
    if given["lrs"] and (getattr(args, "lr", None) is not None or config_file.get("lr") is not None):
        raise PtuneError("--lr and --lrs: give one learning rate, or several candidates to choose from")
    for template in given["templates"] or ():
        parse_template(template)
        if method is not None:
            dataclasses.replace(method, template=template)  # [P] tokens suit prompt and ptuning only
    for key, values in (("templates", given["templates"]), ("lrs", given["lrs"])):
        if values and len(set(values)) != len(values):
            raise PtuneError(f"--{key} {' '.join(map(str, values))}: a candidate is given twice; give each once")
    shots = Shots(COUNT.check("--shots", given["shots"]), given["shots_per"] or "total",
                  given["cv_folds"] if given["cv_folds"] is not None else 4)
    if getattr(args, "init_from", None):
        raise PtuneError("--shots with --init-from: the cross-validation trains fresh prompts; drop --init-from")
    if getattr(args, "train_limit", None) is not None or config_file.get("train_limit") is not None:
        raise PtuneError("--shots with --train-limit: the draw chooses the training examples; drop --train-limit")
    return shots


def _check_lists(given: dict) -> None:
    """Candidates from a config file are lists too: templates of text, learning rates above 0."""
    for key, fits in (("templates", lambda v: isinstance(v, str)), ("lrs", POSITIVE.fits)):
        values = given[key]
        if values is not None and (not isinstance(values, list) or not values or not all(map(fits, values))):
            what = "texts" if key == "templates" else "numbers above 0"
            raise PtuneError(f"--{key} is {values!r}: give a list of {what}")


def log_line(task_name: str, shots, record: dict) -> str:
    """The log line that says what the selection chose and that the dev split was not read."""
    chosen = record["chosen"]
    return (f"few-shot {task_name}: {shots.k} examples ({shots.per}), {len(record['candidates'])} candidate(s) by "
            f"{shots.folds}-fold cross-validation: chose template {chosen['template']!r}, lr {chosen['lr']:g} "
            f"(cross-validated {record['metric']} {chosen['cv_mean']:.4f}); the dev split is {record['dev_split']}")


def candidates_of(args: argparse.Namespace, config_file: dict) -> tuple[list[str], list[float]]:
    """The candidate templates and learning rates (--templates, --lrs) the cross-validation compares."""
    given = requested(args, config_file)
    return list(given["templates"] or ()), [float(lr) for lr in given["lrs"] or ()]


def dev_file(args: argparse.Namespace, config_file: dict) -> str | None:
    """The --dev file to read: none with --shots (few-shot selection never reads it; the log says so)."""
    path = args.dev or config_file.get("dev")
    if path and requested(args, config_file)["shots"] is not None:
        from ptune.cli.output import err

        err().log(f"--dev {path} is not read: with --shots, model selection and early stopping use "
                  "cross-validation on the drawn examples only", markup=False)
        return None
    return path


def redraw(task, record: dict, seed: int):
    """The few-shot task an interrupted run drew (its selection ``record`` names K, per and folds)."""
    from ptune.data.shots import Shots, few_shot_task

    return few_shot_task(task, Shots(record["shots"], record["shots_per"], record["cv_folds"]), seed)


def across_seeds(results: dict[str, dict]) -> dict:
    """For a --seeds summary: the chosen candidate's cross-validated score as mean, std and per-seed values,
    and what each seed chose (``results``: each seed's results.json)."""
    from ptune.training.seeds import summarise

    metric = next(iter(results.values()))["fewshot"]["metric"]
    return {"cv": summarise({name: {metric: r["fewshot"]["chosen"]["cv_mean"]} for name, r in results.items()}),
            "chosen": {name: {k: r["fewshot"]["chosen"][k] for k in ("template", "lr")} for name, r in results.items()}}
