"""SQuAD answer metrics as the official v1.1 / v2.0 evaluation scripts compute them.

Exact match and token F1 after normalisation, the max over each question's gold answers, in percent.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

from ptune.data.examples import QAExample

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 if the normalised answers are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall, counting repeated tokens (bag of words).

    When either side normalises to nothing, 1.0 if both do, else 0.0 (as in the v2.0 script).
    """
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not wanted:
        return float(predicted == wanted)
    same = sum((Counter(predicted) & Counter(wanted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[str, str], examples: Sequence[QAExample]) -> dict[str, float]:
    """{"exact": %, "f1": %} over `examples`, each the max over its gold answers.

    A question without answers (SQuAD 2.0 impossible) has the single gold answer "", so it scores
    100 exactly when the prediction is "". Predictions for other ids are ignored.
    """
    if not examples:
        raise ValueError("nothing to score: no examples")
    missing = [e.id for e in examples if e.id not in predictions]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} of {len(examples)} questions, e.g. {missing[0]!r}")
    exact = total_f1 = 0.0
    for example in examples:
        # As the v2.0 script: answers that normalise to nothing do not count as gold answers.
        golds = [a for a in example.answers if normalize_answer(a)] or [""]
        prediction = predictions[example.id]
        exact += max(exact_match(prediction, gold) for gold in golds)
        total_f1 += max(f1(prediction, gold) for gold in golds)
    return {"exact": 100 * exact / len(examples), "f1": 100 * total_f1 / len(examples)}
