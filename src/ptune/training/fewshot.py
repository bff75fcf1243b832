"""Few-shot model selection as FewNLU prescribes: each candidate setting (a template, a learning rate) is
trained on the train part and scored on the dev part of every cross-validation fold of the K drawn examples;
the best mean wins. The task's own dev split is never read."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ptune.config import MethodConfig, TrainConfig
from ptune.data.shots import Shots, counts, few_shot_task, folds
from ptune.data.tasks import Task
from ptune.errors import PtuneError
from ptune.infer.predict import evaluate
from ptune.model.backbones import Backbone
from ptune.model.prompt_model import PromptModel
from ptune.tasks.metrics import MAIN_KEY
from ptune.training.loop import data_digest, train

log = logging.getLogger(__name__)

DEV_NOT_READ = ("not read: with --shots, model selection and early stopping use cross-validation folds of the "
                "drawn examples only (FewNLU)")


@dataclass(frozen=True)
class Candidate:
    """One setting the cross-validation compares: a template (None: the method's own) and a learning rate
    (None: the method's default)."""

    template: str | None = None
    lr: float | None = None


def candidates(templates: Sequence[str] = (), lrs: Sequence[float] = (), *, method: MethodConfig | None = None,
               config: TrainConfig | None = None) -> list[Candidate]:
    """Every template with every learning rate, in the order given (the first wins a tie); without
    ``templates`` the method's own template, without ``lrs`` the training options' rate."""
    if len(set(templates)) != len(templates):
        raise PtuneError("--templates: a template is given twice; give each once")
    if len(set(lrs)) != len(lrs):
        raise PtuneError("--lrs: a learning rate is given twice; give each once")
    chosen_templates = list(templates) or [method.template if method else None]
    chosen_lrs = list(lrs) or [config.lr if config else None]
    return [Candidate(t, lr) for t in chosen_templates for lr in chosen_lrs]


def setting(method: MethodConfig, config: TrainConfig, candidate: Candidate) -> tuple[MethodConfig, TrainConfig]:
    """The method and training options of ``candidate`` (re-validated: a template must suit the method)."""
    if candidate.template is not None:
        method = dataclasses.replace(method, template=candidate.template)
    if candidate.lr is not None:
        config = dataclasses.replace(config, lr=candidate.lr)
    return method, config


def cross_validate(backbone: Backbone, task: Task, method: MethodConfig, config: TrainConfig, shots: Shots,
                   settings: Sequence[Candidate]) -> dict:
    """Score every candidate by ``shots.folds``-fold cross-validation on ``task.train`` (the K drawn examples;
    ``task.dev`` is not read) and choose the best mean. Each fold trains a fresh model on its train part with
    no dev data (the loop keeps the epoch of lowest training loss, as the final run on all K will) and scores
    it on its dev part. Folds and initialisation are seeded by ``config.seed``.

    Returns the record results.json keeps: the folds, each candidate's per-fold and mean scores, and the
    chosen candidate (``chosen``: its index, template and learning rate)."""
    if not settings:
        raise PtuneError("few-shot selection needs at least one candidate setting")
    parts = folds(task.train, shots.folds, config.seed)
    main = MAIN_KEY[task.metric]
    quiet = dataclasses.replace(config, progress=False)
    table = []
    for number, candidate in enumerate(settings, 1):
        cand_method, cand_config = setting(method, quiet, candidate)
        scores = []
        for fold_train, fold_dev in parts:
            fold_task = dataclasses.replace(task, train=fold_train, dev=[], test=[])
            model = PromptModel.for_task(backbone, fold_task, cand_method)
            train(model, fold_task, cand_config)
            scores.append(evaluate(model, fold_dev, task.metric)[main])
        mean = math.fsum(scores) / len(scores)
        spread = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / max(len(scores) - 1, 1))
        row = {"template": cand_method.template, "lr": cand_config.resolved(cand_method).lr, "fold_scores": scores,
               "mean": mean, "std": spread}
        table.append(row)
        log.info("few-shot candidate %d/%d (template %r, lr %g): cross-validated %s %.4f (folds %s)", number,
                 len(settings), row["template"], row["lr"], main, mean, ", ".join(f"{s:.3f}" for s in scores))
    best = max(range(len(table)), key=lambda i: (table[i]["mean"], -i))  # a tie: the first given
    return {**shots.to_dict(), "seed": config.seed, "drawn": counts(task.train),
            "drawn_sha256": data_digest(task.train), "metric": main,
            "fold_sizes": [[len(a), len(b)] for a, b in parts], "candidates": table,
            "chosen": {"index": best, "template": table[best]["template"], "lr": table[best]["lr"],
                       "cv_mean": table[best]["mean"]},
            "dev_split": DEV_NOT_READ}


def select(backbone: Backbone, task: Task, method: MethodConfig, config: TrainConfig, shots: Shots,
           templates: Sequence[str] = (), lrs: Sequence[float] = ()) -> tuple[Task, MethodConfig, TrainConfig, dict]:
    """The few-shot protocol up to the final run: draw K examples of ``task.train`` (seed ``config.seed``),
    cross-validate the candidates on them and return the few-shot task (K training examples, no dev split,
    the test split), the chosen method and training options (to retrain on all K) and the selection record."""
    small = few_shot_task(task, shots, config.seed)
    log.info("few-shot: %d training examples drawn (%s; seed %d); the dev split is %s", len(small.train),
             ", ".join(f"{k} {v}" for k, v in counts(small.train).items()), config.seed, DEV_NOT_READ)
    settings = candidates(templates, lrs, method=method, config=config)
    record = cross_validate(backbone, small, method, config, shots, settings)
    chosen = settings[record["chosen"]["index"]]
    method, config = setting(method, config, chosen)
    return small, method, config, record
