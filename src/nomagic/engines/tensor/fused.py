"""The tensor engine's fast path for networks piped together from ``dense``, ``recurrent``,
``lstm`` and ``gru`` layers.

The generic engine (``tensor.py``) walks the graph population by population; it runs any graph
and is the reference. Most networks, though, are a plain chain of layers, and for those this
module computes the same numbers with far fewer NumPy calls:

* a dense layer is one matrix product, an in-place bias add and an in-place activation; its
  backward pass writes the weight gradient straight into the caller's buffer, and skips the
  input's gradient for the first layer; a chain of dense layers alone trains through a
  ``_DenseStep``, which binds every array once per batch size and picks each product's layout
  for OpenBLAS's fast kernels (feature-major deltas on small batches); with numba, a relu MLP
  under softmax with cross-entropy runs its whole step in two compiled loops that make the same
  BLAS calls (``_forward_loop``, ``_backward_loop``; ``engines/compiled.py``);
* an Elman layer projects the input of *all* time steps with one matrix product, then each step
  costs one (batch, H) × (H, H) product and the activation;
* an LSTM or GRU layer keeps its gates side by side in one matrix M = [U | W | b]ᵀ, and runs its
  time loop feature-major, on (features, batch) arrays, so that every gate of a step is one
  contiguous block: a step is one product M·[h₋₁; x_t; 1] plus a handful of element-wise
  operations, and the new h is written straight into the next step's input;
* backpropagation through time is written out by hand below, from the same formulas as the
  generic engine (the gates' σ and tanh derivatives, the cell's product and sum rules), including
  its ``truncate`` rule: a delta crosses from step t to step t − 1 only when t > T − truncate.
  A recurrent layer may start from a given state (``state``: {"<layer>.h": (batch, H), and
  "<layer>.c" for an LSTM}, the generic engine's population names) instead of zeros — what
  truncated BPTT by chunks (``nm.fit(..., tbptt=k)``) carries from one chunk to the next; the
  gradient never flows into it;
  Every factor that does not depend on the deltas is computed outside the time loop, and the
  gradient of M is one matrix product over all steps;
* arrays are kept in a ``Workspace`` and reused from one training step to the next; in training,
  the workspace may carry a ``_blas.Team`` that cuts a dense layer's big products among threads.

Formulas (PyTorch's; x_t the input at step t, h and c the previous step's state):

  Elman   h_t = act(x_t·W + b + h·U)
  LSTM    [i f o g] = [σ σ σ tanh](x_t·W + b + h·U)    c_t = f⊙c + i⊙g    h_t = o⊙tanh(c_t)
  GRU     [r z] = σ(x_t·W_rz + b_rz + h·U_rz)   hn = h·U_n + b_hn
          n = tanh(x_t·W_n + b_n + r⊙hn)      h_t = n + z⊙(h − n)

σ(z) is computed as 0.5·(1 + tanh(z/2)) everywhere in nomagic; here the sigmoid gates' rows of M
are halved once (an exact operation in floating point), so one tanh call serves all four LSTM
gates. The results equal the generic engine's to rounding (tests/test_fused_recurrent.py checks
1e-12 in float64); ``fused=False`` (an option of the tensor engine) runs the generic path.

A dropout layer is a ``DropoutOp``: with a dropout key (``Chain.forward(..., dropout=key)``, kept
in the workspace for the pass) it multiplies its input, and on the way back its delta, by the
layer's masks (``nomagic.model.dropout``); without one it hands its input on unchanged.

The fast path is taken only when the network is exactly what the builders produce (checked by
rebuilding it from its layer records); anything else — graphs built neuron by neuron, masks,
edited files — runs on the generic engine.
"""

from __future__ import annotations

import numpy as np

from ...model import dropout as _dropout
from ...model.activations import get_activation
from ...model.chains import plain_chain
from ...model.gates import GATES, sigmoid_first
from ...model.graph import Network
from ...model.losses import _ce_logits
from .. import compiled
from ..cache import PlanCache
from ..compiled import blas_products
from ..objective import horizon, uses_logits
from . import blas as _blas

_INPLACE = ("linear", "relu", "tanh", "sigmoid")


# -- element-wise helpers: the formulas of activations.py, computed into given buffers ---------


def _act_into(name: str, fn, z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out ← activation(z); ``out`` may be ``z`` itself. Same operations as activations.py."""
    if name == "relu":
        np.maximum(z, 0, out=out)
    elif name == "tanh":
        np.tanh(z, out=out)
    elif name == "sigmoid":  # 0.5·(1 + tanh(0.5·z))
        np.multiply(z, 0.5, out=out)
        np.tanh(out, out=out)
        out += 1.0
        out *= 0.5
    elif name == "linear":
        if out is not z:
            np.copyto(out, z)
    else:
        out[...] = fn.forward(z)
    return out


def _act_grad_(name: str, fn, z, a: np.ndarray, d: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """d ← d · f'(z), in place (``tmp`` is scratch of d's shape). Same formulas as activations.py."""
    if name == "relu":  # d · (z > 0), and z > 0 exactly where a = max(z, 0) > 0
        np.multiply(d, np.greater(a, 0, out=tmp) if tmp is not None else a > 0, out=d)
    elif name == "tanh":  # d · (1 − a²)
        np.multiply(a, a, out=tmp)
        np.subtract(1.0, tmp, out=tmp)
        d *= tmp
    elif name == "sigmoid":  # d · a · (1 − a)
        d *= a
        np.subtract(1.0, a, out=tmp)
        d *= tmp
    elif name != "linear":
        d[...] = fn.backward(z, a, d)
    return d


class Workspace:
    """Arrays reused across calls (keyed by role and shape), what the forward pass keeps, and the
    ``_blas.Team`` that runs a dense layer's big products (None: NumPy's BLAS runs them)."""

    __slots__ = ("arrays", "saved", "team", "out")

    def __init__(self, team=None) -> None:
        self.arrays: dict = {}
        self.saved: dict = {}
        self.team = team
        self.out = None  # the last training forward pass's output (engine layout), and whether logits

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        if self.team is None:
            return np.matmul(a, b, out=out)
        return self.team.matmul(a, b, out)

    def get(self, key, shape: tuple, dtype) -> np.ndarray:
        k = (key, shape, dtype)
        a = self.arrays.get(k)
        if a is None:
            a = self.arrays[k] = np.empty(shape, dtype)
        return a

    def ones(self, n: int, dtype) -> np.ndarray:
        return self.views(("ones", n, dtype), lambda: np.ones(n, dtype))

    def views(self, key, make):
        """Views into this workspace's arrays, made once (``key`` must name the shapes)."""
        v = self.arrays.get(key)
        if v is None:
            v = self.arrays[key] = make()
        return v


# -- dense -------------------------------------------------------------------------------------


class DenseOp:
    """a = act(x·W + b) on (batch, in) or, for every step at once, (time, batch, in)."""

    def __init__(self, idx: int, name: str, units: int, activation: str, bias: bool) -> None:
        self.idx, self.units, self.act = idx, units, activation
        self.fn = get_activation(activation)
        self.W = f"{name}.weight"
        self.b = f"{name}.bias" if bias else None
        self.output_activation = activation

    def largest_gemm(self, rows: int, n_in: int) -> int:
        return rows * n_in * self.units

    def forward(self, P, ws: Workspace, x: np.ndarray, train: bool, logits: bool) -> np.ndarray:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        W = P[self.W]
        z = ws.get((self.idx, "z"), (x2.shape[0], self.units), W.dtype)
        ws.matmul(x2, W, z)
        if self.b is not None:
            z += P[self.b]
        if logits:  # the loss reads the logits; the activation itself is never needed
            a = z
        elif self.act in _INPLACE:
            a = _act_into(self.act, self.fn, z, z)
            z = None
        else:
            a = self.fn.forward(z)
        ws.saved[self.idx] = (x2, z, a, lead)
        return a.reshape(lead + (self.units,))

    def logits(self, ws):
        x2, z, a, lead = ws.saved[self.idx]
        return z.reshape(lead + (self.units,))

    def backward(self, P, ws: Workspace, G, d: np.ndarray, d_is_z: bool, need_dx: bool,
                 truncate) -> np.ndarray | None:
        x2, z, a, _ = ws.saved[self.idx]
        lead = d.shape[:-1]
        d2 = d.reshape(-1, self.units)
        if not d_is_z:
            tmp = None
            if self.act in ("tanh", "sigmoid"):
                tmp = ws.get((self.idx, "tmp"), d2.shape, d2.dtype)
            elif self.act == "relu":
                tmp = ws.get((self.idx, "mask"), d2.shape, np.dtype(bool))
            d2 = _act_grad_(self.act, self.fn, z, a, d2, tmp)
        ws.matmul(x2.T, d2, G[self.W])
        if self.b is not None:  # Σ over the rows, as a matrix-vector product
            np.matmul(ws.ones(d2.shape[0], d2.dtype), d2, out=G[self.b])
        if not need_dx:
            return None
        W = P[self.W]
        dx = ws.get((self.idx, "dx"), (d2.shape[0], W.shape[0]), d2.dtype)
        ws.matmul(d2, W.T, dx)
        return dx.reshape(lead + (W.shape[0],))


# -- dropout -----------------------------------------------------------------------------------


class DropoutOp:
    """a = x·m with the layer's masks m (0 or 1/(1 − rate), one per sample and neuron, the same
    for every time step) when the pass has a dropout key; a = x without one."""

    KEY = "dropout"  # where Chain.forward leaves the pass's dropout key in ``ws.saved``

    def __init__(self, idx: int, name: str, units: int, rate: float, neurons: np.ndarray) -> None:
        self.idx, self.units, self.rate, self.neurons = idx, units, rate, neurons
        self.output_activation = "linear"

    def largest_gemm(self, rows: int, n_in: int) -> int:
        return 0

    def forward(self, P, ws: Workspace, x: np.ndarray, train: bool, logits: bool) -> np.ndarray:
        key = ws.saved.get(self.KEY)
        if key is None or not self.rate:
            ws.saved[self.idx] = None
            return x
        m = _dropout.mask(self.rate, key, self.neurons, x.shape[-2], x.dtype)
        ws.saved[self.idx] = m
        return np.multiply(x, m, out=ws.get((self.idx, "a"), x.shape, x.dtype))

    def backward(self, P, ws: Workspace, G, d: np.ndarray, d_is_z: bool, need_dx: bool,
                 truncate) -> np.ndarray | None:
        if not need_dx:
            return None
        m = ws.saved[self.idx]
        if m is None:
            return d
        return np.multiply(d, m, out=ws.get((self.idx, "dx"), d.shape, d.dtype))


# -- recurrent layers -----------------------------------------------------------------------------


class _RecurrentOp:
    """Shared parts: the layer's output is h for every step, or (return_sequences=False) h_T."""

    gates = 1

    def __init__(self, idx: int, name: str, units: int, return_sequences: bool) -> None:
        self.idx, self.name, self.H, self.seq = idx, name, units, return_sequences
        # the population the loss would see: linear, except an Elman layer's own h
        self.output_activation = "linear"

    def largest_gemm(self, rows: int, n_in: int) -> int:
        return rows * n_in * self.gates * self.H

    def _output(self, h: np.ndarray) -> np.ndarray:
        return h if self.seq else h[-1]

    def _initial(self, state, part: str = "h") -> np.ndarray | None:
        """The given initial state of this layer (batch, H), or None (zeros)."""
        return None if state is None else state.get(f"{self.name}.{part}")

    def _dh_step(self, d, t: int, T: int, carry, valid: bool, buf) -> np.ndarray | None:
        """The delta arriving at h_t: from the layers above, plus (if ``valid``) from step t+1."""
        if self.seq:
            if valid:
                np.add(d[t], carry, out=buf)
                return buf
            return d[t]
        if t == T - 1:
            return d
        return carry if valid else None


class ElmanOp(_RecurrentOp):
    gates = 1

    def __init__(self, idx, name, units, return_sequences, activation: str) -> None:
        super().__init__(idx, name, units, return_sequences)
        self.act, self.fn = activation, get_activation(activation)
        self.W, self.U, self.b = f"{name}.W", f"{name}.U", f"{name}.b"
        if return_sequences:
            self.output_activation = activation

    def forward(self, P, ws, x, train, logits, state=None):
        T, B, n_in = x.shape
        H, dt = self.H, x.dtype
        x2 = x.reshape(T * B, n_in)
        U = P[self.U]
        z = ws.get((self.idx, "z"), (T, B, H), dt)
        np.matmul(x2, P[self.W], out=z.reshape(T * B, H))
        z += P[self.b]
        h = ws.get((self.idx, "h"), (T, B, H), dt)
        tmp = ws.get((self.idx, "tmp"), (B, H), dt)
        h0 = self._initial(state)
        for t in range(T):
            if t:
                np.matmul(h[t - 1], U, out=tmp)
                z[t] += tmp
            elif h0 is not None:
                np.matmul(h0, U, out=tmp)
                z[0] += tmp
            _act_into(self.act, self.fn, z[t], h[t])
        ws.saved[self.idx] = (x2, z, h, h0)
        return self._output(h)

    def final_state(self, ws) -> dict:
        return {f"{self.name}.h": ws.saved[self.idx][2][-1].copy()}

    def logits(self, ws):
        return ws.saved[self.idx][1]

    def backward(self, P, ws, G, d, d_is_z, need_dx, truncate):
        x2, z, h, h0 = ws.saved[self.idx]
        T, B, H = h.shape
        dt = h.dtype
        U = P[self.U]
        dz = ws.get((self.idx, "dz"), (T, B, H), dt)
        carry = ws.get((self.idx, "carry"), (B, H), dt)
        tmp = ws.get((self.idx, "tmp"), (B, H), dt)
        first = horizon(T, truncate)
        valid = False
        for t in range(T - 1, -1, -1):
            if d_is_z:  # the loss gave dz on every step; only the recurrent delta needs f'
                if valid:
                    np.copyto(dz[t], carry)
                    _act_grad_(self.act, self.fn, z[t], h[t], dz[t], tmp)
                    dz[t] += d[t]
                else:
                    np.copyto(dz[t], d[t])
            else:
                dh = self._dh_step(d, t, T, carry, valid, dz[t])
                if dh is None:  # nothing reaches the steps before this one
                    dz[: t + 1] = 0
                    break
                if dh is not dz[t]:
                    np.copyto(dz[t], dh)
                _act_grad_(self.act, self.fn, z[t], h[t], dz[t], tmp)
            valid = t > first
            if valid:
                np.matmul(dz[t], U.T, out=carry)
        dz2 = dz.reshape(T * B, H)
        np.matmul(x2.T, dz2, out=G[self.W])
        if T > 1:
            np.matmul(h[:-1].reshape(-1, H).T, dz[1:].reshape(-1, H), out=G[self.U])
        else:
            G[self.U][...] = 0
        if h0 is not None:  # the given initial state feeds step 0 through U
            G[self.U] += h0.T @ dz[0]
        np.sum(dz2, axis=0, out=G[self.b])
        if not need_dx:
            return None
        W = P[self.W]
        dx = ws.get((self.idx, "dx"), (T * B, W.shape[0]), dt)
        np.matmul(dz2, W.T, out=dx)
        return dx.reshape(T, B, W.shape[0])


def _feature_major(ws: Workspace, key, x: np.ndarray) -> np.ndarray:
    """(time, batch, n) → a contiguous (time, n, batch) copy."""
    T, B, n = x.shape
    out = ws.get(key, (T, n, B), x.dtype)
    np.copyto(out, x.transpose(0, 2, 1))
    return out


def _batch_major(ws: Workspace, key, x: np.ndarray) -> np.ndarray:
    """(time, n, batch) → a contiguous (time·batch, n) copy."""
    T, n, B = x.shape
    out = ws.get(key, (T, B, n), x.dtype)
    np.copyto(out, x.transpose(0, 2, 1))
    return out.reshape(T * B, n)


class _GatedOp(_RecurrentOp):
    """LSTM and GRU run their time loop feature-major, on (features, batch) arrays: then each gate
    of a step is one contiguous (H, batch) block, and every element-wise operation runs over
    contiguous memory. Each step's input is stacked as Z_t = [h₋₁; x_t; 1], so that one matrix
    product M·Z_t gives every gate's pre-activation, input, recurrent and bias parts at once; the
    new h is written straight into Z_{t+1}. Between layers, and for the weight gradients (one
    matrix product over all steps), arrays are batch-major: (time, batch, features)."""

    def _stack_inputs(self, ws, x: np.ndarray, state=None) -> np.ndarray:
        """Z (T+1, H+in+1, B): rows [h₋₁ (filled step by step; the initial state or 0); x_t; 1]."""
        T, B, n_in = x.shape
        H = self.H
        Z = ws.get((self.idx, "Z"), (T + 1, H + n_in + 1, B), x.dtype)
        h0 = self._initial(state)
        if h0 is None:
            Z[0, :H] = 0
        else:
            np.copyto(Z[0, :H], h0.T)
        np.copyto(Z[:T, H:H + n_in], x.transpose(0, 2, 1))
        Z[:, H + n_in] = 1
        return Z

    def _output(self, Z: np.ndarray, ws: Workspace) -> np.ndarray:
        H = self.H
        if self.seq:
            out = ws.get((self.idx, "out"), (Z.shape[0] - 1, Z.shape[2], H), Z.dtype)
            np.copyto(out, Z[1:, :H].transpose(0, 2, 1))
            return out
        return Z[-1, :H].T

    def _incoming(self, ws: Workspace, d: np.ndarray) -> np.ndarray:
        """The delta from the layers above, feature-major."""
        if self.seq:
            return _feature_major(ws, (self.idx, "dT"), d)
        out = ws.get((self.idx, "dlast"), (d.shape[1], d.shape[0]), d.dtype)
        np.copyto(out, d.T)
        return out

    def _concat(self, P, ws, n_in: int, dt):
        """Wc (in, k·H) and Uc (H, k·H): the gates' weights side by side."""
        key, H, k = self.idx, self.H, self.gates
        Wc = ws.get((key, "Wc"), (n_in, k * H), dt)
        Uc = ws.get((key, "Uc"), (H, k * H), dt)
        np.concatenate([P[w] for w in self.Ws], axis=1, out=Wc)
        np.concatenate([P[u] for u in self.Us], axis=1, out=Uc)
        return Wc, Uc

    def _grad_M(self, ws, Z: np.ndarray, dYb: np.ndarray) -> np.ndarray:
        """Σ_t Z_t·dY_tᵀ as one matrix product: (H+in+1, rows of M) — the gradient of every
        weight that multiplies h₋₁ (first H rows), x (next in rows) and 1 (the last row: biases).
        h₋₁ is 0 (or the given initial state) at the first step, as it should."""
        T = Z.shape[0] - 1
        K, B = Z.shape[1], Z.shape[2]
        Z2 = ws.get((self.idx, "Z2"), (K, T, B), Z.dtype)
        np.copyto(Z2, Z[:T].transpose(1, 0, 2))
        dM = ws.get((self.idx, "dM"), (K, dYb.shape[1]), Z.dtype)
        with _blas.all_threads(K * T * B * dYb.shape[1]):
            np.matmul(Z2.reshape(K, T * B), dYb, out=dM)
        return dM

    def _scatter(self, G, dM: np.ndarray, cols: list[int], n_in: int) -> None:
        """Write the gates' blocks of dM (U rows, W rows, bias row) into the gradients."""
        H = self.H
        for j, c in enumerate(cols):
            block = dM[:, c * H:(c + 1) * H]
            G[self.Us[j]][...] = block[:H]
            G[self.Ws[j]][...] = block[H:H + n_in]
            G[self.bs[j]][...] = block[H + n_in]

    def _dx(self, ws, dYb: np.ndarray, Mx: np.ndarray, B: int) -> np.ndarray:
        """The delta for the layer below, (time, batch, in), from dY (T·B, rows) and the rows'
        input weights Mx (rows, in)."""
        dx = ws.get((self.idx, "dx"), (dYb.shape[0], Mx.shape[1]), dYb.dtype)
        np.matmul(dYb, Mx, out=dx)
        return dx.reshape(dYb.shape[0] // B, B, Mx.shape[1])


class LSTMOp(_GatedOp):
    gates = 4
    ORDER = sigmoid_first("lstm")  # i, f, o, g: one slice gets +1 and ·½

    def __init__(self, idx, name, units, return_sequences) -> None:
        super().__init__(idx, name, units, return_sequences)
        self.Ws = [f"{name}.W_{k}" for k in self.ORDER]
        self.Us = [f"{name}.U_{k}" for k in self.ORDER]
        self.bs = [f"{name}.b_{k}" for k in self.ORDER]

    def forward(self, P, ws, x, train, logits, state=None):
        T, B, n_in = x.shape
        H, dt, key = self.H, x.dtype, self.idx
        Wc, Uc = self._concat(P, ws, n_in, dt)
        # M = [U | W | b]ᵀ per gate, the sigmoid gates' rows halved: M·Z_t = z/2 for i, f, o
        M = ws.get((key, "M"), (4 * H, H + n_in + 1), dt)
        np.copyto(M[:, :H], Uc.T)
        np.copyto(M[:, H:H + n_in], Wc.T)
        np.concatenate([P[b] for b in self.bs], out=M[:, H + n_in])
        M[:3 * H] *= 0.5
        Z = self._stack_inputs(ws, x, state)
        # A[t] holds step t's gates [i f o g] and, below them, c₋₁ (so that one product gives
        # [i⊙g; f⊙c₋₁]); the new c goes into A[t+1]
        A = ws.get((key, "A"), (T + 1, 5 * H, B), dt)
        c0 = self._initial(state, "c")
        if c0 is None:
            A[0, 4 * H:] = 0
        else:
            np.copyto(A[0, 4 * H:], c0.T)
        tc = ws.get((key, "tc"), (T, H, B), dt)
        p2 = ws.get((key, "p2"), (2 * H, B), dt)
        one, half = dt.type(1.0), dt.type(0.5)
        steps = ws.views((key, "fwd", T, B, n_in, dt), lambda: [
            (Z[t], A[t][:4 * H], A[t][:3 * H], A[t][:2 * H], A[t][2 * H:3 * H], A[t][3 * H:],
             A[t + 1][4 * H:], tc[t], Z[t + 1][:H]) for t in range(T)])
        ig, fc = p2[:H], p2[H:]
        for Zt, At, S, if_, o, g_cprev, c, tct, h in steps:
            np.matmul(M, Zt, out=At)
            np.tanh(At, out=At)  # tanh(z/2) for i, f, o; tanh(z) for g
            np.add(S, one, out=S)
            np.multiply(S, half, out=S)  # σ(z) = ½(1 + tanh(z/2))
            np.multiply(if_, g_cprev, out=p2)  # [i⊙g; f⊙c₋₁]
            np.add(ig, fc, out=c)  # c = i⊙g + f⊙c₋₁
            np.tanh(c, out=tct)
            np.multiply(o, tct, out=h)  # h = o⊙tanh(c)
        ws.saved[key] = (x.reshape(T * B, n_in), Z, A, tc, Wc, Uc)
        return self._output(Z, ws)

    def final_state(self, ws) -> dict:
        Z, A = ws.saved[self.idx][1:3]
        H = self.H
        return {f"{self.name}.h": Z[-1, :H].T.copy(), f"{self.name}.c": A[-1, 4 * H:].T.copy()}

    CHUNK = 8  # steps whose factors are computed together: big enough operations, still in cache

    @staticmethod
    def _factors(A, tc, F, lo: int, hi: int, one) -> None:
        """F[lo:hi] = [g⊙σ'(i), c₋₁⊙σ'(f), tanh(c)⊙σ'(o), o⊙(1 − tanh(c)²), i⊙tanh'(g)]."""
        H = tc.shape[1]
        a, tc, F = A[lo:hi], tc[lo:hi], F[lo:hi]
        i, o, g, g_cprev = a[:, :H], a[:, 2 * H:3 * H], a[:, 3 * H:4 * H], a[:, 3 * H:]
        Fs, Fif, Fo, Q, Fg = F[:, :3 * H], F[:, :2 * H], F[:, 2 * H:3 * H], F[:, 3 * H:4 * H], F[:, 4 * H:]
        np.subtract(one, a[:, :3 * H], out=Fs)  # σ' = a(1 − a) for i, f, o
        np.multiply(Fs, a[:, :3 * H], out=Fs)
        np.multiply(Fif, g_cprev, out=Fif)  # times g, c₋₁
        np.multiply(Fo, tc, out=Fo)  # times tanh(c)
        np.multiply(g, g, out=Fg)  # tanh'(g) = 1 − g², times i
        np.subtract(one, Fg, out=Fg)
        np.multiply(Fg, i, out=Fg)
        np.multiply(tc, tc, out=Q)  # o⊙(1 − tanh(c)²)
        np.subtract(one, Q, out=Q)
        np.multiply(Q, o, out=Q)

    def backward(self, P, ws, G, d, d_is_z, need_dx, truncate):
        x2, Z, A, tc, Wc, Uc = ws.saved[self.idx]
        T, H, B = tc.shape
        dt, key = A.dtype, self.idx
        one = dt.type(1.0)
        d = self._incoming(ws, d)
        # Every factor that does not depend on the deltas, a few steps at a time, stacked as
        #   F = [g⊙σ'(i), c₋₁⊙σ'(f), tanh(c)⊙σ'(o), Q = o⊙(1 − tanh(c)²), i⊙tanh'(g)]
        # (σ' = a(1 − a), tanh' = 1 − a²), so that a step is
        #   dc = dh⊙Q + dc₊₁⊙f₊₁,   dA = [dc⊙F_i, dc⊙F_f, dh⊙F_o, dc⊙F_g]
        F = ws.get((key, "F"), (T, 5 * H, B), dt)
        dA = ws.get((key, "dA"), (T, 4 * H, B), dt)
        carry_h = ws.get((key, "carry_h"), (H, B), dt)
        carry_c = ws.get((key, "carry_c"), (H, B), dt)
        dhbuf = ws.get((key, "dh"), (H, B), dt)
        steps = ws.views((key, "bwd", T, B, dt), lambda: [
            (dA[t], dA[t][:H], dA[t][H:2 * H], dA[t][2 * H:3 * H], dA[t][3 * H:], F[t][:H], F[t][H:2 * H],
             F[t][2 * H:3 * H], F[t][3 * H:4 * H], F[t][4 * H:], A[t][H:2 * H]) for t in range(T)])
        first = horizon(T, truncate)
        valid = False
        for t in range(T - 1, -1, -1):
            dh = self._dh_step(d, t, T, carry_h, valid, dhbuf)
            if dh is None:
                dA[: t + 1] = 0
                break
            if t % self.CHUNK == self.CHUNK - 1 or t == T - 1:  # the factors of the next few steps
                self._factors(A, tc, F, t - t % self.CHUNK, t + 1, one)
            dAt, d_i, d_f, d_o, dc, F_i, F_f, F_o, Q_t, F_g, f = steps[t]
            np.multiply(dh, F_o, out=d_o)
            np.multiply(dh, Q_t, out=dc)  # dc lives in d_g's place until the end of the step
            if valid:
                np.add(dc, carry_c, out=dc)
            np.multiply(dc, F_i, out=d_i)
            np.multiply(dc, F_f, out=d_f)
            valid = t > first
            if valid:
                np.multiply(dc, f, out=carry_c)  # ∂c/∂c₋₁ = f
            np.multiply(dc, F_g, out=dc)
            if valid:
                np.matmul(Uc, dAt, out=carry_h)
        dAb = _batch_major(ws, (key, "dAb"), dA)
        dM = self._grad_M(ws, Z, dAb)
        self._scatter(G, dM, [0, 1, 2, 3], Wc.shape[0])
        return self._dx(ws, dAb, Wc.T, B) if need_dx else None


class GRUOp(_GatedOp):
    gates = 3

    def __init__(self, idx, name, units, return_sequences) -> None:
        super().__init__(idx, name, units, return_sequences)
        self.Ws = [f"{name}.W_{k}" for k in GATES["gru"]]
        self.Us = [f"{name}.U_{k}" for k in GATES["gru"]]
        self.bs = [f"{name}.b_{k}" for k in GATES["gru"]]
        self.b_hn = f"{name}.b_hn"

    def forward(self, P, ws, x, train, logits, state=None):
        T, B, n_in = x.shape
        H, dt, key = self.H, x.dtype, self.idx
        Wc, Uc = self._concat(P, ws, n_in, dt)
        # M·Z_t gives, stacked: [r/2, z/2 pre-activations; h₋₁·U_n + b_hn; x·W_n + b_n]
        M = ws.get((key, "M"), (4 * H, H + n_in + 1), dt)
        M.fill(0)
        np.copyto(M[:3 * H, :H], Uc.T)
        np.copyto(M[:2 * H, H:H + n_in], Wc[:, :2 * H].T)
        np.copyto(M[3 * H:, H:H + n_in], Wc[:, 2 * H:].T)
        M[:H, H + n_in] = P[self.bs[0]]
        M[H:2 * H, H + n_in] = P[self.bs[1]]
        M[2 * H:3 * H, H + n_in] = P[self.b_hn]
        M[3 * H:, H + n_in] = P[self.bs[2]]
        M[:2 * H] *= 0.5
        Z = self._stack_inputs(ws, x, state)
        Y = ws.get((key, "Y"), (T, 4 * H, B), dt)  # [r z hn xn]; r and z become the gates
        n = ws.get((key, "n"), (T, H, B), dt)
        tmp = ws.get((key, "tmp"), (H, B), dt)
        one, half = dt.type(1.0), dt.type(0.5)
        steps = ws.views((key, "fwd", T, B, n_in, dt), lambda: [
            (Z[t], Y[t], Y[t][:2 * H], Y[t][:H], Y[t][H:2 * H], Y[t][2 * H:3 * H], Y[t][3 * H:], n[t],
             Z[t][:H], Z[t + 1][:H]) for t in range(T)])
        for Zt, Yt, rz, r, z, hn, xn, nt, h_prev, h in steps:
            np.matmul(M, Zt, out=Yt)
            np.tanh(rz, out=rz)
            np.add(rz, one, out=rz)
            np.multiply(rz, half, out=rz)  # σ = ½(1 + tanh(z/2))
            np.multiply(r, hn, out=nt)  # n = tanh(x·W_n + b_n + r⊙hn)
            np.add(nt, xn, out=nt)
            np.tanh(nt, out=nt)
            np.subtract(h_prev, nt, out=tmp)  # h = n + z⊙(h₋₁ − n)
            np.multiply(tmp, z, out=tmp)
            np.add(nt, tmp, out=h)
        ws.saved[key] = (x.reshape(T * B, n_in), Z, Y, n, Wc, Uc)
        return self._output(Z, ws)

    def final_state(self, ws) -> dict:
        return {f"{self.name}.h": ws.saved[self.idx][1][-1, :self.H].T.copy()}

    def backward(self, P, ws, G, d, d_is_z, need_dx, truncate):
        x2, Z, Y, n, Wc, Uc = ws.saved[self.idx]
        T, H, B = n.shape
        dt, key = n.dtype, self.idx
        one = dt.type(1.0)
        d = self._incoming(ws, d)
        # Every factor that does not depend on the deltas, for all steps at once:
        #   Fn = ∂h/∂(n's pre-activation) = (1 − z)(1 − n²)
        #   FH = [Fn⊙hn⊙σ'(r), (h₋₁ − n)⊙σ'(z), Fn⊙r]  (to r's, z's pre-activation and to hn)
        # so that a step is dH = dh⊙FH, dn = dh⊙Fn, dh₋₁ = U·dH + dh⊙z.
        Fn = ws.get((key, "Fn"), (T, H, B), dt)
        omz = ws.get((key, "omz"), (T, H, B), dt)
        FH = ws.get((key, "FH"), (T, 3 * H, B), dt)

        r, z, hn = Y[:, :H], Y[:, H:2 * H], Y[:, 2 * H:3 * H]
        Fr, Fz, Fhn = FH[:, :H], FH[:, H:2 * H], FH[:, 2 * H:]
        np.multiply(n, n, out=Fn)
        np.subtract(one, Fn, out=Fn)
        np.subtract(one, z, out=omz)
        np.multiply(Fn, omz, out=Fn)
        np.multiply(Fn, r, out=Fhn)
        np.subtract(one, r, out=Fr)  # σ'(r) = r(1 − r), times Fn⊙hn
        np.multiply(Fr, Fhn, out=Fr)
        np.multiply(Fr, hn, out=Fr)
        np.subtract(Z[:T, :H], n, out=Fz)  # (h₋₁ − n)·z(1 − z)
        np.multiply(Fz, z, out=Fz)
        np.multiply(Fz, omz, out=Fz)
        dY = ws.get((key, "dY"), (T, 4 * H, B), dt)  # to M·Z_t: [dr dz dhn dn] (pre-activations)
        carry = ws.get((key, "carry"), (H, B), dt)
        tmp = ws.get((key, "tmp"), (H, B), dt)
        dhbuf = ws.get((key, "dh"), (H, B), dt)
        steps = ws.views((key, "bwd", T, B, dt), lambda: [
            (dY[t][:3 * H], dY[t][:3 * H].reshape(3, H, B), FH[t].reshape(3, H, B), dY[t][3 * H:], Fn[t],
             Y[t][H:2 * H]) for t in range(T)])
        first = horizon(T, truncate)
        valid = False
        for t in range(T - 1, -1, -1):
            dh = self._dh_step(d, t, T, carry, valid, dhbuf)
            if dh is None:
                dY[: t + 1] = 0
                break
            dHt, dH3, FH3, dn, Fnt, zt = steps[t]
            np.multiply(dh, FH3, out=dH3)
            np.multiply(dh, Fnt, out=dn)
            valid = t > first
            if valid:  # ∂h/∂h₋₁ = z, plus the way through h₋₁·U
                np.multiply(dh, zt, out=tmp)
                np.matmul(Uc, dHt, out=carry)
                np.add(carry, tmp, out=carry)
        dYb = _batch_major(ws, (key, "dYb"), dY)
        dM = self._grad_M(ws, Z, dYb)
        n_in = Wc.shape[0]
        self._scatter(G, dM, [0, 1, 3], n_in)  # r, z: their own columns; n: the x·W_n column
        G[self.Us[2]][...] = dM[:H, 2 * H:3 * H]  # U_n and b_hn: the hn column
        G[self.b_hn][...] = dM[H + n_in, 2 * H:3 * H]
        if not need_dx:
            return None
        Mx = ws.get((key, "Mx"), (4 * H, n_in), dt)  # the rows' input weights; hn has none
        np.copyto(Mx[:2 * H], Wc[:, :2 * H].T)
        Mx[2 * H:3 * H] = 0
        np.copyto(Mx[3 * H:], Wc[:, 2 * H:].T)
        return self._dx(ws, dYb, Mx, B)


# -- the chain ----------------------------------------------------------------------------------


class Chain:
    """A network compiled to a list of layer operations."""

    def __init__(self, net: Network, ops: list) -> None:
        self.net, self.ops = net, ops
        self.temporal = net.is_recurrent
        self.n_inputs = net.n_inputs
        sizes = [net.n_inputs] + [op.H if isinstance(op, _RecurrentOp) else op.units for op in ops]
        self._sizes = sizes
        # a plain MLP: trained by a ``_DenseStep``
        self.dense = not self.temporal and all(isinstance(op, DenseOp) for op in ops)

    def largest_gemm(self, X_shape: tuple) -> int:
        """The largest m·k·n of the matrix products one training step runs (for BLAS threads)."""
        rows = X_shape[0] * (X_shape[1] if self.temporal else 1)
        batch = X_shape[0]
        best, seq = 0, self.temporal
        for op, n_in in zip(self.ops, self._sizes):
            r = rows if seq else batch
            best = max(best, op.largest_gemm(r, n_in))
            if isinstance(op, _RecurrentOp):
                best = max(best, batch * op.H * op.gates * op.H)
                seq = op.seq
        return best

    def forward(self, P, ws: Workspace, X: np.ndarray, train: bool = False, loss=None,
                dropout: tuple | None = None, state=None) -> np.ndarray:
        """Outputs in engine layout ((time, batch, n) for sequences) for checked inputs X;
        ``dropout``: the pass's dropout key, or None (dropout layers are the identity); the
        recurrent layers start from ``state`` (see :meth:`final_state`) where it names them."""
        ws.saved[DropoutOp.KEY] = dropout
        x = np.ascontiguousarray(X.transpose(1, 0, 2)) if self.temporal else X
        last = len(self.ops) - 1
        logits = train and self._fused_loss(loss)
        for k, op in enumerate(self.ops):
            if state is not None and isinstance(op, _RecurrentOp):
                x = op.forward(P, ws, x, train, logits and k == last, state)
            else:
                x = op.forward(P, ws, x, train, logits and k == last)
        return x

    def final_state(self, ws: Workspace) -> dict:
        """The last step's state of every recurrent layer of the last forward pass, as copies:
        {"<layer>.h": (batch, H)}, and "<layer>.c" for an LSTM."""
        out: dict = {}
        for op in self.ops:
            if isinstance(op, _RecurrentOp):
                out.update(op.final_state(ws))
        return out

    def _fused_loss(self, loss) -> bool:
        return loss is not None and uses_logits(loss, self.ops[-1].output_activation)

    def loss_and_grad(self, P, ws: Workspace, X, Y_engine, loss, G, truncate=None, dropout=None,
                      state=None) -> float:
        """Forward, loss and backward; gradients are written into the arrays of ``G``."""
        if self.dense and X.ndim == 2 and dropout is None and state is None:
            step = _DenseStep.bound(self, P, G, ws, X, loss)
            if step is not None:
                return step.run(X, Y_engine)
        out = self.forward(P, ws, X, train=True, loss=loss, dropout=dropout, state=state)
        if self._fused_loss(loss):
            value, d = loss.from_logits(self.ops[-1].logits(ws), Y_engine)
            is_z = True
        else:
            value, d = loss.value(out, Y_engine), loss.grad(out, Y_engine)
            is_z = False
        ws.out = (out, is_z)  # the backward pass leaves it as it is
        for k in range(len(self.ops) - 1, -1, -1):
            d = self.ops[k].backward(P, ws, G, d, is_z, k > 0, truncate)
            is_z = False
        return value


class _DenseStep:
    """A training step of a plain MLP (dense layers; hidden activations relu, tanh, sigmoid or
    linear) on 2-d batches of one size: the same operations as the layers' ``forward`` and
    ``backward`` with every array bound once, so that a step is the NumPy calls and little else.

    Layouts. The last layer runs feature-major: its output and delta are (units, batch) arrays,
    so that softmax's reductions run across rows (each a long contiguous operation, not one short
    one per sample) and its products are xᵀ·dᵀ and dᵀ·Wᵀ, which OpenBLAS runs at full speed. On
    small batches (fewer than FM_ROWS rows) every delta is feature-major, so that the delta below
    is W·d: batch-major it is d·Wᵀ, and OpenBLAS's kernel for a transposed right operand takes up
    to twice as long on small matrices (measured, OpenBLAS 0.3.31, a batch of 32 through 128 units:
    19 µs against 10). From 64 rows on every layout runs alike and the transposed reads of the
    activations cost more, so the hidden layers of larger batches stay batch-major.

    Two ways to run. ``_run_numpy`` makes the NumPy calls (and the compiled element-wise loops,
    when numba is on); ``_run_compiled`` runs the same step in two compiled loops that also make
    its BLAS calls (``_bind_tape`` says where). ``run`` picks one per batch."""

    FM_ROWS = 64

    @classmethod
    def bound(cls, chain: Chain, P, G, ws: Workspace, X: np.ndarray, loss) -> _DenseStep | None:
        """The step for this batch size, made once per workspace; None when the chain needs the
        layers' own code (an activation other than the four, unfused, on any layer)."""
        key = ("dense step", X.shape[0], X.dtype)
        step = ws.arrays.get(key)
        if step is None or step.P is not P or step.G is not G or step.loss is not loss:
            step = ws.arrays[key] = cls(chain, P, G, ws, X.shape[0], X.dtype, loss)
        return step if step.ok else None

    def __init__(self, chain: Chain, P, G, ws: Workspace, rows: int, dt, loss, alloc=None) -> None:
        """``alloc``: where the step's arrays live (an object with ``empty(shape, dtype)``, such as a
        shared-memory ``partner.Arena``); None: ordinary NumPy arrays."""
        self.P, self.G, self.loss, self.ws = P, G, loss, ws
        empty = np.empty if alloc is None else alloc.empty
        ops = chain.ops
        self.fused = chain._fused_loss(loss)
        acts = [op.act for op in (ops[:-1] if self.fused else ops)]
        self.ok = all(a in _INPLACE for a in acts)
        if not self.ok:
            return
        self.ce = self.fused and loss.from_logits is _ce_logits
        last = len(ops) - 1
        self.layers = []
        for k, op in enumerate(ops):
            fm = k == last or rows < self.FM_ROWS  # this layer's delta is feature-major
            z = empty((op.units, rows) if k == last else (rows, op.units), dt)  # its output
            d = empty((op.units, rows) if fm else (rows, op.units), dt)
            act = None if (self.fused and k == last) else op.act
            b = None if op.b is None else P[op.b]
            self.layers.append(dict(
                W=P[op.W], b=b if b is None or k < last else b[:, None], gW=G[op.W],
                gb=None if op.b is None else G[op.b], z=z, out=z.T if k == last else z,
                a=z if fm == (k == last) else z.T, d=d, fm=fm, act=act, fn=op.fn,
                mask=empty(d.shape, bool) if act == "relu" else None,
                zero=np.zeros((), dt),  # a 0-d array of the layer's dtype: ~1 µs less per call than 0
                tmp=empty(d.shape, dt) if act in ("tanh", "sigmoid") else None))
        self.ones = empty((rows,), dt)
        self.ones[...] = 1
        for k in range(1, len(self.layers)):  # their input is the layer below's output: bound once
            self.layers[k]["grads"] = self._grad_products(k, self.layers[k - 1]["z"])
            self.layers[k]["below"] = self._delta_product(k)
        c = ops[-1].units
        top = self.layers[-1]
        # softmax with cross-entropy adds the top layer's bias itself (in its first loop, compiled)
        self.bias_in_softmax = top if self.ce and top["b"] is not None else None
        self.top_bias = np.zeros(0, dt) if top["b"] is None else top["b"][:, 0]  # (classes,), or empty
        self.m, self.s, self.l = empty((1, rows), dt), empty((1, rows), dt), empty((1, rows), dt)
        self.e, self.Yt = empty((c, rows), dt), empty((c, rows), dt)
        self.n = np.array([rows], dt)  # the batch size, for the compiled softmax's division
        self._bind_loops(dt)
        # the compiled step is bound at the second run: a step made for one call (a functional
        # loss_and_grad, with a workspace of its own) never pays for it; a partner's arena never does
        self.tape, self.runs = None, 0 if alloc is None else 2

    def _bind_loops(self, dt) -> None:
        """The compiled loops (``engines/compiled.py``) this step can use, when numba is installed:
        each relu layer's (``_bias_relu_loop``, ``_relu_grad_loop``) and softmax's
        (``_softmax_loops``); None where the NumPy calls run. Each is compiled here, on this
        step's own arrays (scratch at this point), so that no step pays for it."""
        bias_relu, relu_grad = compiled.kernel(_bias_relu_loop), compiled.kernel(_relu_grad_loop)
        ok = bias_relu is not None and np.dtype(dt) in compiled.FLOATS
        relu = [ok and L["act"] == "relu" for L in self.layers]
        biased = [L["b"] is not None and L["b"].ndim == 1 for L in self.layers]  # a hidden layer's bias
        for L, on, with_bias in zip(self.layers, relu, biased):
            if on:
                ok = ok and (not with_bias or compiled.call(bias_relu, L["z"], L["b"])) \
                    and compiled.call(relu_grad, L["d"], L["a"])
        self.softmax_loops = None
        if ok and self.ce and self.e.shape[1] > 1:  # one sample: NumPy sums its one column pairwise
            loops = tuple(compiled.kernel(f) for f in _softmax_loops)
            self.softmax_loops = loops
            args = np.zeros_like(self.e), np.zeros(self.e.shape[::-1], self.e.dtype), np.zeros_like(self.e)
            if not compiled.call(self._softmax_ce, *args):
                self.softmax_loops, ok = None, False
        for L, on, with_bias in zip(self.layers, relu, biased):
            L["bias_relu"] = bias_relu if ok and on and with_bias else None
            L["relu_grad"] = relu_grad if ok and on else None

    def _bind_tape(self, dt, x_shape: tuple) -> None:
        """The whole step as two compiled loops (``_forward_loop``, ``_backward_loop``) that make
        NumPy's BLAS calls themselves, when every hidden layer is relu under softmax with
        cross-entropy, the softmax loops are on and NumPy's BLAS can be called
        (``compiled.blas_ready``); ``self.tape`` stays None otherwise. Called at the step's second
        run. The step checks once, here, on made-up data, that both ways give the same bits, and
        keeps the NumPy calls if not."""
        layers = self.layers
        hidden = layers[:-1]
        if self.softmax_loops is None or not hidden or any(L["act"] != "relu" for L in hidden) \
                or not compiled.blas_ready():
            return
        x = np.zeros(x_shape, dt)  # stands for the batch, which the loops read at each call
        products = [(x if k == 0 else layers[k - 1]["z"], L["W"], L["out"]) for k, L in enumerate(layers)]
        spans = []
        for k in range(len(layers) - 1, -1, -1):
            first = len(products)
            if k:
                products += layers[k]["grads"] + [layers[k]["below"]]
            else:
                products += self._grad_products(0, x)
            spans.append((first, len(products)))
        rows = [compiled.blas_row(a, b, out, x) for a, b, out in products]
        loops = [compiled.kernel(f, uses) for f, uses in _step_loops]
        if any(r is None for r in rows) or None in loops:
            return
        empty = np.zeros(0, dt)
        self.tape, self.spans = np.stack(rows), np.array(spans[::-1], np.int64)
        self.x_shape = x_shape  # the batches the tape's rows were made for (row-major, this shape)
        self.zs = tuple(L["z"] for L in hidden)
        self.ds = tuple(L["d"] for L in hidden)
        self.bs = tuple(_read_only(empty if L["b"] is None else L["b"]) for L in hidden)  # one type for all
        self.hidden_fm = hidden[0]["fm"]  # the same for every hidden layer (the batch size decides)
        self.step_loops = loops
        if not self._tape_agrees(x):
            self.tape = None

    def _tape_agrees(self, x: np.ndarray) -> bool:
        """One step on made-up data both ways (the NumPy calls, then the compiled loops): the same
        loss and gradients, bit for bit. Leaves gradients in the caller's buffers, which the next
        step overwrites."""
        rng = np.random.default_rng(0)
        x[...] = rng.standard_normal(x.shape)
        Y = np.zeros((x.shape[0], self.e.shape[0]), x.dtype)
        Y[np.arange(x.shape[0]), rng.integers(0, Y.shape[1], x.shape[0])] = 1
        grads = [g for L in self.layers for g in (L["gW"], L["gb"]) if g is not None]
        want = self._run_numpy(x, Y), [g.copy() for g in grads]
        for g in grads:
            g[...] = np.nan
        if not compiled.call(self._run_compiled, x, Y):  # compiles the loops, or turns them off
            return False
        got = self._run_compiled(x, Y), grads  # and once more for the loss it returns
        return np.float64(want[0]).tobytes() == np.float64(got[0]).tobytes() and \
            all(a.tobytes() == b.tobytes() for a, b in zip(want[1], got[1]))

    def _forward_loss(self, X: np.ndarray, Y: np.ndarray, ready=None) -> float:
        """The forward pass and the loss; leaves the top layer's delta in its ``d``. ``ready(k)``,
        when given, is called before layer k ≥ 1 reads its params."""
        mm, layers = self.ws.matmul, self.layers
        x = X
        for k, L in enumerate(layers):
            if ready is not None and k:
                ready(k)
            z, b, act = L["z"], L["b"], L["act"]
            mm(x, L["W"], L["out"])
            if L["bias_relu"] is not None:  # the two calls below, in one pass
                L["bias_relu"](z, b)
                x = z
                continue
            if b is not None and L is not self.bias_in_softmax:
                np.add(z, b, out=z)
            if act == "relu":
                np.maximum(z, L["zero"], out=z)
            elif act is not None:
                _act_into(act, L["fn"], z, z)
            x = z
        top = layers[-1]
        out, dT = top["out"], top["d"]
        if self.ce:
            value = self._softmax_ce(top["z"], Y, dT)
        else:
            if self.fused:
                value, g = self.loss.from_logits(out, Y)
            else:
                value, g = self.loss.value(out, Y), self.loss.grad(out, Y)
            np.copyto(dT, g.T)
        self.ws.out = (out, self.fused)  # the backward pass leaves it as it is
        return value

    @staticmethod
    def _act_grad(L: dict) -> np.ndarray:
        """Layer L's delta times its activation's derivative, in place."""
        d, act = L["d"], L["act"]
        if L["relu_grad"] is not None:  # the call below, in one pass
            L["relu_grad"](d, L["a"])
        elif act == "relu":  # d · (z > 0), and z > 0 exactly where a = max(z, 0) > 0
            np.multiply(d, np.greater(L["a"], L["zero"], out=L["mask"]), out=d)
        elif act is not None:
            _act_grad_(act, L["fn"], None, L["a"], d, L["tmp"])
        return d

    def _grad_products(self, k: int, x: np.ndarray) -> list[tuple]:
        """Layer k's weight and bias gradients as (a, b, out) products, from its input ``x``."""
        L = self.layers[k]
        d, gb = L["d"], L["gb"]
        out = [(x.T, d.T if L["fm"] else d, L["gW"])]
        if gb is not None:  # Σ over the batch, as a matrix-vector product
            out.append((d, self.ones, gb) if L["fm"] else (self.ones, d, gb))
        return out

    def _grads(self, k: int, X: np.ndarray) -> None:
        """Layer k's weight and bias gradients (``X``: the batch, the first layer's input)."""
        (a, b, out), *bias = self.layers[k]["grads"] if k else self._grad_products(0, X)
        self.ws.matmul(a, b, out)  # the weights' (the team's, for big products)
        for a, b, out in bias:
            np.matmul(a, b, out=out)

    def _delta_product(self, k: int) -> tuple:
        """The delta of layer k − 1's output from layer k's delta (reads layer k's weights), as an
        (a, b, out) product."""
        L, below = self.layers[k], self.layers[k - 1]
        d, fm = L["d"], L["fm"]
        if below["fm"]:
            return L["W"], d, below["d"]
        if fm:
            return d.T, L["W"].T, below["d"]
        return d, L["W"].T, below["d"]

    def _delta_below(self, k: int) -> None:
        self.ws.matmul(*self.layers[k]["below"])

    def run(self, X: np.ndarray, Y: np.ndarray) -> float:
        self.runs += 1
        if self.runs == 2:
            self._bind_tape(X.dtype, (self.e.shape[1], self.layers[0]["W"].shape[0]))
        if self.tape is not None and X.shape == self.x_shape and X.flags.c_contiguous and self.ws.team is None:
            return self._run_compiled(X, Y)
        return self._run_numpy(X, Y)

    def _run_compiled(self, X: np.ndarray, Y: np.ndarray) -> float:
        """``_run_numpy``'s calls in two compiled loops, NumPy's exp and log between them."""
        top = self.layers[-1]
        zT, dT, m, s, e, ll = top["z"], top["d"], self.m, self.s, self.e, self.l
        forward, backward = self.step_loops
        forward(self.tape, X, self.zs, self.bs, zT, self.top_bias, m, e)
        np.exp(e, out=e)
        backward(self.tape, self.spans, X, self.zs, self.ds, self.hidden_fm, e, s, Y, dT, self.n)
        np.log(s, out=s)
        self.softmax_loops[2](zT, s, m, Y, ll)
        self.ws.out = (top["out"], self.fused)
        return float(-ll.sum() / zT.shape[1])

    def _run_numpy(self, X: np.ndarray, Y: np.ndarray) -> float:
        value = self._forward_loss(X, Y)
        layers = self.layers
        for k in range(len(layers) - 1, -1, -1):
            self._act_grad(layers[k])
            self._grads(k, X)
            if k:
                self._delta_below(k)
        return value

    # -- on two cores: with a partner process (``partner.py``) --------------------------------------
    #
    # The partner computes, for every layer k ≥ 1 from the top, the weight and bias gradients
    # once this process has marked the layer's delta ready; this process computes the deltas and
    # layer 0's gradients meanwhile. The arrays all live in shared memory, each written by one
    # side only while the other may read it, so both sides make the serial step's calls on the
    # serial step's numbers. (The optimizer's update is shared afterwards: ``two_cores.py``.)

    def partner_program(self, ref) -> list:
        """The partner's share of the backward pass (see ``partner.serve``): layer k ≥ 1's
        gradient products, each once this process has marked the layer's delta ready (mark
        L − k), then "passed 1"; ``ref`` describes an array for the partner."""
        program = []
        for mark, k in enumerate(range(len(self.layers) - 1, 0, -1), 1):
            program.append(("wait", mark))
            for a, b, out in self.layers[k]["grads"]:
                program.append(("matmul", ref(a), ref(b), ref(out)))
        return program + [("passed", 1)]

    def run_shared(self, X: np.ndarray, Y: np.ndarray, partner, step: int, ready=None) -> float:
        """The forward and backward passes of ``step``, begun on ``partner`` with a program from
        ``partner_program``: forward, loss and the deltas here, layer k ≥ 1's gradient products
        there. Returns the loss once every gradient is in place. ``ready``: as in
        ``_forward_loss``."""
        value = self._forward_loss(X, Y, ready)
        layers = self.layers
        for mark, k in enumerate(range(len(layers) - 1, 0, -1), 1):
            self._act_grad(layers[k])
            partner.signal(step, mark)  # layer k's delta is ready
            self._delta_below(k)
        self._act_grad(layers[0])
        self._grads(0, X)
        partner.passed(step, 1)
        return value

    def _softmax_ce(self, zT: np.ndarray, Y: np.ndarray, dT: np.ndarray) -> float:
        """``losses._ce_logits``, feature-major: adds the top layer's bias to ``zT`` (classes, batch),
        which makes it the logits; returns the mean loss and writes its gradient, (softmax(z) − y)/n,
        into ``dT`` (classes, batch). Y: (batch, classes). The loss is −Σ_j l_j / n, l_j =
        Σ_i y_ji·(z_ij − log Σ_i e^z_ij), each sum over the classes in their order."""
        m, s, e, Yt, ll = self.m, self.s, self.e, self.Yt, self.l
        n = zT.shape[1]
        if self.softmax_loops is not None:  # the same operations in three loops, exp and log NumPy's
            shift, grad, per_sample = self.softmax_loops
            shift(zT, self.top_bias, m, e)
            np.exp(e, out=e)
            grad(e, s, Y, dT, self.n)
            np.log(s, out=s)
            per_sample(zT, s, m, Y, ll)
            return float(-ll.sum() / n)
        if self.bias_in_softmax is not None:
            np.add(zT, self.bias_in_softmax["b"], out=zT)
        np.maximum.reduce(zT, axis=0, keepdims=True, out=m)  # log Σ e^z = m + log Σ e^(z−m), m = max z
        np.subtract(zT, m, out=e)
        np.exp(e, out=e)
        np.add.reduce(e, axis=0, keepdims=True, out=s)
        np.divide(e, s, out=e)
        np.copyto(Yt, Y.T)
        np.subtract(e, Yt, out=dT)
        np.divide(dT, n, out=dT)
        np.log(s, out=s)
        s += m
        np.subtract(zT, s, out=e)  # log softmax(z)
        np.multiply(Yt, e, out=e)
        np.add.reduce(e, axis=0, keepdims=True, out=ll)
        return float(-ll.sum() / n)


# -- relu in one pass each, for numba to compile (``engines/compiled.py``) ------------------------
#
# The dense step's relu calls, one element at a time, with the same numbers: np.maximum(v, 0) is
# v for v > 0, +0 for v ≤ 0 and NaN for NaN; d·(a > 0) is d, or d·0 (±0, NaN for ±inf and NaN).


def _bias_relu_loop(z, b):  # z ← max(z + b, 0); z: (batch, units), b: (units,), or empty: no bias
    if b.shape[0] == 0:
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                v = z[i, j]
                z[i, j] = v if v > 0 or v != v else 0.0
        return
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            v = z[i, j] + b[j]
            z[i, j] = v if v > 0 or v != v else 0.0


def _relu_grad_loop(d, a):  # d ← d·(a > 0); a: d's shape, maybe a transposed view
    for i in range(d.shape[0]):
        for j in range(d.shape[1]):
            x = d[i, j]
            d[i, j] = x if a[i, j] > 0 else x * 0.0


# -- softmax with cross-entropy in three loops, for numba to compile --------------------------------
#
# ``_DenseStep._softmax_ce``'s NumPy calls, column by column (a column: one sample's logits): the
# same operations in the same order (NumPy reduces over the classes one row after the other),
# exp and log left to NumPy between the loops. z, e, dT: (classes, batch); Y: (batch, classes).


def _softmax_shift(z, b, m, e):  # z ← z + b (b empty: no bias); m ← max over the classes (NaN wins,
    for j in range(z.shape[1]):   # as in np.maximum); e ← z − m
        if b.shape[0]:
            for i in range(z.shape[0]):
                z[i, j] += b[i]
        mx = z[0, j]
        for i in range(1, z.shape[0]):
            v = z[i, j]
            mx = mx if mx >= v or mx != mx else v
        m[0, j] = mx
        for i in range(z.shape[0]):
            e[i, j] = z[i, j] - mx


def _softmax_grad(e, s, Y, dT, n):  # s ← Σ e (e = exp(z − m)); dT ← (e/s − y)/n
    for j in range(e.shape[1]):
        acc = e[0, j]
        for i in range(1, e.shape[0]):
            acc += e[i, j]
        s[0, j] = acc
        for i in range(e.shape[0]):
            dT[i, j] = (e[i, j] / acc - Y[j, i]) / n[0]


def _softmax_per_sample(z, s, m, Y, ll):  # s ← log Σ e + m; l ← Σ y·(z − s)  (s: log Σ e on entry)
    for j in range(z.shape[1]):
        t = s[0, j] + m[0, j]
        s[0, j] = t
        acc = Y[j, 0] * (z[0, j] - t)
        for i in range(1, z.shape[0]):
            acc += Y[j, i] * (z[i, j] - t)
        ll[0, j] = acc


_softmax_loops = (_softmax_shift, _softmax_grad, _softmax_per_sample)


# -- a whole step in two compiled loops -------------------------------------------------------------
#
# ``_DenseStep.run`` for relu hidden layers under softmax with cross-entropy: the same calls, in
# the same order, from inside compiled code. The products are the BLAS calls np.matmul would make
# (a tape of ``compiled.blas_row``s: one per layer forward, then each layer's gradient products
# and the delta below, from the top); NumPy's exp runs between the two loops, its log after them.
# zs, ds, bs: the hidden layers' outputs (batch, units), deltas, and biases (empty: none).


def _forward_loop(tape, x, zs, bs, zT, top_b, m, e):  # the forward pass, up to softmax's exp
    for k in range(len(zs)):
        blas_products(tape, k, k + 1, x)
        _bias_relu_loop(zs[k], bs[k])
    blas_products(tape, len(zs), len(zs) + 1, x)
    _softmax_shift(zT, top_b, m, e)


def _backward_loop(tape, spans, x, zs, ds, feature_major, e, s, Y, dT, n):  # softmax's grad, backward
    _softmax_grad(e, s, Y, dT, n)
    for k in range(len(zs), -1, -1):
        if k < len(zs):
            if feature_major:  # ds[k]: (units, batch)
                _relu_grad_loop(ds[k], zs[k].T)
            else:
                _relu_grad_loop(ds[k], zs[k])
        blas_products(tape, spans[k, 0], spans[k, 1], x)


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: the loops read the biases through it, whether ``a`` is writeable
    or not, and numba sees one type for all of them."""
    view = a.view()
    view.flags.writeable = False
    return view


_step_loops = ((_forward_loop, (blas_products, _bias_relu_loop, _softmax_shift)),
               (_backward_loop, (blas_products, _relu_grad_loop, _softmax_grad)))


def _compile(net: Network) -> Chain | None:
    layers = plain_chain(net)
    if layers is None:
        return None
    ops = []
    for idx, layer in enumerate(layers):
        if layer.kind == "dropout":
            ops.append(DropoutOp(idx, layer.name, layer.units, layer.rate, _dropout.neuron_ids(net, layer.name)))
        elif layer.kind == "dense":
            ops.append(DenseOp(idx, layer.name, layer.units, layer.activation, layer.bias))
        elif layer.kind == "recurrent":
            ops.append(ElmanOp(idx, layer.name, layer.units, layer.return_sequences, layer.activation))
        else:
            cls = LSTMOp if layer.kind == "lstm" else GRUOp
            ops.append(cls(idx, layer.name, layer.units, layer.return_sequences))
    return Chain(net, ops)


_CHAINS: PlanCache[Chain | None] = PlanCache()


def chain_for(net: Network) -> Chain | None:
    """The compiled chain for ``net``, or None when it must run on the generic engine."""
    return _CHAINS.get(net, _compile)
