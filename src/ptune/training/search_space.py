"""What ``ptune sweep`` searches: each setting's range or choices as written on the command line
(``1e-3:1e-1:log``, ``4,8,16,32``, ``all,top:3``, ``on,off``), checked, and the defaults per method."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from ptune.bounds import COUNT, POSITIVE, Bound
from ptune.config import INITS, LAYERS
from ptune.errors import PtuneError

# The method options a sweep may search, in the order trials and tables show them.
SETTINGS = ("lr", "length", "layers", "reparam", "init")
# Searched when the command line and the config file leave a setting out; around each method's default
# learning rate (config.DEFAULT_LR) by a factor of ten either way, deep covering --reparam's lower one.
DEFAULTS = {
    "prompt": {"lr": "3e-3:3e-1:log", "length": "5,10,20,50", "init": "vocab,labels,random"},
    "ptuning": {"lr": "1e-3:1e-1:log", "length": "4,8,16", "init": "vocab,labels,random"},
    "deep": {"lr": "1e-3:1e-1:log", "length": "4,8,16,32", "layers": "all,top:3", "reparam": "off,on"},
    "finetune": {"lr": "1e-5:1e-3:log"},
}
# Which methods each setting applies to (lr: all).
APPLIES = {"length": ("prompt", "ptuning", "deep"), "layers": ("deep",), "reparam": ("deep",),
           "init": ("prompt", "ptuning")}


@dataclass(frozen=True)
class Setting:
    """One searched option: a numeric range (``low``..``high``, on a log scale with ``log``) or ``choices``.
    A single choice fixes the option for every trial."""

    name: str
    text: str  # as written on the command line
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    whole: bool = False

    @property
    def fixed(self) -> bool:
        return len(self.choices) == 1

    def suggest(self, trial) -> Any:
        """This setting's value for an Optuna ``trial``."""
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.whole:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


def _numbers(name: str, text: str, bound: Bound) -> Setting:
    """``LOW:HIGH``, ``LOW:HIGH:log`` or ``A,B,C`` of numbers that ``bound`` allows."""
    def number(part: str):
        try:
            return bound(part)
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None

    parts = text.split(":")
    if len(parts) in (2, 3):
        if len(parts) == 3 and parts[2] != "log":
            raise argparse.ArgumentTypeError(f"{text!r}: a range reads LOW:HIGH or LOW:HIGH:log")
        low, high = number(parts[0]), number(parts[1])
        if not low < high:
            raise argparse.ArgumentTypeError(f"{text!r}: LOW must be below HIGH in LOW:HIGH")
        return Setting(name, text, low=low, high=high, log=len(parts) == 3, whole=bound.whole)
    if len(parts) > 3:
        raise argparse.ArgumentTypeError(f"{text!r}: a range reads LOW:HIGH or LOW:HIGH:log")
    return Setting(name, text, choices=_distinct(text, [number(part.strip()) for part in text.split(",")]))


def _distinct(text: str, values: list) -> tuple:
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: a value is given twice; give each once")
    return tuple(values)


def lr_space(text: str) -> Setting:
    """--lr: ``1e-3:1e-1:log`` (a log-uniform range), ``1e-3:1e-2`` (uniform) or ``0.01,0.03`` (choices)."""
    return _numbers("lr", text, POSITIVE)


def length_space(text: str) -> Setting:
    """--length: ``4,8,16,32`` (choices) or ``4:32`` (every whole number between)."""
    return _numbers("length", text, COUNT)


def layers_space(text: str) -> Setting:
    """--layers: choices separated by commas, each all, top:K, bottom:K or layer numbers joined by '+'
    (``all,top:3,0+2+5``)."""
    choices = []
    for part in (p.strip() for p in text.split(",")):
        spec = part.replace("+", ",")
        if not LAYERS.match(spec) or (":" in spec and int(spec.partition(":")[2]) < 1):
            raise argparse.ArgumentTypeError(f"{text!r}: {part!r} is not a layer choice; give all, top:K, bottom:K "
                                             "(K at least 1) or layer numbers joined by '+' (0+2+5), separated by "
                                             "commas")
        choices.append(spec)
    return Setting("layers", text, choices=_distinct(text, choices))


def reparam_space(text: str) -> Setting:
    """--reparam: ``on,off``, ``on`` or ``off``."""
    values = {"on": True, "off": False}
    parts = [p.strip() for p in text.split(",")]
    bad = [p for p in parts if p not in values]
    if bad:
        raise argparse.ArgumentTypeError(f"{text!r}: {bad[0]!r} is not on or off; give on, off or on,off")
    return Setting("reparam", text, choices=_distinct(text, [values[p] for p in parts]))


def init_space(text: str) -> Setting:
    """--init: some of vocab, labels, random, separated by commas."""
    parts = [p.strip() for p in text.split(",")]
    bad = [p for p in parts if p not in INITS]
    if bad:
        raise argparse.ArgumentTypeError(f"{text!r}: {bad[0]!r} is not an init; give some of "
                                         f"{', '.join(INITS)} separated by commas")
    return Setting("init", text, choices=_distinct(text, parts))


PARSERS: dict[str, Callable[[str], Setting]] = {"lr": lr_space, "length": length_space, "layers": layers_space,
                                                "reparam": reparam_space, "init": init_space}


def resolve_space(method: str, template: str | None, given: dict[str, Setting | None],
                  config_file: dict) -> dict[str, Setting]:
    """The settings a sweep searches or fixes: those given on the command line, else a value in the config
    file (fixed), else the method's default range; a setting the method has no use for is refused."""
    takes_length = not (template and "[P]" in template)  # [P] tokens in a template set the prompt length
    space = {}
    for name in SETTINGS:
        applies = method in APPLIES.get(name, (method,)) and (name != "length" or takes_length)
        setting = given.get(name)
        if setting is not None:
            if not applies:
                why = ("the template's [P] tokens set the prompt length" if name == "length" and method in APPLIES[name]
                       else f"--method {method} has no use for it")
                raise PtuneError(f"--{name} {setting.text}: {why}; drop --{name}")
            space[name] = setting
        elif name in config_file:
            value = config_file[name]
            space[name] = Setting(name, str(value), choices=(value,))
        elif applies and name in DEFAULTS[method]:
            space[name] = PARSERS[name](DEFAULTS[method][name])
    return space


def describe(space: dict[str, Setting]) -> dict[str, str]:
    """The space as command-line text, to record with a study and compare when it is continued."""
    return {name: setting.text for name, setting in space.items()}
