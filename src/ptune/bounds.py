"""Number options and config fields checked with messages that say what to give: ``Bound`` (an argparse
``type`` and a field's ``bound``), the bounds every command shares, and the type and bound checks run on
config dataclasses read from files and prompt headers. No torch here."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from typing import Sequence

from ptune.errors import PtuneError

_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


@dataclass(frozen=True)
class Bound:
    """What a number option can mean: a whole number or any finite number, at least ``low`` (or above it,
    with ``above``) and at most ``high``. ``check`` refuses a value in a PtuneError; called on text, it is an
    argparse ``type``, so a command line is refused before anything loads."""

    low: float | None = None
    high: float | None = None
    whole: bool = False
    above: bool = False  # ``low`` itself is excluded (a learning rate above 0)

    def describe(self) -> str:
        noun = "a whole number" if self.whole else "a number"
        low = self.low if not self.whole or self.low is None else int(self.low)
        if self.low is not None and self.high is not None:
            return f"{noun} from {low} to {self.high}"
        if self.low is not None:
            return f"{noun} {'above' if self.above else 'of at least'} {low}"
        return noun + ("" if self.whole else " (not nan or inf)")

    def fits(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):  # a huge int is no float: no isfinite
            return False
        if self.whole and value != int(value):
            return False
        return ((self.low is None or value > self.low or (value == self.low and not self.above))
                and (self.high is None or value <= self.high))

    def check(self, what: str, value):
        """``value``, or a PtuneError naming ``what`` (an option), the value and what to give."""
        if value is not None and not self.fits(value):
            raise PtuneError(f"{what} is {value!r}: give {self.describe()}")
        return value

    def __call__(self, text: str):
        """argparse ``type``: the number in ``text``, or an error that names it and what to give."""
        try:
            value = int(text) if self.whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}") from None
        if not self.fits(value):
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: give {self.describe()}")
        return value


COUNT = Bound(1, whole=True)  # a number of things: at least one
NON_NEGATIVE = Bound(0, whole=True)  # 0 switches the thing off
POSITIVE = Bound(0, above=True)  # a rate, a width, a norm
FRACTION = Bound(0, 1)  # a probability or a share
SEED = Bound(0, 2**32 - 1, whole=True)  # NumPy's seed range
PORT = Bound(1, 65535, whole=True)


def check_bounds(config, what: str, skip: Sequence[str] = ()) -> None:
    """Every field with a ``bound`` in its metadata (but those in ``skip``) holds a value the bound allows."""
    for f in fields(config):
        bound = f.metadata.get("bound")
        if bound is not None and f.name not in skip:
            bound.check(f"{what} {f.name!r}", getattr(config, f.name))


def check_types(config, what: str) -> None:
    """Refuse a field whose value has the wrong JSON type (from a config file or prompt header)."""
    for f in fields(config):
        value = getattr(config, f.name)
        names = [name.strip() for name in str(f.type).replace("Literal", "str").split("|")]
        if value is None and "None" in names:
            continue
        allowed = tuple(t for name in names for t in _TYPES.get(name.split("[")[0], ()))
        if not allowed:
            continue
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            expected = " or ".join(n.split("[")[0] for n in names)
            raise PtuneError(f"{what} {f.name!r} must be {expected}, got {value!r}")
