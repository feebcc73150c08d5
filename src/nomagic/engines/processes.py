"""The processes engine: every neuron a lightweight process that only exchanges messages.

Sensor processes feed neuron processes, which feed actuator processes; a cortex process drives
each mini-batch (DESIGN.md). A neuron process owns the weights of its incoming synapses and its
optimizer state, and nothing else knows them:

forward   it waits for a value from every source (a whole mini-batch as one vector), aggregates
          (Σ wⱼxⱼ + b, or Π wⱼxⱼ + b), activates, and sends the result to every consumer;
backward  it waits for a delta from every consumer, computes its own delta
          dz = f'(z)·Σ deltas, sends wⱼ·dz to each source, and sums its weight gradients xⱼ·dz;
commit    when the cortex has every neuron's gradient norm (for clipping) it says commit, and
          each neuron updates its own weights with the optimizer.

Recurrent networks step through time by messages: a value sent along a recurrent synapse is
used by the consumer at the next step, and backward runs the steps in reverse (BPTT).

Every message is tagged (batch, step, slot). A neuron files what arrives into slot-indexed
buffers and computes in a fixed order, so the numbers never depend on arrival order, and a
message that arrives twice is ignored. That is what makes supervision exact: a crashed neuron is
restarted in place from its snapshot (taken when the batch began), the messages it had received
are replayed, it recomputes the same numbers, and the copies it sends again are dropped.
A crash loses nothing; a run with crashes ends with exactly the params of one without.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..activations import get_activation
from ..errors import EngineError, InvalidInputError
from ..graph import Network
from ..losses import get_loss
from ..params import Params, as_dtype, check_params
from ..runtime import Child, Runtime, Supervisor, TraceEvent, receive
from ..validation import check_inputs, check_targets

# --- test hooks -------------------------------------------------------------------------------


class InjectedCrash(RuntimeError):
    """Raised inside a neuron process by a ``Fault`` (a test hook)."""


@dataclass
class Fault:
    """A test hook: make neuron ``neuron`` crash (or hang) in ``phase`` of batch ``batch``.

    ``phase``: "forward", "backward" or "commit". ``times``: how many times it fires (a crash
    that fires more often than the supervisor's restart limit ends the run). ``kind``:
    "crash" raises ``InjectedCrash``; "hang" makes the neuron swallow every message from then on.
    """

    neuron: str
    phase: str = "forward"
    batch: int = 0
    times: int = 1
    kind: str = "crash"

    def fire(self, name: str, phase: str, batch: int) -> bool:
        if self.times > 0 and name == self.neuron and phase == self.phase and batch == self.batch:
            self.times -= 1
            return True
        return False


# --- the wiring, derived from the network ---------------------------------------------------------


@dataclass
class NeuronSpec:
    """What a neuron process is spawned with (shared by nothing else)."""

    index: int  # global index: sensors first, then neurons
    name: str
    activation: str
    product: bool
    static: bool
    # sources, one slot each: global index, trainable position in p (or -1), fixed weight, recurrent
    sources: list[tuple[int, int, float, bool]]
    src_dslots: list[int]  # my delta slot at each source (-1 for sensors)
    n_trainable: int
    has_bias: bool
    # consumers: (global index or ~actuator, slot at the consumer, recurrent, consumer static)
    consumers: list[tuple[int, int, bool, bool]]
    dslot_of_consumer: list[int]  # my delta slot for each consumer edge
    n_dslots: int
    output_slot: int  # delta slot the actuator uses, or -1
    peers: list[int]  # softmax: the global indices of the population, in order
    peer_pos: int


class Wiring:
    """The neuron-level graph of a network, with the param layout of each neuron."""

    def __init__(self, net: Network) -> None:
        self.net = net
        temporal = net.is_recurrent
        inp = net.populations[0]
        self.names: list[str] = [inp.neuron_name(i) for i in range(inp.size)]
        self.n_sensors = inp.size
        views = net.neurons()
        index = {n: i for i, n in enumerate(self.names)}
        for v in views:
            index[v.name] = len(self.names)
            self.names.append(v.name)
        pop_of = {v.name: net.population(v.population) for v in views}
        self.static = [False] * self.n_sensors + [bool(temporal and pop_of[v.name].static)
                                                   for v in views]
        if not temporal:
            self.static = [True] * len(self.names)  # one step: every neuron runs once
        # the param layout: neuron k's p = [its trainable weights..., bias]
        self.param_map: list[list[tuple[str, tuple[int, ...]]]] = []
        self.specs: list[NeuronSpec] = []
        consumers: list[list[tuple[int, int, bool]]] = [[] for _ in self.names]
        for v in views:
            me = index[v.name]
            sources = []
            src_dslots = []
            pmap = []
            for slot, s in enumerate(v.inputs):
                src = index[s.source]
                src_dslots.append(len(consumers[src]) if src >= self.n_sensors else -1)
                if s.weight is not None:
                    sources.append((src, len(pmap), 0.0, s.recurrent))
                    pmap.append((s.weight, s.index))
                else:
                    sources.append((src, -1, float(s.value), s.recurrent))
                consumers[src].append((me, slot, s.recurrent))
                if self.static[me] and temporal and s.recurrent:
                    raise EngineError(f"neuron {v.name} runs once per sequence but has a recurrent "
                                      "synapse; the processes engine cannot run that")
            n_trainable = len(pmap)
            if v.bias is not None:
                pmap.append((v.bias[0], (v.bias[1],)))
            pop = pop_of[v.name]
            peers = []
            if pop.activation == "softmax":
                peers = [index[pop.neuron_name(i)] for i in range(pop.size)]
            self.param_map.append(pmap)
            self.specs.append(NeuronSpec(me, v.name, pop.activation, pop.aggregation == "product",
                                         self.static[me], sources, src_dslots, n_trainable,
                                         v.bias is not None,
                                         [], [], 0, -1, peers, v.index if peers else 0))
        # outputs: one actuator per output segment
        self.actuators: list[list[int]] = []
        self.output_of: dict[int, tuple[int, int]] = {}
        for k, (pop_name, ix) in enumerate(net.outputs):
            pop = net.population(pop_name)
            members = [index[pop.neuron_name(i)] for i in ix]
            self.actuators.append(members)
            for j, g in enumerate(members):
                self.output_of[g] = (k, j)
        # consumer edges and delta slots
        self.sensor_consumers: list[list[tuple[int, int, bool, bool]]] = []
        for g in range(len(self.names)):
            edges = [(c, slot, rec, self.static[c]) for c, slot, rec in consumers[g]]
            if g < self.n_sensors:
                self.sensor_consumers.append(edges)
                continue
            spec = self.specs[g - self.n_sensors]
            spec.consumers = edges
            spec.dslot_of_consumer = list(range(len(edges)))
            spec.n_dslots = len(edges)
            if g in self.output_of:
                spec.output_slot = spec.n_dslots
                spec.n_dslots += 1
        self.n_neurons = len(views)

    def split(self, P: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Each neuron's own params p, cut out of the network's param arrays."""
        out = []
        for pmap in self.param_map:
            out.append(np.array([P[key][ix] for key, ix in pmap], dtype=next(iter(P.values())).dtype
                                if P else np.float64))
        return out

    def join(self, ps: list[np.ndarray], like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The network's param arrays, gathered back from every neuron's p."""
        out = {k: np.zeros_like(v) for k, v in like.items()}
        for pmap, p in zip(self.param_map, ps):
            for (key, ix), value in zip(pmap, p):
                out[key][ix] = value
        return out


def wiring_for(net: Network) -> Wiring:
    w = net._cache.get("process_wiring")
    if w is None:
        w = net._cache["process_wiring"] = Wiring(net)
    return w


# --- the processes ----------------------------------------------------------------------------------


class Context:
    """What every process of one network shares: the directory of pids, and the settings."""

    def __init__(self, wiring: Wiring, optimizer, l1: float, l2: float, faults: list[Fault]) -> None:
        self.wiring = wiring
        self.pids: list = []
        self.actuator_pids: list = []
        self.cortex = None
        self.optimizer = optimizer
        self.l1, self.l2 = l1, l2
        self.faults = faults
        self.status: dict = {}


def _fault(ctx: Context, name: str, phase: str, batch: int) -> None:
    for f in ctx.faults:
        if f.fire(name, phase, batch):
            if f.kind == "hang":
                raise _Hang
            raise InjectedCrash(f"injected crash in neuron {name} ({phase}, batch {batch})")


class _Hang(Exception):
    pass


def sensor_process(me, state, index: int, ctx: Context):
    """A sensor: receives its input feature for a batch and sends it to every consumer."""
    edges = ctx.wiring.sensor_consumers[index]
    pids = ctx.pids
    targets = [(pids[c], slot, rec, static) for c, slot, rec, static in edges]
    send = me.send
    while True:
        msg = yield
        if msg[0] == "x":
            _, b, column = msg  # (T, B): one vector per step
            T = column.shape[0]
            for t in range(T):
                value = column[t]
                for pid, slot, rec, static in targets:
                    if rec:
                        if t + 1 < T:
                            send(pid, ("f", b, t + 1, slot, value))
                    elif not static or t == T - 1:
                        send(pid, ("f", b, 0 if static else t, slot, value))
        elif msg[0] == "stop":
            return


def neuron_process(me, state, spec: NeuronSpec, ctx: Context):
    """A neuron: owns p (its trainable incoming weights, then its bias) and its optimizer state.

    ``state`` is the snapshot it starts from: (p, slots, steps, batch), where batch is the
    description of the mini-batch in progress (None between batches).
    """
    p, slots, steps, batch = state
    p = p.copy()
    slots = {k: v.copy() for k, v in slots.items()}
    opt = ctx.optimizer
    act = get_activation(spec.activation)
    softmax = spec.activation == "softmax"
    pids = ctx.pids
    send = me.send
    name = spec.name
    n_src = len(spec.sources)
    trainable = np.array([pos >= 0 for _, pos, _, _ in spec.sources], dtype=bool)
    fixed = np.array([w for _, _, w, _ in spec.sources], dtype=p.dtype)
    rec_src = [rec for _, _, _, rec in spec.sources]
    n_rec = sum(rec_src)
    n_w = spec.n_trainable

    def weights() -> np.ndarray:
        w = fixed.copy()
        w[trainable] = p[:n_w]
        return w

    w = weights()
    cons = [(pids[c] if c >= 0 else None, slot, rec, cstatic)
            for c, slot, rec, cstatic in spec.consumers]
    src_pids = [pids[s] for s, _, _, _ in spec.sources]
    src_is_sensor = [s < ctx.wiring.n_sensors for s, _, _, _ in spec.sources]
    src_static = [ctx.wiring.static[s] for s, _, _, _ in spec.sources]
    my_dslot = spec.src_dslots
    actuator = None
    if spec.output_slot >= 0:
        k, pos = ctx.wiring.output_of[spec.index]
        actuator = (ctx.actuator_pids[k], pos)
    peer_pids = [pids[g] for g in spec.peers]
    cortex = ctx.cortex

    while True:
        if batch is None:
            msg = yield
            kind = msg[0]
            if kind == "begin":
                batch = msg[1:]
                me.snapshot((p.copy(), {k: v.copy() for k, v in slots.items()}, steps, batch))
            elif kind == "get":
                send(msg[1], ("params", spec.index, p.copy()))
                continue
            elif kind == "set":
                p[...] = msg[1]
                w = weights()
                for v in slots.values():
                    v[...] = 0
                steps = msg[2]
                me.snapshot((p.copy(), {k: v.copy() for k, v in slots.items()}, steps, None))
                continue
            elif kind == "slots":
                send(msg[1], ("slots", spec.index, {k: v.copy() for k, v in slots.items()}, steps))
                continue
            elif kind == "set_slots":
                for k, v in msg[1].items():
                    slots[k][...] = v
                steps = msg[2]
                me.snapshot((p.copy(), {k: v.copy() for k, v in slots.items()}, steps, None))
                continue
            elif kind == "status":
                send(msg[1], ("status", spec.index, "idle"))
                continue
            elif kind == "stop":
                return
            else:
                continue  # a stale copy from an earlier batch
        b, T, B, train, fused, horizon = batch
        Tl = 1 if spec.static else T
        dt = p.dtype
        # forward buffers: X[t, slot] is the value of source `slot` used at step t
        X = np.zeros((Tl, n_src, B), dtype=dt)
        filled = bytearray(Tl * n_src)
        count = [0] * Tl
        need = [n_src - (n_rec if t == 0 else 0) for t in range(Tl)]
        Z = np.empty((Tl, B), dtype=dt)
        A = np.empty((Tl, B), dtype=dt)
        n_peers = len(peer_pids)
        PZ = np.empty((Tl, n_peers, B), dtype=dt) if softmax else None
        pz_filled = bytearray(Tl * n_peers)
        pz_count = [0] * Tl
        # backward buffers: D[t, dslot] is the delta from consumer edge dslot for step t
        nd = spec.n_dslots
        D = np.zeros((Tl, nd, B), dtype=dt)
        d_filled = bytearray(Tl * nd)
        d_count = [0] * Tl
        d_need = []
        for t in range(Tl):
            n = 0
            for (pid, slot, rec, cstatic) in cons:
                if rec:
                    n += 1 if (t + 1 < Tl and t + 1 > horizon) else 0
                elif cstatic and not spec.static:
                    n += 1 if t == Tl - 1 else 0
                else:
                    n += 1
            if spec.output_slot >= 0:
                n += 1  # the actuator's gradient, at every step of a sequence output
            d_need.append(n)
        PD = np.empty((Tl, n_peers, B), dtype=dt) if softmax else None
        pd_filled = bytearray(Tl * n_peers)
        pd_count = [0] * Tl
        grad = np.zeros(p.shape, dtype=dt)
        fwd_t = 0  # next step to compute forward
        bwd_t = Tl - 1  # next step to compute backward
        sm_wait = -1  # softmax: the step waiting for its peers' z (forward)
        smd_wait = -1  # softmax: the step waiting for its peers' deltas (backward)
        da_wait = None
        phase = "forward"
        if n_rec and Tl:  # recurrent sources are zero before the first step
            for slot in range(n_src):
                if rec_src[slot]:
                    filled[slot] = 1

        def send_forward(t: int, a: np.ndarray, z: np.ndarray) -> None:
            for pid, slot, rec, cstatic in cons:
                if rec:
                    if t + 1 < Tl:
                        send(pid, ("f", b, t + 1, slot, a))
                elif cstatic and not spec.static:
                    if t == Tl - 1:
                        send(pid, ("f", b, 0, slot, a))
                else:
                    send(pid, ("f", b, t, slot, a))
            if actuator is not None:
                send(actuator[0], ("o", b, t, actuator[1], z, a))

        def send_backward(t: int, dz: np.ndarray) -> None:
            x = X[t]
            if spec.product:
                c = w[:, None] * x
            for j in range(n_src):
                if spec.product:
                    others = np.ones_like(dz)
                    for k in range(n_src):
                        if k != j:
                            others = others * c[k]
                    dc = dz * others
                else:
                    dc = dz
                if trainable[j]:
                    grad[spec.sources[j][1]] += x[j] @ dc
                if src_is_sensor[j]:
                    continue
                delta = w[j] * dc
                if rec_src[j]:
                    if t > 0 and t > horizon:
                        send(src_pids[j], ("d", b, t - 1, my_dslot[j], delta))
                elif spec.static and not src_static[j]:
                    send(src_pids[j], ("d", b, T - 1, my_dslot[j], delta))
                else:
                    send(src_pids[j], ("d", b, t, my_dslot[j], delta))
            if spec.has_bias:
                grad[-1] += dz.sum()

        def finish_backward() -> None:
            nonlocal phase
            l1, l2 = ctx.l1, ctx.l2
            penalty = 0.0
            if l1 or l2:
                wt = p[:n_w]
                penalty = l1 * float(np.abs(wt).sum()) + l2 * float(wt @ wt)
                if l1:
                    grad[:n_w] += l1 * np.sign(wt)
                if l2:
                    grad[:n_w] += (2.0 * l2) * wt
            phase = "commit"
            send(cortex, ("ready", b, spec.index, float(grad @ grad), penalty, grad.copy()))

        try:
            fresh = True  # a neuron fed only by recurrent synapses can start step 0 at once
            while True:
                if fresh:
                    fresh = False
                    kind = None
                else:
                    msg = yield
                    kind = msg[0]
                if kind is None:
                    pass
                elif kind == "f":
                    _, mb, t, slot, value = msg
                    if mb != b:
                        continue
                    i = t * n_src + slot
                    if filled[i]:
                        continue
                    filled[i] = 1
                    X[t, slot] = value
                    count[t] += 1
                elif kind == "pz":
                    _, mb, t, k, z = msg
                    if mb != b or pz_filled[t * n_peers + k]:
                        continue
                    pz_filled[t * n_peers + k] = 1
                    PZ[t, k] = z
                    pz_count[t] += 1
                elif kind == "d" or kind == "pd":
                    _, mb, t, k, value = msg
                    if mb != b:
                        continue
                    if kind == "d":
                        if d_filled[t * nd + k]:
                            continue
                        d_filled[t * nd + k] = 1
                        D[t, k] = value
                        d_count[t] += 1
                    else:
                        if pd_filled[t * n_peers + k]:
                            continue
                        pd_filled[t * n_peers + k] = 1
                        PD[t, k] = value
                        pd_count[t] += 1
                elif kind == "commit":
                    _, mb, scale = msg
                    if mb != b or phase != "commit":
                        continue
                    _fault(ctx, name, "commit", b)
                    if scale is not None:  # None: the gradient was only asked for
                        if scale != 1.0:
                            grad *= scale
                        steps += 1
                        opt.apply_(steps, p, grad, slots, np.empty_like(p))
                        w = weights()
                    batch = None
                    break
                elif kind == "begin":
                    # the previous batch had no backward (prediction): start the next one
                    batch = msg[1:]
                    me.snapshot((p.copy(), {k: v.copy() for k, v in slots.items()}, steps, batch))
                    break
                elif kind == "status":
                    send(msg[1], ("status", spec.index, _describe(phase, fwd_t, bwd_t, Tl)))
                    continue
                elif kind == "get":
                    send(msg[1], ("params", spec.index, p.copy()))
                    continue
                elif kind == "stop":
                    return
                else:
                    continue
                # -- compute whatever is now complete --
                progressed = True
                while progressed:
                    progressed = False
                    if phase == "forward" and fwd_t < Tl:
                        t = fwd_t
                        if sm_wait == t:
                            if pz_count[t] == n_peers:
                                zs = PZ[t]
                                e = np.exp(zs - zs.max(axis=0))
                                a = e[spec.peer_pos] / e.sum(axis=0)
                                A[t] = a
                                sm_wait = -1
                                send_forward(t, a, Z[t])
                                fwd_t += 1
                                progressed = True
                        elif count[t] == need[t]:
                            _fault(ctx, name, "forward", b)
                            x = X[t]
                            if spec.product:
                                z = np.prod(w[:, None] * x, axis=0) if n_src else np.ones(B, dt)
                            else:
                                z = w @ x if n_src else np.zeros(B, dt)
                            if spec.has_bias:
                                z = z + p[-1]
                            Z[t] = z
                            if softmax:
                                sm_wait = t
                                for k, pid in enumerate(peer_pids):
                                    send(pid, ("pz", b, t, spec.peer_pos, z))
                            else:
                                a = act.forward(z)
                                A[t] = a
                                send_forward(t, a, z)
                                fwd_t += 1
                            progressed = True
                        if fwd_t == Tl and not train:
                            phase = "done"
                        elif fwd_t == Tl:
                            phase = "backward"
                            progressed = True
                    elif phase == "backward" and bwd_t >= 0:
                        t = bwd_t
                        if smd_wait == t:
                            if pd_count[t] == n_peers:
                                a = A[t]
                                dz = a * (da_wait - PD[t].sum(axis=0))
                                if fused and spec.output_slot >= 0:
                                    dz = dz + D[t, spec.output_slot]
                                smd_wait = -1
                                send_backward(t, dz)
                                bwd_t -= 1
                                progressed = True
                        elif d_count[t] == d_need[t]:
                            _fault(ctx, name, "backward", b)
                            if fused and spec.output_slot >= 0:
                                da = D[t, :spec.output_slot].sum(axis=0) if spec.output_slot \
                                    else np.zeros(B, dt)
                                dz_loss = D[t, spec.output_slot]
                            else:
                                da = D[t].sum(axis=0) if nd else np.zeros(B, dt)
                                dz_loss = None
                            if softmax and len(cons) + (0 if fused else int(spec.output_slot >= 0)):
                                smd_wait = t
                                da_wait = da
                                for pid in peer_pids:
                                    send(pid, ("pd", b, t, spec.peer_pos, da * A[t]))
                            else:
                                dz = act.backward(Z[t], A[t], da) if not softmax else np.zeros(B, dt)
                                if dz_loss is not None:
                                    dz = dz + dz_loss
                                send_backward(t, dz)
                                bwd_t -= 1
                            progressed = True
                        if bwd_t < 0:
                            finish_backward()
                            progressed = False
                if phase == "done":
                    batch = None
                    break
        except _Hang:
            while True:  # a hung neuron: it takes messages and never answers
                yield


def _describe(phase: str, fwd_t: int, bwd_t: int, Tl: int) -> str:
    if phase == "forward":
        return f"forward, waiting for inputs of step {fwd_t}"
    if phase == "backward":
        return f"backward, waiting for deltas of step {bwd_t}"
    return f"{phase}"


def actuator_process(me, state, k: int, ctx: Context):
    """An actuator: gathers the output neurons' values for the cortex, and hands their
    gradients back to them."""
    members = ctx.wiring.actuators[k]
    pids = [ctx.pids[g] for g in members]
    slots = [ctx.wiring.specs[g - ctx.wiring.n_sensors].output_slot for g in members]
    n = len(members)
    send = me.send
    cortex = ctx.cortex
    b = None
    while True:
        msg = yield
        kind = msg[0]
        if kind == "begin":
            b, T, B, dt = msg[1:]
            Z = np.empty((T, n, B), dtype=dt)
            A = np.empty((T, n, B), dtype=dt)
            got = bytearray(T * n)
            remaining = T * n
        elif kind == "o":
            _, mb, t, j, z, a = msg
            if mb != b or got[t * n + j]:
                continue
            got[t * n + j] = 1
            Z[t, j] = z
            A[t, j] = a
            remaining -= 1
            if remaining == 0:
                send(cortex, ("out", b, k, Z, A))
        elif kind == "grad":
            _, mb, G, fused = msg
            if mb != b:
                continue
            for t in range(G.shape[0]):
                for j in range(n):
                    send(pids[j], ("d", b, t, slots[j], G[t, j]))
        elif kind == "stop":
            return


class _Result:
    __slots__ = ("value", "ready", "error")

    def __init__(self) -> None:
        self.value: Any = None
        self.ready = False


def cortex_process(me, ctx: Context, inbox: _Result):
    """The cortex: drives each mini-batch through sensors, neurons and actuators."""
    wiring = ctx.wiring
    sensors = ctx.pids[:wiring.n_sensors]
    neurons = ctx.pids[wiring.n_sensors:]
    actuators = ctx.actuator_pids
    send = me.send
    batch_no = 0
    while True:
        msg = yield receive(lambda m: m[0] in ("batch", "get", "stop", "probe", "set", "slots",
                                               "set_slots"))
        kind = msg[0]
        if kind == "stop":
            for pid in ctx.pids + actuators:
                send(pid, ("stop",))
            return
        if kind == "get":
            for pid in neurons:
                send(pid, ("get", me))
            got: dict[int, np.ndarray] = {}
            while len(got) < len(neurons):
                reply = yield receive(lambda m: m[0] == "params")
                got[reply[1]] = reply[2]
            inbox.value = [got[wiring.n_sensors + i] for i in range(len(neurons))]
            inbox.ready = True
            continue
        if kind == "slots":
            for pid in neurons:
                send(pid, ("slots", me))
            got = {}
            while len(got) < len(neurons):
                reply = yield receive(lambda m: m[0] == "slots")
                got[reply[1]] = (reply[2], reply[3])
            inbox.value = [got[wiring.n_sensors + i] for i in range(len(neurons))]
            inbox.ready = True
            continue
        if kind in ("set", "set_slots"):
            for pid, value in zip(neurons, msg[1]):
                send(pid, (kind, value, msg[2]))
            inbox.ready = True
            continue
        if kind == "probe":
            for pid in neurons:
                send(pid, ("status", me))
            inbox.ready = True
            continue
        # a mini-batch: ("batch", X (T, B, f), Y or None, loss, horizon, commit)
        _, X, Y, loss_fn, horizon, commit = msg
        T, B = X.shape[0], X.shape[1]
        train = Y is not None
        out_pop = wiring.net.output_population
        fused = bool(train and out_pop is not None and loss_fn.partner == out_pop.activation
                     and loss_fn.from_logits is not None)
        b = batch_no
        batch_no += 1
        hz = 0 if horizon is None else max(T - horizon, 0)
        for pid in neurons:
            send(pid, ("begin", b, T, B, train, fused, hz))
        for k, pid in enumerate(actuators):
            a_static = wiring.static[wiring.actuators[k][0]]
            send(pid, ("begin", b, 1 if a_static else T, B, X.dtype))
        for i, pid in enumerate(sensors):
            send(pid, ("x", b, X[:, :, i]))
        outs: dict[int, tuple] = {}
        while len(outs) < len(actuators):
            reply = yield receive(lambda m: m[0] == "out" and m[1] == b)
            outs[reply[2]] = (reply[3], reply[4])
        # engine layout: (T, B, n) for sequences, (B, n) otherwise
        Zs = np.concatenate([outs[k][0] for k in range(len(actuators))], axis=1).transpose(0, 2, 1)
        As = np.concatenate([outs[k][1] for k in range(len(actuators))], axis=1).transpose(0, 2, 1)
        seq = wiring.net.returns_sequences
        Zo, Ao = (Zs, As) if seq else (Zs[-1], As[-1])
        if not train:
            inbox.value = Ao
            inbox.ready = True
            continue
        if fused:
            value, G = loss_fn.from_logits(Zo, Y)
        else:
            value, G = loss_fn.value(Ao, Y), loss_fn.grad(Ao, Y)
        Gs = G if seq else G[None]  # (T, B, n)
        start = 0
        for k, pid in enumerate(actuators):
            n = len(wiring.actuators[k])
            send(pid, ("grad", b, np.ascontiguousarray(Gs[:, :, start:start + n].transpose(0, 2, 1)),
                       fused))
            start += n
        norms = np.zeros(len(neurons))
        penalties = np.zeros(len(neurons))
        grads: list = [None] * len(neurons)
        got_ready = bytearray(len(neurons))
        remaining = len(neurons)
        while remaining:
            reply = yield receive(lambda m: m[0] == "ready" and m[1] == b)
            i = reply[2] - wiring.n_sensors
            if got_ready[i]:
                continue
            got_ready[i] = 1
            norms[i], penalties[i], grads[i] = reply[3], reply[4], reply[5]
            remaining -= 1
        if not commit:
            for pid in neurons:
                send(pid, ("commit", b, None))
            inbox.value = (value + float(penalties.sum()), grads)
            inbox.ready = True
            continue
        clip = ctx.status.get("clip_norm")
        scale = 1.0
        if clip is not None:
            norm = float(np.sqrt(norms.sum()))
            if norm > clip:
                scale = clip / norm
        for pid in neurons:
            send(pid, ("commit", b, scale))
        inbox.value = value + float(penalties.sum())
        inbox.ready = True


# --- the network of processes -------------------------------------------------------------------------


class ProcessNetwork:
    """A network running as processes: one per sensor, neuron and actuator, plus the cortex.

    ``trace=True`` records every message (``trace_events``, ``trace_lines()``, ``trace_json()``).
    ``timeout``: seconds a mini-batch may take before the run is declared hung.
    """

    def __init__(self, net: Network, params, *, optimizer=None, opt_state=None, l1: float = 0.0,
                 l2: float = 0.0, clip_norm: float | None = None, trace: bool = False,
                 timeout: float | None = 60.0, faults: list[Fault] | None = None,
                 max_restarts: int = 3) -> None:
        if not isinstance(net, Network):
            raise InvalidInputError(f"expected a Network; got {type(net).__name__}")
        P = check_params(net, params)
        self.net = net
        self.dtype = next(iter(P.values())).dtype if P else np.dtype(np.float64)
        self.like = {k: np.asarray(v) for k, v in P.items()}
        self.wiring = wiring_for(net)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout <= 0):
            raise InvalidInputError(f"timeout must be a positive number of seconds; got {timeout!r}")
        self.timeout = timeout
        from ..optimizers import SGD

        optimizer = optimizer or SGD(1.0)
        self.ctx = ctx = Context(self.wiring, optimizer, l1, l2, list(faults or []))
        ctx.status["clip_norm"] = clip_norm
        self.rt = rt = Runtime(trace=bool(trace))
        ps = self.wiring.split(P)
        slot_names = optimizer.slot_names
        if opt_state is not None:
            sl = {s: self.wiring.split(dict(opt_state.slots[s])) for s in slot_names}
            steps = opt_state.step
        else:
            sl = {s: [np.zeros_like(p) for p in ps] for s in slot_names}
            steps = 0
        w = self.wiring
        gc_was = gc.isenabled()
        gc.disable()  # spawning many small objects: the cyclic collector only slows it down
        try:
            sensor_sup = Supervisor(rt, [Child(sensor_process, None, (i, ctx), name=f"sensor {w.names[i]}")
                                         for i in range(w.n_sensors)], max_restarts=max_restarts,
                                    name="sensor supervisor")
            neuron_children = [
                Child(neuron_process, (ps[k], {s: sl[s][k] for s in slot_names}, steps, None),
                      (spec, ctx), name=f"neuron {spec.name}")
                for k, spec in enumerate(w.specs)]
            self.supervisor = Supervisor(rt, neuron_children, max_restarts=max_restarts,
                                         name="neuron supervisor")
            act_sup = Supervisor(rt, [Child(actuator_process, None, (k, ctx), name=f"actuator {k}")
                                      for k in range(len(w.actuators))], max_restarts=max_restarts,
                                 name="actuator supervisor")
            ctx.pids.extend(sensor_sup.children)
            ctx.pids.extend(self.supervisor.children)
            ctx.actuator_pids.extend(act_sup.children)
            self.inbox = _Result()
            ctx.cortex = self.cortex = rt.spawn(cortex_process, ctx, self.inbox, name="cortex")
        finally:
            if gc_was:
                gc.enable()
        self._loss = None

    @property
    def n_processes(self) -> int:
        return self.rt.process_count

    def _call(self, msg) -> Any:
        self.inbox.ready = False
        self.rt.send(self.cortex, msg)
        try:
            self.rt.run(until=lambda: self.inbox.ready, timeout=self.timeout)
        except EngineError as exc:
            raise self._diagnose(exc) from exc
        if not self.inbox.ready:
            raise EngineError("the cortex stopped before answering")
        return self.inbox.value

    def _diagnose(self, exc: EngineError) -> EngineError:
        """After a hang, ask every neuron what it waits for; name those that never answer."""
        text = str(exc)
        if "gave up" in text:  # a neuron crashed past its restart limit: the error names it
            return exc
        replies: list = []

        def collector(me):
            while True:
                replies.append((yield))

        probe = self.rt.spawn(collector, name="probe")
        for pid in self.ctx.pids[self.wiring.n_sensors:]:
            self.rt.send(pid, ("status", probe))
        try:
            self.rt.run(until=lambda: len(replies) >= self.wiring.n_neurons, timeout=1.0)
        except EngineError:
            pass
        answers = {m[1]: m[2] for m in replies}
        names = self.wiring.names
        silent = [names[g] for g in range(self.wiring.n_sensors, len(names)) if g not in answers]
        waiting = [f"{names[g]} ({s})" for g, s in sorted(answers.items())
                   if s.startswith(("forward", "backward"))]
        if silent:
            more = f" (and {len(silent) - 5} more)" if len(silent) > 5 else ""
            also = f"; waiting on it: {', '.join(waiting[:5])}" if waiting else ""
            return EngineError(f"neuron {', '.join(silent[:5])}{more} never answered{also}")
        return EngineError(f"the network of processes hung: {text}")

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Outputs in engine layout for checked inputs X."""
        Xe = X[None] if X.ndim == 2 else X.transpose(1, 0, 2)
        return self._call(("batch", np.ascontiguousarray(Xe), None, None, None, False))

    def predict(self, X) -> np.ndarray:
        X = check_inputs(self.net, X, self.dtype)
        out = self.forward(X)
        return out.transpose(1, 0, 2) if out.ndim == 3 else out

    def train_batch(self, X: np.ndarray, Y: np.ndarray, loss, truncate: int | None = None,
                    commit: bool = True):
        """One forward and backward pass; with ``commit`` every neuron then updates itself and
        the loss is returned, else (loss, each neuron's gradient) and nothing changes."""
        Xe = X[None] if X.ndim == 2 else X.transpose(1, 0, 2)
        Ye = Y.transpose(1, 0, 2) if Y.ndim == 3 else Y
        return self._call(("batch", np.ascontiguousarray(Xe), np.ascontiguousarray(Ye), loss,
                           truncate, commit))

    def params(self) -> Params:
        ps = self._call(("get",))
        return Params._adopt(self.wiring.join(ps, self.like))

    def set_params(self, params, steps: int = 0) -> None:
        P = check_params(self.net, params, self.dtype)
        self._call(("set", self.wiring.split(P), steps))

    def opt_state(self):
        from ..optimizers import OptState

        pairs = self._call(("slots",))
        steps = pairs[0][1] if pairs else 0
        slots = {}
        for s in self.ctx.optimizer.slot_names:
            slots[s] = Params._adopt(self.wiring.join([pr[0][s] for pr in pairs], self.like))
        return OptState(steps, slots)

    def close(self) -> None:
        try:
            self.rt.send(self.cortex, ("stop",))
            self.rt.run_until_idle(timeout=self.timeout)
        except EngineError:
            pass

    # -- the message trace --
    @property
    def trace_events(self) -> list[TraceEvent]:
        return self.rt.trace_log

    def trace_lines(self, limit: int | None = None) -> list[str]:
        """Readable lines: "sensor x0 -> neuron h1: f (0, 0, 0, 0, array(...))"."""
        return [format_event(e) for e in self.rt.trace_log[:limit]]

    def trace_json(self) -> str:
        return json.dumps([{"seq": e.seq, "time": e.time, "sender": _pname(e.sender),
                            "receiver": _pname(e.receiver), "kind": e.kind, "summary": e.summary}
                           for e in self.rt.trace_log])


_KINDS = {"f": "forward", "d": "delta", "o": "output", "pz": "softmax z", "pd": "softmax delta",
          "x": "inputs", "begin": "begin batch", "commit": "commit", "ready": "ready",
          "out": "outputs", "grad": "loss gradient"}


def _pname(pid) -> str:
    return pid.name or f"pid {pid.id}"


def format_event(e: TraceEvent) -> str:
    return f"{_pname(e.sender)} -> {_pname(e.receiver)}: {_KINDS.get(e.kind, e.kind)} {e.summary}"


# --- the engine interface ----------------------------------------------------------------------


def _options(options: dict) -> dict:
    allowed = {"trace", "timeout", "faults", "max_restarts"}
    unknown = set(options) - allowed
    if unknown:
        raise InvalidInputError(f"the processes engine takes no options {sorted(unknown)}; "
                                f"it knows {sorted(allowed)}")
    return options


def predict(net: Network, params, X, **options) -> np.ndarray:
    """The network's outputs for X, computed by a society of neuron processes."""
    pn = ProcessNetwork(net, params, **_options(options))
    try:
        return pn.predict(X)
    finally:
        pn.close()


def loss_and_grad(net: Network, params, X, Y, loss: str = "mse", truncate: int | None = None,
                  **options):
    """Loss and gradients, by one forward and one backward pass of messages (no update)."""
    from .tensor import _check_truncate

    loss_fn = get_loss(loss)
    P = check_params(net, params)
    dt = next(iter(P.values())).dtype
    X = check_inputs(net, X, dt)
    Y = check_targets(net, loss_fn, Y, X, dt)
    _check_truncate(truncate)
    pn = ProcessNetwork(net, P, **_options(options))
    try:
        value, grads = pn.train_batch(X, Y, loss_fn, truncate, commit=False)
    finally:
        pn.close()
    return value, Params._adopt(pn.wiring.join(grads, pn.like))


class Trainer:
    """``nm.fit(..., engine="processes")``: the neurons train themselves, batch after batch."""

    def __init__(self, net: Network, params, optimizer, opt_state, loss, *, l1: float = 0.0,
                 l2: float = 0.0, clip_norm: float | None = None, truncate: int | None = None,
                 **options) -> None:
        self.loss, self.truncate = loss, truncate
        self.pn = ProcessNetwork(net, params, optimizer=optimizer, opt_state=opt_state, l1=l1,
                                 l2=l2, clip_norm=clip_norm, **_options(options))

    def train_batch(self, X: np.ndarray, Y: np.ndarray) -> float:
        return self.pn.train_batch(X, Y, self.loss, self.truncate)

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = self.pn.forward(X)
        return out.transpose(1, 0, 2) if out.ndim == 3 else out

    def params(self) -> Params:
        return self.pn.params()

    def set_params(self, params) -> None:
        self.pn.set_params(params)

    def opt_state(self):
        return self.pn.opt_state()

    def close(self) -> None:
        self.pn.close()


__all__ = ["Fault", "InjectedCrash", "ProcessNetwork", "Trainer", "format_event", "loss_and_grad",
           "predict", "as_dtype"]
