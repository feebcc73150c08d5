"""Optimizers: ``state, params = opt.step(state, params, grads)``, pure, as in optax.

Each update rule is written once, in ``apply_``, on flat vectors; the pure ``step`` runs it on
copies, and ``nm.fit`` runs it in place on the engine's own buffers (same numbers, no copies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..engines.base import OptState
from ..errors import InvalidInputError, ParamsError, UnknownNameError
from ..model.params import Params


def _positive(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or value <= 0:
        raise InvalidInputError(f"{what} must be a positive number; got {value!r}")
    return float(value)


class Optimizer:
    """Base class: subclasses name their slots and write ``apply_``."""

    name = "optimizer"
    slot_names: tuple[str, ...] = ()
    # An update is a dozen element-wise passes over its vectors. A vector longer than CHUNK_MIN is
    # updated CHUNK elements at a time, so that the passes after the first find the piece in the
    # CPU's cache instead of main memory; shorter vectors are updated in one piece (fewer calls).
    CHUNK = 1 << 15
    CHUNK_MIN = 1 << 18

    def _pieces(self, tmp: np.ndarray, *arrays: np.ndarray):
        """``(*arrays, tmp)`` (same length, 1-d) as they are or, when long, as views piece by
        piece; the pieces share one scratch piece of ``tmp``, which stays in the cache."""
        n = arrays[0].shape[0] if arrays[0].ndim == 1 else 0
        if n <= self.CHUNK_MIN:
            return (arrays + (tmp,),)
        c = self.CHUNK
        return (tuple(a[i:i + c] for a in arrays) + (tmp[:min(c, n - i)],) for i in range(0, n, c))

    def init(self, params: Mapping[str, np.ndarray]) -> OptState:
        zeros = {k: np.zeros_like(np.asarray(v)) for k, v in params.items()}
        return OptState(0, {s: Params(zeros) for s in self.slot_names})

    def apply_(self, t: int, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray],
               tmp: np.ndarray) -> None:
        """Update ``p`` in place from gradient ``g`` at step ``t`` (1-based)."""
        raise NotImplementedError

    def step(self, state: OptState, params: Mapping[str, np.ndarray],
             grads: Mapping[str, np.ndarray]) -> tuple[OptState, Params]:
        """One pure update: new state and new params; the inputs are not changed."""
        keys = list(params)
        if set(grads) != set(keys):
            raise ParamsError("grads must have exactly the keys of params")
        for k in keys:
            if np.shape(grads[k]) != np.shape(params[k]):
                raise ParamsError(f"grad {k!r} has shape {np.shape(grads[k])}; "
                                  f"param has {np.shape(params[k])}")
        flat_p = np.concatenate([np.asarray(params[k]).ravel() for k in keys]) if keys else np.zeros(0)
        flat_g = np.concatenate([np.asarray(grads[k], dtype=flat_p.dtype).ravel() for k in keys]) \
            if keys else np.zeros(0)
        slots = {s: np.concatenate([np.asarray(state.slots[s][k], dtype=flat_p.dtype).ravel()
                                    for k in keys]) if keys else np.zeros(0)
                 for s in self.slot_names}
        t = state.step + 1
        self.apply_(t, flat_p, flat_g, slots, np.empty_like(flat_p))
        return OptState(t, {s: _unflatten(slots[s], params) for s in self.slot_names}), \
            _unflatten(flat_p, params)

    def config(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "name")
        return f"{self.name}({args})"


def _unflatten(flat: np.ndarray, like: Mapping[str, np.ndarray]) -> Params:
    out, start = {}, 0
    for k, v in like.items():
        n = int(np.prod(np.shape(v)))
        out[k] = flat[start:start + n].reshape(np.shape(v)).copy()
        start += n
    return Params._adopt(out)


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (PyTorch's formulation)."""

    name = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0) -> None:
        self.lr = _positive(lr, "learning rate")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or \
                not 0 <= momentum < 1:
            raise InvalidInputError(f"momentum must lie in [0, 1); got {momentum!r}")
        self.momentum = float(momentum)
        self.slot_names = ("velocity",) if self.momentum else ()

    def apply_(self, t, p, g, slots, tmp) -> None:
        lr, mu = self.lr, self.momentum
        if mu:  # v ← μ·v + g ;  p ← p − lr·v
            for pk, gk, vk, tk in self._pieces(tmp, p, g, slots["velocity"]):
                vk *= mu
                vk += gk
                np.multiply(vk, lr, out=tk)
                pk -= tk
        else:  # p ← p − lr·g
            for pk, gk, tk in self._pieces(tmp, p, g):
                np.multiply(gk, lr, out=tk)
                pk -= tk

    def config(self) -> dict:
        return {"name": self.name, "lr": self.lr, "momentum": self.momentum}


class Adam(Optimizer):
    """Adam (Kingma & Ba), with bias correction, as PyTorch computes it."""

    name = "adam"
    slot_names = ("m", "v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        self.lr = _positive(lr, "learning rate")
        for b, what in ((beta1, "beta1"), (beta2, "beta2")):
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < 1:
                raise InvalidInputError(f"{what} must lie in [0, 1); got {b!r}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = _positive(eps, "eps")

    def apply_(self, t, p, g, slots, tmp) -> None:
        # PyTorch's p ← p − lr/bc1 · m / (√v/√bc2 + ε), with the bias corrections bc = 1 − βᵗ
        # folded into two scalars: lr·√bc2/bc1 · m / (√v + ε·√bc2) — twelve passes over the
        # vectors in all. The scalars are Python floats: a NumPy float64 scalar would send
        # float32 arrays down a slow casting path.
        t = int(t)
        b1, b2 = self.beta1, self.beta2
        a1, a2 = 1.0 - b1, 1.0 - b2
        r2 = math.sqrt(1.0 - b2 ** t)
        eps, step = self.eps * r2, self.lr * r2 / (1.0 - b1 ** t)
        for pk, gk, m, v, tk in self._pieces(tmp, p, g, slots["m"], slots["v"]):
            np.subtract(gk, m, out=tk)  # m ← m + (1 − β1)·(g − m)  (= β1·m + (1 − β1)·g)
            tk *= a1
            m += tk
            np.square(gk, out=tk)  # v ← β2·v + (1 − β2)·g²
            tk *= a2
            v *= b2
            v += tk
            np.sqrt(v, out=tk)  # p ← p − step · m / (√v + eps)
            tk += eps
            np.divide(m, tk, out=tk)
            tk *= step
            pk -= tk

    def config(self) -> dict:
        return {"name": self.name, "lr": self.lr, "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps}


def sgd(lr: float = 0.01, momentum: float = 0.0) -> SGD:
    """Plain SGD (``momentum=0``) or SGD with momentum."""
    return SGD(lr, momentum)


def adam(lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> Adam:
    """The Adam optimizer."""
    return Adam(lr, beta1, beta2, eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get_optimizer(spec) -> Optimizer:
    """An optimizer from an instance, a name (defaults), or a config dict (from a file)."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, Mapping):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name not in OPTIMIZERS:
            raise UnknownNameError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
        return OPTIMIZERS[name](**spec)
    if isinstance(spec, str) and spec in OPTIMIZERS:
        return OPTIMIZERS[spec]()
    raise UnknownNameError(
        f"unknown optimizer {spec!r}; choose one of: {', '.join(OPTIMIZERS)} (or nm.sgd(...), nm.adam(...))"
    )
