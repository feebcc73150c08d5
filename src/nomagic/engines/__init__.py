"""Engines run networks. Each engine module follows the contract in :mod:`nomagic.engines.base`:
``predict``, ``loss_and_grad`` and a ``Trainer``. What they must agree on lives in
:mod:`nomagic.engines.objective`.

``get_engine(name)`` is the one door that points up the layers: a network is run by an engine
chosen by name, without the model importing any engine.
"""

from __future__ import annotations

import importlib

from ..errors import UnknownNameError
from .base import Engine

ENGINES = {"tensor": "nomagic.engines.tensor", "processes": "nomagic.engines.processes",
           "ray": "nomagic.engines.ray"}


def get_engine(name: str) -> Engine:
    """The engine module for ``name`` ("tensor", ...), with a clear error for unknown names."""
    try:
        module = ENGINES[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}"
        ) from None
    return importlib.import_module(module)
