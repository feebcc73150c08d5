"""A sensor, as a state machine: it receives its input feature for a batch and sends it on.

It keeps nothing between batches, so it snapshots after every batch: a restart (mid-batch)
replays only the ``Inputs`` being sent, and the copies its consumers already have are dropped.
"""

from __future__ import annotations

from typing import Any

from .context import Context, send_value, targets
from .faults import trip


class Sensor:
    """Sensor g. ``handle(msg, out)`` returns True once told to stop."""

    __slots__ = ("ctx", "g")

    def __init__(self, state: Any, ctx: Context, g: int) -> None:
        self.ctx, self.g = ctx, g

    def handle(self, msg: tuple, out) -> bool:
        kind = msg[0]
        if kind == "x":
            _, b, column = msg  # (T, B): one vector per step
            ctx, g = self.ctx, self.g
            to = targets(ctx, g)  # made for each batch, not kept: memory stays the wiring's
            plain = ctx.wiring.plain_out_l[g]
            T = column.shape[0]
            for t in range(T):
                send_value(out.send, to, plain, b, t, T, False, column[t])
                if t == 0 and ctx.faults:  # part of the batch sent: its consumers get copies after a restart
                    trip(ctx.faults, "sensor", ctx.wiring.name(g), "forward", b)
            out.snapshot(None)  # done: nothing to replay, the column may go
        elif kind == "stop":
            return True
        return False
