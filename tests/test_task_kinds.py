"""The task-kind registry agrees with every place that names kinds, and every kind implements
the whole protocol (so shared code can dispatch through it without asking which kind it holds)."""

from __future__ import annotations

import pytest

from ptune.cli import build_parser
from ptune.data.tasks import METRIC_BY_KIND
from ptune.tasks import KINDS, TaskKind, get_kind
from ptune.tasks.metrics import MAIN_KEY
from ptune.errors import PtuneError


def test_registry_matches_the_data_layer_and_the_cli():
    assert set(KINDS) == set(METRIC_BY_KIND)
    for name, kind in KINDS.items():
        assert kind.name == name
        assert kind.metrics[0] == METRIC_BY_KIND[name]
        assert all(metric in MAIN_KEY for metric in kind.metrics)
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                 if a.dest == "kind")
    assert set(train.choices) == set(KINDS)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_defines_what_the_base_leaves_open(name):
    kind = KINDS[name]
    for method in ("head", "gold", "decode_row"):
        assert getattr(type(kind), method) is not getattr(TaskKind, method), f"{name} lacks {method}"
    assert get_kind(name) is kind and get_kind(kind) is kind


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(PtuneError, match="unknown task kind 'ranking'"):
        get_kind("ranking")
