"""A neuron, as a state machine that does not know how it is run.

A neuron owns p (the weights of its trainable incoming synapses, then its bias) and its optimizer
slots, and nothing else knows them:

forward   it waits for a value from every source (a whole mini-batch as one vector), aggregates
          (Σ wⱼxⱼ + b, or Π wⱼxⱼ + b), activates, and sends the result to every consumer;
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
    wiring = ctx.wiring
    send = out.send
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
    targets = targets_of(ctx, g)
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
    # (the values are kept as they come, in xs[t * n_src + slot], and copied into X in one go
    # when step t is complete: one np.concatenate instead of a NumPy setitem per message)
    X = np.empty((Tl, n_src, B), dtype=dt)
    X_flat = X.reshape(Tl, n_src * B)  # views of X, for np.concatenate's out
    xs: list = [None] * (Tl * n_src)
    filled = bytearray(Tl * n_src)
    count = [0] * Tl
    need = [n_src - (n_rec if t == 0 else 0) for t in range(Tl)]
    if rec_slots:
        zero = np.zeros(B, dtype=dt)
        for slot in rec_slots:  # recurrent inputs are zero before the first step
            filled[slot] = 1
            xs[slot] = zero
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
        ds: list = [None] * (Tl * nd)  # as xs: copied into D[t] when step t's deltas are all in
        D_flat = D.reshape(Tl, nd * B)
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
        send_value(send, targets, plain_out, b, t, Tl, static, a)
        if actuator is not None:
            send(actuator[0], ("o", b, t, actuator[1], z, a))


    fwd_t, bwd_t = 0, Tl - 1  # the next step to compute, forward and backward
    sm_wait = smd_wait = -1  # softmax: the step waiting for its peers
    da_wait = None
    phase = "forward"

    def handle(msg: tuple) -> Any:
        nonlocal steps
        kind = msg[0]
        if kind == "f":
            _, mb, t, slot, value = msg
            i = t * n_src + slot
            if mb != b or filled[i]:
                return None  # a copy from an earlier batch, or sent twice
            filled[i] = 1
            xs[i] = value
            count[t] += 1
            if t != fwd_t or count[t] != need[t]:
                return None
        elif kind == "d":
            _, mb, t, k, value = msg
            i = t * nd + k
            if mb != b or d_filled[i]:
                return None
            d_filled[i] = 1
            ds[i] = value
            d_count[t] += 1
            if t != bwd_t or d_count[t] != d_need[t] or phase != "backward":
                return None
        elif kind == "pz" or kind == "pd":
            _, mb, t, k, value = msg
            i = t * n_peers + k
            if mb != b:
                return None
            if kind == "pz":
                if pz_filled[i]:
                    return None
                pz_filled[i] = 1
                PZ[t, k] = value
                pz_count[t] += 1
            else:
                if pd_filled[i]:
                    return None
                pd_filled[i] = 1
                PD[t, k] = value
                pd_count[t] += 1
        elif kind == "commit":
            _, mb, scale = msg
            if mb != b or phase != "commit":
                return None
            try:
                trip(faults, "neuron", name(), "commit", b)
            except Hang:
                return _hung
            if scale is not None:  # None: the gradient was only asked for
                if scale != 1.0:
                    np.multiply(grad, scale, out=grad)
                steps += 1
                ctx.optimizer.apply_(steps, p, grad, slots, np.empty_like(p))
            # restart from here, not from the batch's start: a crash before the next batch
            # must not replay this commit onto the updated p
            state = (p, slots, steps, None)
            out.snapshot(state)
            return state
        elif kind == "begin":  # the last batch was a prediction: on to the next
            if msg[1] == b:
                return None  # sent twice
            nxt = msg[1:]
            snapshot(out, p, slots, steps, nxt)
            return begin(ctx, g, p, slots, steps, nxt, out)
        elif kind == "status":
            send(msg[1], ("status", g, _describe(phase, fwd_t, bwd_t)))
            return None
        elif kind == "get":
            send(msg[1], ("params", g, p.copy()))
            return None
        elif kind == "stop":
            return STOP
        else:
            return None
        try:
            return advance()
        except Hang:
            return _hung

    def name() -> str:
        return ctx.wiring.name(g)

    def advance() -> Any:
        """Compute whatever is complete now: None while the batch goes on, else the next state."""
        nonlocal fwd_t, bwd_t, sm_wait, smd_wait, da_wait, phase
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
                    if faults:
                        trip(faults, "neuron", name(), "forward", b)
                    x = X[t]
                    if n_src:
                        np.concatenate(xs[t * n_src:(t + 1) * n_src], out=X_flat[t])
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
                    if not train:  # a prediction changes nothing: forget its messages
                        state = (p, slots, steps, None)
                        out.snapshot(state)
                        return state
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
                    if faults:
                        trip(faults, "neuron", name(), "backward", b)
                    if plain_out:
                        if nd:
                            np.concatenate(ds[t * nd:(t + 1) * nd], out=D_flat[t])
                    else:  # the deltas that never come stay zero
                        for k, v in enumerate(ds[t * nd:(t + 1) * nd]):
                            if v is not None:
                                D[t, k] = v
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
        return None

    faults = ctx.faults
    try:  # a neuron fed only by recurrent synapses (or by none) can start at once
        done = advance()
    except Hang:
        return _hung
    return handle if done is None else done


def _describe(phase: str, fwd_t: int, bwd_t: int) -> str:
    if phase == "forward":
        return f"forward, waiting for the inputs of step {fwd_t}"
    if phase == "backward":
        return f"backward, waiting for the deltas of step {bwd_t}"
    return "waiting for the cortex to commit"
