"""Multi-task prompt training (P-tuning v2, section 4.3): one shared prompt, a head per task,
mixed batches drawn from every task. Each task is then saved as its own prompt file (the shared
prompt with that task's head), which ``ptune train --init-from`` can continue on one task."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ptune.model.backbones import Backbone
from ptune.storage.prompt_files import save_prompt
from ptune.config import MethodConfig, TrainConfig
from ptune.data.tasks import Task
from ptune.batch.encoding import batches, truncation_counts
from ptune.errors import PtuneError
from ptune.infer.predict import predict
from ptune.tasks.metrics import MAIN_KEY, score
from ptune.infer.bank import PromptBank
from ptune.model.prompt_model import PromptModel, frequent_ids
from ptune.model import placement
from ptune.model.checkpointing import checkpointed
from ptune.training.curves import plot_curve
from ptune.training.loop import (Selection, TrainResult, log_epoch, make_optimiser, optimiser_step, prepare_out_dir,
                                 seed_everything)

log = logging.getLogger(__name__)


def shared_prompt_bank(backbone: Backbone, tasks: Sequence[Task], config: MethodConfig) -> PromptBank:
    """A PromptModel per task whose prompt modules are one shared object; heads are separate."""
    if config.method == "finetune" or config.tune_backbone:
        raise PtuneError("multi-task training shares a prompt on a frozen backbone: use prompt, ptuning or deep")
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise PtuneError(f"multi-task training needs distinct tasks, got {', '.join(names)}")
    models = {task.name: PromptModel.for_task(backbone, task, config) for task in tasks}
    first = models[names[0]]
    for name in names[1:]:
        model = models[name]
        if model.template.num_prompts != first.template.num_prompts:
            raise PtuneError(f"tasks {names[0]} and {name} have templates with different numbers of [P]; "
                             "a shared prompt needs the same count")
        model.input_prompt, model.deep_prompt = first.input_prompt, first.deep_prompt
    return PromptBank(models)


def train_multitask(bank: PromptBank, tasks: Sequence[Task], config: TrainConfig | None = None, *,
                    out_dir: str | Path | None = None) -> dict[str, TrainResult]:
    """Train the shared prompt and every head on mixed batches; select the epoch by the mean of the
    tasks' dev scores; write ``<task>.safetensors`` per task, metrics.jsonl and curve.png."""
    first = bank.models[bank.names[0]]
    config = (config or TrainConfig()).resolved(first.config)
    if config.trackers:
        raise PtuneError(f"report_to {config.report_to}: experiment trackers follow one-task runs; multi-task "
                         "training logs to metrics.jsonl only (drop --report-to)")
    seed_everything(config.seed)
    limit = slice(config.train_limit) if config.train_limit else slice(None)
    dev_limit = slice(config.eval_limit) if config.eval_limit else slice(None)
    train_items, dev = [], {}
    for task_index, task in enumerate(tasks):
        model = bank.models[task.name]
        train_items += [(task_index, f) for f in model.encode(task.train[limit])]
        dev[task.name] = (task.dev[dev_limit], model.encode(task.dev[dev_limit]))
    if not train_items:
        raise PtuneError("multi-task training: no training examples")
    if not first.initialised:
        first.initialise(frequent_ids=frequent_ids([f for _, f in train_items], bank.backbone.tokenizer), seed=config.seed)
        for index, model in enumerate(bank.models.values()):
            if model is not first:  # the prompt is shared: drawn once; each head from its own seed
                with torch.random.fork_rng():
                    torch.manual_seed(config.seed + index)
                    model.head.reset_parameters()
    for model in bank.models.values():
        model.initialised = True

    features = [f for _, f in train_items]
    total_steps = math.ceil(len(train_items) / config.batch_size) * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    params = list(dict.fromkeys(p for p in bank.parameters() if p.requires_grad))  # shared prompt counted once
    optimizer, scheduler = make_optimiser(params, config, total_steps)
    device = first.device  # --precision and --gradient-checkpointing as in train()
    recompute = ((lambda: checkpointed(bank.backbone.model, bank.backbone.num_layers)) if config.gradient_checkpointing
                 else contextlib.nullcontext)
    compute = placement.compute_dtype(config.precision, placement.floating_dtype(bank.backbone.model))
    scaler = placement.grad_scaler(device, compute)
    out = prepare_out_dir(out_dir)
    selection = Selection(config.patience)
    history, step, started = [], 0, time.perf_counter()
    log.info("multi-task %s on %s: %d examples, %d steps", first.config.method, ", ".join(bank.names), len(train_items),
             total_steps)
    for epoch in range(1, config.epochs + 1):
        bank.train()
        losses = []
        groups = list(batches(features, config.batch_size, shuffle=True, seed=config.seed + epoch))
        for indices in tqdm(groups, desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress, leave=False):
            with placement.autocast(device, compute), recompute():
                loss = bank.loss(bank.collate([train_items[i] for i in indices]))
            losses.append(optimiser_step(loss, params, optimizer, scheduler, config.max_grad_norm, scaler=scaler))
            step += 1
            if config.max_steps and step >= config.max_steps:
                break
        record = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
                  "elapsed_s": round(time.perf_counter() - started, 2)}
        scores = {}
        for task in tasks:
            examples, dev_features = dev[task.name]
            if dev_features:
                model = bank.models[task.name]
                result = score(task.metric, model.kind.gold(examples), predict(model, examples, features=dev_features))
                scores[task.name] = result
                record[f"dev_{task.name}_{MAIN_KEY[task.metric]}"] = result[MAIN_KEY[task.metric]]
        mean = float(np.mean([scores[t.name][MAIN_KEY[t.metric]] for t in tasks if t.name in scores])) if scores else -record["train_loss"]
        record["dev_mean"] = mean
        history.append(record)
        log_epoch(out, history)
        if selection.update(epoch, mean, scores, bank.state_dict) or (config.max_steps and step >= config.max_steps):
            break
    if selection.state is not None:
        bank.load_state_dict(selection.state)
    bank.eval()
    results = {}
    for index, task in enumerate(tasks):
        model = bank.models[task.name]
        path = None
        if out:
            path = out / f"{task.name}.safetensors"
            dev_scores = selection.dev.get(task.name, {})
            save_prompt(path, model, task_name=task.name, metric=task.metric,
                        metrics={f"dev_{k}": v for k, v in dev_scores.items()} | {"best_epoch": selection.epoch,
                                                                                  "multitask": bank.names})
        cut = {"train": truncation_counts([f for i, f in train_items if i == index]),
               "dev": truncation_counts(dev[task.name][1])}
        results[task.name] = TrainResult(selection.epoch, selection.dev.get(task.name, {}), history, path,
                                         time.perf_counter() - started, truncated=cut)
    if out:
        plot_curve(history, out / "curve.png", metric="mean", title=f"multi-task · {first.config.method}")
    return results
