"""Where knowledge probing lives: LAMA-style relations, candidate scoring and precision@1.

Relations come from countryinfo's country facts or from LAMA / T-REx and TSV facts files (``lama.py``,
ranked by ``ranking.py``: P@1, P@10, MRR); prompts are manual templates or learned probes
(P-tuning's continuous tokens mixed into a template, or a prepended soft prompt).
Names load on first use, so ``ptune --help`` (which registers ``probe`` from ``.command``) needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptune.lazy import exports

# public name -> the module that defines it
_HOMES = {
    **dict.fromkeys(("ProbePrompt", "init_vectors", "parse_probe_template", "ptuning_template", "soft_prompt_template"),
                    "ptune.analysis.probing.learned"),
    **dict.fromkeys(("Prediction", "ProbeResult", "fill_template", "head_weight", "precision_at_1",
                     "single_token_precision_at_1"), "ptune.analysis.probing.probe"),
    **dict.fromkeys(("FactsRelation", "convert_template", "lama_records", "read_facts", "read_templates",
                     "read_vocabulary"), "ptune.analysis.probing.lama"),
    **dict.fromkeys(("Candidates", "Ranked", "prepare", "rank_facts", "rank_metrics", "split_subjects"),
                    "ptune.analysis.probing.ranking"),
    **dict.fromkeys(("Fact", "Relation", "load_relation", "single_token", "split_facts"),
                    "ptune.analysis.probing.relations"),
    **dict.fromkeys(("score_candidates", "score_candidates_uncached"), "ptune.analysis.probing.scoring"),
    **dict.fromkeys(("ProbeHistory", "ProbeTrainConfig", "train_probe"), "ptune.analysis.probing.training"),
}

__all__ = [
    "Candidates", "FactsRelation", "Ranked", "convert_template", "lama_records", "prepare", "rank_facts",
    "rank_metrics", "read_facts", "read_templates", "read_vocabulary", "split_subjects",
    "Fact", "Prediction", "ProbeHistory", "ProbePrompt", "ProbeResult", "ProbeTrainConfig", "Relation",
    "fill_template", "head_weight", "init_vectors", "load_relation", "parse_probe_template", "precision_at_1",
    "ptuning_template", "score_candidates", "score_candidates_uncached", "single_token",
    "single_token_precision_at_1", "soft_prompt_template", "split_facts", "train_probe",
]

if TYPE_CHECKING:
    from ptune.analysis.probing.learned import ProbePrompt, init_vectors, parse_probe_template, ptuning_template, soft_prompt_template
    from ptune.analysis.probing.lama import (FactsRelation, convert_template, lama_records, read_facts, read_templates,
                                             read_vocabulary)
    from ptune.analysis.probing.ranking import Candidates, Ranked, prepare, rank_facts, rank_metrics, split_subjects
    from ptune.analysis.probing.probe import Prediction, ProbeResult, fill_template, head_weight, precision_at_1, single_token_precision_at_1
    from ptune.analysis.probing.relations import Fact, Relation, load_relation, single_token, split_facts
    from ptune.analysis.probing.scoring import score_candidates, score_candidates_uncached
    from ptune.analysis.probing.training import ProbeHistory, ProbeTrainConfig, train_probe


__getattr__, __dir__ = exports("ptune.analysis.probing", _HOMES, globals())
