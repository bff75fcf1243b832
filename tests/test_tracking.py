"""Experiment tracking (`ptune train --report-to`): a real run's TensorBoard events read back, a tracker whose
package is missing refused in one line naming the pip command, and no tracker files without --report-to."""

from __future__ import annotations

import csv
import json
import math
import sys

import pytest
import yaml

from ptune.cli import main
from ptune.config import TrainConfig
from ptune.errors import PtuneError

STEPS_PER_EPOCH = 6  # --train-limit 48 / --batch-size 8
LR = 0.02


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """48 training and 16 dev reviews of rotten_tomatoes as CSV files (no test split: nothing scored after)."""
    from ptune.data.tasks import get_task

    folder, task = tmp_path_factory.mktemp("data"), get_task("rotten_tomatoes")
    for name, examples in (("train", task.train[:48]), ("dev", task.dev[:16])):
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([("text", "label"), *((e.text, e.label) for e in examples)])
    return ["--train", str(folder / "train.csv"), "--dev", str(folder / "dev.csv")]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, data):
    """Two epochs of 6 steps on real reviews, logged every 4 steps to TensorBoard."""
    out = tmp_path_factory.mktemp("tracked") / "run"
    code = main(["-q", "train", *data, "--method", "deep", "--length", "4", "--layers", "top:2", "--epochs", "2",
                 "--batch-size", "8", "--lr", str(LR), "--warmup-ratio", "0", "--patience", "0",
                 "--report-to", "tensorboard", "--log-every", "4", "--out", str(out)])
    assert code == 0
    return out


def events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return accumulator


def test_loss_lr_and_throughput_are_logged_every_n_steps(tracked):
    run = events(tracked / "tracking" / "ptune")
    total = 2 * STEPS_PER_EPOCH
    assert {"train/loss", "train/lr", "train/examples_per_s"} <= set(run.Tags()["scalars"])
    for tag in ("train/loss", "train/lr", "train/examples_per_s"):
        assert [event.step for event in run.Scalars(tag)] == [4, 8, 12], tag
    losses = [event.value for event in run.Scalars("train/loss")]
    assert all(math.isfinite(loss) and loss > 0 for loss in losses)
    assert all(event.value > 0 for event in run.Scalars("train/examples_per_s"))
    # linear decay without warmup: the rate after step s is LR * (total - s) / total
    for event in run.Scalars("train/lr"):
        assert event.value == pytest.approx(LR * (total - event.step) / total, rel=1e-5)


def test_dev_metric_at_each_evaluation_matches_metrics_jsonl(tracked):
    run = events(tracked / "tracking" / "ptune")
    records = [json.loads(line) for line in (tracked / "metrics.jsonl").read_text().splitlines()]
    logged = run.Scalars("dev/accuracy")
    assert [event.step for event in logged] == [record["step"] for record in records] == [6, 12]
    for event, record in zip(logged, records):
        assert event.value == pytest.approx(record["dev_accuracy"], abs=1e-6)
    assert [event.value for event in run.Scalars("train/epoch_loss")] == pytest.approx(
        [record["train_loss"] for record in records], rel=1e-5)


def test_the_run_options_are_the_hyperparameters(tracked):
    stored = list((tracked / "tracking" / "ptune").rglob("hparams.yml"))
    assert len(stored) == 1
    hparams = yaml.safe_load(stored[0].read_text())
    assert hparams["method/method"] == "deep" and hparams["method/length"] == 4
    assert hparams["train/lr"] == LR and hparams["train/report_to"] == "tensorboard"
    assert hparams["train/log_every"] == 4 and hparams["task"] == "custom"


@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_a_tracker_whose_package_is_missing_is_refused_before_anything_loads(tracker, tmp_path, capsys, monkeypatch):
    import accelerate.tracking  # noqa: F401  (it lists the trackers it finds when first imported: not now)

    monkeypatch.setitem(sys.modules, tracker, None)  # as if not installed, whether or not it is here
    out = tmp_path / "run"
    assert main(["train", "--task", "rotten_tomatoes", "--report-to", f"tensorboard,{tracker}", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"pip install {tracker}" in err and "--report-to" in err
    assert not out.exists()
    with pytest.raises(PtuneError, match=f"pip install {tracker}"):
        TrainConfig(report_to=tracker)


def test_a_tracker_accelerate_drops_is_refused_not_skipped(tmp_path, capsys, monkeypatch, data):
    """Accelerate leaves out a tracker it finds unavailable with only a debug line; ptune refuses the run."""
    pytest.importorskip("wandb", reason="W&B is not installed (pip install wandb)")
    import accelerate.tracking

    monkeypatch.setattr(accelerate.tracking, "_available_trackers", [accelerate.tracking.LoggerType.TENSORBOARD])
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["train", *data, "--method", "prompt", "--length", "2", "--max-steps", "1", "--train-limit", "8",
                 "--report-to", "tensorboard,wandb", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "could not start wandb" in err and "Traceback" not in err, err


@pytest.mark.parametrize("value", ["comet", "tensorboard,tensorboard", "none,tensorboard", ""])
def test_an_unknown_or_repeated_tracker_is_refused(value, tmp_path, capsys):
    assert main(["train", "--task", "rotten_tomatoes", "--report-to", value, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "report_to" in err and "tensorboard" in err, err


def test_trackers_need_a_run_folder(minilm):
    from ptune.data.examples import TextExample
    from ptune.data.tasks import Task
    from ptune.config import MethodConfig
    from ptune.model.prompt_model import PromptModel
    from ptune.training.loop import train

    task = Task("tiny", "classification", ["negative", "positive"],
                [TextExample("good", "positive"), TextExample("bad", "negative")], [], [], "accuracy")
    model = PromptModel.for_task(minilm, task, MethodConfig(method="prompt", length=2))
    with pytest.raises(PtuneError, match="out_dir"):
        train(model, task, TrainConfig(report_to="tensorboard", max_steps=1, progress=False))


def test_report_to_none_writes_no_tracker_files(tmp_path, monkeypatch, data):
    monkeypatch.chdir(tmp_path)  # a tracker writing into the working folder (./runs, ./wandb, ./mlruns) shows too
    out = tmp_path / "run"
    assert main(["-q", "train", *data, "--method", "prompt", "--length", "2", "--max-steps", "2", "--epochs", "1",
                 "--train-limit", "16", "--eval-limit", "8", "--batch-size", "8", "--report-to", "none",
                 "--out", str(out)]) == 0
    assert (out / "metrics.jsonl").is_file() and (out / "prompt.safetensors").is_file()
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))
    assert not (out / "tracking").exists()
    trackers = [name for name in written if "tfevents" in name or name.split("/")[0] in ("runs", "wandb", "mlruns")]
    assert not trackers, written


@pytest.fixture(scope="module")
def tracked_elsewhere(tmp_path_factory, data):
    """The same kind of run logged to W&B (offline: the hub is unreachable here, as on many clusters) and
    MLflow (its default here: a folder store in the run folder), 8 steps logged every 4."""
    pytest.importorskip("wandb", reason="W&B is not installed (pip install wandb)")
    pytest.importorskip("mlflow", reason="MLflow is not installed (pip install mlflow-skinny)")
    out = tmp_path_factory.mktemp("elsewhere") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.chdir(out.parent)
        code = main(["-q", "train", *data, "--method", "prompt", "--length", "2", "--epochs", "1",
                     "--max-steps", "4", "--train-limit", "32", "--batch-size", "8", "--lr", str(LR),
                     "--warmup-ratio", "0", "--report-to", "wandb,mlflow", "--log-every", "2", "--out", str(out)])
    assert code == 0
    return out


def wandb_records(folder):
    """The records of W&B's offline run file (``run-ID.wandb``): a 7-byte header, then 32 KiB blocks of
    chunks (crc32 4, length 2, type 1: full, first, middle, last), each record a protobuf ``Record``."""
    from wandb.proto import wandb_internal_pb2

    (path,) = folder.glob("tracking/wandb/offline-run-*/run-*.wandb")
    data, block, records, parts = path.read_bytes(), 32768, [], b""
    assert data[:4] == b":W&B"
    position = 7
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        length, kind = int.from_bytes(data[position + 4:position + 6], "little"), data[position + 6]
        parts += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # full or last: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def test_wandb_offline_run_holds_the_metrics_and_the_options(tracked_elsewhere):
    records = wandb_records(tracked_elsewhere)
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
                for r in records if r.WhichOneof("record_type") == "history"]
    logged = [row for row in history if "train/loss" in row]
    assert [row["_step"] for row in logged] == [2, 4]
    assert all(math.isfinite(row["train/loss"]) and row["train/examples_per_s"] > 0 for row in logged)
    assert [row["train/lr"] for row in logged] == pytest.approx([LR * 2 / 4, 0.0], abs=1e-9)
    config = {item.key: json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for item in r.config.update}
    assert config["method/method"] == "prompt" and config["method/length"] == 2
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "ptune"


def test_mlflow_run_in_the_run_folder_holds_the_metrics_and_the_options(tracked_elsewhere):
    from mlflow.tracking import MlflowClient

    store = tracked_elsewhere / "tracking" / "mlruns"
    assert store.is_dir() and not (tracked_elsewhere.parent / "mlruns").exists()
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("ptune").experiment_id])
    assert run.data.params["method/method"] == "prompt" and run.data.params["train/lr"] == str(LR)
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [metric.step for metric in losses] == [2, 4] and all(math.isfinite(m.value) for m in losses)
    records = [json.loads(line) for line in (tracked_elsewhere / "metrics.jsonl").read_text().splitlines()]
    (dev,) = client.get_metric_history(run.info.run_id, "dev/accuracy")
    assert dev.value == pytest.approx(records[-1]["dev_accuracy"], abs=1e-6)
