"""Metrics that score predictions against gold labels: accuracy, entity-level F1, SQuAD EM/F1, and
Pearson/Spearman correlation.

`score` is the entry point for training and evaluation; `MAIN_KEY` names the number to select on.
"""

from __future__ import annotations

from collections.abc import Sequence

from ptune.errors import PtuneError

MAIN_KEY: dict[str, str] = {"accuracy": "accuracy", "entity_f1": "f1", "squad": "f1", "squad_v2": "f1",
                            "correlation": "pearson"}


def _check_lengths(gold: Sequence[object], predicted: Sequence[object]) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold items but {len(predicted)} predictions")
    if not gold:
        raise ValueError("nothing to score: no gold items")


def accuracy(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Fraction of predictions equal to the gold label."""
    _check_lengths(gold, predicted)
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


def entity_f1(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Entity-level micro precision, recall, F1 (conlleval rules: a stray I- starts an entity)."""
    # Imported here so that classification-only use does not pay for seqeval's import.
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    _check_lengths(gold, predicted)
    for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted tags")
    precision, recall, f1, _ = precision_recall_fscore_support(
        [list(g) for g in gold], [list(p) for p in predicted], average="micro", zero_division=0
    )
    return {"f1": float(f1), "precision": float(precision), "recall": float(recall)}


def correlation(gold: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation (as STS-B reports them) and the mean squared error.

    A constant prediction has no correlation: it scores 0.0 there (scipy would give NaN).
    """
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    _check_lengths(gold, predicted)
    g, p = np.asarray(gold, dtype=float), np.asarray(predicted, dtype=float)
    constant = len(g) < 2 or np.ptp(g) == 0 or np.ptp(p) == 0
    pearson = 0.0 if constant else float(pearsonr(g, p).statistic)
    spearman = 0.0 if constant else float(spearmanr(g, p).statistic)
    return {"pearson": pearson, "spearman": spearman, "mse": float(np.mean((g - p) ** 2))}


def score(metric: str, gold: Sequence, predicted: Sequence) -> dict[str, float]:
    """`metric` ("accuracy", "entity_f1", "correlation", or "squad"/"squad_v2": EM and F1 in percent, `gold` the
    QAExamples and `predicted` their answer texts) as a dict of named numbers; see `MAIN_KEY`."""
    if metric in ("squad", "squad_v2"):
        from ptune.tasks.squad_metrics import squad_scores

        _check_lengths(gold, predicted)
        return squad_scores({e.id: answer for e, answer in zip(gold, predicted, strict=True)}, gold)
    if metric == "accuracy":
        return {"accuracy": accuracy(gold, predicted)}
    if metric == "entity_f1":
        return entity_f1(gold, predicted)
    if metric == "correlation":
        return correlation(gold, predicted)
    raise PtuneError(f"unknown metric {metric!r} — use one of: {', '.join(MAIN_KEY)}")
