"""The tensor engine: a network compiled to vectorised NumPy, backpropagation by hand.

The network is evaluated segment by segment. A segment is a layer's populations; in a recurrent
network, a segment with a recurrent synapse inside it is *stepped* through time, every other
segment is evaluated for all time steps at once (one big matrix product instead of T small ones).
Arrays of a population hold (batch, n) values, or (time, batch, n) for populations that run at
every time step. Backpropagation runs the same plan in reverse; through time it is BPTT, with
``truncate`` limiting how many steps a gradient may travel back (``objective.horizon``).

A recurrent synapse reads its source's previous step, zeros before the first step, or, when a
``state`` is given, that state: a dict {population name: (batch, size)} for the sources of
recurrent synapses (``Plan.state_names``; for the builders' layers ``"<layer>.h"`` and an LSTM's
``"<layer>.c"``, the same names the fused kernels use). The gradient does not flow into it.

Dropout (``nomagic.model.dropout``): with a dropout key, a population with a dropout rate
multiplies its output by its masks (one (batch, n) array, the same for every time step), and the
delta arriving at it by the same masks; without a key it is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import EngineError, InvalidInputError
from ...model import dropout as _dropout
from ...model.activations import get_activation
from ...model.graph import Block, Network, Population
from ...model.losses import get_loss, row_weights
from ...model.params import Params, as_dtype, check_params
from ...model.validation import check_inputs, check_targets
from ..base import check_batch_size, in_batches
from ..cache import PlanCache
from ..objective import check_truncate, horizon, regularise, uses_logits, weight_mask
from . import blas as _blas
from .fused import Chain, DenseOp, DropoutOp, Workspace, chain_for
from .two_cores import make as make_two_cores


@dataclass
class Segment:
    pops: list[Population]
    stepped: bool


class Plan:
    """What the engine precomputes once per network: evaluation order and wiring."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.temporal = net.is_recurrent
        pops = [p for p in net.populations if p.role != "input"]
        self.input = net.populations[0].name
        self.incoming = {p.name: net.incoming(p.name) for p in pops}
        self.act = {p.name: get_activation(p.activation) for p in pops}
        self.step_pops = {p.name for p in pops if self.temporal and not p.static}
        if self.temporal:
            self.step_pops.add(self.input)
        # group populations into segments: one per layer, in order
        segments: list[Segment] = []
        by_layer: dict[str, Segment] = {}
        for p in pops:
            key = (p.layer, p.name in self.step_pops)
            if key not in by_layer:
                by_layer[key] = Segment([], False)
                segments.append(by_layer[key])
            by_layer[key].pops.append(p)
        member = {p.name: id(seg) for seg in segments for p in seg.pops}
        # a recurrent synapse that leaves its layer ties every stepped layer into one segment
        if any(b.recurrent and member[b.source] != member[b.target] for b in net.blocks
               if b.source != self.input):
            steps = [p for p in pops if p.name in self.step_pops]
            rest = [s for s in segments if not any(p.name in self.step_pops for p in s.pops)]
            segments = [Segment(steps, True)] + rest  # static populations come after every step
        for seg in segments:
            names = {p.name for p in seg.pops}
            seg.stepped = any(b.recurrent and b.source in names
                              for p in seg.pops for b in self.incoming[p.name])
        self.segments = segments
        self.single_output = net.output_population
        self.dropout = _dropout.dropout_populations(net)
        # the populations whose previous step a recurrent synapse reads: the recurrent state
        self.state_names = tuple(sorted({b.source for b in net.blocks if b.recurrent}))

    def is_step(self, name: str) -> bool:
        return name in self.step_pops


_PLANS: PlanCache[Plan] = PlanCache()


def plan_for(net: Network) -> Plan:
    """The compiled plan for ``net``, made once per network."""
    return _PLANS.get(net, Plan)


class Tape:
    """Everything the forward pass keeps for the backward pass."""

    def __init__(self) -> None:
        self.a: dict[str, np.ndarray] = {}
        self.z: dict[str, np.ndarray] = {}
        self.contribs: dict[str, list[np.ndarray]] = {}  # product aggregations only
        self.weights: dict[str, np.ndarray] = {}  # masked weights actually used
        self.drop: dict[str, np.ndarray] = {}  # dropout masks (batch, n) by population, in training
        self.h0: dict[str, np.ndarray] = {}  # the initial recurrent state (absent: zeros)


def _weight(P, tape: Tape, b: Block) -> np.ndarray:
    if b.mask is None:
        return P[b.weight]
    key = (b.weight, id(b))
    w = tape.weights.get(key)
    if w is None:
        w = tape.weights[key] = P[b.weight] * b.mask
    return w


def _source_all(plan: Plan, tape: Tape, b: Block, target: Population) -> np.ndarray:
    """The source's values as the target sees them, for all time steps at once."""
    x = tape.a[b.source]
    if plan.is_step(b.source) and not plan.is_step(target.name):
        return x[-1]  # a static population reads the last step
    if b.recurrent:  # the previous step's value; zeros (or the given state) before the first step
        shifted = np.empty_like(x)
        shifted[1:] = x[:-1]
        h0 = tape.h0.get(b.source)
        shifted[0] = 0 if h0 is None else h0
        return shifted
    return x


def _contrib(b: Block, x: np.ndarray, w) -> np.ndarray:
    return x @ w if b.kind == "dense" else (x if b.scale == 1.0 else b.scale * x)


def _finish(plan: Plan, P, pop: Population, z: np.ndarray) -> np.ndarray:
    if pop.bias is not None:
        z = z + P[pop.bias]
    return z


def _forward_all(plan: Plan, P, tape: Tape, pop: Population) -> None:
    """Evaluate one population for every time step (or once, in a static network)."""
    z = None
    contribs = [] if pop.aggregation == "product" else None
    for b in plan.incoming[pop.name]:
        c = _contrib(b, _source_all(plan, tape, b, pop), _weight(P, tape, b) if b.kind == "dense" else None)
        if contribs is not None:
            contribs.append(c)
            z = c if z is None else z * c
        else:
            z = c if z is None else z + c
    if z is None:  # bias only
        lead = tape.a[plan.input].shape[:-1] if plan.is_step(pop.name) else tape.a[plan.input].shape[-2:-1]
        z = np.zeros(lead + (pop.size,), dtype=tape.a[plan.input].dtype)
    z = _finish(plan, P, pop, z)
    tape.z[pop.name] = z
    a = plan.act[pop.name].forward(z)
    m = tape.drop.get(pop.name) if tape.drop else None
    tape.a[pop.name] = a if m is None else a * m
    if contribs is not None:
        tape.contribs[pop.name] = contribs


def _forward_stepped(plan: Plan, P, tape: Tape, seg) -> None:
    """Evaluate a segment with recurrent synapses inside it, one time step after another."""
    names = {p.name for p in seg.pops}
    T, B = tape.a[plan.input].shape[:2]
    dt = tape.a[plan.input].dtype
    external: dict[str, list] = {}
    for pop in seg.pops:
        ext = []
        for b in plan.incoming[pop.name]:
            if b.source not in names:
                w = _weight(P, tape, b) if b.kind == "dense" else None
                ext.append(_contrib(b, _source_all(plan, tape, b, pop), w))
        if pop.aggregation == "sum" and ext:
            total = ext[0] if len(ext) == 1 else sum(ext[1:], ext[0])
            ext = [total]
        external[pop.name] = ext
        tape.z[pop.name] = np.empty((T, B, pop.size), dtype=dt)
        tape.a[pop.name] = np.empty((T, B, pop.size), dtype=dt)
        if pop.aggregation == "product":
            tape.contribs[pop.name] = [np.empty((T, B, pop.size), dtype=dt)
                                       for _ in plan.incoming[pop.name]]
    for t in range(T):
        for pop in seg.pops:
            name = pop.name
            product = pop.aggregation == "product"
            z = None
            ext_i = 0
            for k, b in enumerate(plan.incoming[name]):
                if b.source in names:
                    if b.recurrent:
                        if t == 0:
                            x = tape.h0.get(b.source)
                            if x is None:
                                x = np.zeros((B, plan.net.population(b.source).size), dtype=dt)
                        else:
                            x = tape.a[b.source][t - 1]
                    else:
                        x = tape.a[b.source][t]
                    c = _contrib(b, x, _weight(P, tape, b) if b.kind == "dense" else None)
                elif product:
                    c = external[name][ext_i][t]
                    ext_i += 1
                else:
                    continue
                if product:
                    tape.contribs[name][k][t] = c
                    z = c if z is None else z * c
                else:
                    z = c if z is None else z + c
            if not product and external[name]:
                z = external[name][0][t] if z is None else z + external[name][0][t]
            if z is None:
                z = np.zeros((B, pop.size), dtype=dt)
            z = _finish(plan, P, pop, z)
            tape.z[name][t] = z
            tape.a[name][t] = plan.act[name].forward(z)
            if tape.drop and name in tape.drop:
                tape.a[name][t] *= tape.drop[name]


def forward(plan: Plan, P, X: np.ndarray, dropout: tuple | None = None, state=None) -> Tape:
    """Run the network on checked inputs (from the recurrent ``state``, when given); returns the
    tape (every z and a). ``dropout``: a checked dropout key (a training step), or None (dropout
    layers are the identity)."""
    tape = Tape()
    if dropout is not None:
        B = X.shape[0]
        tape.drop = {pop.name: _dropout.mask(pop.dropout, dropout, ids, B, X.dtype) for pop, ids in plan.dropout}
    if state is not None:
        tape.h0 = dict(state)
    tape.a[plan.input] = np.ascontiguousarray(X.transpose(1, 0, 2)) if plan.temporal else X
    for seg in plan.segments:
        if seg.stepped:
            _forward_stepped(plan, P, tape, seg)
        else:
            for pop in seg.pops:
                _forward_all(plan, P, tape, pop)
    return tape


def final_state(plan: Plan, tape: Tape) -> dict:
    """The last step's value of every population a recurrent synapse reads, as copies."""
    return {name: tape.a[name][-1].copy() for name in plan.state_names}


def outputs(plan: Plan, tape: Tape) -> np.ndarray:
    """The network's output in engine layout ((time, batch, n) for sequence outputs)."""
    if plan.single_output is not None:
        return tape.a[plan.single_output.name]
    parts = [tape.a[name][..., list(ix)] for name, ix in plan.net.outputs]
    return np.concatenate(parts, axis=-1)


def to_user_layout(plan: Plan, y: np.ndarray) -> np.ndarray:
    return y.transpose(1, 0, 2) if y.ndim == 3 else y


# -- backward -------------------------------------------------------------------------------------


def _add(store: dict, key, value) -> None:
    if key in store:
        store[key] = store[key] + value
    else:
        store[key] = value


class GradSink:
    """Collects weight and bias gradients; writes into preallocated buffers when given."""

    def __init__(self, out: dict | None) -> None:
        self.out = out
        self.written: set[str] = set()
        self.grads: dict[str, np.ndarray] = out if out is not None else {}

    def matmul_add(self, key: str, x: np.ndarray, d: np.ndarray, mask) -> None:
        x2 = x.reshape(-1, x.shape[-1])
        d2 = d.reshape(-1, d.shape[-1])
        if key not in self.written and self.out is not None:
            np.matmul(x2.T, d2, out=self.grads[key])
        elif key not in self.written:
            self.grads[key] = x2.T @ d2
        else:
            self.grads[key] += x2.T @ d2
        if mask is not None:
            self.grads[key] *= mask
        self.written.add(key)

    def sum_add(self, key: str, d: np.ndarray) -> None:
        d2 = d.reshape(-1, d.shape[-1])
        if key not in self.written and self.out is not None:
            np.sum(d2, axis=0, out=self.grads[key])
        elif key not in self.written:
            self.grads[key] = d2.sum(axis=0)
        else:
            self.grads[key] += d2.sum(axis=0)
        self.written.add(key)

    def finish(self, P) -> dict:
        for key, value in P.items():
            if key not in self.written:
                if self.out is not None:
                    self.grads[key][...] = 0
                else:
                    self.grads[key] = np.zeros_like(value)
        return self.grads


def _block_backward(plan, P, tape, sink, da, pop, b, dc) -> None:
    """Gradient of one block: its weights (if dense), and the delta sent to its source."""
    x = _source_all(plan, tape, b, pop)
    if b.kind == "dense":
        sink.matmul_add(b.weight, x, dc, b.mask)
        if b.source == plan.input:
            return
        dx = dc @ _weight(P, tape, b).T
    else:
        if b.source == plan.input:
            return
        dx = dc if b.scale == 1.0 else b.scale * dc
    src_step, dst_step = plan.is_step(b.source), plan.is_step(pop.name)
    if src_step and not dst_step:  # gradient reaches only the last step
        full = np.zeros_like(tape.a[b.source])
        full[-1] = dx
        dx = full
    elif b.recurrent:
        shifted = np.zeros_like(dx)
        shifted[:-1] = dx[1:]
        dx = shifted
    _add(da, b.source, dx)


def _product_others(contribs: list[np.ndarray], k: int) -> np.ndarray:
    """Π_{j≠k} c_j: the derivative of a product with respect to its k-th factor."""
    out = None
    for j, c in enumerate(contribs):
        if j != k:
            out = c if out is None else out * c
    return out if out is not None else np.ones_like(contribs[k])


def _backward_all(plan, P, tape, sink, da, dz_loss, pop) -> None:
    name = pop.name
    dz = None
    if name in da:
        d = da[name] if name not in tape.drop else da[name] * tape.drop[name]
        dz = plan.act[name].backward(tape.z[name], tape.a[name], d)
    if name in dz_loss:
        dz = dz_loss[name] if dz is None else dz + dz_loss[name]
    if dz is None:
        return
    if pop.bias is not None:
        sink.sum_add(pop.bias, dz)
    blocks = plan.incoming[name]
    for k, b in enumerate(blocks):
        dc = dz if pop.aggregation == "sum" else dz * _product_others(tape.contribs[name], k)
        _block_backward(plan, P, tape, sink, da, pop, b, dc)


def _backward_stepped(plan, P, tape, sink, da, dz_loss, seg, truncate) -> None:
    names = {p.name for p in seg.pops}
    T, B = tape.a[plan.input].shape[:2]
    dt = tape.a[plan.input].dtype
    dzs = {p.name: np.zeros((T, B, p.size), dtype=dt) for p in seg.pops}
    # deltas arriving at each step: from later segments (already in da) and from inside
    acc = {p.name: (da[p.name].copy() if p.name in da else np.zeros((T, B, p.size), dtype=dt))
           for p in seg.pops}
    # truncated BPTT (objective.horizon): a delta crosses a recurrent synapse from step t to
    # t − 1 only when t > first = T − truncate, wherever it entered. Not "each delta travels back
    # at most `truncate` steps": a loss at a step before `first` reaches only its own step.
    first = horizon(T, truncate)
    rev = list(reversed(seg.pops))
    for t in range(T - 1, -1, -1):
        for pop in rev:
            name = pop.name
            d = acc[name][t] if name not in tape.drop else acc[name][t] * tape.drop[name]
            dz = plan.act[name].backward(tape.z[name][t], tape.a[name][t], d)
            if name in dz_loss:
                dz = dz + dz_loss[name][t]
            dzs[name][t] = dz
            for k, b in enumerate(plan.incoming[name]):
                if b.source not in names:
                    continue
                if pop.aggregation == "sum":
                    dc = dz
                else:
                    dc = dz * _product_others([c[t] for c in tape.contribs[name]], k)
                dx = dc @ _weight(P, tape, b).T if b.kind == "dense" else (
                    dc if b.scale == 1.0 else b.scale * dc)
                if b.recurrent:
                    if t > first:
                        acc[b.source][t - 1] += dx
                else:
                    acc[b.source][t] += dx
    # weights, biases and deltas to earlier segments: all time steps at once
    for pop in seg.pops:
        name = pop.name
        dz = dzs[name]
        if pop.bias is not None:
            sink.sum_add(pop.bias, dz)
        for k, b in enumerate(plan.incoming[name]):
            dc = dz if pop.aggregation == "sum" else dz * _product_others(tape.contribs[name], k)
            if b.source in names:
                x = _source_all(plan, tape, b, pop)
                if b.kind == "dense":
                    sink.matmul_add(b.weight, x, dc, b.mask)
            else:
                _block_backward(plan, P, tape, sink, da, pop, b, dc)


def backward(plan: Plan, P, tape: Tape, dy: np.ndarray | None, dz_out: np.ndarray | None,
             out: dict | None = None, truncate: int | None = None) -> dict:
    """Gradients of every param, given the loss gradient on the output (``dy``) or, for a
    fused loss, directly on the output population's pre-activation (``dz_out``)."""
    sink = GradSink(out)
    da: dict[str, np.ndarray] = {}
    dz_loss: dict[str, np.ndarray] = {}
    if dz_out is not None:
        dz_loss[plan.single_output.name] = dz_out
    elif plan.single_output is not None:
        da[plan.single_output.name] = dy
    else:
        start = 0
        for name, ix in plan.net.outputs:
            piece = np.zeros_like(tape.a[name])
            piece[..., list(ix)] += dy[..., start:start + len(ix)]
            start += len(ix)
            _add(da, name, piece)
    for seg in reversed(plan.segments):
        if seg.stepped:
            _backward_stepped(plan, P, tape, sink, da, dz_loss, seg, truncate)
        else:
            for pop in reversed(seg.pops):
                _backward_all(plan, P, tape, sink, da, dz_loss, pop)
    return sink.finish(P)


def loss_on_tape(plan: Plan, tape: Tape, loss, Y_engine: np.ndarray):
    """(loss value, dy, dz_out): the fused from-logits form when the output activation allows."""
    pop = plan.single_output
    if pop is not None and uses_logits(loss, pop.activation):
        value, dz = loss.from_logits(tape.z[pop.name], Y_engine)
        return value, None, dz
    y_hat = outputs(plan, tape)
    return loss.value(y_hat, Y_engine), loss.grad(y_hat, Y_engine), None


def targets_to_engine(plan: Plan, Y: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(Y.transpose(1, 0, 2)) if Y.ndim == 3 else Y


# -- the engine interface -----------------------------------------------------------------------------


def _prepare(net: Network, params, dtype=None):
    if not isinstance(net, Network):
        raise InvalidInputError(f"expected a Network; got {type(net).__name__}")
    P = check_params(net, params, dtype)
    dt = next(iter(P.values())).dtype if P else as_dtype(dtype or "float32")
    return plan_for(net), P, dt


def predict(net: Network, params, X, fused: bool = True, dropout_key=None, batch_size: int | None = None,
            **options) -> np.ndarray:
    """The network's outputs for X, as a new array.

    ``fused=False`` runs the generic population-by-population path even for a plain chain of
    layers (the reference the fast path is tested against); the numbers agree to rounding.
    ``dropout_key=(seed, epoch, batch)`` gives the outputs a training step with that key sees
    (dropout applied); without it, dropout layers are the identity.
    ``batch_size=N`` runs N samples at a time (bounded memory; the same outputs, with a dropout
    key too: each batch's masks are those of its rows' positions in X).
    """
    _no_options(options)
    check_batch_size(batch_size)
    plan, P, dt = _prepare(net, params)
    X = check_inputs(net, X, dt)
    key = _dropout.check_key(dropout_key)
    chain = _chain(net, fused)
    ws = Workspace()

    def run(Xb: np.ndarray, start: int) -> np.ndarray:
        kb = None if key is None else _dropout.shift_key(key, start)
        with _blas.single_threaded(_small(plan, chain, Xb.shape)):
            if chain is not None:
                y = chain.forward(P, ws, Xb, dropout=kb)
            else:
                y = outputs(plan, forward(plan, P, Xb, kb))
            return np.array(to_user_layout(plan, y))

    return in_batches(run, X, batch_size, with_start=True)


def loss_and_grad(net: Network, params, X, Y, loss: str = "mse", truncate: int | None = None,
                  fused: bool = True, dropout_key=None, sample_weight=None, **options):
    """(mean loss, gradients as Params with the same keys and shapes as ``params``).

    ``truncate=k``: a delta crosses a recurrent synapse from step t back to step t − 1 only when
    t > T − k (``objective.horizon``): the state entering every step t ≤ T − k is taken as a constant.
    ``sample_weight`` (one weight >= 0 per sample, or per sample and step for sequence targets)
    makes the loss the weighted mean ``Σ wᵢ·lᵢ / Σ wᵢ`` (``nomagic.model.losses``).
    ``dropout_key=(seed, epoch, batch)``: dropout layers apply the masks of that key, as in
    training (see ``nomagic.model.dropout``); None (the default): they are the identity."""
    _no_options(options)
    key = _dropout.check_key(dropout_key)
    loss_fn = get_loss(loss)
    plan, P, dt = _prepare(net, params)
    X = check_inputs(net, X, dt)
    Y = check_targets(net, loss_fn, Y, X, dt)
    check_truncate(truncate)
    w = row_weights(loss_fn, Y, sample_weight)
    if w is not None:
        loss_fn = loss_fn.weighted(_rows_to_engine(w, dt))
    chain = _chain(net, fused)
    with _blas.single_threaded(_small(plan, chain, X.shape)):
        if chain is not None:
            grads = {k: np.empty_like(v) for k, v in P.items()}
            value = chain.loss_and_grad(P, Workspace(), X, targets_to_engine(plan, Y), loss_fn, grads,
                                        truncate, dropout=key)
        else:
            tape = forward(plan, P, X, key)
            value, dy, dz = loss_on_tape(plan, tape, loss_fn, targets_to_engine(plan, Y))
            grads = backward(plan, P, tape, dy, dz, truncate=truncate)
    return value, Params._adopt({k: grads[k] for k in P})


def _chain(net: Network, fused) -> Chain | None:
    if not isinstance(fused, bool):
        raise InvalidInputError(f"fused must be True or False; got {fused!r}")
    return chain_for(net) if fused else None


def _small(plan: Plan, chain: Chain | None, X_shape: tuple) -> bool:
    """Whether every matrix product of a step is small enough to run best on one BLAS thread."""
    if chain is not None:
        return _blas.is_small(chain.largest_gemm(X_shape))
    rows = X_shape[0] * (X_shape[1] if plan.temporal else 1)
    largest = 0
    for b in plan.net.blocks:
        if b.kind == "dense":
            largest = max(largest, plan.net.population(b.source).size * plan.net.population(b.target).size)
    return _blas.is_small(rows * largest)


def _rows_to_engine(w: np.ndarray, dtype) -> np.ndarray:
    """Row weights (batch,) or (batch, time) in engine layout ((time, batch) for sequences)."""
    w = np.asarray(w, dtype=dtype)
    return np.ascontiguousarray(w.T) if w.ndim == 2 else w


def _check_state(plan: Plan, state, B: int, dtype) -> dict:
    """A recurrent state {population name: (batch, size)} checked against the network."""
    if not isinstance(state, dict):
        raise InvalidInputError(f"state must be a dict {{population name: (batch, size) array}}; "
                                f"got {type(state).__name__}")
    out = {}
    for name, value in state.items():
        if name not in plan.state_names:
            raise InvalidInputError(f"state names {name!r}, which no recurrent synapse reads; the state of "
                                    f"this network is {', '.join(plan.state_names) or 'empty'}")
        a = np.asarray(value, dtype=dtype)
        size = plan.net.population(name).size
        if a.shape != (B, size):
            raise InvalidInputError(f"state[{name!r}] must have shape {(B, size)}; got {a.shape}")
        out[name] = a
    return out


def _no_options(options) -> None:
    if options:
        raise InvalidInputError(f"the tensor engine takes no options {sorted(options)}")


class Trainer:
    """Mini-batch training on the tensor engine, in place on flat buffers.

    Params, gradients and optimizer slots each live in one flat vector, so an optimizer step is
    a dozen vector operations whatever the number of layers. ``nm.fit`` drives it.
    """

    def __init__(self, net: Network, params, optimizer, opt_state, loss, *, l1: float = 0.0,
                 l2: float = 0.0, clip_norm: float | None = None, truncate: int | None = None,
                 fused: bool = True, partner: bool = False, **options) -> None:
        from ...model.params import FlatLayout

        _no_options(options)
        check_truncate(truncate)
        if not isinstance(partner, bool):
            raise InvalidInputError(f"partner must be True or False; got {partner!r}")
        self.net, self.plan = net, plan_for(net)
        self.chain = _chain(net, fused)
        self.ws = Workspace()  # arrays reused from one step to the next
        self._modes: dict[tuple, str] = {}
        self._threads = _blas.blas_threads() or 1
        self._team: _blas.Team | None = None
        self._opt_team: _blas.Team | None = None  # shares the optimizer's update, when set
        self._single = None
        self._mode_now: str | None = None  # the mode the last batch used (``_use``)
        self.loss, self.optimizer = loss, optimizer
        self.l1, self.l2, self.clip_norm, self.truncate = l1, l2, clip_norm, truncate
        dt = next(iter(params.values())).dtype
        self.layout = FlatLayout({k: v.shape for k, v in params.items()})
        # a plain MLP may share its steps with a partner process (two_cores.py): then the flat
        # vectors live in shared memory
        self._two = make_two_cores(self.chain, self.layout, dt, len(optimizer.slot_names)) if partner else None
        n = self.layout.size

        def vector(values=None) -> np.ndarray:
            out = np.empty(n, dt) if self._two is None else self._two.empty(n, dt)
            out[...] = 0 if values is None else self.layout.flatten(values, dt)
            return out

        self.flat = vector(params)
        self.gflat = vector()
        self.tmp = vector()
        self.P = self.layout.views(self.flat)
        self.G = self.layout.views(self.gflat)
        self.step_count = opt_state.step
        self.slots = {s: vector(opt_state.slots[s]) for s in optimizer.slot_names}
        optimizer.prepare(dt)  # its compiled update (engines/compiled.py) made now, not in a step
        if self._two is not None:
            self._two.bind(self.P, self.G, self.flat, self.gflat, self.slots, self.tmp, optimizer)
        self.weight_mask = weight_mask(net, self.layout, self.flat, l1, l2)

    def train_batch(self, X: np.ndarray, Y: np.ndarray, dropout_key: tuple | None = None, state=None,
                    sample_weight=None) -> float:
        """One optimizer step on a checked batch; returns the objective before the step.

        ``dropout_key``: (seed, epoch, batch) of the dropout masks (``nm.fit`` gives it); None:
        dropout layers are the identity. ``state``: the recurrent layers start from it
        (``last_state()`` of the chunk before); ``sample_weight``: one weight per row of ``Y``
        (``losses.row_weights``), for the weighted mean loss."""
        plan = self.plan
        mode = self._modes.get(X.shape)
        if mode is None:
            mode = self._modes[X.shape] = self._mode(X.shape)
        if mode != self._mode_now:
            self._use(mode)
        loss = self.loss
        if sample_weight is not None:
            loss = loss.weighted(_rows_to_engine(sample_weight, self.flat.dtype))
        if state is not None:
            state = _check_state(plan, state, X.shape[0], self.flat.dtype)
        Ye = targets_to_engine(plan, Y)
        if self._two is not None and mode == "small" and dropout_key is None and state is None \
                and sample_weight is None:  # on two cores, where that is faster (two_cores.py)
            t = self.step_count + 1
            value = self._two.step(self.ws, X, Ye, loss, t, self._regularise,
                                   lambda: self._step_here(X, Ye, loss, None, None))
            self.step_count = t
            return value
        return self._step_here(X, Ye, loss, dropout_key, state)

    def _settle(self) -> None:
        """Let the partner finish the last shared step's update (two_cores.py), if one runs."""
        if self._two is not None:
            self._two.settle()

    def _step_here(self, X: np.ndarray, Ye: np.ndarray, loss, dropout_key, state) -> float:
        """The step on this process alone (the generic engine where the network needs it)."""
        self._settle()
        if self.chain is not None:
            value = self.chain.loss_and_grad(self.P, self.ws, X, Ye, loss, self.G, self.truncate,
                                             dropout=dropout_key, state=state)
        else:
            plan = self.plan
            tape = forward(plan, self.P, X, dropout_key, state)
            value, dy, dz = loss_on_tape(plan, tape, loss, Ye)
            backward(plan, self.P, tape, dy, dz, out=self.G, truncate=self.truncate)
            self.ws.out = (tape, False)
        value = self._regularise(value)
        self.step_count += 1
        self._optimizer_step(self.flat, self.gflat)
        return value

    def _regularise(self, value: float) -> float:
        return regularise(value, self.gflat, self.flat, self.weight_mask, self.l1, self.l2, self.clip_norm)

    # How a step uses the cores (see _blas.py), chosen per batch shape:
    #   "small": every product is small: the BLAS runs on one thread;
    #   "team":  a plain MLP with big products, and 2 to TEAM_MAX BLAS threads: the BLAS runs on
    #            one thread and a Team of that many threads cuts the big products (measured on 2
    #            cores, 1024-wide layers: the products take up to 10% longer than on the BLAS's own
    #            threads, the optimizer's update a third less, a step 5% less; with more threads,
    #            not measured, the BLAS keeps them);
    #   "blas":  anything else with big products: the BLAS runs them on all its threads.
    # In the first two the optimizer's update of a big model (PARALLEL_MIN params or more) is shared
    # among the threads too, in pieces of CHUNK elements handed out one at a time (an update is
    # element-wise: the numbers do not change). In "blas" mode the BLAS's idle workers keep spinning
    # on the other cores after each product, so the update runs on this thread (the optimizer
    # itself walks a long vector piece by piece, to stay in the cache).
    TEAM_MAX = 4
    PARALLEL_MIN = 1 << 19
    CHUNK = 1 << 17

    def _mode(self, X_shape: tuple) -> str:
        if _small(self.plan, self.chain, X_shape):
            return "small"
        dense = self.chain is not None and all(isinstance(op, (DenseOp, DropoutOp)) for op in self.chain.ops)
        return "team" if dense and 2 <= self._threads <= self.TEAM_MAX else "blas"

    def _use(self, mode: str) -> None:
        self._mode_now = mode
        hold = mode != "blas"  # the BLAS on one thread, from the first such batch until close()
        if hold and self._single is None:
            self._single = _blas.single_threaded(True)
            self._single.__enter__()
        elif not hold and self._single is not None:
            self._single.__exit__(None, None, None)
            self._single = None
        share = hold and self._threads > 1 and self.flat.size >= self.PARALLEL_MIN
        if (share or mode == "team") and self._team is None:
            self._team = _blas.Team(self._threads)
        self.ws.team = self._team if mode == "team" else None
        self._opt_team = self._team if share else None

    def _optimizer_step(self, w: np.ndarray, g: np.ndarray) -> None:
        t, opt, team = self.step_count, self.optimizer, self._opt_team
        if team is None:
            opt.apply_(t, w, g, self.slots, self.tmp)
            return
        n, c, slots, tmp = w.size, self.CHUNK, self.slots, self.tmp
        own = n < team.size * c  # too short for a scratch piece per member: each piece uses its own

        def work(k: int, a: int) -> None:
            b = min(a + c, n)
            s = a if own else k * c  # member k's scratch piece, reused for each of its pieces
            opt.apply_(t, w[a:b], g[a:b], {name: v[a:b] for name, v in slots.items()}, tmp[s:s + b - a])

        team.share(work, range(0, n, c))

    def last_outputs(self, logits_ok: bool = False) -> np.ndarray | None:
        """The outputs of the last batch trained, before its step (user layout; valid until the
        next ``train_batch``). With ``logits_ok``, a softmax or sigmoid output fused with its loss
        comes as its logits, which rank like the outputs (enough for an argmax). Optional in the
        Trainer contract: ``nm.Loop`` runs ``predict`` before the step on engines without it."""
        last = self.ws.out
        if last is None:
            return None
        out, is_logits = last
        if self.chain is None:
            out = outputs(self.plan, out)
        elif is_logits and not logits_ok:
            out = self.chain.ops[-1].fn.forward(out)
        return to_user_layout(self.plan, out)

    def last_state(self) -> dict:
        """The recurrent state after the last step of the last batch trained (its forward pass,
        before its optimizer step): {population name: (batch, size)} copies, to start the next
        chunk from (``train_batch(..., state=...)``). Part of the Trainer contract for ``tbptt``."""
        self._settle()
        if self.chain is not None:
            return self.chain.final_state(self.ws)
        return final_state(self.plan, self.ws.out[0])

    def advance(self, X: np.ndarray, state=None, dropout_key: tuple | None = None) -> dict:
        """Run the network forward over checked inputs from ``state`` (None: zeros), with no loss
        and no step; returns the final recurrent state (as ``last_state``). ``dropout_key``: the
        training step's key, so that a dropout layer between recurrent layers drops what it drops
        in the chunks that take the loss (None: dropout layers are the identity)."""
        self._settle()
        if state is not None:
            state = _check_state(self.plan, state, X.shape[0], self.flat.dtype)
        with _blas.single_threaded(_small(self.plan, self.chain, X.shape)):
            if self.chain is not None:
                ws = Workspace()
                self.chain.forward(self.P, ws, X, dropout=dropout_key, state=state)
                return self.chain.final_state(ws)
            return final_state(self.plan, forward(self.plan, self.P, X, dropout_key, state))

    def predict(self, X: np.ndarray) -> np.ndarray:
        self._settle()
        small = _small(self.plan, self.chain, X.shape)
        with _blas.single_threaded(small), _blas.all_threads(0 if small else _blas.SMALL_GEMM):
            if self.chain is not None:
                return to_user_layout(self.plan, self.chain.forward(self.P, Workspace(), X))
            return to_user_layout(self.plan, outputs(self.plan, forward(self.plan, self.P, X)))

    def params(self) -> Params:
        self._settle()
        return self.layout.to_params(self.flat)

    def set_params(self, params) -> None:
        self._settle()
        self.flat[...] = self.layout.flatten(params, self.flat.dtype)

    def opt_state(self):
        self._settle()
        from ..base import OptState

        return OptState(self.step_count, {s: self.layout.to_params(v) for s, v in self.slots.items()})

    def close(self) -> None:
        try:
            self._settle()
        except EngineError:  # the partner died: what it left is reported by the step that waits
            pass
        if self._two is not None:
            self._two.close()
        self._use("blas")
        if self._team is not None:
            self._team.close()
            self._team = None
        self.ws.team = self._opt_team = None
