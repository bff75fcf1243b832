"""Where knowledge probing lives: LAMA-style relations, candidate scoring and precision@1.

Relations come from countryinfo's country facts; prompts are manual templates (or, later, learned).
"""

from .probe import Prediction, ProbeResult, fill_template, head_weight, precision_at_1, single_token_precision_at_1
from .relations import Fact, Relation, load_relation, single_token, split_facts
from .scoring import score_candidates, score_candidates_uncached

__all__ = [
    "Fact", "Prediction", "ProbeResult", "Relation", "fill_template", "head_weight", "load_relation",
    "precision_at_1", "score_candidates", "score_candidates_uncached", "single_token",
    "single_token_precision_at_1", "split_facts",
]
