"""Optimizers: ``state, params = opt.step(state, params, grads)``, pure, as in optax.

Each update rule is written once, in ``apply_``, on flat vectors; the pure ``step`` runs it on
copies, and ``nm.fit`` runs it in place on the engine's own buffers (same numbers, no copies).
Every rule follows PyTorch's (``torch.optim``) formulas, in the same order of operations.
Beside each ``apply_``, a loop over the elements (``_adam_loop`` ...) makes the same operations
one element at a time, for numba to compile when it is installed (``engines/compiled.py``): one pass
instead of a dozen, the same numbers to the bit.

The learning rate is a number or a schedule (``nm.cosine_decay(...)``, see ``schedules``): the
update of step ``t`` (1-based) uses ``opt.lr_at(t) = schedule(t) · opt.lr_scale``, where
``lr_scale`` (1.0 unless set) is the one mutable setting, for a training loop that cuts the
learning rate from outside (``nm.ReduceLROnPlateau``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..engines import compiled
from ..engines.base import OptState
from ..errors import InvalidInputError, ParamsError, UnknownNameError
from ..model.params import Params
from .schedules import Constant, Schedule, get_schedule


def _positive(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or value <= 0:
        raise InvalidInputError(f"{what} must be a positive number; got {value!r}")
    return float(value)


def _nonneg(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or value < 0:
        raise InvalidInputError(f"{what} must be a number >= 0; got {value!r}")
    return float(value)


def _fraction(value, what: str) -> float:
    """A number in [0, 1): a momentum, a beta, a decay rate."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise InvalidInputError(f"{what} must lie in [0, 1); got {value!r}")
    return float(value)


def _flag(value, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"{what} must be True or False; got {value!r}")
    return bool(value)


class Optimizer:
    """Base class: subclasses name their slots and write ``apply_``."""

    name = "optimizer"
    slot_names: tuple[str, ...] = ()
    # An update is a dozen element-wise passes over its vectors. A vector longer than CHUNK_MIN is
    # updated CHUNK elements at a time, so that the passes after the first find the piece in the
    # CPU's cache instead of main memory; shorter vectors are updated in one piece (fewer calls).
    CHUNK = 1 << 15
    CHUNK_MIN = 1 << 18
    _lr_scale = 1.0

    def _set_lr(self, lr) -> None:
        """``lr``: a positive number, a ``Schedule`` or a schedule's config dict (from a file)."""
        if isinstance(lr, (Schedule, Mapping)):
            self.schedule = get_schedule(lr)
            self.lr = self.schedule
        else:
            self.lr = _positive(lr, "learning rate")
            self.schedule = Constant(self.lr)

    def _lr_config(self):
        return self.lr if isinstance(self.lr, float) else self.schedule.config()

    @property
    def lr_scale(self) -> float:
        """A factor on the scheduled learning rate (1.0 unless set): ``opt.lr_scale = 0.1``."""
        return self._lr_scale

    @lr_scale.setter
    def lr_scale(self, value: float) -> None:
        self._lr_scale = _positive(value, "lr_scale")

    def scale_lr(self, factor: float) -> float:
        """Multiply the learning rate by ``factor`` from now on; returns the new ``lr_scale``."""
        self.lr_scale = self._lr_scale * _positive(factor, "factor")
        return self._lr_scale

    def lr_at(self, t: int) -> float:
        """The learning rate the update of step ``t`` (1-based) uses: ``schedule(t) · lr_scale``."""
        return self.schedule(t) * self._lr_scale

    def _pieces(self, tmp: np.ndarray, *arrays: np.ndarray):
        """``(*arrays, tmp)`` (same length, 1-d) as they are or, when long, as views piece by
        piece; the pieces share one scratch piece of ``tmp``, which stays in the cache."""
        n = arrays[0].shape[0] if arrays[0].ndim == 1 else 0
        if n <= self.CHUNK_MIN:
            return (arrays + (tmp,),)
        c = self.CHUNK
        return (tuple(a[i:i + c] for a in arrays) + (tmp[:min(c, n - i)],) for i in range(0, n, c))

    @staticmethod
    def _decayed(p: np.ndarray, g: np.ndarray, weight_decay: float) -> np.ndarray:
        """``g + wd·p`` in a new vector (L2 weight decay folded into the gradient, as PyTorch's
        ``weight_decay``); ``g`` may be the engine's gradient buffer, so it is not overwritten."""
        d = np.multiply(p, weight_decay)
        d += g
        return d

    @staticmethod
    def _compiled(loop, arrays: tuple, numbers: tuple) -> bool:
        """Run ``loop``, this optimizer's update one element at a time, compiled
        (``engines/compiled.py``), on ``arrays``, with ``numbers`` (settings and flags) in one
        small array of their dtype: each rounded as NumPy rounds a Python number it meets in an
        operation of that dtype. False when it cannot run: the caller then makes the NumPy
        passes."""
        fast = compiled.kernel(loop)
        if fast is None or not compiled.fits(*arrays):
            return False
        return compiled.call(fast, *arrays, np.array(numbers, arrays[0].dtype))

    def prepare(self, dtype) -> None:
        """Make the compiled update for ``dtype`` now (numba compiles on the first call, or loads
        it from its cache), on one-element vectors, so that no training step pays for it."""
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise InvalidInputError(f"dtype must be a NumPy dtype such as 'float32', got {dtype!r}") from None
        if compiled.enabled() and dt in compiled.FLOATS:
            one = lambda: np.zeros(1, dt)  # noqa: E731
            self.apply_(1, one(), one(), {s: one() for s in self.slot_names}, one(), lr=0.0)

    def init(self, params: Mapping[str, np.ndarray]) -> OptState:
        zeros = {k: np.zeros_like(np.asarray(v)) for k, v in params.items()}
        return OptState(0, {s: Params(zeros) for s in self.slot_names})

    def apply_(self, t: int, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray],
               tmp: np.ndarray, lr: float | None = None) -> None:
        """Update ``p`` in place from gradient ``g`` at step ``t`` (1-based), with learning rate
        ``lr`` (None: ``lr_at(t)``; the tensor engine's partner process is given it)."""
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
        args = ", ".join(f"{k}={self.lr if k == 'lr' else v}" for k, v in self.config().items() if k != "name")
        return f"{self.name}({args})"


def _unflatten(flat: np.ndarray, like: Mapping[str, np.ndarray]) -> Params:
    out, start = {}, 0
    for k, v in like.items():
        n = int(np.prod(np.shape(v)))
        out[k] = flat[start:start + n].reshape(np.shape(v)).copy()
        start += n
    return Params._adopt(out)




class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum, Nesterov momentum and L2 weight decay,
    as PyTorch's ``torch.optim.SGD`` (no dampening)::

        d ← g + wd·p                      (weight decay, when wd > 0)
        v ← μ·v + d                       (momentum, when μ > 0; v starts at 0, so v₁ = d)
        u ← d + μ·v  (Nesterov)  or  v  (plain momentum)  or  d  (no momentum)
        p ← p − lr·u
    """

    name = "sgd"

    def __init__(self, lr=0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        self._set_lr(lr)
        self.momentum = _fraction(momentum, "momentum")
        self.nesterov = _flag(nesterov, "nesterov")
        if self.nesterov and not self.momentum:
            raise InvalidInputError("nesterov=True needs a momentum > 0")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")
        self.slot_names = ("velocity",) if self.momentum else ()

    def apply_(self, t, p, g, slots, tmp, lr=None) -> None:
        lr, mu, wd = self.lr_at(t) if lr is None else lr, self.momentum, self.weight_decay
        arrays = (p, g, slots["velocity"]) if mu else (p, g)
        if self._compiled(_sgd_loop, (p, g, slots["velocity"] if mu else tmp),
                          (lr, mu, wd, self.nesterov)):
            return
        for pk, gk, *v, tk in self._pieces(tmp, *arrays):
            d = self._decayed(pk, gk, wd) if wd else gk
            if not mu:  # p ← p − lr·d
                np.multiply(d, lr, out=tk)
                pk -= tk
                continue
            vk = v[0]  # v ← μ·v + d
            vk *= mu
            vk += d
            if self.nesterov:  # p ← p − lr·(d + μ·v)
                np.multiply(vk, mu, out=tk)
                tk += d
                tk *= lr
            else:  # p ← p − lr·v
                np.multiply(vk, lr, out=tk)
            pk -= tk

    def config(self) -> dict:
        out = {"name": self.name, "lr": self._lr_config(), "momentum": self.momentum}
        if self.nesterov:  # listed when set, so that configs written before them read the same
            out["nesterov"] = True
        if self.weight_decay:
            out["weight_decay"] = self.weight_decay
        return out


class Adam(Optimizer):
    """Adam (Kingma & Ba), with bias correction, as PyTorch's ``torch.optim.Adam``; its
    ``weight_decay`` is L2 folded into the gradient (``g ← g + wd·p``), as PyTorch's."""

    name = "adam"
    slot_names = ("m", "v")
    decoupled = False  # AdamW: the weight decay acts on p directly

    def __init__(self, lr=0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        self._set_lr(lr)
        self.beta1, self.beta2 = _fraction(beta1, "beta1"), _fraction(beta2, "beta2")
        self.eps = _positive(eps, "eps")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")

    def apply_(self, t, p, g, slots, tmp, lr=None) -> None:
        # PyTorch's p ← p − lr/bc1 · m / (√v/√bc2 + ε), with the bias corrections bc = 1 − βᵗ
        # folded into two scalars: lr·√bc2/bc1 · m / (√v + ε·√bc2) — twelve passes over the
        # vectors in all. The scalars are Python floats: a NumPy float64 scalar would send
        # float32 arrays down a slow casting path.
        t = int(t)
        lr, wd = self.lr_at(t) if lr is None else lr, self.weight_decay
        b1, b2 = self.beta1, self.beta2
        a1, a2 = 1.0 - b1, 1.0 - b2
        r2 = math.sqrt(1.0 - b2 ** t)
        eps, step = self.eps * r2, lr * r2 / (1.0 - b1 ** t)
        shrink = 1.0 - lr * wd
        if self._compiled(_adam_loop, (p, g, slots["m"], slots["v"]),
                          (a1, b2, a2, eps, step, wd, shrink, self.decoupled)):
            return
        for pk, gk, m, v, tk in self._pieces(tmp, p, g, slots["m"], slots["v"]):
            if wd and self.decoupled:  # AdamW: p ← p·(1 − lr·wd), then the Adam step
                pk *= shrink
            elif wd:  # Adam: g ← g + wd·p
                gk = self._decayed(pk, gk, wd)
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
        out = {"name": self.name, "lr": self._lr_config(), "beta1": self.beta1, "beta2": self.beta2,
               "eps": self.eps}
        if self.weight_decay:  # listed when set, so that configs written before it read the same
            out["weight_decay"] = self.weight_decay
        return out


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as PyTorch's ``torch.optim.AdamW``:
    ``p ← p·(1 − lr·wd)``, then the Adam step on the gradient as it is."""

    name = "adamw"
    decoupled = True

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01) -> None:
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise InvalidInputError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        super().__init__(lr, betas[0], betas[1], eps, weight_decay)

    def config(self) -> dict:
        return {"name": self.name, "lr": self._lr_config(), "betas": [self.beta1, self.beta2],
                "eps": self.eps, "weight_decay": self.weight_decay}


class RMSprop(Optimizer):
    """RMSprop (Hinton), as PyTorch's ``torch.optim.RMSprop``::

        d ← g + wd·p                                 (weight decay, when wd > 0)
        s ← α·s + (1 − α)·d²
        a ← √s + ε,  or centered:  ḡ ← ḡ + (1 − α)·(d − ḡ),  a ← √(s − ḡ²) + ε
        p ← p − lr·d/a,  or with momentum:  b ← μ·b + d/a,  p ← p − lr·b
    """

    name = "rmsprop"

    def __init__(self, lr=0.01, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 centered: bool = False, weight_decay: float = 0.0) -> None:
        self._set_lr(lr)
        self.alpha = _fraction(alpha, "alpha")
        self.eps = _positive(eps, "eps")
        self.momentum = _fraction(momentum, "momentum")
        self.centered = _flag(centered, "centered")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")
        self.slot_names = ("square_avg",) + (("grad_avg",) if self.centered else ()) + \
            (("momentum_buffer",) if self.momentum else ())

    def apply_(self, t, p, g, slots, tmp, lr=None) -> None:
        lr = self.lr_at(t) if lr is None else lr
        alpha, eps, mu, wd = self.alpha, self.eps, self.momentum, self.weight_decay
        a1 = 1.0 - alpha
        ga = slots["grad_avg"] if self.centered else tmp
        buf = slots["momentum_buffer"] if mu else tmp
        if self._compiled(_rmsprop_loop, (p, g, slots["square_avg"], ga, buf),
                          (alpha, a1, eps, lr, mu, wd, self.centered)):
            return
        for pk, gk, sq, *rest, tk in self._pieces(tmp, p, g, *(slots[s] for s in self.slot_names)):
            d = self._decayed(pk, gk, wd) if wd else gk
            np.square(d, out=tk)  # s ← α·s + (1 − α)·d²
            tk *= a1
            sq *= alpha
            sq += tk
            if self.centered:
                ga = rest[0]
                np.subtract(d, ga, out=tk)  # ḡ ← ḡ + (1 − α)·(d − ḡ)
                tk *= a1
                ga += tk
                np.square(ga, out=tk)  # a ← √(s − ḡ²) + ε
                np.subtract(sq, tk, out=tk)
                np.sqrt(tk, out=tk)
            else:  # a ← √s + ε
                np.sqrt(sq, out=tk)
            tk += eps
            np.divide(d, tk, out=tk)  # d/a
            if mu:  # b ← μ·b + d/a ;  p ← p − lr·b
                b = rest[-1]
                b *= mu
                b += tk
                np.multiply(b, lr, out=tk)
            else:  # p ← p − lr·d/a
                tk *= lr
            pk -= tk

    def config(self) -> dict:
        return {"name": self.name, "lr": self._lr_config(), "alpha": self.alpha, "eps": self.eps,
                "momentum": self.momentum, "centered": self.centered, "weight_decay": self.weight_decay}


# -- the same updates, one element at a time, for numba to compile (see ``compiled``) -----------
#
# Each line makes apply_'s operations on one element, grouped as apply_ groups them, so that every
# rounding is the same; the numbers (settings, flags) come in ``c``, an array of the arrays' dtype,
# in the order apply_ lists them. Never run by Python itself: far too slow.


def _sgd_loop(p, g, v, c):  # v: the velocity (unused when mu = 0)
    lr, mu, wd, nesterov = c[0], c[1], c[2], c[3]
    for i in range(p.shape[0]):
        d = p[i] * wd + g[i] if wd != 0 else g[i]
        if mu == 0:
            p[i] -= d * lr
            continue
        vi = v[i] * mu + d
        v[i] = vi
        p[i] -= (vi * mu + d) * lr if nesterov != 0 else vi * lr


def _adam_loop(p, g, m, v, c):
    a1, b2, a2, eps, step, wd, shrink, decoupled = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
    for i in range(p.shape[0]):
        pi, gi = p[i], g[i]
        if wd != 0 and decoupled != 0:
            pi = pi * shrink
        elif wd != 0:
            gi = pi * wd + gi
        mi = m[i] + (gi - m[i]) * a1
        vi = v[i] * b2 + gi * gi * a2
        m[i] = mi
        v[i] = vi
        p[i] = pi - mi / (np.sqrt(vi) + eps) * step


def _rmsprop_loop(p, g, sq, ga, b, c):  # ga, b: unused when centered, momentum are off
    alpha, a1, eps, lr, mu, wd, centered = c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    for i in range(p.shape[0]):
        d = p[i] * wd + g[i] if wd != 0 else g[i]
        s = sq[i] * alpha + d * d * a1
        sq[i] = s
        if centered != 0:
            gai = ga[i] + (d - ga[i]) * a1
            ga[i] = gai
            a = np.sqrt(s - gai * gai) + eps
        else:
            a = np.sqrt(s) + eps
        q = d / a
        if mu != 0:
            bi = b[i] * mu + q
            b[i] = bi
            p[i] -= bi * lr
        else:
            p[i] -= q * lr


def sgd(lr=0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> SGD:
    """SGD: plain (``momentum=0``), with momentum, or Nesterov; ``weight_decay`` adds L2 to the
    gradient. ``lr``: a number or a schedule."""
    return SGD(lr, momentum, nesterov, weight_decay)


def adam(lr=0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
         weight_decay: float = 0.0) -> Adam:
    """The Adam optimizer (``weight_decay``: L2 added to the gradient, as torch.optim.Adam)."""
    return Adam(lr, beta1, beta2, eps, weight_decay)


def adamw(lr=0.001, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01) -> AdamW:
    """AdamW: Adam with decoupled weight decay, ``p ← p·(1 − lr·wd)`` before each step."""
    return AdamW(lr, betas, eps, weight_decay)


def rmsprop(lr=0.01, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0, centered: bool = False,
            weight_decay: float = 0.0) -> RMSprop:
    """RMSprop, optionally centered and with momentum (PyTorch's formulation)."""
    return RMSprop(lr, alpha, eps, momentum, centered, weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get_optimizer(spec) -> Optimizer:
    """An optimizer from an instance, a name (defaults), or a config dict (from a file)."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, Mapping):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name not in OPTIMIZERS:
            raise UnknownNameError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
        try:
            return OPTIMIZERS[name](**spec)
        except TypeError as exc:
            raise InvalidInputError(f"bad settings for optimizer {name!r}: {exc}") from None
    if isinstance(spec, str) and spec in OPTIMIZERS:
        return OPTIMIZERS[spec]()
    raise UnknownNameError(
        f"unknown optimizer {spec!r}; choose one of: {', '.join(OPTIMIZERS)} "
        "(or nm.sgd(...), nm.adam(...), nm.adamw(...), nm.rmsprop(...))"
    )
