"""The Ray side of the ray engine: importing Ray, starting or joining a cluster, and the workers.

``Session(address)``: with Ray already initialised by the caller, it uses that and leaves it
alone; else ``address=None`` starts a local Ray sized to the machine, quietly (no dashboard,
the workers' logs not on the console), and an address joins that cluster; either way the
session disconnects (and a local Ray stops) when the last session using it closes.

Workers are Ray actors (``worker.Worker``). A closed engine hands its actors back to a pool
that the next network on the same Ray reuses (starting an actor takes about a second); the pool
goes when Ray is shut down by us or found restarted.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ...errors import EngineError, InvalidInputError, MissingDependencyError
from .worker import Worker

INSTALL = "pip install 'nomagic[ray]'"


def import_ray():
    """The ``ray`` module, or a MissingDependencyError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(f"engine='ray' needs Ray, which is not installed: {INSTALL}") from None
    if not hasattr(ray, "is_initialized"):  # a folder named "ray" (Ray's own /tmp/ray, say) in the way
        paths = list(getattr(ray, "__path__", None) or [getattr(ray, "__file__", "?")])
        raise MissingDependencyError(f"engine='ray' needs Ray, but 'import ray' found {paths[0]} instead: {INSTALL}")
    return ray


_STATE: dict[str, Any] = {"owners": 0, "job": None, "pool": [], "cls": None}


def _job(ray) -> tuple:
    """Which Ray this is: a new local Ray starts its job ids again, but not its node id."""
    ctx = ray.get_runtime_context()
    return ctx.get_job_id(), ctx.get_node_id()


class Session:
    """One user of Ray (an engine call or a Trainer); ``close`` is safe to call twice."""

    def __init__(self, address: str | None = None) -> None:
        if address is not None and not isinstance(address, str):
            raise InvalidInputError(f"address must be a Ray address ('auto', 'ray://host:10001', "
                                    f"'host:6379') or None; got {address!r}")
        ray = self.ray = import_ray()
        self.owned = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.ERROR}
            if address is None:
                kwargs["num_cpus"] = os.cpu_count() or 1
            else:
                kwargs["address"] = address
            try:
                ray.init(**kwargs)
            except Exception as exc:  # a bad address, a cluster that refuses us
                where = "a local Ray" if address is None else f"the Ray cluster at {address!r}"
                raise EngineError(f"could not start or join {where}: {exc}") from exc
            _STATE["owners"] = 0
            self.owned = True
        if self.owned or _STATE["owners"]:
            _STATE["owners"] += 1
            self.owned = True
        job = _job(ray)
        if _STATE["job"] != job:  # a new Ray: the old pool's actors are gone
            _STATE["job"], _STATE["pool"] = job, []
        self.closed = False

    def actors(self, n: int, options: dict | None, timeout: float) -> list:
        """n worker actors, from the pool where it has some, started and answering."""
        pool = _STATE["pool"]
        got = [pool.pop() for _ in range(min(n, len(pool)))] if not options else []
        if got:  # one may have died since: keep those that answer
            ray = self.ray
            refs = [a.ping.remote() for a in got]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=10.0)
            alive = []
            for a, r in zip(got, refs):
                try:
                    if r in ready:
                        ray.get(r, timeout=0)
                        alive.append(a)
                        continue
                except ray.exceptions.RayError:
                    pass
                self.kill(a)
            got = alive
        fresh = [self.new_actor(options) for _ in range(n - len(got))]
        self.wait_ready(fresh, timeout)
        return got + fresh

    def new_actor(self, options: dict | None = None):
        ray = self.ray
        if _STATE["cls"] is None:
            _STATE["cls"] = ray.remote(Worker)
        opts = {"num_cpus": 0, "max_restarts": 0, "scheduling_strategy": "SPREAD", **(options or {})}
        try:
            return _STATE["cls"].options(**opts).remote()
        except Exception as exc:
            raise EngineError(f"could not start a Ray worker actor: {exc}") from exc

    def wait_ready(self, actors: list, timeout: float) -> None:
        if not actors:
            return
        ray = self.ray
        try:
            ray.get([a.ping.remote() for a in actors], timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise EngineError(f"the Ray worker actors did not start within timeout={timeout}s; "
                              "is the cluster short of resources?") from None
        except ray.exceptions.RayError as exc:
            raise EngineError(f"a Ray worker actor failed to start: {exc}") from exc

    def give_back(self, actors: list, reusable: bool = True) -> None:
        """Actors this session is done with: into the pool (if reusable), else killed."""
        for a in actors:
            if reusable and _STATE["job"] is not None:
                _STATE["pool"].append(a)
            else:
                self.kill(a)

    def kill(self, actor) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # already dead, or Ray gone
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.owned:
            _STATE["owners"] -= 1
            if _STATE["owners"] <= 0:
                _STATE["owners"], _STATE["job"], _STATE["pool"] = 0, None, []
                self.ray.shutdown()
