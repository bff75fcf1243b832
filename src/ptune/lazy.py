"""Package facades that load their names on first use, so importing the package (``ptune``,
``ptune.analysis.probing``) loads no torch until a name that needs it is used."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def exports(package: str, homes: dict[str, str], namespace: dict[str, Any]) -> tuple[Callable, Callable]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``: each public name in ``homes``
    (name -> the module that defines it) is imported on first access and kept in ``namespace``."""
    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__
