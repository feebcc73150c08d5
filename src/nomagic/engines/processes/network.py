"""``ProcessNetwork``: a network running as processes, one per sensor, neuron and actuator, plus
the cortex, each a supervised process of the generator runtime (``transport``)."""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import EngineError, InvalidInputError
from ...model.graph import Network
from ...model.params import Params, check_params
from ...model.validation import check_inputs
from ...runtime import ANY, Runtime, TraceEvent
from ..base import GradientStep, OptState
from .context import Context
from .cortex import Result
from .faults import Fault, check_faults
from .neuron import NO_SLOTS
from .protocol import GetParams, GetSlots, SetParams, Status, Stop, run_batch, user_layout
from .trace import EventStream, MessageEvent, Tracer, format_event, pname
from .transport import Processes
from .wiring import wiring_for


def _check_period(v: Any) -> float | None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
        raise InvalidInputError(f"restart_period must be seconds > 0 or None; got {v!r}")
    return v


class ProcessNetwork:
    """A network running as processes: one per sensor, neuron and actuator, plus the cortex.

    ``trace=True`` records every message (``trace_events``, ``trace_lines()``, ``trace_json()``);
    ``on_event=fn`` (or ``subscribe(fn)``) calls fn with a ``MessageEvent`` for each message as it is
    sent, and ``events(maxsize)`` gives a bounded async stream of them.
    ``timeout``: seconds a mini-batch may take before the run is declared hung; the default
    gives 60 s plus 50 µs per synapse (a deadlock — nobody able to run — is reported at once,
    whatever the timeout). Every process is supervised: a process that crashes is restarted from
    its last snapshot, losing nothing; more than ``max_restarts`` crashes of one process within
    ``restart_period`` seconds (None: ever) end the run with an ``EngineError`` naming it.
    """

    def __init__(self, net: Network, params, *, optimizer=None, opt_state=None, l1: float = 0.0,
                 l2: float = 0.0, clip_norm: float | None = None, trace: bool = False,
                 timeout: float | None | str = "auto", faults: list[Fault] | None = None,
                 max_restarts: int = 3, restart_period: float | None = 5.0,
                 on_event: Callable[[MessageEvent], Any] | EventStream | None = None) -> None:
        if not isinstance(net, Network):
            raise InvalidInputError(f"expected a Network; got {type(net).__name__}")
        if timeout == "auto":
            timeout = 60.0 + 5e-5 * len(wiring_for(net).in_src)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):  # also NaN
            raise InvalidInputError(f"timeout must be a positive number of seconds; got {timeout!r}")
        if on_event is not None and not (callable(on_event) or isinstance(on_event, EventStream)):
            raise InvalidInputError(f"on_event must be a callable taking a MessageEvent; got {on_event!r}")
        self.restart_period = _check_period(restart_period)
        self.max_restarts = max_restarts
        P = check_params(net, params)
        self.net = net
        self.dtype = next(iter(P.values())).dtype if P else np.dtype(np.float64)
        self.wiring = w = wiring_for(net)
        self.timeout = timeout
        optimizer = optimizer or GradientStep()
        self.ctx = ctx = Context(w, optimizer, l1, l2, check_faults(faults, w))
        ctx.clip_norm = clip_norm
        self.rt = rt = Runtime()
        own = w.own_params()  # made for these splits, then dropped
        ps = w.split(w.layout.flatten(P, self.dtype), own)
        names = optimizer.slot_names
        if opt_state is not None and names:
            sl = {s: w.split(w.layout.flatten(opt_state.slots[s], self.dtype), own) for s in names}
            steps = opt_state.step
        else:
            sl = {s: [np.zeros_like(p) for p in ps] for s in names}
            steps = 0 if opt_state is None else opt_state.step
        self.inbox = Result()
        gc_was = gc.isenabled()
        gc.disable()  # spawning many small objects: the cyclic collector only slows it down
        try:
            states = [(p, {s: sl[s][k] for s in names} if names else NO_SLOTS, steps, None)
                      for k, p in enumerate(ps)]
            self.processes = Processes(rt, ctx, states, self.inbox, max_restarts=max_restarts,
                                       restart_period=self.restart_period)
        finally:
            if gc_was:
                gc.enable()
        self.supervisor = self.processes.neurons
        self.cortex = self.processes.cortex
        self.tracer = Tracer(rt, w, ctx.pids, record=bool(trace))
        if on_event is not None:
            self.tracer.subscribe(on_event)

    @property
    def n_processes(self) -> int:
        return self.rt.process_count

    def restarts(self, pid) -> int:
        """How many times the process ``pid`` (a sensor, neuron, actuator or the cortex) was restarted;
        a neuron may be named instead ("dense_0[2]")."""
        if isinstance(pid, str):
            names = {self.wiring.name(g): g for g in range(self.wiring.size)}
            if pid not in names:
                raise InvalidInputError(f"no process named {pid!r} in this network")
            pid = self.ctx.pids[names[pid]]
        return self.processes.restarts(pid)

    # -- the live trace --
    def subscribe(self, fn: Callable[[MessageEvent], Any] | EventStream) -> Callable[[], None]:
        """Call ``fn(event)`` for every message from now on (or feed an ``EventStream``); returns
        the call that stops it. Tracing is switched off again when nobody listens."""
        return self.tracer.subscribe(fn)

    def events(self, maxsize: int = 10_000) -> EventStream:
        """A bounded live stream of the messages from now on: ``async for event in pn.events()``."""
        return self.tracer.stream(maxsize)

    # -- calls --
    def _call(self, msg) -> Any:
        self.inbox.ready = False
        self.rt.send(self.cortex, msg)
        gc_was = gc.isenabled()
        gc.disable()  # messages make no reference cycles; the collector would only walk them
        try:
            self.rt.run(until=lambda: self.inbox.ready, timeout=self.timeout)
        except EngineError as exc:
            better = self._diagnose(exc)
            if better is exc:
                raise
            raise better from exc
        finally:
            if gc_was:
                gc.enable()
        return self.inbox.value

    async def _call_async(self, msg) -> Any:
        """``_call`` for asyncio code: the event loop keeps running between slices of work."""
        self.inbox.ready = False
        self.rt.send(self.cortex, msg)
        try:
            await self.rt.run_async(until=lambda: self.inbox.ready, timeout=self.timeout)
        except EngineError as exc:
            better = self._diagnose(exc)
            if better is exc:
                raise
            raise better from exc
        return self.inbox.value

    async def predict_async(self, X) -> np.ndarray:
        """``predict`` from asyncio code (a web server streaming the trace, say)."""
        X = check_inputs(self.net, X, self.dtype)
        return user_layout(await self._call_async(run_batch(X)))

    def _diagnose(self, exc: EngineError) -> EngineError:
        """After a hang, ask every neuron what it waits for; name those that never answer."""
        text = str(exc)
        if "gave up" in text:  # a process crashed past its restart limit: name it
            return EngineError(self._gave_up(text))
        if text.startswith("run timed out"):  # still busy when the time was up: slow, not hung
            return EngineError(f"the network of processes did not finish within timeout={self.timeout}s; "
                               f"give a larger timeout (or None) for a network this size. "
                               f"{self._named(text)}")
        if not text.startswith("deadlock"):
            return exc  # a crash (of the cortex, say): its own message says it best
        replies: list = []

        def collector(me):
            while True:
                replies.append((yield ANY))

        probe = self.rt.spawn(collector, name="probe")
        for pid in self.ctx.pids[self.wiring.n_sensors:]:
            self.rt.send(pid, Status(probe))
        try:
            self.rt.run(until=lambda: len(replies) >= self.wiring.n_neurons, timeout=1.0)
        except EngineError:
            pass
        answers = {m[1]: m[2] for m in replies}
        w = self.wiring
        silent = [w.name(g) for g in range(w.n_sensors, w.size) if g not in answers]
        waiting = [f"{w.name(g)} ({s})" for g, s in
                   sorted(answers.items(), key=lambda kv: (not kv[1].startswith("forward"), kv[0]))
                   if s.startswith(("forward", "backward"))]
        if silent:
            more = f" (and {len(silent) - 5} more)" if len(silent) > 5 else ""
            also = f"; waiting on it: {', '.join(waiting[:5])}" if waiting else ""
            return EngineError(f"neuron {', '.join(silent[:5])}{more} never answered{also}")
        return EngineError(f"the network of processes hung: {text}")

    def _gave_up(self, text: str) -> str:
        """The supervisor's "gave up" as: "neuron h1[3] crashed 4 times within 5 s ..."."""
        m = re.search(r"child (<pid \d+[^>]*>) crashed (\d+) times(?: within \S+s)? \(max_restarts=(\d+)\); "
                      r"last error: (.*)", text, re.S)
        if not m:
            return self._named(text)
        period = "" if self.restart_period is None else f" within {self.restart_period:g} s"
        limit = f"max_restarts={m[3]}" + ("" if self.restart_period is None else
                                           f" within restart_period={self.restart_period:g} s")
        return (f"{self._named(m[1])[1:-1]} crashed {m[2]} times{period} ({limit}); the run is given up. "
                f"Last error: {m[4]}")

    def _named(self, text: str) -> str:
        """``text`` with each "<pid N ...>" of a process of this network written "<its name>"."""
        by_id = {p.id: p for p in self.ctx.pids[:self.wiring.n_sensors] + self.ctx.actuator_pids + [self.cortex]}
        w, pids = self.wiring, self.ctx.pids

        def name(m: re.Match) -> str:
            pid_id = int(m[1])
            if pid_id in by_id:
                return f"<{by_id[pid_id].name}>"
            if len(pids) > w.n_sensors:
                g = w.n_sensors + pid_id - pids[w.n_sensors].id
                if w.n_sensors <= g < len(pids) and pids[g].id == pid_id:
                    return f"<neuron {w.name(g)}>"
            return m[0]

        return re.sub(r"<pid (\d+)(?: '[^']*')?>", name, text)

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Outputs in engine layout for checked inputs X."""
        return self._call(run_batch(X))

    def predict(self, X) -> np.ndarray:
        X = check_inputs(self.net, X, self.dtype)
        return user_layout(self.forward(X))

    def train_batch(self, X: np.ndarray, Y: np.ndarray, loss, truncate: int | None = None,
                    commit: bool = True, dropout: tuple | None = None):
        """One forward and backward pass; with ``commit`` every neuron then updates itself and
        the loss is returned, else (loss, each neuron's gradient) and nothing changes.
        ``dropout``: the batch's dropout key (seed, epoch, batch), or None (no dropout)."""
        return self._call(run_batch(X, Y, loss, truncate, commit, dropout))

    def _to_params(self, ps: list[np.ndarray], own: tuple | None = None) -> Params:
        return self.wiring.layout.to_params(self.wiring.join(ps, self.dtype, own))

    def params(self) -> Params:
        """The params, asked of every neuron by message."""
        return self._to_params(self._call(GetParams(None)))

    def set_params(self, params, opt_state=None) -> None:
        w = self.wiring
        P = check_params(self.net, params, self.dtype)
        names = self.ctx.optimizer.slot_names
        sl = None
        own = w.own_params()
        if opt_state is not None and names:
            per = {s: w.split(w.layout.flatten(opt_state.slots[s], self.dtype), own) for s in names}
            sl = [{s: per[s][k] for s in names} for k in range(w.n_neurons)]
        steps = 0 if opt_state is None else opt_state.step
        ps = w.split(w.layout.flatten(P, self.dtype), own)
        del own
        self._call(SetParams(ps, sl, steps))

    def opt_state(self):
        pairs = self._call(GetSlots(None))
        steps = pairs[0][1] if pairs else 0
        own = self.wiring.own_params()
        return OptState(steps, {s: self._to_params([pr[0][s] for pr in pairs], own)
                                for s in self.ctx.optimizer.slot_names})

    def inject(self, fault: Fault) -> Fault:
        """Arm one more fault (checked against this network, as ``faults=`` are): for a crash
        asked for while the network runs, as the playground does."""
        (checked,) = check_faults([fault], self.wiring)
        self.ctx.faults.append(checked)
        return checked

    @property
    def pending_faults(self) -> int:
        """How many armed faults have not fired yet."""
        return sum(f.times > 0 for f in self.ctx.faults)

    def close(self) -> None:
        try:
            self.rt.send(self.cortex, Stop())
            self.rt.run_until_idle(timeout=self.timeout)
        except EngineError:
            pass
        self.tracer.close()

    # -- the recorded trace --
    @property
    def trace_events(self) -> list[TraceEvent]:
        return self.tracer.log

    def trace_lines(self, limit: int | None = None) -> list[str]:
        """Readable lines: "sensor x0 -> neuron h1[0]: forward [0.31, -0.20, ...]"."""
        return [format_event(e, self.wiring, self.ctx.pids) for e in self.tracer.log[:limit]]

    def trace_json(self) -> str:
        w, pids = self.wiring, self.ctx.pids
        return json.dumps([{"seq": e.seq, "time": e.time, "sender": pname(e.sender, w, pids),
                            "receiver": pname(e.receiver, w, pids), "kind": e.kind,
                            "summary": e.summary} for e in self.tracer.log])
