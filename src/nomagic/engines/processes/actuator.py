"""An actuator, as a state machine: it gathers the output neurons' values for the cortex, and
hands the loss gradient back to them.

Snapshots: ``("begin", b, T, B, dtype)`` when a batch begins (a restart reallocates and the
outputs received since are replayed), ``("sent", b)`` once the outputs went to the cortex (they
are forgotten), ``("done", b)`` once the gradient went back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .context import Context
from .faults import trip


class Actuator:
    """Actuator k (output segment k). ``handle(msg, out)`` returns True once told to stop."""

    __slots__ = ("ctx", "k", "b", "phase", "Z", "A", "got", "remaining")

    def __init__(self, state: Any, ctx: Context, k: int) -> None:
        self.ctx, self.k = ctx, k
        self.b, self.phase = None, "done"
        self.Z = self.A = self.got = None
        self.remaining = 0
        if state is not None:
            if state[0] == "begin":
                self._open(*state[1:])
            else:
                self.phase, self.b = state

    def _open(self, b: int, T: int, B: int, dt) -> None:
        n = len(self.ctx.wiring.actuators[self.k])
        self.b, self.phase = b, "forward"
        self.Z = np.empty((T, n, B), dtype=dt)
        self.A = np.empty((T, n, B), dtype=dt)
        self.got = bytearray(T * n)
        self.remaining = T * n

    def handle(self, msg: tuple, out) -> bool:
        kind = msg[0]
        ctx = self.ctx
        if kind == "o":
            _, mb, t, j, z, a = msg
            if mb != self.b or self.phase != "forward":
                return False
            n = self.Z.shape[1]
            if self.got[t * n + j]:
                return False
            self.got[t * n + j] = 1
            self.Z[t, j] = z
            self.A[t, j] = a
            self.remaining -= 1
            if self.remaining == 0:
                if ctx.faults:
                    trip(ctx.faults, "actuator", f"actuator {self.k}", "forward", mb)
                out.send(ctx.cortex, ("out", mb, self.k, self.Z, self.A))
                self.Z = self.A = self.got = None
                self.phase = "sent"
                out.snapshot(("sent", mb))
        elif kind == "begin":
            if msg[1] != self.b:
                self._open(*msg[1:])
                out.snapshot(("begin", *msg[1:]))
        elif kind == "grad":
            _, mb, G = msg
            if mb != self.b or self.phase != "sent":
                return False
            wiring = ctx.wiring
            for j, gidx in enumerate(wiring.actuators[self.k]):
                pid = ctx.pids[gidx]
                slot = int(wiring.out_ptr[gidx + 1] - wiring.out_ptr[gidx])  # after its consumers
                for t in range(G.shape[0]):
                    out.send(pid, ("d", mb, t, slot, G[t, j]))
                if j == 0 and ctx.faults:  # part sent: the rest after a restart, the copies dropped
                    trip(ctx.faults, "actuator", f"actuator {self.k}", "backward", mb)
            self.phase = "done"
            out.snapshot(("done", mb))
        elif kind == "stop":
            return True
        return False
