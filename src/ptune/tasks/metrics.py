"""Metrics that score predictions against gold labels: accuracy; for tags entity-level F1, token
accuracy and macro-F1, SRL argument F1; SQuAD EM/F1; Pearson/Spearman correlation; the GLUE and
SuperGLUE metrics (`glue_metrics`: F1, macro-F1, Matthews correlation, MultiRC, ReCoRD, choices).

`score` is the entry point for training and evaluation; `MAIN_KEY` names the number to select on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ptune.errors import PtuneError

MAIN_KEY: dict[str, str] = {"accuracy": "accuracy", "entity_f1": "f1", "token_accuracy": "accuracy", "srl_f1": "f1",
                            "squad": "f1", "squad_v2": "f1", "correlation": "pearson", "f1": "f1",
                            "macro_f1": "macro_f1", "matthews": "matthews", "multirc": "f1a",
                            "choice_accuracy": "accuracy", "record": "f1", "exact_match": "exact_match"}


# Metric name -> its function in `glue_metrics`.
GLUE_METRICS = {"f1": "binary_f1", "macro_f1": "macro_f1", "matthews": "matthews", "multirc": "multirc",
                "choice_accuracy": "choice_accuracy", "record": "record"}


def _check_lengths(gold: Sequence[object], predicted: Sequence[object]) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold items but {len(predicted)} predictions")
    if not gold:
        raise ValueError("nothing to score: no gold items")


def accuracy(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Fraction of predictions equal to the gold label."""
    _check_lengths(gold, predicted)
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


def exact_match(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Fraction of predicted texts equal to the gold text after SQuAD's normalisation (lower case, no
    punctuation, articles or extra spaces)."""
    from ptune.tasks.squad_metrics import normalize_answer

    _check_lengths(gold, predicted)
    return sum(normalize_answer(str(g)) == normalize_answer(str(p)) for g, p in zip(gold, predicted, strict=True)) / len(gold)


def _check_sentences(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> None:
    _check_lengths(gold, predicted)
    for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted tags")


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    """Micro precision, recall and F1 from counts (0.0 where a ratio has nothing to divide by)."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def entity_f1(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Entity-level micro precision, recall, F1; an entity counts when its type and both ends match.

    Entities are read by the scheme of the tags seen (`ptune.data.tag_schemes.tag_scheme`). IOB and
    IOE tags by conlleval's rules (a stray I- starts an entity): IOB1 and IOB2 share one tag set, so
    only rules that read both are safe, and conlleval is the CoNLL-2000/2003 scorer. IOBES and
    BILOU strictly (seqeval's `mode="strict"`): these schemes mark each entity's last word, so a
    B- never closed by E- (L-) is no entity, and conlleval's rules do not know L-/U- at all.
    """
    # Imported here so that classification-only use does not pay for seqeval's import.
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    from ptune.data.tag_schemes import tag_scheme

    _check_sentences(gold, predicted)
    gold, predicted = [list(g) for g in gold], [list(p) for p in predicted]
    scheme = tag_scheme({tag for tags in (*gold, *predicted) for tag in tags})
    if scheme in ("IOBES", "BILOU"):
        from seqeval import scheme as schemes
        from seqeval.metrics.v1 import precision_recall_fscore_support as strict

        precision, recall, f1, _ = strict(gold, predicted, average="micro", zero_division=0,
                                          scheme=getattr(schemes, scheme))
    else:
        precision, recall, f1, _ = precision_recall_fscore_support(gold, predicted, average="micro",
                                                                   zero_division=0)
    return {"f1": float(f1), "precision": float(precision), "recall": float(recall)}


def token_accuracy(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> dict[str, float]:
    """For tags that mark no entities (POS, chunk tags without B-/I-): the fraction of words tagged
    right ("accuracy"), and "macro_f1", the unweighted mean over tags (those in gold or predicted)
    of each tag's F1, so that rare tags weigh as much as frequent ones."""
    _check_sentences(gold, predicted)
    right: Counter[str] = Counter()
    in_gold: Counter[str] = Counter()
    in_predicted: Counter[str] = Counter()
    for g_tags, p_tags in zip(gold, predicted, strict=True):
        for g, p in zip(g_tags, p_tags, strict=True):
            in_gold[g] += 1
            in_predicted[p] += 1
            right[g] += g == p
    words = sum(in_gold.values())
    if not words:
        raise ValueError("nothing to score: no words")
    tags = in_gold.keys() | in_predicted.keys()
    macro = sum(2 * right[t] / (in_gold[t] + in_predicted[t]) for t in tags) / len(tags)
    return {"accuracy": sum(right.values()) / words, "macro_f1": macro}


def srl_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """SRL argument precision, recall and F1 as the CoNLL-2005 scorer (srl-eval.pl) counts them, one
    BIO tag sequence per predicate: an argument is right when its label and every piece match
    (`ptune.data.srl.arguments`: a C-X continuation is a piece of its X), and the predicate's own
    `V` is not counted. "f1_with_v" is the figure P-tuning v2 reports: entity F1 over every span,
    `V` included and each C-X a span of its own (seqeval, as `entity_f1` on BIO tags).
    """
    from ptune.data.srl import arguments

    _check_sentences(gold, predicted)
    correct = n_gold = n_predicted = 0
    for g_tags, p_tags in zip(gold, predicted, strict=True):
        g_args = {a for a in arguments(g_tags) if a[0] != "V"}
        p_args = {a for a in arguments(p_tags) if a[0] != "V"}
        correct += len(g_args & p_args)
        n_gold += len(g_args)
        n_predicted += len(p_args)
    return _prf(correct, n_predicted, n_gold) | {"f1_with_v": entity_f1(gold, predicted)["f1"]}


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
    """`metric` ("accuracy", "entity_f1", "token_accuracy", "srl_f1", "correlation", or "squad"/"squad_v2":
    EM and F1 in percent, `gold` the QAExamples and `predicted` their answer texts; the GLUE metrics "f1",
    "macro_f1", "matthews", "multirc", and for choices, `gold` the ChoiceExamples and `predicted` the chosen
    indices, "choice_accuracy" and "record") as a dict of named numbers; see `MAIN_KEY`."""
    if metric in GLUE_METRICS:
        from ptune.tasks import glue_metrics

        return getattr(glue_metrics, GLUE_METRICS[metric])(gold, predicted)
    if metric in ("squad", "squad_v2"):
        from ptune.tasks.squad_metrics import squad_scores

        _check_lengths(gold, predicted)
        return squad_scores({e.id: answer for e, answer in zip(gold, predicted, strict=True)}, gold)
    if metric == "accuracy":
        return {"accuracy": accuracy(gold, predicted)}
    if metric == "exact_match":
        return {"exact_match": exact_match(gold, predicted)}
    if metric == "entity_f1":
        return entity_f1(gold, predicted)
    if metric == "token_accuracy":
        return token_accuracy(gold, predicted)
    if metric == "srl_f1":
        return srl_f1(gold, predicted)
    if metric == "correlation":
        return correlation(gold, predicted)
    raise PtuneError(f"unknown metric {metric!r} — use one of: {', '.join(MAIN_KEY)}")
