"""A cache of compiled plans per network, owned by the engine that compiles them.

A network is an immutable value and knows nothing of engines; an engine that compiles a plan
for it keeps the plan here, keyed by the network's identity and dropped when the network is.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PlanCache(Generic[T]):
    """``cache.get(net, build)``: ``build(net)`` once per network object, then the same plan."""

    def __init__(self) -> None:
        self._plans: dict[int, T] = {}

    def get(self, net, build: Callable[[object], T]) -> T:
        key = id(net)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = build(net)
            weakref.finalize(net, self._plans.pop, key, None)
        return plan

    def __len__(self) -> int:
        return len(self._plans)
