"""Model-parallel: the neuron processes of one network spread over Ray actors.

``RayNetwork`` is the processes engine's ``ProcessNetwork`` with Ray actors as the transport.
Each worker actor holds a group of neurons (``partition``) and runs the same neuron state
machine on them (``worker.Worker.round``); the sensors, the actuators and the cortex, the same
machines as in the processes engine, run in the driver (``Hub``).

A request (a batch, a prediction, "get the params") runs in **rounds**: the driver delivers
what its roles have to send, then calls every worker that has messages waiting, once, with all
of them — the driver's list and one object reference per other worker that wrote to it (Ray
moves those lists from actor to actor; the driver reads only what is addressed to its own roles).
Each worker runs its neurons until nothing local is left and returns what goes elsewhere. The
rounds go on until no message is left anywhere; for a chain of layers split into contiguous runs
that is about two rounds per cut, forward and backward, and one for the commit.

Fault tolerance: after every training step (and after ``set_params``) each worker also returns
its neurons' (p, slots, steps) as one more return value, which the driver keeps as an object
reference (it stays in Ray's object store, owned by the driver, and is read only to restore).
When a worker dies in a request, it is replaced by a new actor loaded with its snapshot, the
others go back to theirs, the driver's roles start afresh, and the request runs again: the
numbers come out as if nothing had happened. A worker that dies more than ``max_restarts`` times
within ``restart_period`` seconds ends the run with an ``EngineError`` naming it. Every wait for
a worker is bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import EngineError, InvalidInputError
from ...model.graph import Network
from ...model.params import Params, check_params
from ...model.validation import check_inputs
from ..base import GradientStep, OptState
from ..processes.actuator import Actuator
from ..processes.context import Context
from ..processes.cortex import Cortex, Result
from ..processes.neuron import NO_SLOTS
from ..processes.protocol import GetParams, GetSlots, SetParams, run_batch, user_layout
from ..processes.sensor import Sensor
from ..processes.wiring import wiring_for
from .partition import auto_partition, cut_synapses, describe, explicit_partition
from .session import Session
from .worker import list_bytes


@dataclass
class RoundInfo:
    """What an ``on_round`` hook is told before each round (a test hook: it may ``ray.kill`` a
    worker). ``batch``: training steps done so far; ``round``: the round within this request."""

    strategy: str
    batch: int
    round: int
    workers: list


@dataclass
class Traffic:
    """Counts of one or more requests: rounds, messages and payload bytes between actors, between
    the driver and the actors, and the seconds spent inside the actors (per worker, summed)."""

    requests: int = 0
    rounds: int = 0
    calls: int = 0
    actor_messages: int = 0
    actor_bytes: int = 0
    driver_to_actor_messages: int = 0
    driver_to_actor_bytes: int = 0
    actor_to_driver_messages: int = 0
    actor_to_driver_bytes: int = 0
    actor_seconds: list = field(default_factory=list)
    critical_seconds: float = 0.0  # Σ over rounds of the slowest worker's seconds in that round
    seconds: float = 0.0


class _Died(Exception):
    def __init__(self, workers: dict[int, str]) -> None:
        super().__init__(workers)
        self.workers = workers


class Hub:
    """The driver's roles: every sensor, every actuator and the cortex, run as in the processes
    engine; what they send to neurons waits in one list per worker until the next round."""

    def __init__(self, ctx: Context, inbox: Result, route: list[int], n_workers: int, cortex_state=None) -> None:
        w = ctx.wiring
        self.ctx, self.route = ctx, route
        self.n_sensors, self.size = w.n_sensors, w.size
        self.sensors = [Sensor(None, ctx, g) for g in range(w.n_sensors)]
        self.actuators = [Actuator(None, ctx, k) for k in range(len(w.actuators))]
        self.cortex = Cortex(cortex_state, ctx, inbox)
        self.cortex_address = ctx.cortex
        self.queue: deque = deque()
        self.out: list[list] = [[] for _ in range(n_workers)]

    def send(self, address: int, msg: tuple) -> None:
        w = self.route[address]
        if w < 0:
            self.queue.append((address, msg))
        else:
            if type(msg) is not tuple:  # a named message type: as its plain tuple (the named ones do not
                msg = tuple(msg)        # unpickle, and the roles take either)
            self.out[w].append((address, msg))

    def snapshot(self, state) -> None:
        """The driver's roles restart from the batch boundary (see the module), not from here."""

    def deliver(self, address: int, msg: tuple) -> None:
        queue = self.queue
        queue.append((address, msg))
        ns, size = self.n_sensors, self.size
        while queue:
            a, m = queue.popleft()
            if a < ns:
                self.sensors[a].handle(m, self)
            elif a == self.cortex_address:
                self.cortex.handle(m, self)
            else:
                self.actuators[a - size].handle(m, self)


def _check_positive(v: Any, what: str, allow_none: bool = False) -> Any:
    if v is None and allow_none:
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise InvalidInputError(f"{what} must be a positive number of seconds{' or None' if allow_none else ''}; "
                                f"got {v!r}")
    return float(v)


def check_common(net, timeout, max_restarts, restart_period, on_round) -> tuple[float, Deaths]:
    """The options both strategies take, checked: the network, the wait bound, the restart limit
    and the round hook. Returns the timeout and the ``Deaths`` counter."""
    if not isinstance(net, Network):
        raise InvalidInputError(f"expected a Network; got {type(net).__name__}")
    if on_round is not None and not callable(on_round):
        raise InvalidInputError(f"on_round must be callable; got {on_round!r}")
    return _check_positive(timeout, "timeout"), Deaths(max_restarts, restart_period)


class Deaths:
    """Deaths of each worker, against the limit: more than ``max_restarts`` within ``period``."""

    def __init__(self, max_restarts: int, period: float | None) -> None:
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise InvalidInputError(f"max_restarts must be an int >= 0; got {max_restarts!r}")
        self.max_restarts = max_restarts
        self.period = _check_positive(period, "restart_period", allow_none=True)
        self.times: dict[int, list[float]] = {}

    def died(self, w: int, name: str, error: str) -> None:
        now = time.monotonic()
        times = self.times.setdefault(w, [])
        times.append(now)
        if self.period is not None:
            times[:] = [t for t in times if now - t <= self.period]
        if len(times) > self.max_restarts:
            within = "" if self.period is None else f" within {self.period:g} s"
            limit = f"max_restarts={self.max_restarts}" + ("" if self.period is None else
                                                          f" within restart_period={self.period:g} s")
            raise EngineError(f"{name} died {len(times)} times{within} ({limit}); the run is given up. "
                              f"Last error: {error}")


def check_worker_errors(ray, refs: dict[int, Any], timeout: float, name: Callable[[int], str]) -> dict[int, Any]:
    """The values of ``refs`` (worker -> ref), waiting at most ``timeout`` seconds in all. Dead
    workers raise ``_Died`` (all of them at once); a worker that does not answer in time, or
    whose code raised, an EngineError naming it."""
    pending = list(refs.values())
    ready, not_ready = ray.wait(pending, num_returns=len(pending), timeout=timeout)
    if not_ready:
        late = [name(w) for w, r in refs.items() if r in not_ready]
        raise EngineError(f"{', '.join(late)} did not answer within timeout={timeout:g}s; give a larger "
                          "timeout for a network or batch this size")
    values, dead = {}, {}
    for w, r in refs.items():
        try:
            values[w] = ray.get(r, timeout=timeout)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            dead[w] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        except ray.exceptions.RayTaskError as exc:
            raise EngineError(f"{name(w)} failed: {exc}") from exc
        except ray.exceptions.GetTimeoutError:
            raise EngineError(f"{name(w)} did not answer within timeout={timeout:g}s") from None
    if dead:
        raise _Died(dead)
    return values


class RayNetwork:
    """A network whose neurons run in Ray actors; the driver runs sensors, actuators, the cortex.

    ``workers``: how many actors (default: the CPUs of the cluster, at most one per neuron);
    ``partition``: neuron or population name -> worker index (default: chosen, see
    ``partition``); ``address``: see ``session.Session``; ``timeout``: seconds any wait for a
    worker may take; ``max_restarts`` within ``restart_period`` seconds: how often one worker
    may die before the run is given up; ``on_round``: a hook called with a ``RoundInfo``
    before each round; ``actor_options``: extra ``ray.remote`` options for the actors.
    """

    def __init__(self, net: Network, params, *, optimizer=None, opt_state=None, l1: float = 0.0,
                 l2: float = 0.0, clip_norm: float | None = None, workers: int | None = None,
                 partition=None, address: str | None = None, timeout: float = 300.0, max_restarts: int = 3,
                 restart_period: float | None = 60.0, on_round: Callable[[RoundInfo], Any] | None = None,
                 actor_options: dict | None = None) -> None:
        self.timeout, self.deaths = check_common(net, timeout, max_restarts, restart_period, on_round)
        self.on_round, self.actor_options = on_round, actor_options
        P = check_params(net, params)
        self.net = net
        self.dtype = next(iter(P.values())).dtype if P else np.dtype(np.float64)
        self.wiring = w = wiring_for(net)
        if w.n_neurons == 0:
            raise InvalidInputError("the network has no neurons to spread over workers")
        optimizer = optimizer or GradientStep()
        self.optimizer, self.l1, self.l2 = optimizer, l1, l2
        ctx = self.ctx = Context(w, optimizer, l1, l2, [])
        ctx.clip_norm = clip_norm
        n_act = len(w.actuators)
        ctx.pids = list(range(w.size))
        ctx.actuator_pids = [w.size + k for k in range(n_act)]
        ctx.cortex = w.size + n_act
        self.session = Session(address)
        self.actors: list = []
        self.closed = self.broken = False
        try:
            if partition is not None:
                if workers is not None:
                    _check_workers(workers)
                owner, workers = explicit_partition(w, workers, partition)
            else:
                workers = _check_workers(workers) if workers is not None else default_workers(self.session.ray)
                workers = min(workers, w.n_neurons)
                owner = auto_partition(w, workers)
            self.n_workers, self.owner = workers, owner
            self.route = [-1] * w.n_sensors + owner.tolist() + [-1] * (n_act + 1)
            ns = w.n_sensors
            self.groups = [(np.flatnonzero(owner == k) + ns).tolist() for k in range(workers)]
            self.cut = cut_synapses(w, owner)
            ps = w.split(w.layout.flatten(P, self.dtype))
            names = optimizer.slot_names
            if opt_state is not None and names:
                sl = {s: w.split(w.layout.flatten(opt_state.slots[s], self.dtype)) for s in names}
            else:
                sl = {s: [np.zeros_like(p) for p in ps] for s in names}
            steps = 0 if opt_state is None else opt_state.step
            self.snaps: list = [[(ps[g - ns], {s: sl[s][g - ns] for s in names} if names else NO_SLOTS, steps)
                                 for g in gs] for gs in self.groups]
            self.traffic = Traffic()
            self.total = Traffic()
            self.inbox = Result()
            self.hub = Hub(ctx, self.inbox, self.route, workers)
            self.steps_done = 0
            self._net_spec = net.to_dict()
            self.actors = self.session.actors(workers, actor_options, self.timeout)
            self._load(list(range(workers)))
        except BaseException:
            self.close(reusable=False)
            raise

    # -- workers --
    def worker_name(self, k: int) -> str:
        return f"ray worker {k} (neurons {describe(self.wiring, self.owner, k)})"

    def _load(self, which: list[int]) -> None:
        ray = self.session.ray
        refs = {k: self.actors[k].load.remote(self._net_spec, self.route, k, self.n_workers, self.optimizer,
                                              self.l1, self.l2, self.groups[k], self.snaps[k]) for k in which}
        check_worker_errors(ray, refs, self.timeout, self.worker_name)

    def _recover(self, dead: dict[int, str], b: int) -> None:
        """Replace the dead workers, put every worker back to its snapshot, restart the driver's roles."""
        while dead:
            for k, error in sorted(dead.items()):
                self.deaths.died(k, self.worker_name(k), error)
                self.session.kill(self.actors[k])
                self.actors[k] = self.session.new_actor(self.actor_options)
            ray = self.session.ray
            refs = {}
            for k in range(self.n_workers):
                if k in dead:
                    refs[k] = self.actors[k].load.remote(self._net_spec, self.route, k, self.n_workers,
                                                         self.optimizer, self.l1, self.l2, self.groups[k],
                                                         self.snaps[k])
                else:
                    refs[k] = self.actors[k].restore.remote(self.snaps[k])
            try:
                check_worker_errors(ray, refs, self.timeout, self.worker_name)
                dead = {}
            except _Died as again:
                dead = again.workers
        self.hub = Hub(self.ctx, self.inbox, self.route, self.n_workers, cortex_state=("idle", b))

    # -- requests --
    def _call(self, msg, snapshot: bool = False) -> Any:
        while True:
            b = self.hub.cortex.b
            try:
                try:
                    return self._request(msg, snapshot)
                except _Died as exc:
                    self._recover(exc.workers, b)
            except BaseException:
                self.broken = True  # its actors may be busy or half-way: not for the pool
                raise

    def _request(self, msg, snapshot: bool) -> Any:
        ray = self.session.ray
        t0 = time.perf_counter()
        traffic = self.traffic = Traffic(actor_seconds=[0.0] * self.n_workers)
        inbox, hub, n = self.inbox, self.hub, self.n_workers
        inbox.ready = False
        hub.deliver(hub.cortex_address, msg)
        inbound: list[list] = [[] for _ in range(n)]
        new_snaps: dict[int, Any] = {}
        rnd = 0
        while True:
            calls = [k for k in range(n) if hub.out[k] or inbound[k]]
            if not calls:
                break
            snap = snapshot and inbox.ready  # the round that carries the commit (or the new params)
            if self.on_round is not None:
                self.on_round(RoundInfo("model", self.steps_done, rnd, list(self.actors)))
            results = {}
            for k in calls:
                traffic.driver_to_actor_messages += len(hub.out[k])
                traffic.driver_to_actor_bytes += list_bytes(hub.out[k])
                results[k] = self.actors[k].round.options(num_returns=n + 1 + snap).remote(
                    hub.out[k], *inbound[k], snapshot=snap)
            hub.out = [[] for _ in range(n)]
            inbound = [[] for _ in range(n)]
            heads = check_worker_errors(ray, {k: results[k][0] for k in calls}, self.timeout, self.worker_name)
            traffic.rounds += 1
            traffic.calls += len(calls)
            traffic.critical_seconds += max(heads[k][2][0] for k in calls)
            for k in calls:
                to_driver, counts, stats = heads[k]
                traffic.actor_seconds[k] += stats[0]
                traffic.actor_messages += stats[2]
                traffic.actor_bytes += stats[3]
                traffic.actor_to_driver_messages += stats[4]
                traffic.actor_to_driver_bytes += stats[5]
                for d, c in enumerate(counts):
                    if c:
                        inbound[d].append(results[k][1 + d])
                if snap:
                    new_snaps[k] = results[k][n + 1]
            for k in calls:
                for address, m in heads[k][0]:
                    hub.deliver(address, m)
            rnd += 1
        if not inbox.ready:
            raise EngineError("the network of actors went quiet without an answer (an internal error)")
        if snapshot:
            if len(new_snaps) != n:
                raise EngineError("a worker missed the end of the step (an internal error)")
            for k, ref in new_snaps.items():
                self.snaps[k] = ref
        traffic.requests = 1
        traffic.seconds = time.perf_counter() - t0
        self._add(traffic)
        return inbox.value

    def _add(self, t: Traffic) -> None:
        tot = self.total
        for f in ("requests", "rounds", "calls", "actor_messages", "actor_bytes", "driver_to_actor_messages",
                  "driver_to_actor_bytes", "actor_to_driver_messages", "actor_to_driver_bytes", "critical_seconds",
                  "seconds"):
            setattr(tot, f, getattr(tot, f) + getattr(t, f))
        if len(tot.actor_seconds) < len(t.actor_seconds):
            tot.actor_seconds = [0.0] * len(t.actor_seconds)
        tot.actor_seconds = [a + b for a, b in zip(tot.actor_seconds, t.actor_seconds)]

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Outputs in engine layout for checked inputs X."""
        return self._call(run_batch(X))

    def predict(self, X) -> np.ndarray:
        X = check_inputs(self.net, X, self.dtype)
        return user_layout(self.forward(X))

    def train_batch(self, X: np.ndarray, Y: np.ndarray, loss, truncate: int | None = None, commit: bool = True,
                    dropout: tuple | None = None):
        """As ``ProcessNetwork.train_batch``."""
        out = self._call(run_batch(X, Y, loss, truncate, commit, dropout), snapshot=commit)
        if commit:
            self.steps_done += 1
        return out

    def _to_params(self, ps: list[np.ndarray]) -> Params:
        return self.wiring.layout.to_params(self.wiring.join(ps, self.dtype))

    def params(self) -> Params:
        return self._to_params(self._call(GetParams(None)))

    def set_params(self, params, opt_state=None) -> None:
        w = self.wiring
        P = check_params(self.net, params, self.dtype)
        names = self.optimizer.slot_names
        sl = None
        if opt_state is not None and names:
            per = {s: w.split(w.layout.flatten(opt_state.slots[s], self.dtype)) for s in names}
            sl = [{s: per[s][k] for s in names} for k in range(w.n_neurons)]
        steps = 0 if opt_state is None else opt_state.step
        self._call(SetParams(w.split(w.layout.flatten(P, self.dtype)), sl, steps), snapshot=True)

    def opt_state(self) -> OptState:
        pairs = self._call(GetSlots(None))
        steps = pairs[0][1] if pairs else 0
        return OptState(steps, {s: self._to_params([pr[0][s] for pr in pairs]) for s in self.optimizer.slot_names})

    def close(self, reusable: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        reusable = reusable and not self.broken
        try:
            if self.actors:
                for a in self.actors:
                    try:
                        a.unload.remote()
                    except Exception:
                        reusable = False
                self.session.give_back(self.actors, reusable)
            self.actors = []
            self.snaps = []
        finally:
            self.session.close()


def _check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InvalidInputError(f"workers must be an integer >= 1; got {workers!r}")
    return int(workers)


def default_workers(ray) -> int:
    """As many workers as the cluster has CPUs."""
    try:
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    except Exception:
        return 1
