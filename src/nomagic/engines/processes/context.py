"""What the roles of one network share: the wiring, the directory of addresses, the settings.

Addresses are opaque to the roles: whatever the transport put in ``pids`` (global index g ->
address), ``actuator_pids`` and ``cortex``; a role only hands them to ``out.send``.
"""

from __future__ import annotations

from .faults import Fault
from .wiring import Wiring


class Context:
    """The directory and settings of one network of processes."""

    def __init__(self, wiring: Wiring, optimizer, l1: float, l2: float, faults: list[Fault]) -> None:
        self.wiring = wiring
        self.pids: list = []  # the address of sensor or neuron g
        self.actuator_pids: list = []
        self.cortex = None
        self.optimizer = optimizer
        self.l1, self.l2 = l1, l2
        self.faults = faults
        self.clip_norm: float | None = None
        self.first_id = 0  # the pid id of the first neuron (the generator transport)

    def neuron_index(self, pid) -> int:
        """A neuron process's g. Neurons are spawned one after the other, so their pids are
        consecutive (checked when they are spawned); a neuron works its g out when it needs it
        rather than keep it: a million ints and argument tuples less."""
        return self.wiring.n_sensors + pid.id - self.first_id


def targets(ctx: Context, g: int) -> list[tuple]:
    """Where g's value goes: (address, input slot there, recurrent, consumer runs once); for a
    plain g (``Wiring.plain_out``) only (address, input slot there)."""
    w, pids, static = ctx.wiring, ctx.pids, ctx.wiring.static_l
    lo, hi = w.out_ptr_l[g], w.out_ptr_l[g + 1]
    if w.plain_out_l[g]:
        return [(pids[d], s) for d, s in zip(w.out_dst_l[lo:hi], w.out_slot_l[lo:hi])]
    return [(pids[d], s, r, static[d])
            for d, s, r in zip(w.out_dst_l[lo:hi], w.out_slot_l[lo:hi], w.out_rec_l[lo:hi])]


def send_value(send, targets, plain: bool, b: int, t: int, T: int, me_static: bool, value) -> None:
    """Send ``Forward`` messages with the value of step t to every consumer: a recurrent consumer
    uses it at step t+1, one that runs once per sequence only at the last step."""
    if plain:
        for pid, slot in targets:
            send(pid, ("f", b, t, slot, value))
        return
    for pid, slot, rec, static in targets:
        if rec:
            if t + 1 < T:
                send(pid, ("f", b, t + 1, slot, value))
        elif static and not me_static:
            if t == T - 1:
                send(pid, ("f", b, 0, slot, value))
        else:
            send(pid, ("f", b, t, slot, value))
