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
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import EngineError, InvalidInputError
from ...model.activations import get_activation
from ...model.graph import Network
from ...model.losses import get_loss
from ...model.params import Params, check_params
from ...model.validation import check_inputs, check_targets
from ...runtime import ANY, Child, Runtime, Supervisor, TraceEvent, receive
from ..base import GradientStep, OptState
from ..objective import add_penalty_grad, check_truncate, clip_scale, horizon, penalty, uses_logits
from .wiring import Wiring, wiring_for

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

    def __post_init__(self) -> None:
        if not isinstance(self.neuron, str):
            raise InvalidInputError(f"Fault: neuron must be a neuron's name; got {self.neuron!r}")
        if self.phase not in ("forward", "backward", "commit"):
            raise InvalidInputError(f"Fault: phase must be 'forward', 'backward' or 'commit'; got {self.phase!r}")
        if self.kind not in ("crash", "hang"):
            raise InvalidInputError(f"Fault: kind must be 'crash' or 'hang'; got {self.kind!r}")
        for what in ("batch", "times"):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidInputError(f"Fault: {what} must be an int >= 0; got {v!r}")

    def fire(self, name: str, phase: str, batch: int) -> bool:
        if self.times > 0 and name == self.neuron and phase == self.phase and batch == self.batch:
            self.times -= 1
            return True
        return False


# --- the processes ----------------------------------------------------------------------------------


class Context:
    """What the processes of one network share: the directory of pids, and the settings."""

    def __init__(self, wiring: Wiring, optimizer, l1: float, l2: float, faults: list[Fault]) -> None:
        self.wiring = wiring
        self.pids: list = []
        self.actuator_pids: list = []
        self.cortex = None
        self.optimizer = optimizer
        self.l1, self.l2 = l1, l2
        self.faults = faults
        self.clip_norm: float | None = None
        self.first_id = 0  # the pid id of the first neuron

    def neuron_index(self, pid) -> int:
        """A neuron process's g. Neurons are spawned one after the other, so their pids are
        consecutive (checked when they are spawned); a neuron works its g out when it needs it
        rather than keep it: a million ints and argument tuples less."""
        return self.wiring.n_sensors + pid.id - self.first_id


def _fault(ctx: Context, g: int, phase: str, batch: int) -> None:
    for f in ctx.faults:
        if f.fire(ctx.wiring.name(g), phase, batch):
            if f.kind == "hang":
                raise _Hang
            raise InjectedCrash(f"injected crash in neuron {ctx.wiring.name(g)} ({phase}, batch {batch})")


class _Hang(Exception):
    pass


def _targets(ctx: Context, g: int) -> list[tuple]:
    """Where g's value goes: (pid, input slot there, recurrent, consumer runs once); for a
    plain g (``Wiring.plain_out``) only (pid, input slot there)."""
    w, pids, static = ctx.wiring, ctx.pids, ctx.wiring.static_l
    lo, hi = w.out_ptr_l[g], w.out_ptr_l[g + 1]
    if w.plain_out_l[g]:
        return [(pids[d], s) for d, s in zip(w.out_dst_l[lo:hi], w.out_slot_l[lo:hi])]
    return [(pids[d], s, r, static[d])
            for d, s, r in zip(w.out_dst_l[lo:hi], w.out_slot_l[lo:hi], w.out_rec_l[lo:hi])]


def _send_value(send, targets, plain: bool, b: int, t: int, T: int, me_static: bool, value) -> None:
    """Send the value of step t to every consumer: a recurrent consumer uses it at step t+1,
    one that runs once per sequence only at the last step."""
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


def sensor_process(me, state, g: int, ctx: Context):
    """A sensor: receives its input feature for a batch and sends it to every consumer."""
    send = me.send
    while True:
        msg = yield ANY
        if msg[0] == "x":
            _, b, column = msg  # (T, B): one vector per step
            targets = _targets(ctx, g)
            plain = ctx.wiring.plain_out_l[g]
            T = column.shape[0]
            for t in range(T):
                _send_value(send, targets, plain, b, t, T, False, column[t])
        elif msg[0] == "stop":
            return


_NO_SLOTS: dict = {}


def _snapshot(me, p: np.ndarray, slots: dict, steps: int, batch: tuple) -> None:
    """What a neuron restarts from if it crashes during ``batch``. A prediction changes nothing,
    so it needs no copies; a training batch ends by updating p and slots in place."""
    if batch[3]:
        me.snapshot((p.copy(), {k: v.copy() for k, v in slots.items()}, steps, batch))
    else:
        me.snapshot((p, slots, steps, batch))


def neuron_process(me, state, ctx: Context):
    """A neuron: owns p (its trainable incoming weights, then its bias) and its optimizer state.

    ``state`` is the snapshot it starts from: (p, slots, steps, batch), where batch describes
    the mini-batch in progress (None between batches). Between batches it keeps nothing else.
    """
    p, slots, steps, batch = state
    # (no `send = me.send` here: a bound method kept by every idle neuron costs 64 bytes each)
    while True:
        if batch is None:
            msg = yield ANY
            kind = msg[0]
            if kind == "begin":
                batch = msg[1:]
                _snapshot(me, p, slots, steps, batch)
            elif kind == "get":
                me.send(msg[1], ("params", ctx.neuron_index(me), p.copy()))
            elif kind == "slots":
                me.send(msg[1], ("slots", ctx.neuron_index(me), {k: v.copy() for k, v in slots.items()}, steps))
            elif kind == "set":
                p = msg[1].copy()
                slots = {k: v.copy() for k, v in msg[2].items()} if msg[2] else _NO_SLOTS
                steps = msg[3]
                me.snapshot((p.copy(), slots, steps, None))
            elif kind == "status":
                me.send(msg[1], ("status", ctx.neuron_index(me), "idle"))
            elif kind == "stop":
                return
            continue
        outcome = yield from _neuron_batch(me, ctx.neuron_index(me), ctx, p, slots, steps, batch)
        if outcome is None:
            return
        steps, batch = outcome


def _neuron_batch(me, g: int, ctx: Context, p: np.ndarray, slots: dict, steps: int, batch):
    """One mini-batch in the life of neuron g: forward (and backward, commit) by messages.

    Returns (steps, the next batch or None), or None when told to stop.
    """
    wiring = ctx.wiring
    send = me.send
    pids = ctx.pids
    b, T, B, train, fused, horizon = batch
    pop = wiring.pops[wiring.pop_of_l[g]]
    act = get_activation(pop.activation)
    softmax = pop.activation == "softmax"
    product = pop.aggregation == "product"
    static = wiring.static_l[g]
    lo, hi = wiring.in_ptr_l[g], wiring.in_ptr_l[g + 1]
    n_src = hi - lo
    n_w = wiring.n_trainable_l[g]
    has_bias = wiring.bias_param_l[g] >= 0
    rec_slots = [j for j, r in enumerate(wiring.in_rec_l[lo:hi]) if r]
    n_rec = len(rec_slots)
    dt = p.dtype
    if n_w == n_src:  # every synapse trainable: the weights are p's first n_w entries
        w = p[:n_w]
    else:  # fixed one-to-one synapses (gated cells) keep their fixed weights
        w = wiring.in_fixed[lo:hi].astype(dt)
        w[wiring.in_param[lo:hi] >= 0] = p[:n_w]
    targets = _targets(ctx, g)
    plain_out = wiring.plain_out_l[g]
    out_k = wiring.output_of_l[g]
    actuator = (ctx.actuator_pids[out_k], wiring.output_pos_l[g]) if out_k >= 0 else None
    peers = []
    peer_pos = 0
    if softmax:
        first = wiring.start[pop.name]
        peers = pids[first:first + pop.size]
        peer_pos = g - first
    n_peers = len(peers)
    Tl = 1 if static else T
    # forward buffers: X[t, slot] is the value of input `slot` used at step t
    # (every entry is filled before it is used; the recurrent ones of step 0 with zeros, below)
    X = np.empty((Tl, n_src, B), dtype=dt)
    X_rows = X.reshape(Tl * n_src, B)  # X_rows[t * n_src + slot] is X[t, slot]: faster to fill
    filled = bytearray(Tl * n_src)
    count = [0] * Tl
    need = [n_src - (n_rec if t == 0 else 0) for t in range(Tl)]
    for slot in rec_slots:  # recurrent inputs are zero before the first step
        filled[slot] = 1
        X_rows[slot] = 0
    Z = np.empty((Tl, B), dtype=dt)
    A = np.empty((Tl, B), dtype=dt)
    PZ = np.empty((Tl, n_peers, B), dtype=dt) if softmax else None
    pz_filled, pz_count = bytearray(Tl * n_peers), [0] * Tl
    # backward buffers: D[t, k] is the delta from consumer edge k (the last slot: the actuator's)
    n_cons = len(targets)
    out_slot = n_cons if actuator is not None else -1
    nd = n_cons + (actuator is not None)
    if train:
        # a delta that never comes (truncated BPTT, no step after the last) counts as zero
        D = np.empty((Tl, nd, B), dtype=dt) if plain_out else np.zeros((Tl, nd, B), dtype=dt)
        D_rows = D.reshape(Tl * nd, B)
        d_filled, d_count = bytearray(Tl * nd), [0] * Tl
        d_need = [nd] * Tl if plain_out else []  # how many deltas step t waits for
        for t in range(0 if plain_out else Tl):
            n = 1 if actuator is not None else 0
            for _, _, rec, cstatic in targets:
                if rec:
                    n += t + 1 < Tl and t + 1 > horizon
                elif cstatic and not static:
                    n += t == Tl - 1
                else:
                    n += 1
            d_need.append(n)
        PD = np.empty((Tl, n_peers, B), dtype=dt) if softmax else None
        pd_filled, pd_count = bytearray(Tl * n_peers), [0] * Tl
        grad = np.zeros(p.shape, dtype=dt)
        w_pos = np.flatnonzero(wiring.in_param[lo:hi] >= 0)
        n_sensors, static_of = wiring.n_sensors, wiring.static_l
        plain_in = wiring.plain_in_l[g]
        if plain_in:
            delta_to = [(j, pids[s], d) for j, (s, d) in
                        enumerate(zip(wiring.in_src_l[lo:hi], wiring.in_dslot_l[lo:hi])) if s >= n_sensors]
        else:
            delta_to = [(j, pids[s], d, r, static_of[s]) for j, (s, d, r) in
                        enumerate(zip(wiring.in_src_l[lo:hi], wiring.in_dslot_l[lo:hi],
                                      wiring.in_rec_l[lo:hi])) if s >= n_sensors]
    fwd_t, bwd_t = 0, Tl - 1  # the next step to compute, forward and backward
    sm_wait = smd_wait = -1  # softmax: the step waiting for its peers
    da_wait = None
    phase = "forward"

    def send_backward(t: int, dz: np.ndarray) -> None:
        x = X[t]
        if product:  # ∂z/∂cⱼ = Π_{k≠j} cₖ, with cₖ = wₖxₖ
            c = w[:, None] * x
            dc = np.empty_like(c)
            for j in range(n_src):
                dc[j] = dz * np.prod(np.delete(c, j, axis=0), axis=0)
            gw = (x * dc).sum(axis=1)
            deltas = w[:, None] * dc
        else:  # ∂z/∂wⱼ = xⱼ and ∂z/∂xⱼ = wⱼ
            gw = x @ dz
            deltas = np.multiply.outer(w, dz) if delta_to else None
        grad[:n_w] += gw[w_pos]
        if has_bias:
            grad[-1] += dz.sum()
        if plain_in:
            for j, pid, dslot in delta_to:
                send(pid, ("d", b, t, dslot, deltas[j]))
            return
        for j, pid, dslot, rec, sstatic in delta_to:
            if rec:
                if t > 0 and t > horizon:
                    send(pid, ("d", b, t - 1, dslot, deltas[j]))
            elif static and not sstatic:
                send(pid, ("d", b, T - 1, dslot, deltas[j]))
            else:
                send(pid, ("d", b, t, dslot, deltas[j]))

    def forward_done(t: int, z: np.ndarray, a: np.ndarray) -> None:
        A[t] = a
        _send_value(send, targets, plain_out, b, t, Tl, static, a)
        if actuator is not None:
            send(actuator[0], ("o", b, t, actuator[1], z, a))

    try:
        fresh = True  # a neuron fed only by recurrent synapses (or by none) can start at once
        while True:
            if fresh:
                fresh = False
            else:
                msg = yield ANY
                kind = msg[0]
                if kind == "f":
                    _, mb, t, slot, value = msg
                    i = t * n_src + slot
                    if mb != b or filled[i]:
                        continue  # a copy from an earlier batch, or sent twice
                    filled[i] = 1
                    X_rows[i] = value
                    count[t] += 1
                    if t != fwd_t or count[t] != need[t]:
                        continue
                elif kind == "d":
                    _, mb, t, k, value = msg
                    i = t * nd + k
                    if mb != b or d_filled[i]:
                        continue
                    d_filled[i] = 1
                    D_rows[i] = value
                    d_count[t] += 1
                    if t != bwd_t or d_count[t] != d_need[t] or phase != "backward":
                        continue
                elif kind == "pz" or kind == "pd":
                    _, mb, t, k, value = msg
                    i = t * n_peers + k
                    if mb != b:
                        continue
                    if kind == "pz":
                        if pz_filled[i]:
                            continue
                        pz_filled[i] = 1
                        PZ[t, k] = value
                        pz_count[t] += 1
                    else:
                        if pd_filled[i]:
                            continue
                        pd_filled[i] = 1
                        PD[t, k] = value
                        pd_count[t] += 1
                elif kind == "commit":
                    _, mb, scale = msg
                    if mb != b or phase != "commit":
                        continue
                    _fault(ctx, g, "commit", b)
                    if scale is not None:  # None: the gradient was only asked for
                        if scale != 1.0:
                            grad *= scale
                        steps += 1
                        ctx.optimizer.apply_(steps, p, grad, slots, np.empty_like(p))
                        # restart from here, not from the batch's start: a crash before the
                        # next batch must not replay this commit onto the updated p
                        me.snapshot((p, slots, steps, None))
                    return steps, None
                elif kind == "begin":  # the last batch was a prediction: on to the next
                    batch = msg[1:]
                    _snapshot(me, p, slots, steps, batch)
                    return steps, batch
                elif kind == "status":
                    send(msg[1], ("status", g, _describe(phase, fwd_t, bwd_t)))
                    continue
                elif kind == "get":
                    send(msg[1], ("params", g, p.copy()))
                    continue
                elif kind == "stop":
                    return None
                else:
                    continue
            # -- compute whatever is complete now --
            progressed = True
            while progressed:
                progressed = False
                if phase == "forward":
                    t = fwd_t
                    if sm_wait == t:
                        if pz_count[t] == n_peers:  # softmax: aᵢ = e^(zᵢ−m) / Σⱼ e^(zⱼ−m)
                            zs = PZ[t]
                            e = np.exp(zs - zs.max(axis=0))
                            sm_wait = -1
                            forward_done(t, Z[t], e[peer_pos] / e.sum(axis=0))
                            fwd_t += 1
                            progressed = True
                    elif count[t] == need[t]:
                        _fault(ctx, g, "forward", b)
                        x = X[t]
                        if product:
                            z = np.prod(w[:, None] * x, axis=0) if n_src else np.ones(B, dt)
                        else:
                            z = w @ x if n_src else np.zeros(B, dt)
                        if has_bias:
                            z = z + p[-1]
                        Z[t] = z
                        if softmax:
                            sm_wait = t
                            for pid in peers:
                                send(pid, ("pz", b, t, peer_pos, z))
                        else:
                            forward_done(t, z, act.forward(z))
                            fwd_t += 1
                        progressed = True
                    if fwd_t == Tl:
                        if not train:
                            return steps, None
                        phase = "backward"
                        progressed = True
                elif phase == "backward":
                    t = bwd_t
                    if smd_wait == t:
                        if pd_count[t] == n_peers:  # dzᵢ = aᵢ(daᵢ − Σⱼ daⱼaⱼ)
                            dz = A[t] * (da_wait - PD[t].sum(axis=0))
                            if fused and actuator is not None:
                                dz = dz + D[t, out_slot]
                            smd_wait = -1
                            send_backward(t, dz)
                            bwd_t -= 1
                            progressed = True
                    elif d_count[t] == d_need[t]:
                        _fault(ctx, g, "backward", b)
                        if fused and actuator is not None:
                            da = D[t, :out_slot].sum(axis=0)
                            dz_loss = D[t, out_slot]
                        else:
                            da = D[t].sum(axis=0)
                            dz_loss = None
                        if softmax and nd - (fused and actuator is not None):
                            smd_wait, da_wait = t, da
                            for pid in peers:
                                send(pid, ("pd", b, t, peer_pos, da * A[t]))
                        else:
                            dz = np.zeros(B, dt) if softmax else act.backward(Z[t], A[t], da)
                            if dz_loss is not None:
                                dz = dz + dz_loss
                            send_backward(t, dz)
                            bwd_t -= 1
                        progressed = True
                    if bwd_t < 0:  # all steps done: the penalty, then report to the cortex
                        cost = 0.0
                        if ctx.l1 or ctx.l2:
                            wt = p[:n_w]
                            cost = penalty(wt, ctx.l1, ctx.l2)
                            add_penalty_grad(grad[:n_w], wt, ctx.l1, ctx.l2)
                        phase = "commit"
                        send(ctx.cortex, ("ready", b, g, float(grad @ grad), cost, grad.copy()))
                        progressed = False
    except _Hang:
        while True:  # a hung neuron: it takes messages and never answers
            yield ANY


def _describe(phase: str, fwd_t: int, bwd_t: int) -> str:
    if phase == "forward":
        return f"forward, waiting for the inputs of step {fwd_t}"
    if phase == "backward":
        return f"backward, waiting for the deltas of step {bwd_t}"
    return "waiting for the cortex to commit"


def actuator_process(me, state, k: int, ctx: Context):
    """An actuator: gathers the output neurons' values for the cortex, and hands their
    gradients back to them."""
    members = ctx.wiring.actuators[k]
    n = len(members)
    send = me.send
    cortex = ctx.cortex
    b = None
    while True:
        msg = yield ANY
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
            _, mb, G = msg
            if mb != b:
                continue
            wiring = ctx.wiring
            for j, gidx in enumerate(members):
                pid = ctx.pids[gidx]
                slot = int(wiring.out_ptr[gidx + 1] - wiring.out_ptr[gidx])  # after its consumers
                for t in range(G.shape[0]):
                    send(pid, ("d", b, t, slot, G[t, j]))
        elif kind == "stop":
            return


class _Result:
    __slots__ = ("value", "ready")

    def __init__(self) -> None:
        self.value: Any = None
        self.ready = False


def _gather(me, neurons, request: str, reply: str):
    """Ask every neuron for something and collect the answers, in neuron order."""
    for pid in neurons:
        me.send(pid, (request, me))
    got: dict[int, Any] = {}
    while len(got) < len(neurons):
        answer = yield receive(lambda m: m[0] == reply)
        got[answer[1]] = answer[2:]
    return [got[g] for g in sorted(got)]


def cortex_process(me, ctx: Context, inbox: _Result):
    """The cortex: drives each mini-batch through sensors, neurons and actuators."""
    wiring = ctx.wiring
    neurons = ctx.pids[wiring.n_sensors:]
    actuators = ctx.actuator_pids
    send = me.send
    batch_no = 0
    while True:
        msg = yield receive(lambda m: m[0] in ("batch", "get", "slots", "set", "stop"))
        kind = msg[0]
        if kind == "stop":
            for pid in ctx.pids + actuators:
                send(pid, ("stop",))
            return
        if kind == "get":
            inbox.value = [a[0] for a in (yield from _gather(me, neurons, "get", "params"))]
        elif kind == "slots":
            inbox.value = (yield from _gather(me, neurons, "slots", "slots"))
        elif kind == "set":  # ("set", [p per neuron], [slots per neuron] or None, steps)
            _, ps, sl, steps = msg
            for k, pid in enumerate(neurons):
                send(pid, ("set", ps[k], sl[k] if sl else None, steps))
            inbox.value = None
        else:
            inbox.value = yield from _cortex_batch(me, ctx, batch_no, *msg[1:])
            batch_no += 1
        inbox.ready = True


def _cortex_batch(me, ctx: Context, b: int, X, Y, loss_fn, truncate, commit):
    """One mini-batch: X is (T, B, features); Y None for a prediction."""
    wiring = ctx.wiring
    sensors = ctx.pids[:wiring.n_sensors]
    neurons = ctx.pids[wiring.n_sensors:]
    actuators = ctx.actuator_pids
    send = me.send
    T, B = X.shape[0], X.shape[1]
    train = Y is not None
    out_pop = wiring.net.output_population
    fused = bool(train and out_pop is not None and uses_logits(loss_fn, out_pop.activation))
    first = horizon(T, truncate)
    for pid in neurons:
        send(pid, ("begin", b, T, B, train, fused, first))
    for k, pid in enumerate(actuators):
        send(pid, ("begin", b, 1 if wiring.static[wiring.actuators[k][0]] else T, B, X.dtype))
    for i, pid in enumerate(sensors):
        send(pid, ("x", b, X[:, :, i]))
    outs: dict[int, tuple] = {}
    while len(outs) < len(actuators):
        reply = yield receive(lambda m: m[0] == "out" and m[1] == b)
        outs[reply[2]] = (reply[3], reply[4])
    # (T, n, B) per actuator → engine layout (T, B, n); the last step only unless sequences
    Zs = np.concatenate([outs[k][0] for k in range(len(actuators))], axis=1).transpose(0, 2, 1)
    As = np.concatenate([outs[k][1] for k in range(len(actuators))], axis=1).transpose(0, 2, 1)
    seq = wiring.net.returns_sequences
    Zo, Ao = (Zs, As) if seq else (Zs[-1], As[-1])
    if not train:
        return Ao
    if fused:
        value, G = loss_fn.from_logits(Zo, Y)
    else:
        value, G = loss_fn.value(Ao, Y), loss_fn.grad(Ao, Y)
    Gs = G if seq else G[None]
    start = 0
    for k, pid in enumerate(actuators):
        n = len(wiring.actuators[k])
        send(pid, ("grad", b, np.ascontiguousarray(Gs[:, :, start:start + n].transpose(0, 2, 1))))
        start += n
    n = len(neurons)
    norms, penalties, grads = np.zeros(n), np.zeros(n), [None] * n
    got = bytearray(n)
    remaining = n
    while remaining:
        reply = yield receive(lambda m: m[0] == "ready" and m[1] == b)
        i = reply[2] - wiring.n_sensors
        if got[i]:
            continue
        got[i] = 1
        norms[i], penalties[i], grads[i] = reply[3], reply[4], reply[5]
        remaining -= 1
    value += float(penalties.sum())
    if not commit:
        for pid in neurons:
            send(pid, ("commit", b, None))
        return value, grads
    scale = clip_scale(float(norms.sum()), ctx.clip_norm)  # the global norm: every neuron's share
    for pid in neurons:
        send(pid, ("commit", b, scale))
    return value


# --- the network of processes -------------------------------------------------------------------------


class ProcessNetwork:
    """A network running as processes: one per sensor, neuron and actuator, plus the cortex.

    ``trace=True`` records every message (``trace_events``, ``trace_lines()``, ``trace_json()``).
    ``timeout``: seconds a mini-batch may take before the run is declared hung; the default
    gives 60 s plus 50 µs per synapse (a deadlock — nobody able to run — is reported at once,
    whatever the timeout).
    """

    def __init__(self, net: Network, params, *, optimizer=None, opt_state=None, l1: float = 0.0,
                 l2: float = 0.0, clip_norm: float | None = None, trace: bool = False,
                 timeout: float | None | str = "auto", faults: list[Fault] | None = None,
                 max_restarts: int = 3) -> None:
        if not isinstance(net, Network):
            raise InvalidInputError(f"expected a Network; got {type(net).__name__}")
        if timeout == "auto":
            timeout = 60.0 + 5e-5 * len(wiring_for(net).in_src)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):  # also NaN
            raise InvalidInputError(f"timeout must be a positive number of seconds; got {timeout!r}")
        P = check_params(net, params)
        self.net = net
        self.dtype = next(iter(P.values())).dtype if P else np.dtype(np.float64)
        self.wiring = w = wiring_for(net)
        self.timeout = timeout
        optimizer = optimizer or GradientStep()
        self.ctx = ctx = Context(w, optimizer, l1, l2, _check_faults(faults, w))
        ctx.clip_norm = clip_norm
        self.rt = rt = Runtime(trace=bool(trace))
        ps = w.split(w.layout.flatten(P, self.dtype))
        names = optimizer.slot_names
        if opt_state is not None and names:
            sl = {s: w.split(w.layout.flatten(opt_state.slots[s], self.dtype)) for s in names}
            steps = opt_state.step
        else:
            sl = {s: [np.zeros_like(p) for p in ps] for s in names}
            steps = 0 if opt_state is None else opt_state.step
        gc_was = gc.isenabled()
        gc.disable()  # spawning many small objects: the cyclic collector only slows it down
        try:
            sensors = Supervisor(rt, [Child(sensor_process, None, (g, ctx), name=f"sensor {w.name(g)}")
                                      for g in range(w.n_sensors)],
                                 max_restarts=max_restarts, name="sensor supervisor")
            shared = (ctx,)  # one tuple for all: a neuron's g follows from its pid
            children = [Child(neuron_process,
                              (p, {s: sl[s][k] for s in names} if names else _NO_SLOTS, steps, None),
                              shared)  # unnamed: a name per neuron costs memory
                        for k, p in enumerate(ps)]
            self.supervisor = Supervisor(rt, children, max_restarts=max_restarts,
                                         name="neuron supervisor")
            kids = self.supervisor.children
            if kids:
                ctx.first_id = kids[0].id
                if kids[-1].id - kids[0].id != len(kids) - 1:  # ids only grow: so all consecutive
                    raise EngineError("internal error: the neuron processes got no consecutive pids")
            actuators = Supervisor(rt, [Child(actuator_process, None, (k, ctx), name=f"actuator {k}")
                                        for k in range(len(w.actuators))],
                                   max_restarts=max_restarts, name="actuator supervisor")
            ctx.pids.extend(sensors.children)
            ctx.pids.extend(self.supervisor.children)
            ctx.actuator_pids.extend(actuators.children)
            self.inbox = _Result()
            ctx.cortex = self.cortex = rt.spawn(cortex_process, ctx, self.inbox, name="cortex")
        finally:
            if gc_was:
                gc.enable()

    @property
    def n_processes(self) -> int:
        return self.rt.process_count

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
        Xe = X[None] if X.ndim == 2 else X.transpose(1, 0, 2)
        out = await self._call_async(("batch", np.ascontiguousarray(Xe), None, None, None, False))
        return out.transpose(1, 0, 2) if out.ndim == 3 else out

    def _diagnose(self, exc: EngineError) -> EngineError:
        """After a hang, ask every neuron what it waits for; name those that never answer."""
        text = str(exc)
        if "gave up" in text:  # a neuron crashed past its restart limit: name it
            return EngineError(self._named(text))
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
            self.rt.send(pid, ("status", probe))
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

    def _named(self, text: str) -> str:
        """``text`` with each "<pid N>" of a neuron written "<neuron NAME>"."""
        w, pids = self.wiring, self.ctx.pids
        if len(pids) <= w.n_sensors:
            return text
        first = pids[w.n_sensors].id

        def name(m: re.Match) -> str:
            g = w.n_sensors + int(m[1]) - first
            return f"<neuron {w.name(g)}>" if w.n_sensors <= g < len(pids) and pids[g].id == int(m[1]) else m[0]

        return re.sub(r"<pid (\d+)>", name, text)

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

    def _to_params(self, ps: list[np.ndarray]) -> Params:
        return self.wiring.layout.to_params(self.wiring.join(ps, self.dtype))

    def params(self) -> Params:
        """The params, asked of every neuron by message."""
        return self._to_params(self._call(("get",)))

    def set_params(self, params, opt_state=None) -> None:
        w = self.wiring
        P = check_params(self.net, params, self.dtype)
        names = self.ctx.optimizer.slot_names
        sl = None
        if opt_state is not None and names:
            per = {s: w.split(w.layout.flatten(opt_state.slots[s], self.dtype)) for s in names}
            sl = [{s: per[s][k] for s in names} for k in range(w.n_neurons)]
        steps = 0 if opt_state is None else opt_state.step
        self._call(("set", w.split(w.layout.flatten(P, self.dtype)), sl, steps))

    def opt_state(self):
        pairs = self._call(("slots",))
        steps = pairs[0][1] if pairs else 0
        return OptState(steps, {s: self._to_params([pr[0][s] for pr in pairs])
                                for s in self.ctx.optimizer.slot_names})

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
        """Readable lines: "sensor x0 -> neuron h1: forward (0, 0, 0, array(float64, (4,)))"."""
        return [format_event(e, self.wiring, self.ctx.pids) for e in self.rt.trace_log[:limit]]

    def trace_json(self) -> str:
        w, pids = self.wiring, self.ctx.pids
        return json.dumps([{"seq": e.seq, "time": e.time, "sender": _pname(e.sender, w, pids),
                            "receiver": _pname(e.receiver, w, pids), "kind": e.kind,
                            "summary": e.summary} for e in self.rt.trace_log])


_KINDS = {"f": "forward", "d": "delta", "o": "output", "pz": "softmax z", "pd": "softmax delta",
          "x": "inputs", "begin": "begin batch", "commit": "commit", "ready": "ready",
          "out": "outputs", "grad": "loss gradient"}


def _pname(pid, wiring: Wiring | None = None, pids: list | None = None) -> str:
    """A process's name for traces: its own, or "neuron <name>" for a (nameless) neuron."""
    if pid.name:
        return pid.name
    if wiring is not None and pids is not None and len(pids) > wiring.n_sensors:
        # neurons are spawned one after the other: their ids are consecutive (checked below);
        # this still works once the processes have exited (after close())
        g = wiring.n_sensors + pid.id - pids[wiring.n_sensors].id
        if wiring.n_sensors <= g < len(pids) and pids[g] is pid:
            return f"neuron {wiring.name(g)}"
    if wiring is not None and pid._sup is not None and pid._sup.spec.fn is neuron_process:
        return f"neuron {wiring.name(pid._sup.spec.args[0].neuron_index(pid))}"
    return f"pid {pid.id}"


def format_event(e: TraceEvent, wiring: Wiring | None = None, pids: list | None = None) -> str:
    """One message as a readable line: who, to whom, what."""
    return (f"{_pname(e.sender, wiring, pids)} -> {_pname(e.receiver, wiring, pids)}: "
            f"{_KINDS.get(e.kind, e.kind)} {e.summary}")


def _check_faults(faults, wiring: Wiring) -> list[Fault]:
    """The faults as a list, each naming a neuron of the network (a typo would never fire)."""
    if faults is None:
        return []
    if isinstance(faults, Fault):
        faults = [faults]
    if isinstance(faults, (str, bytes)) or not hasattr(faults, "__iter__"):
        raise InvalidInputError(f"faults must be a list of Fault(...); got {faults!r}")
    faults = list(faults)
    for f in faults:
        if not isinstance(f, Fault):
            raise InvalidInputError(f"faults must be a list of Fault(...); got {f!r} in it")
    if faults:
        names = {wiring.name(g) for g in range(wiring.n_sensors, wiring.size)}
        for f in faults:
            if f.neuron not in names:
                raise InvalidInputError(f"Fault: the network has no neuron named {f.neuron!r} "
                                        f"(names as in net.neurons(), e.g. {wiring.name(wiring.n_sensors)!r})")
    return faults


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
    loss_fn = get_loss(loss)
    P = check_params(net, params)
    dt = next(iter(P.values())).dtype
    X = check_inputs(net, X, dt)
    Y = check_targets(net, loss_fn, Y, X, dt)
    check_truncate(truncate)
    pn = ProcessNetwork(net, P, **_options(options))
    try:
        value, grads = pn.train_batch(X, Y, loss_fn, truncate, commit=False)
    finally:
        pn.close()
    return value, pn._to_params(grads)


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
        self.pn.set_params(params, self.pn.opt_state())

    def opt_state(self):
        return self.pn.opt_state()

    def close(self) -> None:
        self.pn.close()


__all__ = ["Fault", "InjectedCrash", "ProcessNetwork", "Trainer", "format_event", "loss_and_grad",
           "predict"]
