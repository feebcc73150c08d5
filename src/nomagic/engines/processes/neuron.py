"""A neuron, as a state machine that does not know how it is run.

A neuron owns p (the weights of its trainable incoming synapses, then its bias) and its optimizer
slots, and nothing else knows them:

forward   it waits for a value from every source (a whole mini-batch as one vector), aggregates
          (Σ wⱼxⱼ + b, or Π wⱼxⱼ + b), activates, and sends the result to every consumer;
dropout   a neuron of a dropout population (linear, fed one-to-one) computes its own masks for
          the batch's samples from the ``Begin``'s dropout key and its global index g, multiplies
          its output by them at every step, and its delta on the way back (model/dropout.py);
backward  it waits for a delta from every consumer, computes its own delta
          dz = f'(z)·Σ deltas, sends wⱼ·dz to each source, and sums its weight gradients xⱼ·dz;
commit    when the cortex has every neuron's gradient norm (for clipping) it says commit, and
          the neuron updates its own weights with the optimizer.

Recurrent networks step through time by messages: a value sent along a recurrent synapse is
used by the consumer at the next step, and backward runs the steps in reverse (BPTT).

Every message is tagged (batch, step, slot). A neuron files what arrives into slot-indexed
buffers and computes in a fixed order, so the numbers never depend on arrival order, and a
message that arrives twice is ignored. That is what makes restarts exact: a crashed neuron
starts again from its snapshot, the messages it received since are replayed, it recomputes
the same numbers, and the copies it sends again are dropped by their receivers.

The machine: ``step(ctx, g, state, msg, out)`` returns the next state. Between batches the state
is the tuple ``(p, slots, steps, None)``; during a batch it is a handler (see ``begin``). ``out``
is the outbox the transport gives: ``out.send(address, message)`` and ``out.snapshot(state)``
(what to restart from; the transport may then forget the messages received so far).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model import dropout as _dropout
from ...model.activations import get_activation
from ..objective import add_penalty_grad, penalty
from .context import Context, send_value
from .context import targets as targets_of
from .faults import Hang, trip

STOP = "stop"
"""The state after ``Stop``: the neuron has exited."""

NO_SLOTS: dict = {}


def _hung(msg: Any) -> None:
    """A hung neuron (a ``Fault(kind="hang")``): it takes messages and never answers."""
    return None


def snapshot(out, p: np.ndarray, slots: dict, steps: int, batch: tuple) -> None:
    """What a neuron restarts from if it crashes during ``batch``. A prediction changes nothing,
    so it needs no copies; a training batch ends by updating p and slots in place."""
    if batch[3]:
        out.snapshot((p.copy(), {k: v.copy() for k, v in slots.items()}, steps, batch))
    else:
        out.snapshot((p, slots, steps, batch))


def idle(ctx: Context, g: int, state: tuple, msg: tuple, out) -> Any:
    """Neuron g between batches, given one message: the next state."""
    p, slots, steps, _ = state
    kind = msg[0]
    if kind == "begin":
        batch = msg[1:]
        snapshot(out, p, slots, steps, batch)
        return begin(ctx, g, p, slots, steps, batch, out)
    if kind == "get":
        out.send(msg[1], ("params", g, p.copy()))
    elif kind == "slots":
        out.send(msg[1], ("slots", g, {k: v.copy() for k, v in slots.items()}, steps))
    elif kind == "set":
        p = msg[1].copy()
        slots = {k: v.copy() for k, v in msg[2].items()} if msg[2] else NO_SLOTS
        state = (p, slots, msg[3], None)
        out.snapshot((p.copy(), slots, msg[3], None))
    elif kind == "status":
        out.send(msg[1], ("status", g, "idle"))
    elif kind == "stop":
        return STOP
    return state


def step(ctx: Context, g: int, state: Any, msg: tuple, out) -> Any:
    """Neuron g in ``state``, given one message: its next state (``STOP`` once told to stop)."""
    if type(state) is tuple:
        return idle(ctx, g, state, msg, out)
    nxt = state(msg)
    return state if nxt is None else nxt


def restart(ctx: Context, g: int, state: tuple, out) -> Any:
    """The state to run from a snapshot: an idle neuron, or one in the middle of its batch."""
    p, slots, steps, batch = state
    return state if batch is None else begin(ctx, g, p, slots, steps, batch, out)


def begin(ctx: Context, g: int, p: np.ndarray, slots: dict, steps: int, batch: tuple, out) -> Any:
    """Neuron g starts mini-batch ``batch`` (a ``Begin`` without its tag): returns its state, a
    handler ``handle(msg)`` that answers None while the batch goes on and the next state once it
    is over (or the idle state at once, when there is nothing to wait for)."""
    run = Batch(ctx, g, p, slots, steps, batch, out)
    if run.need[0]:  # it waits for an input: nothing can be computed yet
        return run.handle
    try:  # a neuron fed only by recurrent synapses (or by none) can start at once
        done = run.advance()
    except Hang:
        return _hung
    return run.handle if done is None else done


class Batch:
    """Neuron g during one mini-batch: its buffers and counters, made by ``begin`` and dropped
    when the batch is over (between batches a neuron keeps only p, slots and steps). One slotted
    object rather than closures: a million neurons start a batch each, so what that costs counts."""

    __slots__ = ("ctx", "g", "p", "slots", "steps", "out", "send", "b", "T", "B", "train", "fused", "horizon",
                 "act", "softmax", "product", "static", "n_src", "n_w", "has_bias", "dt", "w", "targets",
                 "plain_out", "actuator", "peers", "peer_pos", "n_peers", "Tl", "X", "X_flat", "xs", "filled",
                 "count", "need", "Z", "A", "PZ", "pz_filled", "pz_count", "nd", "out_slot", "D", "D_flat", "ds",
                 "d_filled", "d_count", "d_need", "PD", "pd_filled", "pd_count", "grad", "w_pos", "plain_in",
                 "delta_to", "fwd_t", "bwd_t", "sm_wait", "smd_wait", "da_wait", "phase", "faults", "drop")

    def __init__(self, ctx: Context, g: int, p: np.ndarray, slots: dict, steps: int, batch: tuple, out) -> None:
        wiring = ctx.wiring
        pids = ctx.pids
        self.ctx, self.g, self.p, self.slots, self.steps, self.out = ctx, g, p, slots, steps, out
        self.send = out.send
        self.b, T, B, train, self.fused, self.horizon = batch[:6]
        self.T, self.B, self.train = T, B, train
        pop = wiring.pops[wiring.pop_of_l[g]]
        key = batch[6] if len(batch) > 6 else None
        # a dropout neuron's multipliers for the batch's samples (the same at every step), or None
        self.drop = _dropout.mask(pop.dropout, key, (g,), B, p.dtype)[:, 0] \
            if key is not None and pop.dropout and train else None
        self.act = get_activation(pop.activation)
        self.softmax = softmax = pop.activation == "softmax"
        self.product = pop.aggregation == "product"
        self.static = static = wiring.static_l[g]
        lo, hi = wiring.in_ptr_l[g], wiring.in_ptr_l[g + 1]
        self.n_src = n_src = hi - lo
        self.n_w = n_w = wiring.n_trainable_l[g]
        self.has_bias = wiring.bias_param_l[g] >= 0
        self.plain_in = plain_in = wiring.plain_in_l[g]  # plain: no recurrent synapse in
        rec_slots = [] if plain_in else [j for j, r in enumerate(wiring.in_rec_l[lo:hi]) if r]
        self.dt = dt = p.dtype
        if n_w == n_src:  # every synapse trainable: the weights are p's first n_w entries
            self.w = p[:n_w]
        else:  # fixed one-to-one synapses (gated cells) keep their fixed weights
            w = self.w = wiring.in_fixed[lo:hi].astype(dt)
            w[wiring.in_param[lo:hi] >= 0] = p[:n_w]
        self.targets = targets = targets_of(ctx, g)
        self.plain_out = plain_out = wiring.plain_out_l[g]
        out_k = wiring.output_of_l[g]
        self.actuator = actuator = (ctx.actuator_pids[out_k], wiring.output_pos_l[g]) if out_k >= 0 else None
        self.Tl = Tl = 1 if static else T
        # forward buffers: X[t, slot] is the value of input `slot` used at step t
        # (every entry is filled before it is used; the recurrent ones of step 0 with zeros, below)
        # (the values are kept as they come, in xs[t * n_src + slot], and copied into X in one go
        # when step t is complete: one np.concatenate instead of a NumPy setitem per message;
        # a prediction needs each step's inputs only while it computes that step: no X)
        if train:
            self.X = X = np.empty((Tl, n_src, B), dtype=dt)
            self.X_flat = X.reshape(Tl, n_src * B)  # views of X, for np.concatenate's out
        else:
            self.X = self.X_flat = None
        self.xs = xs = [None] * (Tl * n_src)
        self.filled = filled = bytearray(Tl * n_src)
        self.count = [0] * Tl
        self.need = need = [n_src] * Tl
        if rec_slots:
            need[0] -= len(rec_slots)
            zero = np.zeros(B, dtype=dt)
            for slot in rec_slots:  # recurrent inputs are zero before the first step
                filled[slot] = 1
                xs[slot] = zero
        # z and a of each step: what backward (and a softmax's peers) need
        self.Z = np.empty((Tl, B), dtype=dt) if train or softmax else None
        self.A = np.empty((Tl, B), dtype=dt) if train else None
        if softmax:
            first = wiring.start[pop.name]
            self.peers = pids[first:first + pop.size]
            self.peer_pos = g - first
            self.n_peers = n_peers = pop.size
            self.PZ = np.empty((Tl, n_peers, B), dtype=dt)
            self.pz_filled, self.pz_count = bytearray(Tl * n_peers), [0] * Tl
        else:
            self.peers, self.peer_pos, self.n_peers = (), 0, 0
        # backward buffers: D[t, k] is the delta from consumer edge k (the last slot: the actuator's)
        n_cons = len(targets)
        self.out_slot = n_cons if actuator is not None else -1
        self.nd = nd = n_cons + (actuator is not None)
        if train:
            # a delta that never comes (truncated BPTT, no step after the last) counts as zero
            D = self.D = np.empty((Tl, nd, B), dtype=dt) if plain_out else np.zeros((Tl, nd, B), dtype=dt)
            self.ds = [None] * (Tl * nd)  # as xs: copied into D[t] when step t's deltas are all in
            self.D_flat = D.reshape(Tl, nd * B)
            self.d_filled, self.d_count = bytearray(Tl * nd), [0] * Tl
            self.d_need = d_need = [nd] * Tl if plain_out else []  # how many deltas step t waits for
            horizon = self.horizon
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
            if softmax:
                self.PD = np.empty((Tl, self.n_peers, B), dtype=dt)
                self.pd_filled, self.pd_count = bytearray(Tl * self.n_peers), [0] * Tl
            self.grad = np.zeros(p.shape, dtype=dt)
            self.w_pos = np.flatnonzero(wiring.in_param[lo:hi] >= 0)
            n_sensors, static_of = wiring.n_sensors, wiring.static_l
            if plain_in:
                self.delta_to = [(j, pids[s], d) for j, (s, d) in
                                 enumerate(zip(wiring.in_src_l[lo:hi], wiring.in_dslot_l[lo:hi])) if s >= n_sensors]
            else:
                self.delta_to = [(j, pids[s], d, r, static_of[s]) for j, (s, d, r) in
                                 enumerate(zip(wiring.in_src_l[lo:hi], wiring.in_dslot_l[lo:hi],
                                               wiring.in_rec_l[lo:hi])) if s >= n_sensors]
        self.fwd_t, self.bwd_t = 0, Tl - 1  # the next step to compute, forward and backward
        self.sm_wait = self.smd_wait = -1  # softmax: the step waiting for its peers
        self.da_wait = None
        self.phase = "forward"
        self.faults = ctx.faults

    def handle(self, msg: tuple) -> Any:
        """One message: None while the batch goes on, else the next state."""
        kind = msg[0]
        if kind == "f":
            _, mb, t, slot, value = msg
            i = t * self.n_src + slot
            filled = self.filled
            if mb != self.b or filled[i]:
                return None  # a copy from an earlier batch, or sent twice
            filled[i] = 1
            self.xs[i] = value
            count = self.count
            count[t] += 1
            if t != self.fwd_t or count[t] != self.need[t]:
                return None
        elif kind == "d":
            _, mb, t, k, value = msg
            if mb != self.b:
                return None  # (a prediction has no delta buffers)
            i = t * self.nd + k
            d_filled = self.d_filled
            if d_filled[i]:
                return None
            d_filled[i] = 1
            self.ds[i] = value
            d_count = self.d_count
            d_count[t] += 1
            if t != self.bwd_t or d_count[t] != self.d_need[t] or self.phase != "backward":
                return None
        elif kind == "pz" or kind == "pd":
            _, mb, t, k, value = msg
            i = t * self.n_peers + k
            if mb != self.b:
                return None
            if kind == "pz":
                if self.pz_filled[i]:
                    return None
                self.pz_filled[i] = 1
                self.PZ[t, k] = value
                self.pz_count[t] += 1
            else:
                if self.pd_filled[i]:
                    return None
                self.pd_filled[i] = 1
                self.PD[t, k] = value
                self.pd_count[t] += 1
        elif kind == "commit":
            _, mb, scale = msg
            if mb != self.b or self.phase != "commit":
                return None
            if self.faults:
                try:
                    trip(self.faults, "neuron", self.ctx.wiring.name(self.g), "commit", mb)
                except Hang:
                    return _hung
            p, slots, grad = self.p, self.slots, self.grad
            if scale is not None:  # None: the gradient was only asked for
                if scale != 1.0:
                    np.multiply(grad, scale, out=grad)
                self.steps += 1
                self.ctx.optimizer.apply_(self.steps, p, grad, slots, np.empty_like(p))
            # restart from here, not from the batch's start: a crash before the next batch
            # must not replay this commit onto the updated p
            state = (p, slots, self.steps, None)
            self.out.snapshot(state)
            return state
        elif kind == "begin":  # the last batch was a prediction: on to the next
            if msg[1] == self.b:
                return None  # sent twice
            nxt = msg[1:]
            snapshot(self.out, self.p, self.slots, self.steps, nxt)
            return begin(self.ctx, self.g, self.p, self.slots, self.steps, nxt, self.out)
        elif kind == "status":
            self.send(msg[1], ("status", self.g, _describe(self.phase, self.fwd_t, self.bwd_t)))
            return None
        elif kind == "get":
            self.send(msg[1], ("params", self.g, self.p.copy()))
            return None
        elif kind == "stop":
            return STOP
        else:
            return None
        try:
            return self.advance()
        except Hang:
            return _hung

    def advance(self) -> Any:
        """Compute whatever is complete now: None while the batch goes on, else the next state."""
        progressed = True
        while progressed:
            progressed = False
            if self.phase == "forward":
                t = self.fwd_t
                if self.sm_wait == t:
                    if self.pz_count[t] == self.n_peers:  # softmax: aᵢ = e^(zᵢ−m) / Σⱼ e^(zⱼ−m)
                        zs = self.PZ[t]
                        e = np.exp(zs - zs.max(axis=0))
                        self.sm_wait = -1
                        self._forward_done(t, self.Z[t], e[self.peer_pos] / e.sum(axis=0))
                        self.fwd_t = t + 1
                        progressed = True
                elif self.count[t] == self.need[t]:
                    if self.faults:
                        trip(self.faults, "neuron", self.ctx.wiring.name(self.g), "forward", self.b)
                    n_src, w, dt = self.n_src, self.w, self.dt
                    if not n_src:
                        x = None
                    elif self.X is None:  # a prediction: this step's inputs, as one (n_src, B) array
                        x = np.concatenate(self.xs[t * n_src:(t + 1) * n_src], dtype=dt).reshape(n_src, self.B)
                    else:
                        np.concatenate(self.xs[t * n_src:(t + 1) * n_src], out=self.X_flat[t])
                        x = self.X[t]
                    if self.product:
                        z = np.prod(w[:, None] * x, axis=0) if n_src else np.ones(self.B, dt)
                    else:
                        z = w @ x if n_src else np.zeros(self.B, dt)
                    if self.has_bias:
                        z = z + self.p[-1]
                    if self.Z is not None:
                        self.Z[t] = z
                    if self.softmax:
                        self.sm_wait = t
                        send, b, peer_pos = self.send, self.b, self.peer_pos
                        for pid in self.peers:
                            send(pid, ("pz", b, t, peer_pos, z))
                    else:
                        a = self.act.forward(z)
                        self._forward_done(t, z, a if self.drop is None else a * self.drop)
                        self.fwd_t = t + 1
                    progressed = True
                if self.fwd_t == self.Tl:
                    if not self.train:  # a prediction changes nothing: forget its messages
                        state = (self.p, self.slots, self.steps, None)
                        self.out.snapshot(state)
                        return state
                    self.phase = "backward"
                    progressed = True
            elif self.phase == "backward":
                t = self.bwd_t
                fused_out = self.fused and self.actuator is not None
                if self.smd_wait == t:
                    if self.pd_count[t] == self.n_peers:  # dzᵢ = aᵢ(daᵢ − Σⱼ daⱼaⱼ)
                        dz = self.A[t] * (self.da_wait - self.PD[t].sum(axis=0))
                        if fused_out:
                            dz = dz + self.D[t, self.out_slot]
                        self.smd_wait = -1
                        self._send_backward(t, dz)
                        self.bwd_t = t - 1
                        progressed = True
                elif self.d_count[t] == self.d_need[t]:
                    if self.faults:
                        trip(self.faults, "neuron", self.ctx.wiring.name(self.g), "backward", self.b)
                    nd, D = self.nd, self.D
                    if self.plain_out:
                        if nd:
                            np.concatenate(self.ds[t * nd:(t + 1) * nd], out=self.D_flat[t])
                    else:  # the deltas that never come stay zero
                        for k, v in enumerate(self.ds[t * nd:(t + 1) * nd]):
                            if v is not None:
                                D[t, k] = v
                    if fused_out:
                        da = D[t, :self.out_slot].sum(axis=0)
                        dz_loss = D[t, self.out_slot]
                    else:
                        da = D[t].sum(axis=0)
                        dz_loss = None
                    if self.softmax and nd - fused_out:
                        self.smd_wait, self.da_wait = t, da
                        send, b, peer_pos = self.send, self.b, self.peer_pos
                        for pid in self.peers:
                            send(pid, ("pd", b, t, peer_pos, da * self.A[t]))
                    else:
                        if self.drop is not None:
                            da = da * self.drop
                        dz = np.zeros(self.B, self.dt) if self.softmax else self.act.backward(self.Z[t], self.A[t], da)
                        if dz_loss is not None:
                            dz = dz + dz_loss
                        self._send_backward(t, dz)
                        self.bwd_t = t - 1
                    progressed = True
                if self.bwd_t < 0:  # all steps done: the penalty, then report to the cortex
                    ctx, grad = self.ctx, self.grad
                    cost = 0.0
                    if ctx.l1 or ctx.l2:
                        n_w = self.n_w
                        wt = self.p[:n_w]
                        cost = penalty(wt, ctx.l1, ctx.l2)
                        add_penalty_grad(grad[:n_w], wt, ctx.l1, ctx.l2)
                    self.phase = "commit"
                    self.send(ctx.cortex, ("ready", self.b, self.g, float(grad @ grad), cost, grad.copy()))
                    progressed = False
        return None

    def _forward_done(self, t: int, z: np.ndarray, a: np.ndarray) -> None:
        if self.A is not None:
            self.A[t] = a
        send, b = self.send, self.b
        if self.plain_out:
            for pid, slot in self.targets:
                send(pid, ("f", b, t, slot, a))
        else:
            send_value(send, self.targets, False, b, t, self.Tl, self.static, a)
        actuator = self.actuator
        if actuator is not None:
            send(actuator[0], ("o", b, t, actuator[1], z, a))

    def _send_backward(self, t: int, dz: np.ndarray) -> None:
        x, w, b, send, delta_to = self.X[t], self.w, self.b, self.send, self.delta_to
        if self.product:  # ∂z/∂cⱼ = Π_{k≠j} cₖ, with cₖ = wₖxₖ
            c = w[:, None] * x
            dc = np.empty_like(c)
            for j in range(self.n_src):
                dc[j] = dz * np.prod(np.delete(c, j, axis=0), axis=0)
            gw = (x * dc).sum(axis=1)
            deltas = w[:, None] * dc
        else:  # ∂z/∂wⱼ = xⱼ and ∂z/∂xⱼ = wⱼ
            gw = x @ dz
            deltas = np.multiply.outer(w, dz) if delta_to else None
        grad = self.grad
        grad[:self.n_w] += gw[self.w_pos]
        if self.has_bias:
            grad[-1] += dz.sum()
        if self.plain_in:
            for j, pid, dslot in delta_to:
                send(pid, ("d", b, t, dslot, deltas[j]))
            return
        horizon, static, T = self.horizon, self.static, self.T
        for j, pid, dslot, rec, sstatic in delta_to:
            if rec:
                if t > 0 and t > horizon:
                    send(pid, ("d", b, t - 1, dslot, deltas[j]))
            elif static and not sstatic:
                send(pid, ("d", b, T - 1, dslot, deltas[j]))
            else:
                send(pid, ("d", b, t, dslot, deltas[j]))


def _describe(phase: str, fwd_t: int, bwd_t: int) -> str:
    if phase == "forward":
        return f"forward, waiting for the inputs of step {fwd_t}"
    if phase == "backward":
        return f"backward, waiting for the deltas of step {bwd_t}"
    return "waiting for the cortex to commit"
