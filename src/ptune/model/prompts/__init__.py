"""Where prompts are made: input-level soft prompts (Lester / P-tuning) and deep prefixes (P-tuning v2)."""

from .deep import DeepPrompt, parse_layers
from .init import from_labels, random_uniform, sampled_vocab
from .input import InputPrompt

__all__ = ["DeepPrompt", "InputPrompt", "from_labels", "parse_layers", "random_uniform", "sampled_vocab"]
