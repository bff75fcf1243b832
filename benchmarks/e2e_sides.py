"""The three sides of benchmarks/e2e.py, each one training run from a spec: ptune's own pieces composed step for step
as ptune.training.loop.train composes them, with dev scored every few steps; PEFT under the Hugging Face Trainer;
PEFT in a plain loop fed ptune's batch plan. Shared: the task cut to the budget, the batch plan, the training clock
(wall-clock less evaluation), the head on the bare model, and the profiler table of a few steps."""

from __future__ import annotations

import math
import random
import statistics
import tempfile
import time
from types import SimpleNamespace

BACKBONE, BATCH, THREADS, HEAD_DROPOUT = "minilm", 32, 2, 0.1
# ptune's default prompt lengths (config.DEFAULT_LENGTH), given to PEFT too; P-tuning's encoder is ptune's:
# a 2-layer bidirectional LSTM of hidden/2 per direction and a hidden -> hidden -> hidden MLP, which is
# PEFT's PromptEncoder (LSTM) with encoder_hidden_size = hidden/2.
LENGTH = {"prompt": 20, "ptuning": 8, "deep": 16}


# -- data -------------------------------------------------------------------------------------------------------
_TASKS: dict = {}


def task_of(name: str, budget: dict):
    """The task cut to the budget: the first train_limit / dev_limit / test_limit examples of each split."""
    from dataclasses import replace

    from ptune.data import get_task

    if name not in _TASKS:
        task = get_task(name)
        _TASKS[name] = replace(task, train=task.train[: budget["train_limit"]], dev=task.dev[: budget["dev_limit"]],
                               test=task.test[: budget["test_limit"]])
    return _TASKS[name]


def plan(lengths: list[int], epoch: int, seed: int, bucketing: bool) -> list[list[int]]:
    """One epoch's batches of indices: ptune's length-bucketed plan (``batch.encoding.batches``, as train()
    draws it) or plain random batches, both from ``seed + epoch``."""
    from ptune.batch.encoding import batches

    if bucketing:
        proxies = [SimpleNamespace(input_ids=range(n)) for n in lengths]
        return list(batches(proxies, BATCH, shuffle=True, seed=seed + epoch))
    order = list(range(len(lengths)))
    random.Random(seed + epoch).shuffle(order)
    return [order[i: i + BATCH] for i in range(0, len(order), BATCH)]


def eval_steps(total: int, evals: int) -> set[int]:
    return {math.ceil(total * k / evals) for k in range(1, evals + 1)}


class Clock:
    """Training wall-clock: seconds since start less the time spent evaluating."""

    def __init__(self):
        self.start, self.paused, self.since = time.perf_counter(), 0.0, None

    def pause(self) -> None:
        self.since = time.perf_counter()

    def resume(self) -> None:
        self.paused += time.perf_counter() - self.since

    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused


def main_score(task, gold, predicted) -> float:
    from ptune.tasks.metrics import MAIN_KEY, score

    return score(task.metric, gold, predicted)[MAIN_KEY[task.metric]]


# -- ptune ------------------------------------------------------------------------------------------------------
_BACKBONE: list = []


def backbone():
    from ptune.model.backbones import load_backbone

    if not _BACKBONE:
        _BACKBONE.append(load_backbone(BACKBONE, device="cpu"))
    return _BACKBONE[0]


def ptune_model(task, method: str, dropout: bool):
    from ptune.config import MethodConfig
    from ptune.model.prompt_model import PromptModel

    return PromptModel.for_task(backbone(), task, MethodConfig(method=method, length=LENGTH[method],
                                                                backbone_dropout=dropout))


def run_ptune(spec: dict, budget: dict, evals: int, *, profile: int = 0, keep: list | None = None) -> dict:
    """ptune's training step, composed as train() composes it; dev scored at ``eval_steps``. ``keep``
    receives the model; ``profile``: profile that many steps instead of training (``_loop``)."""
    from ptune.config import TrainConfig
    from ptune.infer.predict import predict
    from ptune.model.prompt_model import frequent_ids
    from ptune.training.loop import make_optimiser, optimiser_step, seed_everything

    task = task_of(spec["task"], budget)
    started = time.perf_counter()
    backbone().model.eval()  # the shared backbone: a backbone_dropout run before this one left it in train mode
    model = ptune_model(task, spec["method"], spec["dropout"])
    if keep is not None:
        keep.append(model)
    config = TrainConfig(epochs=budget["epochs"], batch_size=BATCH, lr=spec["lr"], seed=spec["seed"],
                         progress=False).resolved(model.config)
    seed_everything(config.seed)
    features, dev_features = model.encode(task.train), model.encode(task.dev)
    model.initialise(frequent_ids=frequent_ids(features, model.backbone.tokenizer), seed=config.seed)
    total = math.ceil(len(features) / BATCH) * config.epochs
    params = list(model.trainable_parameters())
    optimizer, scheduler = make_optimiser(params, config, total)
    lengths = [len(f.input_ids) for f in features]

    def dev() -> float:
        return main_score(task, model.kind.gold(task.dev), predict(model, task.dev, features=dev_features))

    def test() -> float:
        return main_score(task, model.kind.gold(task.test), predict(model, task.test))

    def step(indices: list[int]) -> float:
        loss = model.loss(model.collate([features[i] for i in indices]))
        return optimiser_step(loss, params, optimizer, scheduler, config.max_grad_norm)

    return _loop(spec, budget, evals, total, lengths, model.train, step, dev, test, started, profile)


def _loop(spec, budget, evals, total, lengths, train_mode, step, dev, test, started, profile: int = 0) -> dict:
    """The shared epoch loop of ptune and peft_loop: the batch plan, the clock and the curve. With
    ``profile``, instead: that many steps of warm-up, then that many under torch.profiler (its table)."""
    if profile:
        return {"table": _profiled(plan(lengths, 1, spec["seed"], spec["bucketing"]), train_mode, step, profile)}
    points, cpu = eval_steps(total, evals), time.process_time()
    curve = [[0, 0.0, dev()]] if evals > 1 else []
    setup = time.perf_counter() - started
    clock, done, losses = Clock(), 0, []
    for epoch in range(1, budget["epochs"] + 1):
        train_mode()
        for indices in plan(lengths, epoch, spec["seed"], spec["bucketing"]):
            losses.append(step(indices))
            done += 1
            if done in points:
                clock.pause()
                curve.append([done, round(clock.seconds(), 3), dev()])
                train_mode()
                clock.resume()
    train_s = clock.seconds()
    return {"curve": curve, "dev": curve[-1][2], "train_s": round(train_s, 3), "setup_s": round(setup, 3),
            "steps": done, "final_loss": float(statistics.mean(losses[-10:])),
            "cpu_s": round(time.process_time() - cpu, 1),  # training and evaluation: sizes the budget on a busy machine
            "test": test() if spec["stage"] == "seeds" else None}


# -- PEFT -------------------------------------------------------------------------------------------------------
def peft_config(method: str, path: str, hidden: int):
    import peft

    common = {"task_type": "FEATURE_EXTRACTION", "num_virtual_tokens": LENGTH[method]}
    if method == "prompt":  # sampled vocabulary embeddings, as ptune's default "vocab" init
        return peft.PromptTuningConfig(**common, prompt_tuning_init=peft.PromptTuningInit.SAMPLE_VOCAB,
                                       tokenizer_name_or_path=path)
    if method == "ptuning":
        return peft.PromptEncoderConfig(**common, encoder_reparameterization_type="LSTM",
                                        encoder_hidden_size=hidden // 2)
    return peft.PrefixTuningConfig(**common, prefix_projection=False)  # ptune's deep prompt: no reparametrisation


def peft_model(task, method: str, seed: int):
    """PEFT's model on the bare backbone with ptune's head; returns (model, tokenizer)."""
    import peft
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = backbone().path
    torch.manual_seed(seed)
    base = AutoModel.from_pretrained(path)
    hidden = base.config.hidden_size
    wrapped = peft.get_peft_model(base, peft_config(method, path, hidden))
    shift = LENGTH[method] if method in ("prompt", "ptuning") else 0  # virtual tokens lead the hidden states
    head = peft_head_class()(wrapped, hidden, len(task.labels), tagging=task.kind == "tagging", shift=shift)
    return head, AutoTokenizer.from_pretrained(path)


_HEAD: list = []


def peft_head_class():
    """The PEFT side's head module class (built on first use: render.py imports this file without torch)."""
    if _HEAD:
        return _HEAD[0]
    import torch
    from torch import nn

    class PeftHead(nn.Module):
        """ptune's linear head (heads/linear.py: dropout 0.1 + linear) over a PEFT model's last hidden
        states: on [CLS] for classification, on every position for tagging (labels -100 except each word's
        first sub-token, as transformers' token classification does; the loss is ptune's mean over words)."""

        def __init__(self, peft_model, hidden: int, num_labels: int, *, tagging: bool, shift: int):
            super().__init__()
            self.peft, self.tagging, self.shift = peft_model, tagging, shift
            self.dropout = nn.Dropout(HEAD_DROPOUT)
            self.linear = nn.Linear(hidden, num_labels)

        def forward(self, input_ids, attention_mask, labels=None):
            """input_ids, attention_mask: [B, T] -> logits [B, C] or [B, T, C] (and the loss with labels)."""
            hidden = self.peft(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, self.shift:]
            logits = self.linear(self.dropout(hidden if self.tagging else hidden[:, 0]))
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                                labels.reshape(-1), ignore_index=-100)
            return out

    _HEAD.append(PeftHead)
    return PeftHead


def peft_rows(tokenizer, task, examples, method: str) -> tuple[list[dict], list[int]]:
    """Tokenised rows for PEFT (input prompts count toward ptune's max_length of 128, so here too) and each
    example's word count (tagging: words past truncation are predicted "O", as ptune does)."""
    label_ids = {label: i for i, label in enumerate(task.labels)}
    limit = 128 - (LENGTH[method] if method in ("prompt", "ptuning") else 0)
    rows, words = [], []
    for example in examples:
        if task.kind != "tagging":
            enc = tokenizer(example.text, truncation=True, max_length=limit)
            rows.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                         "labels": label_ids[example.label]})
            words.append(0)
            continue
        enc = tokenizer(list(example.tokens), is_split_into_words=True, truncation=True, max_length=limit)
        labels, previous = [], None
        for word in enc.word_ids():
            labels.append(-100 if word is None or word == previous else label_ids[example.tags[word]])
            previous = word
        rows.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
        words.append(len(example.tokens))
    return rows, words


def collator(task, tokenizer):
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    return (DataCollatorForTokenClassification if task.kind == "tagging" else DataCollatorWithPadding)(tokenizer)


def peft_predict(model, task, rows, words, collate) -> list:
    """Predictions in the rows' order (batches of 64 sorted by length, as ptune's predict)."""
    import torch

    was = model.training
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    out: list = [None] * len(rows)
    with torch.inference_mode():
        for start in range(0, len(order), 64):
            chunk = order[start: start + 64]
            batch = collate([rows[i] for i in chunk])
            logits = model(batch["input_ids"], batch["attention_mask"])["logits"]
            for j, i in enumerate(chunk):
                if task.kind != "tagging":
                    out[i] = task.labels[int(logits[j].argmax())]
                    continue
                firsts = [t for t, label in enumerate(rows[i]["labels"]) if label != -100]
                tags = [task.labels[int(logits[j, t].argmax())] for t in firsts]
                out[i] = tags + ["O"] * (words[i] - len(tags))
    model.train(was)
    return out


def gold(task, examples) -> list:
    return [list(e.tags) for e in examples] if task.kind == "tagging" else [e.label for e in examples]


def run_peft(spec: dict, budget: dict, evals: int, *, profile: int = 0) -> dict:
    """PEFT in the plain loop (peft_loop) or under the Trainer (peft_trainer); ``profile`` as ``_loop``."""
    from ptune.config import TrainConfig
    from ptune.training.loop import make_optimiser, optimiser_step, seed_everything

    task = task_of(spec["task"], budget)
    started = time.perf_counter()
    seed_everything(spec["seed"])
    model, tokenizer = peft_model(task, spec["method"], spec["seed"])
    train_rows, _ = peft_rows(tokenizer, task, task.train, spec["method"])
    dev_rows, dev_words = peft_rows(tokenizer, task, task.dev, spec["method"])
    collate = collator(task, tokenizer)

    def dev() -> float:
        return main_score(task, gold(task, task.dev), peft_predict(model, task, dev_rows, dev_words, collate))

    def test() -> float:
        rows, words = peft_rows(tokenizer, task, task.test, spec["method"])
        return main_score(task, gold(task, task.test), peft_predict(model, task, rows, words, collate))

    total = math.ceil(len(train_rows) / BATCH) * budget["epochs"]
    if spec["side"] == "peft_trainer":
        return _trainer(spec, budget, evals, total, model, train_rows, dev_rows, collate, dev, test, started, task)
    config = TrainConfig(epochs=budget["epochs"], batch_size=BATCH, lr=spec["lr"], seed=spec["seed"], progress=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = make_optimiser(params, config, total)

    def train_mode() -> None:
        model.train()
        if not spec["dropout"]:
            model.peft.eval()  # the backbone (and PEFT's prompt modules, which have no dropout) as at inference

    def step(indices: list[int]) -> float:
        batch = collate([train_rows[i] for i in indices])
        loss = model(batch["input_ids"], batch["attention_mask"], batch["labels"])["loss"]
        return optimiser_step(loss, params, optimizer, scheduler, config.max_grad_norm)

    lengths = [len(r["input_ids"]) for r in train_rows]
    return _loop(spec, budget, evals, total, lengths, train_mode, step, dev, test, started, profile)


def _trainer(spec, budget, evals, total, model, train_rows, dev_rows, collate, dev, test, started, task) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    points, curve = eval_steps(total, evals), []

    class Curve(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.clock = Clock()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in points:
                self.clock.pause()
                curve.append([state.global_step, round(self.clock.seconds(), 3), dev()])
                self.clock.resume()

    cpu = time.process_time()
    if evals > 1:
        curve.append([0, 0.0, dev()])
    callback = Curve()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=BATCH, per_device_eval_batch_size=64,
            num_train_epochs=budget["epochs"], learning_rate=spec["lr"], weight_decay=0.01, warmup_steps=0.06,
            lr_scheduler_type="linear", max_grad_norm=1.0, seed=spec["seed"], data_seed=spec["seed"],
            train_sampling_strategy="group_by_length" if spec["bucketing"] else "random",
            remove_unused_columns=False, label_names=["labels"], report_to=[], save_strategy="no",
            logging_strategy="no", eval_strategy="no", disable_tqdm=True, use_cpu=True)
        trainer = Trainer(model=model, args=args, train_dataset=train_rows, data_collator=collate, callbacks=[callback])
        setup = time.perf_counter() - started
        trainer.train()
        train_s = callback.clock.seconds()
        record = {"curve": curve, "dev": curve[-1][2], "train_s": round(train_s, 3), "setup_s": round(setup, 3),
                  "steps": trainer.state.global_step, "final_loss": None,
                  "cpu_s": round(time.process_time() - cpu, 1),
                  "test": test() if spec["stage"] == "seeds" else None}
        if spec["stage"] == "seeds":  # the trap: with group_by_length, predict() reorders its rows
            record["trainer_predict"] = {**trainer_predict_check(trainer, task, dev_rows), "dev": record["dev"]}
    return record


def trainer_predict_check(trainer, task, rows) -> dict:
    """Dev scored from Trainer.predict against its own label_ids, and (wrongly) against the dataset's order."""
    import numpy as np

    out = trainer.predict(rows)
    predicted, labels = np.asarray(out.predictions), np.asarray(out.label_ids)

    def scored(gold_rows) -> float:
        if task.kind != "tagging":
            return main_score(task, [task.labels[int(g)] for g in gold_rows],
                              [task.labels[int(p.argmax())] for p in predicted])
        gold_tags, tags = [], []
        for g_row, p_row in zip(gold_rows, predicted):
            keep = [t for t, g in enumerate(g_row) if g != -100]
            gold_tags.append([task.labels[int(g_row[t])] for t in keep])
            tags.append([task.labels[int(p_row[t].argmax())] for t in keep[: len(p_row)]])
            tags[-1] += ["O"] * (len(keep) - len(tags[-1]))
        return main_score(task, gold_tags, tags)

    dataset_order = [r["labels"] for r in rows]
    if task.kind == "tagging":
        width = labels.shape[1]
        dataset_order = [(list(g) + [-100] * width)[:width] for g in dataset_order]
    return {"with_label_ids": scored(labels), "with_dataset_order": scored(dataset_order)}




def _profiled(groups: list[list[int]], train_mode, step, steps: int) -> str:
    """``steps`` training steps of warm-up, then ``steps`` under torch.profiler: operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    cycled = [groups[i % len(groups)] for i in range(2 * steps)]  # a small smoke set goes round again
    train_mode()
    for indices in cycled[:steps]:
        step(indices)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for indices in cycled[steps:]:
            step(indices)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40)
