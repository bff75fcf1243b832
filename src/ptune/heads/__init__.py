"""Where heads live: they read the backbone's hidden states and never see virtual prompt positions."""

from .linear import ClassificationHead, TokenHead
from .verbalizer import VerbalizerHead

__all__ = ["ClassificationHead", "TokenHead", "VerbalizerHead"]
