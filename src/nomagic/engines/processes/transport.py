"""The generator runtime as one transport: it runs the roles' state machines as processes.

Each sensor, neuron, actuator and the cortex is a supervised process of ``nomagic.runtime``; the
process is a loop that takes a message and hands it to its state machine, with the process itself
as the outbox (``send``, ``snapshot``). The supervisors restart a crashed process in place from its
last snapshot and replay what it received since. Another transport (actors holding groups of
neurons, say) would run the same machines with its own outbox.
"""

from __future__ import annotations

from typing import Any

from ...errors import EngineError
from ...runtime import ANY, Child, Runtime, Supervisor
from . import neuron
from .actuator import Actuator
from .context import Context
from .cortex import Cortex, Result
from .sensor import Sensor


def role_process(me, state, make, *args):
    """A sensor, actuator or the cortex: ``make(state, *args)`` is its machine."""
    machine = make(state, *args)
    handle = machine.handle
    start = getattr(machine, "start", None)
    if start is not None:  # (re)started: anything its snapshot left due
        start(me)
    while True:  # (the message is no local: a sensor would keep its last batch's inputs alive)
        if handle((yield ANY), me):
            return


def neuron_process(me, state, ctx: Context):
    """A neuron. ``state`` is the snapshot it starts from (see ``neuron``); its g follows from its
    pid, so a million neurons need no argument tuple each. It keeps no message in a local once
    it is handled, and as few locals as it can: a million idle frames."""
    handle = None  # in a batch: the machine's handler; between batches the machine is `state`
    if state[3] is not None:  # restarted in the middle of a batch
        handle = neuron.restart(ctx, ctx.neuron_index(me), state, me)
        if type(handle) is tuple:
            state, handle = handle, None
    while True:
        if handle is None:
            nxt = neuron.idle(ctx, ctx.neuron_index(me), state, (yield ANY), me)
        else:
            nxt = handle((yield ANY))
            if nxt is None:  # the batch goes on: the hot path
                continue
        if type(nxt) is tuple:
            state, handle = nxt, None
        elif nxt is neuron.STOP:
            return
        else:
            handle = nxt


class Processes:
    """The processes of one network in a ``Runtime``, under four one-for-one supervisors."""

    def __init__(self, rt: Runtime, ctx: Context, neuron_states: list, inbox: Result, *,
                 max_restarts: int, restart_period: float | None) -> None:
        w = ctx.wiring
        limits = {"max_restarts": max_restarts, "within": restart_period}
        self.sensors = Supervisor(rt, [Child(role_process, None, (Sensor, ctx, g), name=f"sensor {w.name(g)}")
                                       for g in range(w.n_sensors)], name="sensor supervisor", **limits)
        shared = (ctx,)  # one tuple for all: a neuron's g follows from its pid
        self.neurons = Supervisor(rt, Child(neuron_process, None, shared), states=neuron_states,  # unnamed:
                                  name="neuron supervisor", **limits)  # a name per neuron costs memory
        kids = self.neurons.children
        if kids:
            ctx.first_id = kids[0].id
            if kids[-1].id - kids[0].id != len(kids) - 1:  # ids only grow: so all consecutive
                raise EngineError("internal error: the neuron processes got no consecutive pids")
        self.actuators = Supervisor(rt, [Child(role_process, None, (Actuator, ctx, k), name=f"actuator {k}")
                                         for k in range(len(w.actuators))], name="actuator supervisor", **limits)
        ctx.pids.extend(self.sensors.children)
        ctx.pids.extend(self.neurons.children)
        ctx.actuator_pids.extend(self.actuators.children)
        self.cortex_supervisor = Supervisor(rt, [Child(role_process, None, (Cortex, ctx, inbox), name="cortex")],
                                            name="cortex supervisor", **limits)
        ctx.cortex = self.cortex = self.cortex_supervisor.children[0]

    def restarts(self, pid: Any) -> int:
        """How many times the process ``pid`` has been restarted."""
        for sup in (self.neurons, self.sensors, self.actuators, self.cortex_supervisor):
            if pid._sup is not None and pid._sup.supervisor is sup.pid:
                return sup.restarts(pid)
        raise EngineError(f"{pid} is no process of this network")
