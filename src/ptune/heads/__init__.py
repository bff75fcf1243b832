"""Where heads live: they read the backbone's hidden states and never see virtual prompt positions."""

from ptune.heads.linear import ChoiceHead, ClassificationHead, RegressionHead, TokenHead
from ptune.heads.verbalizer import VerbalizerHead

__all__ = ["ChoiceHead", "ClassificationHead", "RegressionHead", "TokenHead", "VerbalizerHead"]
