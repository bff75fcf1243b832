"""Where heads live: they read the backbone's hidden states and never see virtual prompt positions."""

from ptune.heads.linear import ClassificationHead, RegressionHead, TokenHead
from ptune.heads.verbalizer import VerbalizerHead

__all__ = ["ClassificationHead", "RegressionHead", "TokenHead", "VerbalizerHead"]
