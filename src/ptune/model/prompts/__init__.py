"""Where prompts are made: input-level soft prompts (Lester / P-tuning) and deep prefixes (P-tuning v2)."""

from ptune.model.prompts.deep import DeepPrompt, parse_layers
from ptune.model.prompts.init import from_labels, random_uniform, sampled_vocab
from ptune.model.prompts.input import InputPrompt

__all__ = ["DeepPrompt", "InputPrompt", "from_labels", "parse_layers", "random_uniform", "sampled_vocab"]
