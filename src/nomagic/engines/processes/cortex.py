"""The cortex, as a state machine: it drives each mini-batch through sensors, neurons and
actuators, computes the loss, and says when to commit.

It is restartable exactly: it snapshots at every phase boundary — ``("idle", b)`` between
requests, ``("forward", b, job)`` once a batch is sent out, ``("backward", b, job, loss, early readies)`` once the
loss gradient is, ``("gather", b, what)`` while it collects params or slots — and every message
that could make a restart send twice is checked against the batch number by its receiver. The
messages it received since the last snapshot are replayed after a crash, so it recomputes the
same numbers; anything stale (an earlier batch's, a copy) is dropped, never left queued.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..objective import clip_scale, horizon, uses_logits
from .context import Context
from .faults import trip
from .protocol import Begin, BeginOutputs, Commit, GetParams, GetSlots, Inputs, LossGrad, SetParams, Stop


class Result:
    """Where the cortex leaves the answer to a request, for the caller outside the processes."""

    __slots__ = ("value", "ready")

    def __init__(self) -> None:
        self.value: Any = None
        self.ready = False


class Cortex:
    """The cortex. ``handle(msg, out)`` returns True once told to stop."""

    def __init__(self, state: Any, ctx: Context, inbox: Result) -> None:
        self.ctx, self.inbox = ctx, inbox
        state = state or ("idle", 0)
        self.phase, self.b = state[0], state[1]
        n = ctx.wiring.n_neurons
        if self.phase == "forward":
            self.job = state[2]
            self.outs: dict[int, tuple] = {}
            self.early: list = []
        elif self.phase == "backward":
            self.job, self.value = state[2], state[3]
            self._expect_ready(n)
            for msg in state[4]:
                self._note_ready(msg)
        elif self.phase == "gather":
            self.what = state[2]
            self.got: dict[int, tuple] = {}

    def _expect_ready(self, n: int) -> None:
        self.norms, self.penalties, self.grads = np.zeros(n), np.zeros(n), [None] * n
        self.ready = bytearray(n)
        self.remaining = n

    def start(self, out) -> None:
        """After a restart: go on with what the snapshot had left due."""
        if self.phase == "backward" and not self.remaining:
            self._commit(out)

    def _note_ready(self, msg: tuple) -> bool:
        """File a neuron's ``Ready``; True if it was new."""
        i = msg[2] - self.ctx.wiring.n_sensors
        if self.ready[i]:
            return False
        self.ready[i] = 1
        self.norms[i], self.penalties[i], self.grads[i] = msg[3], msg[4], msg[5]
        self.remaining -= 1
        return True

    def _reply(self, value: Any, out) -> None:
        self.phase = "idle"
        out.snapshot(("idle", self.b))
        self.inbox.value = value
        self.inbox.ready = True

    def handle(self, msg: tuple, out) -> bool:
        kind = msg[0]
        ctx = self.ctx
        phase = self.phase
        if phase == "forward":
            if kind == "out" and msg[1] == self.b and msg[2] not in self.outs:
                if ctx.faults:
                    trip(ctx.faults, "cortex", "cortex", "forward", self.b)
                self.outs[msg[2]] = (msg[3], msg[4])
                if len(self.outs) == len(ctx.actuator_pids):
                    self._outputs_in(out)
            elif kind == "ready" and msg[1] == self.b:  # a neuron done before the outputs are all in
                self.early.append(msg)
        elif phase == "backward":
            if kind == "ready" and msg[1] == self.b:
                if ctx.faults:
                    trip(ctx.faults, "cortex", "cortex", "backward", self.b)
                if self._note_ready(msg) and not self.remaining:
                    self._commit(out)
        elif phase == "gather":
            if (kind == "params" and self.what == "get") or (kind == "slots" and len(msg) == 4):
                self.got[msg[1]] = msg[2:]
                if len(self.got) == ctx.wiring.n_neurons:
                    got = [self.got[g] for g in sorted(self.got)]
                    self._reply([a[0] for a in got] if self.what == "get" else got, out)
        elif kind == "batch":
            self._start(msg[1:], out)
        elif kind in ("get", "slots"):
            neurons = ctx.pids[ctx.wiring.n_sensors:]
            ask = GetParams(ctx.cortex) if kind == "get" else GetSlots(ctx.cortex)
            for pid in neurons:
                out.send(pid, ask)
            if not neurons:
                self._reply([], out)
            else:
                self.phase, self.what, self.got = "gather", kind, {}
                out.snapshot(("gather", self.b, kind))
        elif kind == "set":  # per neuron: p, slots (or None), and the step count for all
            _, ps, sl, steps = msg
            for k, pid in enumerate(ctx.pids[ctx.wiring.n_sensors:]):
                out.send(pid, SetParams(ps[k], sl[k] if sl else None, steps))
            self._reply(None, out)
        elif kind == "stop":
            for pid in ctx.pids + ctx.actuator_pids:
                out.send(pid, Stop())
            return True
        return False

    def _start(self, job: tuple, out) -> None:
        """Send batch b out: X is (T, B, features); Y None for a prediction."""
        X, Y, loss_fn, truncate, commit = job[:5]
        key = job[5] if len(job) > 5 and Y is not None else None
        ctx, b = self.ctx, self.b
        wiring = ctx.wiring
        T, B = X.shape[0], X.shape[1]
        train = Y is not None
        out_pop = wiring.net.output_population
        fused = bool(train and out_pop is not None and uses_logits(loss_fn, out_pop.activation))
        begin = Begin(b, T, B, train, fused, horizon(T, truncate), key)
        for pid in ctx.pids[wiring.n_sensors:]:
            out.send(pid, begin)
        for k, pid in enumerate(ctx.actuator_pids):
            out.send(pid, BeginOutputs(b, 1 if wiring.static[wiring.actuators[k][0]] else T, B, X.dtype))
        for i, pid in enumerate(ctx.pids[:wiring.n_sensors]):
            out.send(pid, Inputs(b, X[:, :, i]))
        self.job = (X, Y, loss_fn, commit, fused)
        self.phase, self.outs, self.early = "forward", {}, []
        out.snapshot(("forward", b, self.job))

    def _outputs_in(self, out) -> None:
        """Every actuator has reported: the prediction, or the loss and its gradient."""
        ctx, b = self.ctx, self.b
        wiring = ctx.wiring
        X, Y, loss_fn, commit, fused = self.job
        n_act = len(ctx.actuator_pids)
        outs = self.outs
        # (T, n, B) per actuator → engine layout (T, B, n); the last step only unless sequences
        Zs = np.concatenate([outs[k][0] for k in range(n_act)], axis=1).transpose(0, 2, 1)
        As = np.concatenate([outs[k][1] for k in range(n_act)], axis=1).transpose(0, 2, 1)
        self.outs = {}
        seq = wiring.net.returns_sequences
        Zo, Ao = (Zs, As) if seq else (Zs[-1], As[-1])
        if Y is None:
            self.b += 1
            self._reply(Ao, out)
            return
        if fused:
            value, G = loss_fn.from_logits(Zo, Y)
        else:
            value, G = loss_fn.value(Ao, Y), loss_fn.grad(Ao, Y)
        Gs = G if seq else G[None]
        start = 0
        for k, pid in enumerate(ctx.actuator_pids):
            n = len(wiring.actuators[k])
            out.send(pid, LossGrad(b, np.ascontiguousarray(Gs[:, :, start:start + n].transpose(0, 2, 1))))
            start += n
        self.phase, self.value = "backward", value
        self._expect_ready(wiring.n_neurons)
        early, self.early = self.early, []
        out.snapshot(("backward", b, self.job, value, early))  # the early Readies are journaled no more
        for msg in early:
            self._note_ready(msg)
        if not self.remaining:
            self._commit(out)

    def _commit(self, out) -> None:
        ctx, b = self.ctx, self.b
        commit = self.job[3]
        if ctx.faults:
            trip(ctx.faults, "cortex", "cortex", "commit", b)
        value = self.value + float(self.penalties.sum())
        neurons = ctx.pids[ctx.wiring.n_sensors:]
        scale = clip_scale(float(self.norms.sum()), ctx.clip_norm) if commit else None
        msg = Commit(b, scale)  # scale None: the gradient was only asked for
        for pid in neurons:
            out.send(pid, msg)
        grads = self.grads
        self.job = self.grads = self.norms = self.penalties = None
        self.b += 1
        self._reply(value if commit else (value, grads), out)
