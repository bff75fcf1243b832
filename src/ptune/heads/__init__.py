"""Where heads live: they read the backbone's hidden states and never see virtual prompt positions."""

from .linear import ClassificationHead, TokenHead

__all__ = ["ClassificationHead", "TokenHead"]
