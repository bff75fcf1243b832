"""The training loop: per-method optimiser defaults, warmup and decay, dev evaluation each epoch,
early stopping, best-state keeping, JSONL metrics, a curve PNG and the prompt file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_scheduler

from ptune.storage.atomic import atomic_write
from ptune.storage.prompt_files import save_prompt
from ptune.config import TrainConfig  # defined there so the CLI can build its options without torch
from ptune.data.tasks import Task
from ptune.batch.encoding import batches, truncation_counts
from ptune.errors import PtuneError
from ptune.infer.predict import predict
from ptune.tasks.metrics import MAIN_KEY, score
from ptune.training.distributed import Processes
from ptune.model.depth_cache import BottomCache, layer_list
from ptune.model import placement
from ptune.model.checkpointing import checkpointed
from ptune.model.prompt_model import PromptModel, frequent_ids
from ptune.training.curves import plot_curve
from ptune.training.resume import CHECKPOINT, Progress, fault, read_checkpoint, remove_stale_temporaries, save_checkpoint
from ptune.training.tracking import Tracking, tracking_dir

log = logging.getLogger(__name__)

@dataclass
class TrainResult:
    best_epoch: int
    dev: dict[str, float]
    history: list[dict]
    prompt_path: Path | None
    seconds: float
    is_main: bool = True  # False in the other processes of a distributed run (they write nothing)
    process_digests: list[str] = field(default_factory=list)  # each process's final prompt hash
    truncated: dict[str, dict[str, int]] = field(default_factory=dict)  # per split: examples cut, tokens lost
    sharded: dict[str, int] = field(default_factory=dict)  # --shard-backbone: layers, their parameters, held here


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(model: PromptModel, task: Task, config: TrainConfig | None = None, *,
          out_dir: str | Path | None = None, resume: bool = False, run: dict | None = None,
          on_epoch: Callable[[dict], bool] | None = None) -> TrainResult:
    """Train ``model`` on ``task.train``, select on ``task.dev``; writes metrics.jsonl, curve.png
    and prompt.safetensors (the best epoch) into ``out_dir`` when given, and with ``config.report_to``
    the trackers' files into ``out_dir/tracking`` (``training.tracking``).

    With ``out_dir``, a checkpoint is written every ``checkpoint_every`` steps and at each epoch's
    end; ``resume=True`` continues from it and ends exactly as the uninterrupted run would.
    ``run`` (how the run was started, e.g. CLI options) is kept in the checkpoint for the caller.
    ``on_epoch(record)`` is called in every process after each epoch's dev evaluation with the epoch's
    metrics.jsonl record plus ``score``, the number epochs are selected by (the main dev metric; minus
    the train loss without dev data); returning True stops training there, as early stopping does
    (a hyperparameter search prunes a poor run this way).
    """
    config = (config or TrainConfig()).resolved(model.config)
    seed_everything(config.seed)
    train_examples = task.train[: config.train_limit] if config.train_limit else task.train
    dev_examples = task.dev[: config.eval_limit] if config.eval_limit else task.dev
    if not train_examples:
        raise PtuneError(f"task {task.name}: no training examples")
    train_features = model.encode(train_examples)
    dev_features = model.encode(dev_examples) if dev_examples else []
    if not model.initialised and not resume:  # a loaded or shared prompt continues from where it is
        model.initialise(frequent_ids=frequent_ids(train_features, model.backbone.tokenizer), seed=config.seed)

    steps_per_epoch = math.ceil(len(train_features) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    params = list(model.trainable_parameters())
    optimizer, scheduler = make_optimiser(params, config, total_steps)
    device = model.device
    compute = placement.compute_dtype(config.precision, placement.floating_dtype(model.transformer))
    scaler = placement.grad_scaler(device, compute)
    out = Path(out_dir) if out_dir else None
    trackers = config.trackers
    processes = Processes(device, log_with=trackers, project_dir=tracking_dir(out, trackers))
    sharded = {}
    if config.shard_backbone:
        if getattr(model, "tuned_backbone", None) is not None:
            raise PtuneError(f"--shard-backbone shards the frozen backbone; {model.config.method} trains its own copy "
                             "of it: drop --shard-backbone")
        if processes.distributed:
            sharded = processes.shard_backbone(model.backbone, config.shard_with)
            log.info("backbone layers sharded (%s) over %d processes: %s of %s layer parameters held here; dev runs "
                     "every example on every process and the bottom-layer cache is off", config.shard_with, processes.count,
                     f"{sharded['held_per_process']:,}", f"{sharded['layer_parameters']:,}")
        else:
            log.warning("--shard-backbone: one process, nothing to shard it across (start it with accelerate launch)")
    runner = processes.wrap(model)
    if config.compile:
        runner = torch.compile(runner)
    writes = out if processes.is_main else None  # only the main process writes files
    main_key = MAIN_KEY[task.metric]
    selection = Selection(config.patience)
    run = dict(run or {}, task=task.name, data_sha256=data_digest(train_examples, dev_examples),
               method=model.config.to_dict(),
               train={k: v for k, v in asdict(config).items() if k != "progress"})
    progress = Progress()
    if resume:
        progress = _resume(out, run, model, optimizer, scheduler, selection)
    elif writes:
        writes.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter() - progress.elapsed
    tracking = Tracking.start(processes, trackers, tracking_dir(out, trackers), run, every=config.log_every,
                              name=out.name if out else task.name)
    log.info("training %s on %s: %d examples, %d steps, lr %g, %d trainable parameters, on %s, %s",
             model.config.method, task.name, len(train_features), total_steps, config.lr, model.num_trainable(),
             device, f"autocast {compute}" if compute else "fp32")
    recompute = (checkpointed(model.transformer, model.backbone.num_layers) if config.gradient_checkpointing
                 else contextlib.nullcontext())

    def checkpoint() -> None:
        if writes:
            progress.elapsed = time.perf_counter() - started
            save_checkpoint(writes, trainable=model.trainable_state(), optimizer=optimizer, scheduler=scheduler,
                            selection=selection, progress=progress, run=run)

    with recompute:  # --gradient-checkpointing: the backbone layers recompute in the backward pass
        # Sharded layers run as collectives: a cache hit on one process and a miss on another would hang them.
        cache = bottom_cache(model, 0 if processes.sharded else config.cache_mb)
        stop = False
        while progress.epoch <= config.epochs and not stop:
            epoch = progress.epoch
            model.train()
            groups = list(batches(train_features, config.batch_size, shuffle=True, seed=config.seed + epoch))
            bar = tqdm(groups, desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress, leave=False,
                       initial=progress.batch, total=len(groups))
            epoch_started, epoch_examples = time.perf_counter(), 0
            tracking.restart()
            for indices in groups[progress.batch:]:
                examples = len(indices)  # the whole batch's, across processes
                indices, weight = processes.share(indices)
                batch = model.collate([train_features[i] for i in indices])
                if cache is not None:
                    batch["bottom_hidden"] = cache.hidden(indices, batch, lambda: model.bottom_pass(batch))
                with placement.autocast(device, compute):
                    loss = model.loss(batch, forward=runner)
                optimiser_step(loss * weight if weight != 1.0 else loss, params, optimizer, scheduler,
                               config.max_grad_norm, scaler=scaler)
                progress.losses.append(loss.item())
                progress.step += 1
                progress.batch += 1
                epoch_examples += examples
                tracking.step(progress.step, progress.losses[-1], examples, scheduler.get_last_lr()[0])
                rate = epoch_examples / max(time.perf_counter() - epoch_started, 1e-9)
                bar.set_postfix({"loss": f"{progress.losses[-1]:.4f}", "examples/s": f"{rate:.1f}"}, refresh=False)
                bar.update()
                fault("kill-after-step", progress.step)
                if config.max_steps and progress.step >= config.max_steps:
                    break
                if (config.checkpoint_every and progress.step % config.checkpoint_every == 0
                        and progress.batch < len(groups)):
                    checkpoint()
            bar.close()
            record = {"epoch": epoch, "step": progress.step, "train_loss": float(np.mean(progress.losses)),
                      "lr": scheduler.get_last_lr()[0], "elapsed_s": round(time.perf_counter() - started, 2),
                      "epoch_train_s": round(time.perf_counter() - epoch_started, 2)}
            if cache is not None:  # what the bottom-layer cache holds: memory the method keeps while it trains
                record["cache_mb"] = round(cache.bytes / 2**20, 1)
            if dev_features:
                predicted = (processes.map_shards(dev_examples, lambda shard: predict(model, shard))
                             if processes.count > 1 and not processes.sharded  # sharded: the same passes everywhere
                             else predict(model, dev_examples, features=dev_features))
                dev = score(task.metric, model.kind.gold(dev_examples), predicted)
                record.update({f"dev_{k}": v for k, v in dev.items()})
                current = dev[main_key]
            else:
                dev, current = {}, -float(np.mean(progress.losses))
            progress.history.append(record)
            log_epoch(writes, progress.history)
            tracking.evaluation(progress.step, record)
            stop = selection.update(epoch, current, dev, model.trainable_state)
            if on_epoch is not None and on_epoch({**record, "score": current}):
                log.info("stopped after epoch %d by the caller's on_epoch", epoch)
                stop = True
            stop = stop or bool(config.max_steps and progress.step >= config.max_steps)
            progress.epoch, progress.batch, progress.losses = epoch + 1, 0, []
            if not stop and progress.epoch <= config.epochs:
                checkpoint()

    if selection.state is not None:
        model.load_state_dict(selection.state, strict=False)
    if (warning := nothing_learned(progress.history, main_key, config.lr)) is not None:
        log.warning(warning)
    model.eval()
    digests = processes.prompt_digests(model.trainable_state())
    del runner  # the DDP wrapper's last reference goes before its process group (Processes.close)
    processes.close()
    prompt_path = None
    if writes:
        prompt_path = out / "prompt.safetensors"
        save_prompt(prompt_path, model, task_name=task.name, metric=task.metric, source=task.source,
                    metrics={f"dev_{k}": v for k, v in selection.dev.items()} | {"best_epoch": selection.epoch})
        plot_curve(progress.history, out / "curve.png", metric=main_key, title=f"{task.name} · {model.config.method}")
        (out / CHECKPOINT).unlink(missing_ok=True)  # finished: the prompt file is the result
    return TrainResult(selection.epoch, selection.dev, progress.history, prompt_path, time.perf_counter() - started,
                       is_main=processes.is_main, process_digests=digests, sharded=sharded,
                       truncated={"train": truncation_counts(train_features), "dev": truncation_counts(dev_features)})


def nothing_learned(history: list[dict], main_key: str, lr: float) -> str | None:
    """What to tell the user when the dev score was 0 after every epoch (no entity or span found at all: the run
    diverged or learned nothing), or None."""
    scores = [record.get(f"dev_{main_key}") for record in history]
    if not scores or any(score is None or score != 0 for score in scores):
        return None
    return (f"dev {main_key} stayed 0.0 after every epoch: the model found nothing, so this run diverged or learned "
            f"nothing; try a lower learning rate than {lr:g}")


def bottom_cache(model: PromptModel, cache_mb: int) -> BottomCache | None:
    """A cache of the un-prompted bottom layers' outputs, when the model has such layers."""
    start = model.first_prompted_layer
    if not cache_mb or start == 0:
        return None
    if model.config.backbone_dropout:
        log.info("layers 0-%d are not cached: with backbone_dropout their outputs change every step", start - 1)
        return None
    log.info("layers 0-%d carry no prompt: their outputs are cached (up to %d MB)", start - 1, cache_mb)
    return BottomCache(layer_list(model.transformer, model.backbone.num_layers), start, limit_bytes=cache_mb << 20)


def _resume(out: Path | None, run: dict, model: PromptModel, optimizer, scheduler, selection: "Selection") -> Progress:
    """Restore a checkpointed run into freshly built objects; refuse one made from other data or options."""
    if out is None:
        raise PtuneError("resume needs the run folder (out_dir)")
    saved = read_checkpoint(out)
    for key, what in (("data_sha256", "training/dev data"), ("method", "method options"), ("train", "training options")):
        if _outcome(saved.run.get(key), key) != _outcome(run[key], key):
            raise PtuneError(f"{saved.path}: the {what} differ from the interrupted run's; resume with the same "
                             "data and options, or start a new run with another --out")
    remove_stale_temporaries(out)
    progress = saved.restore(model=model, optimizer=optimizer, scheduler=scheduler, selection=selection)
    model.initialised = True
    log.info("resuming %s at epoch %d, batch %d (step %d)", out, progress.epoch, progress.batch, progress.step)
    return progress


def _outcome(options, key: str):
    """A checkpoint's recorded options less those that only observe the run (trackers and how often they log,
    unknown to checkpoints of earlier versions): a run resumes whatever they were."""
    if key != "train" or not isinstance(options, dict):
        return options
    return {k: v for k, v in options.items() if k not in ("report_to", "log_every")}


def data_digest(*splits) -> str:
    """A hash of the examples, so a resumed run can tell that its data changed."""
    digest = hashlib.sha256()
    for examples in splits:
        for example in examples:
            digest.update(repr(example).encode())
        digest.update(b"\x00split")
    return digest.hexdigest()[:16]


def make_optimiser(params: list[torch.nn.Parameter], config: TrainConfig, total_steps: int):
    """AdamW (no weight decay on biases and norms) with warmup and decay over ``total_steps``."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    scheduler = get_scheduler(config.scheduler, optimizer, num_warmup_steps=int(config.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    return optimizer, scheduler


def optimiser_step(loss: torch.Tensor, params, optimizer, scheduler, max_grad_norm: float, *,
                   scaler: torch.amp.GradScaler | None = None) -> float:
    """Backward, clip, step, schedule; returns the loss value. With an fp16 ``scaler`` the loss is scaled
    up for the backward pass and the gradients unscaled before clipping (a step with inf/nan is skipped)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    scheduler.step()
    return loss.item()


def prepare_out_dir(out_dir: str | Path | None) -> Path | None:
    if not out_dir:
        return None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def log_epoch(out: Path | None, history: list[dict]) -> None:
    """Log the latest epoch and rewrite metrics.jsonl atomically with the whole history."""
    record = history[-1]
    log.info("epoch %d: %s", record["epoch"], {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})
    if out:
        text = "".join(json.dumps(r) + "\n" for r in history)
        atomic_write(out / "metrics.jsonl", lambda tmp: tmp.write_text(text))


class Selection:
    """Keeps the best epoch's trainable state by dev score and decides early stopping."""

    def __init__(self, patience: int):
        self.patience = patience
        self.score, self.epoch, self.dev, self.state, self.stale = -math.inf, 0, {}, None, 0

    def update(self, epoch: int, score: float, dev: dict, state: Callable[[], dict[str, torch.Tensor]]) -> bool:
        """Record an epoch; returns True when training should stop."""
        if score > self.score:
            self.score, self.epoch, self.dev, self.stale = score, epoch, dev, 0
            self.state = {k: v.detach().clone() for k, v in state().items()}
            return False
        self.stale += 1
        if self.patience and self.stale >= self.patience:
            log.info("early stop: no dev improvement for %d epochs", self.stale)
            return True
        return False
