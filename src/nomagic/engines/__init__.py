"""Engines run networks. Every engine offers ``predict`` and ``loss_and_grad``."""

from __future__ import annotations

import importlib

from ..errors import UnknownNameError

ENGINES = {"tensor": "nomagic.engines.tensor", "processes": "nomagic.engines.processes"}


def get_engine(name: str):
    """The engine module for ``name`` ("tensor", ...), with a clear error for unknown names."""
    try:
        module = ENGINES[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}"
        ) from None
    return importlib.import_module(module)
