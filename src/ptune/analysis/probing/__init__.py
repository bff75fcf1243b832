"""Where knowledge probing lives: LAMA-style relations, candidate scoring and precision@1.

Relations come from countryinfo's country facts; prompts are manual templates or learned probes
(P-tuning's continuous tokens mixed into a template, or a prepended soft prompt).
"""

from .learned import ProbePrompt, init_vectors, parse_probe_template, ptuning_template, soft_prompt_template
from .probe import Prediction, ProbeResult, fill_template, head_weight, precision_at_1, single_token_precision_at_1
from .relations import Fact, Relation, load_relation, single_token, split_facts
from .scoring import score_candidates, score_candidates_uncached
from .training import ProbeHistory, ProbeTrainConfig, train_probe

__all__ = [
    "Fact", "Prediction", "ProbeHistory", "ProbePrompt", "ProbeResult", "ProbeTrainConfig", "Relation",
    "fill_template", "head_weight", "init_vectors", "load_relation", "parse_probe_template",
    "precision_at_1", "ptuning_template", "soft_prompt_template", "train_probe", "score_candidates", "score_candidates_uncached", "single_token",
    "single_token_precision_at_1", "split_facts",
]
