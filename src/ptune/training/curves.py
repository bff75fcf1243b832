"""Training curves as PNG, drawn from the metrics JSONL a run writes."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curve(records: list[dict], path: str | Path, *, metric: str, title: str = "") -> Path:
    """Train loss and dev ``metric`` per epoch, side by side."""
    epochs = [r["epoch"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [r["train_loss"] for r in records], marker="o")
    left.set(xlabel="epoch", ylabel="train loss", title="loss")
    right.plot(epochs, [r.get(f"dev_{metric}") for r in records], marker="o", color="tab:green")
    right.set(xlabel="epoch", ylabel=f"dev {metric}", title=metric)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
