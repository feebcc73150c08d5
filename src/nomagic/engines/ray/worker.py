"""What runs inside one Ray actor: a group of neurons, or a share of a data-parallel batch.

A plain class: :mod:`.session` makes it a Ray actor (``ray.remote``), and the tests may run it
in this process. Nothing here imports Ray.

**A group of neurons** (model-parallel): the actor holds the neurons the partition gave it and
runs the processes engine's neuron state machine on each (``neuron.step``): the actor is
another transport for the same machines. Addresses are ints: a sensor's or neuron's global
index g, then one per actuator, then the cortex (``route[address]`` says which worker holds it,
-1 the driver). A call of :meth:`Worker.round` delivers one bundle of messages (the driver's,
then one list from each other worker), runs every local message to quiescence in FIFO order,
and returns what is left to send, one list per destination: ``[to the driver + counts + stats,
to worker 0, ..., to worker N-1]`` as separate Ray return values, so the driver hands each
list to its worker as an object reference without reading it.

**A share of a batch** (data-parallel): :meth:`Worker.grad` runs the tensor engine on its rows.
"""

from __future__ import annotations

import os
import time
from collections import deque

import numpy as np

from ...model.graph import Network
from .. import get_engine
from ..processes import neuron
from ..processes.context import Context
from ..processes.wiring import wiring_for


def network_from(spec) -> Network:
    """A network sent to an actor as ``net.to_dict()`` (a Network does not pickle)."""
    return spec if isinstance(spec, Network) else Network.from_dict(spec)


def list_bytes(messages: list) -> int:
    """The bytes of the distinct arrays a list of (address, message) carries: what goes over the
    wire, as the serialiser writes an array that several messages share (a neuron's value sent to
    each of its consumers) once per list; the tags and indices are a few bytes more per message."""
    seen: set = set()
    n = 0
    for _, msg in messages:
        for v in msg[1:]:
            nb = getattr(v, "nbytes", None)
            if nb is not None and id(v) not in seen:
                seen.add(id(v))
                n += nb
    return n


class _Outbox:
    """The outbox the neuron machines write to: local messages join the queue, the others wait in
    one list per destination worker (the driver's is the last)."""

    __slots__ = ("route", "me", "queue", "remote")

    def __init__(self, route: list[int], me: int, n_workers: int) -> None:
        self.route, self.me = route, me
        self.queue: deque = deque()
        self.remote: list[list] = [[] for _ in range(n_workers + 1)]

    def send(self, address: int, msg: tuple) -> None:
        w = self.route[address]
        if w == self.me:
            self.queue.append((address, msg))
        else:
            self.remote[w].append((address, msg))  # w == -1: the driver's list

    def snapshot(self, state) -> None:
        """A restart here goes back to the last batch boundary (the driver holds every worker's
        neurons as they were then) and runs the batch again, so a neuron's own snapshots in the
        middle of a batch are not needed."""


class Worker:
    """One Ray actor of the ray engine."""

    def __init__(self) -> None:
        self.group = None
        self.data = None

    def ping(self) -> dict:
        return {"pid": os.getpid()}

    def unload(self) -> None:
        """Forget the network (the actor goes back to the pool)."""
        self.group = self.data = None
        self.states = {}

    # -- model-parallel: a group of neurons ----------------------------------------------------------

    def load(self, net, route: list[int], me: int, n_workers: int, optimizer, l1: float, l2: float,
             gs: list[int], states: list) -> int:
        """Hold neurons ``gs`` of ``net`` (states: (p, slots, steps) each), worker ``me`` of
        ``n_workers``. Returns how many it holds."""
        net = network_from(net)
        wiring = wiring_for(net)
        ctx = Context(wiring, optimizer, l1, l2, [])
        n_act = len(wiring.actuators)
        ctx.pids = list(range(wiring.size))  # addresses are ints (see the module)
        ctx.actuator_pids = [wiring.size + k for k in range(n_act)]
        ctx.cortex = wiring.size + n_act
        self.ctx, self.gs = ctx, list(gs)
        self.out = _Outbox(route, me, n_workers)
        self.n_workers = n_workers
        self.states: dict = {}
        self.restore(states)
        self.group = net
        return len(self.gs)

    def restore(self, states: list) -> None:
        """Every neuron back to ``states`` (between batches); copies, as the optimizer updates in place."""
        self.states = {g: (np.array(p), {k: np.array(v) for k, v in slots.items()} if slots else neuron.NO_SLOTS,
                           steps, None) for g, (p, slots, steps) in zip(self.gs, states)}
        self.out.queue.clear()
        for lst in self.out.remote:
            lst.clear()

    def round(self, from_driver: list, *inboxes: list, snapshot: bool = False) -> tuple:
        """Deliver one bundle and run to quiescence; see the module for what comes back."""
        t0 = time.perf_counter()
        out, ctx, states, step = self.out, self.ctx, self.states, neuron.step
        queue = out.queue
        queue.extend(from_driver)
        for box in inboxes:
            queue.extend(box)
        received = len(queue)
        while queue:
            g, msg = queue.popleft()
            states[g] = step(ctx, g, states[g], msg, out)
        remote = out.remote
        out.remote = [[] for _ in range(self.n_workers + 1)]
        to_driver = remote[-1]
        counts = [len(lst) for lst in remote[:-1]]
        sent_bytes = sum(list_bytes(lst) for lst in remote[:-1])
        stats = (time.perf_counter() - t0, received, sum(counts), sent_bytes, len(to_driver), list_bytes(to_driver))
        head = (to_driver, counts, stats)
        if snapshot:
            return (head, *remote[:-1], self.snapshot())
        return (head, *remote[:-1])

    def snapshot(self) -> list:
        """Every neuron's (p, slots, steps), between batches (serialised, so copied, on return)."""
        snap = []
        for g in self.gs:
            state = self.states[g]
            if type(state) is not tuple:
                raise RuntimeError(f"neuron {self.ctx.wiring.name(g)} is in the middle of a batch")
            snap.append(state[:3])
        return snap

    # -- data-parallel: a share of each batch ----------------------------------------------------------

    def setup_data(self, net, loss: str, truncate: int | None) -> None:
        from ...model.params import FlatLayout

        net = network_from(net)
        self.data = (net, loss, truncate, FlatLayout({s.key: s.shape for s in net.param_specs()}))

    def grad(self, flat: np.ndarray, X: np.ndarray, Y: np.ndarray, dropout: tuple | None = None) -> tuple:
        """(mean loss, flat gradient, seconds) of the tensor engine on this share of a batch
        (``dropout``: the dropout key, with the position of the share's first row)."""
        t0 = time.perf_counter()
        net, loss, truncate, layout = self.data
        value, grads = get_engine("tensor").loss_and_grad(net, layout.to_params(flat), X, Y, loss=loss,
                                                          truncate=truncate, dropout_key=dropout)
        g = layout.flatten(grads, flat.dtype)
        return value, g, time.perf_counter() - t0

    def predict(self, flat: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The tensor engine's outputs for this share of the rows (after ``setup_data``)."""
        net, _, _, layout = self.data
        return get_engine("tensor").predict(net, layout.to_params(flat), X)
