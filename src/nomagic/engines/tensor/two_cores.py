"""A Trainer's plain-MLP steps on two cores, with the partner process (``partner.py``).

A step goes: this process runs the forward pass, the loss and the deltas, while the partner
computes the weight and bias gradients of every layer but the first as soon as their delta is
ready (``fused._DenseStep.run_shared``); this process computes the first layer's gradients
meanwhile, then adds the penalty and clips (``objective.regularise``: it needs every gradient);
then it updates the first layer's params while the partner updates the others, layer by layer.
The step returns then: the next step's forward pass starts at once, and waits for each layer's
update just before it reads that layer (``settle`` waits for all of it, for anything else that
reads the params). Every operation is the serial step's, on the same arrays, so the numbers are
identical, bit for bit. (Measured on a 2-core VM: a hand-over costs about 1 µs; the update of
the digits MLP — twelve element-wise passes over 26,122 params — is the largest piece of a
batch-32 step.)

The Trainer keeps its params, gradients, optimizer slots and scratch in one shared-memory arena
from the start; each batch size gets its own step, with its arrays in an arena of their own and
its program registered with the partner. Until the partner has started (it is launched with the
first step, and imports NumPy for a fraction of a second) and wherever a step cannot be shared,
the Trainer runs it on one core.
"""

from __future__ import annotations

import pickle
import time
import weakref

import numpy as np

from ...errors import EngineError
from . import partner as _partner
from .fused import Chain, _DenseStep

MIN_PARAMS = 1 << 12  # smaller models: a step is a few µs of calls, nothing to share
MAX_PARAMS = 1 << 19  # bigger models have big products, which the BLAS's own threads share


def make(chain: Chain | None, layout, dtype, n_slots: int) -> TwoCores | None:
    """The shared steps of a Trainer, or None where they cannot be: anything but a plain MLP of
    two layers or more with MIN_PARAMS to MAX_PARAMS params, a machine where no partner runs, or
    no room in /dev/shm."""
    if chain is None or not chain.dense or len(chain.ops) < 2 or not MIN_PARAMS <= layout.size <= MAX_PARAMS:
        return None
    if not _partner.available():
        return None
    try:
        return TwoCores(chain, layout, dtype, n_slots)
    except OSError:
        return None


class _Sizes:
    """An ``alloc`` for ``_DenseStep`` that only counts what an arena must hold."""

    def __init__(self) -> None:
        self.shapes: list = []

    def empty(self, shape, dtype) -> np.ndarray:
        self.shapes.append((shape, dtype))
        return np.empty(shape, dtype)


def _forget(partner, programs: list, arenas: list) -> None:
    if partner is not None:
        partner.forget(programs, arenas)


class _Shape:
    """A batch size's shared step: the dense step, its program, and the probe (see ``step``)."""

    def __init__(self, dense: _DenseStep, program: int) -> None:
        self.dense, self.program = dense, program
        self.count, self.shared = 0, True
        self.times: dict[bool, list[float]] = {True: [], False: []}


class TwoCores:
    """The shared steps of one Trainer (see the module's docstring)."""

    UPDATE = 1 << 10  # the mark after which the partner updates layers 1 and up
    PROBE, PERIOD = 8, 512

    def __init__(self, chain: Chain, layout, dtype, n_slots: int) -> None:
        self.chain, self.layout = chain, layout
        self.arena = _partner.Arena(_partner.Arena.nbytes([((layout.size,), dtype)] * (3 + n_slots)))
        self.on = True
        self._steps: dict = {}  # (rows, dtype) -> _Shape, or None (runs on one core)
        self._partner: _partner.Partner | None = None
        self._programs: list[int] = []
        self._arenas: list[str] = []
        self._keep: list = [self.arena]  # the step arenas, alive while their programs are
        self._finalizer = None
        self._pending: int | None = None  # a shared step whose update the partner may still run

    def empty(self, n: int, dtype) -> np.ndarray:
        """A flat vector (params, gradients, a slot, scratch) in the shared arena."""
        return self.arena.empty((n,), dtype)

    def bind(self, P, G, flat, gflat, slots: dict, tmp, optimizer) -> None:
        self.P, self.G, self.flat, self.gflat, self.slots, self.tmp = P, G, flat, gflat, slots, tmp
        self.optimizer = optimizer

    def _pieces(self, k: int) -> list[tuple]:
        """Layer k's params as (params, grads, {slot: values}, scratch) pieces of the flat
        vectors: one piece when its weights and bias lie side by side, as ``FlatLayout`` puts them."""
        op = self.chain.ops[k]
        spans = sorted(self.layout.offsets[key] for key in (op.W, op.b) if key is not None)
        merged: list[list[int]] = []
        for a, b in spans:
            if merged and merged[-1][1] == a:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        return [(self.flat[a:b], self.gflat[a:b], {s: v[a:b] for s, v in self.slots.items()}, self.tmp[a:b])
                for a, b in merged]

    def settle(self) -> None:
        """Wait for the partner's part of the last shared step (the update of layers 1 and up),
        which runs on while this process starts the next step. Whatever reads or writes the
        params, the slots or the gradients outside a shared step calls this first."""
        if self._pending is not None:
            step, self._pending = self._pending, None
            self._partner.finish(step)

    def step(self, ws, X: np.ndarray, Y: np.ndarray, loss, t: int, regularise, alone) -> float:
        """Step ``t`` (1-based), the optimizer's update included, on two cores or on one (by
        calling ``alone()``, the Trainer's own step); ``regularise``: value -> value, run on the
        complete gradient before a shared step's update. Returns the loss.

        Which is faster depends on the machine and, on a virtual one, on the moment (two vCPUs
        may share a physical core for a while). So each batch size is probed: its first 2·PROBE
        steps of every PERIOD alternate between the two ways, timed, and the faster by median
        runs until the next probe. Both ways give the same numbers."""
        shape = self._shape(ws, X, loss)
        if shape is None:
            return alone()
        p = self._partner
        phase = shape.count % self.PERIOD
        shape.count += 1
        if phase >= 2 * self.PROBE:
            if not shape.shared:
                return alone()
            with p.lock:
                return self._shared(p, shape, X, Y, t, regularise)
        shared = phase % 2 == 0
        t0 = time.perf_counter()
        if shared:  # timed to the end of the partner's update: no credit for what overlaps the next step
            with p.lock:
                value = self._shared(p, shape, X, Y, t, regularise)
                self.settle()
        else:
            value = alone()
        shape.times[shared].append(time.perf_counter() - t0)
        if phase == 2 * self.PROBE - 1:
            shape.shared = float(np.median(shape.times[True])) < float(np.median(shape.times[False]))
            shape.times = {True: [], False: []}
        return value

    def _shape(self, ws, X: np.ndarray, loss) -> _Shape | None:
        """The shared step for this batch's size, or None when this batch runs on one core."""
        if not self.on:
            return None
        p = self._partner
        if p is None:
            p = _partner.partner()
            if p is None:
                self.on = False
                return None
            if not p.ready():
                return None
            self._partner = p
            self._finalizer = weakref.finalize(self, _forget, p, self._programs, self._arenas)
        if p.broken:
            self.on = False
            return None
        key = (X.shape[0], X.dtype)
        shape = self._steps.get(key, False)
        if shape is False:
            shape = self._steps[key] = self._make(p, ws, X.shape[0], X.dtype, loss)
        if shape is None or shape.dense.loss is not loss or p.lock.locked():
            return None  # another loss (sample weights), or another Trainer's step on the partner
        return shape

    def _shared(self, p, shape: _Shape, X: np.ndarray, Y: np.ndarray, t: int, regularise) -> float:
        """A shared step. The partner's update of layer k ≥ 1 runs on after it returns; the next
        shared step's forward pass waits for each layer's update just before it reads it."""
        ready = None
        if self._pending is not None:
            previous = self._pending
            ready = lambda k: p.passed(previous, 1 + k)  # noqa: E731
        step = p.begin(shape.program)
        try:
            value = regularise(shape.dense.run_shared(X, Y, p, step, ready))
            self._pending = None  # its last update was awaited by the forward pass
            lr = self.optimizer.lr_at(t)
            p.signal(step, self.UPDATE, t, lr)
            for w, g, slots, tmp in self._first:
                self.optimizer.apply_(t, w, g, slots, tmp, lr=lr)
            self._pending = step
        except BaseException:
            self._pending = None
            p.abort(step)
            raise
        return value

    def _make(self, p, ws, rows: int, dtype, loss):
        sizes = _Sizes()
        if not _DenseStep(self.chain, self.P, self.G, ws, rows, dtype, loss, alloc=sizes).ok:
            return None
        arena = _partner.Arena(_partner.Arena.nbytes(sizes.shapes))
        step = _DenseStep(self.chain, self.P, self.G, ws, rows, dtype, loss, alloc=arena)

        def ref(a: np.ndarray) -> tuple:
            try:
                return arena.ref(a)
            except ValueError:
                return self.arena.ref(a)

        self._first = self._pieces(0)
        try:
            pickle.dumps(self.optimizer)
        except Exception:  # a schedule that cannot be sent to the partner: every step on one core
            self.on = False
            return None
        with p.lock:
            try:
                if not self._arenas:
                    p.attach(self.arena)
                    self._arenas.append(self.arena.key)
                p.attach(arena)
                self._arenas.append(arena.key)
                self._keep.append(arena)
                program = step.partner_program(ref) + [("wait", self.UPDATE)]
                for k in range(1, len(self.chain.ops)):  # layer by layer, in the order the next forward reads them
                    program += [("step", ref(w), ref(g), {s: ref(v) for s, v in slots.items()}, ref(tmp))
                                for w, g, slots, tmp in self._pieces(k)]
                    program.append(("passed", 1 + k))
                self._programs.append(p.register(program, self.optimizer))
            except EngineError:
                self.on = False
                return None
        return _Shape(step, self._programs[-1])

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self.on = False
