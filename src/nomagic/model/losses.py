"""Loss functions: the value, and its gradient with respect to the network's output.

All losses are means (over every element for ``mse`` and ``binary_cross_entropy``, over every
sample for ``cross_entropy``), as in PyTorch's defaults. When the output activation is the loss's
natural partner (sigmoid for binary cross-entropy, softmax for cross-entropy) the engines use the
``*_from_logits`` forms: the same numbers, computed without ever taking the log of 0.

**Weighted losses.** A *row* is one sample, or one (sample, step) of a sequence output: every
position of the targets but the last axis. A row's loss ``l_r`` is ``−Σ_c y_c·log p_c`` for
cross-entropy, and the mean over the row's outputs of the squared error or of the binary
cross-entropy. Unweighted, each loss is the mean of its rows' losses. Given a weight ``w_r ≥ 0``
per row (``Loss.weighted(w)``), it is the weighted mean

    L = Σ_r w_r·l_r / Σ_r w_r,        ∂L/∂ŷ_r = (w_r / Σ w)·∂l_r/∂ŷ_r

(0, with a zero gradient, when every weight is 0). For cross-entropy with class weights
``w_r = weight[y_r]`` this is ``torch.nn.CrossEntropyLoss(weight=weight)`` (reduction "mean"
divides by ``Σ weight[y_r]``); for binary cross-entropy and mse it is the weighted sum divided by
the sum of the weights (``torch.nn.BCELoss(weight=w, reduction="sum")(p, y) / w.sum()`` for one
output, not BCELoss's own mean, which divides by the number of elements). Each formula below takes
``s = w / Σw`` (a row axis added) or None, for the unweighted form; :func:`row_weights` turns
``sample_weight`` and ``class_weight`` into ``w``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from ..errors import InvalidInputError, LabelError, ShapeError, UnknownNameError

Array = np.ndarray

_EPS = 1e-12


# Each formula: unweighted (s None), the mean over rows; weighted, Σ_r s_r·l_r with s = w / Σw of
# shape (rows…, 1). For mse and binary cross-entropy l_r is a mean over the row's n outputs, so
# the weighted forms divide by n = y.shape[-1].


def _mse(y_hat: Array, y: Array, s: Array | None = None) -> float:
    if s is None:
        return float(np.mean((y_hat - y) ** 2))
    return float(np.sum(s * (y_hat - y) ** 2) / y.shape[-1])


def _mse_grad(y_hat: Array, y: Array, s: Array | None = None) -> Array:
    if s is None:
        return (2.0 / y.size) * (y_hat - y)  # ∂/∂ŷ mean((ŷ − y)²)
    return (2.0 / y.shape[-1]) * s * (y_hat - y)  # ∂/∂ŷ Σ_r s_r·mean_row((ŷ − y)²)


def _bce(p: Array, y: Array, s: Array | None = None) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    if s is None:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.sum(s * (y * np.log(p) + (1 - y) * np.log(1 - p))) / y.shape[-1])


def _bce_grad(p: Array, y: Array, s: Array | None = None) -> Array:
    p = np.clip(p, _EPS, 1 - _EPS)
    if s is None:
        return (p - y) / (p * (1 - p)) / y.size
    return (p - y) / (p * (1 - p)) * (s / y.shape[-1])


def _bce_logits(z: Array, y: Array, s: Array | None = None) -> tuple[float, Array]:
    # −[y log σ(z) + (1−y) log(1−σ(z))] = max(z,0) − z·y + log(1 + e^−|z|)   (never overflows)
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    sig = 0.5 * (1.0 + np.tanh(0.5 * z))
    if s is None:
        return float(np.mean(loss)), (sig - y) / y.size  # ∂/∂z = (σ(z) − y) / N
    k = s / y.shape[-1]
    return float(np.sum(k * loss)), k * (sig - y)  # ∂/∂z = (σ(z) − y)·s_r / n


def _ce(p: Array, y: Array, s: Array | None = None) -> float:
    if s is None:
        n = p.size // p.shape[-1]
        return float(-np.sum(y * np.log(np.clip(p, _EPS, None))) / n)
    return float(-np.sum(s * y * np.log(np.clip(p, _EPS, None))))


def _ce_grad(p: Array, y: Array, s: Array | None = None) -> Array:
    if s is None:
        n = p.size // p.shape[-1]
        return -y / np.clip(p, _EPS, None) / n
    return -s * y / np.clip(p, _EPS, None)


def _ce_logits(z: Array, y: Array, s: Array | None = None) -> tuple[float, Array]:
    # log-sum-exp: log Σ e^z = m + log Σ e^(z−m), m = max z.   loss = logsumexp(z) − Σ y·z
    m = z.max(axis=-1, keepdims=True)
    e = np.exp(z - m)
    t = e.sum(axis=-1, keepdims=True)
    log_p = z - m - np.log(t)
    if s is None:
        n = z.size // z.shape[-1]
        loss = float(-np.sum(y * log_p) / n)
        return loss, (e / t - y) / n  # ∂/∂z = (softmax(z) − y) / N  (rows of y sum to 1)
    return float(-np.sum(s * y * log_p)), s * (e / t - y)  # ∂/∂z = s_r·(softmax(z) − y)


@dataclass(frozen=True)
class Loss:
    """A loss: value and gradient on outputs, plus the fused form for its partner activation."""

    name: str
    value: Callable[[Array, Array], float]
    grad: Callable[[Array, Array], Array]
    partner: str | None = None
    from_logits: Callable[[Array, Array], tuple[float, Array]] | None = None
    classification: bool = False

    def targets(self, Y, n_outputs: int, dtype) -> Array:
        """Check the targets and bring them to the output's shape (class indices → one-hot)."""
        return _prepare_targets(self.name, Y, n_outputs, dtype)

    def weighted(self, w: Array) -> Loss:
        """This loss as the weighted mean ``Σ w_r·l_r / Σ w_r`` over rows, for row weights ``w``
        of the targets' shape without its last axis (in the layout the loss is called with)."""
        w = np.asarray(w)
        total = float(w.sum())
        s = (w / total if total > 0 else np.zeros_like(w))[..., None]
        return replace(self, value=partial(self.value, s=s), grad=partial(self.grad, s=s),
                       from_logits=None if self.from_logits is None else partial(self.from_logits, s=s))


LOSSES: dict[str, Loss] = {
    "mse": Loss("mse", _mse, _mse_grad),
    "binary_cross_entropy": Loss(
        "binary_cross_entropy", _bce, _bce_grad, "sigmoid", _bce_logits, classification=True
    ),
    "cross_entropy": Loss(
        "cross_entropy", _ce, _ce_grad, "softmax", _ce_logits, classification=True
    ),
}


def get_loss(name: str) -> Loss:
    """Look a loss up by name, with a clear error for unknown names."""
    if isinstance(name, Loss):
        return name
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}") from None


def _prepare_targets(name: str, Y, n_outputs: int, dtype) -> Array:
    Y = np.asarray(Y)
    if name == "cross_entropy" and (Y.ndim == 1 or not np.issubdtype(Y.dtype, np.floating) or (
        Y.ndim >= 1 and Y.shape[-1] != n_outputs
    )):
        # class indices: (batch,) or (batch, time) of integers in [0, n_outputs)
        if not (np.issubdtype(Y.dtype, np.integer) or np.issubdtype(Y.dtype, np.bool_)):
            if np.issubdtype(Y.dtype, np.floating) and np.all(np.isfinite(Y)) and np.all(
                Y == np.round(Y)
            ):
                Y = Y.astype(np.int64)
            else:
                raise LabelError(
                    "cross_entropy targets must be class indices (integers) or one-hot rows "
                    f"of length {n_outputs}; got dtype {Y.dtype} and shape {Y.shape}"
                )
        if Y.size and (Y.min() < 0 or Y.max() >= n_outputs):
            raise LabelError(
                f"class labels must lie in [0, {n_outputs - 1}] for a network with {n_outputs} "
                f"outputs; got labels from {Y.min()} to {Y.max()}"
            )
        return np.eye(n_outputs, dtype=dtype)[Y.astype(np.int64)]
    Y = Y.astype(dtype, copy=False)
    if Y.ndim == 1 and n_outputs == 1:
        Y = Y[:, None]
    if Y.ndim < 2 or Y.shape[-1] != n_outputs:
        raise ShapeError(
            f"targets for loss {name!r} must end in a dimension of {n_outputs} (the number of "
            f"outputs); got shape {Y.shape}"
        )
    if name == "binary_cross_entropy" and Y.size and (Y.min() < 0 or Y.max() > 1):
        raise LabelError("binary_cross_entropy targets must lie in [0, 1]")
    if name == "cross_entropy" and Y.size and (
        Y.min() < 0 or not np.allclose(Y.sum(axis=-1), 1.0, atol=1e-6)
    ):
        raise LabelError("one-hot (or probability) targets for cross_entropy must be "
                         "non-negative rows that sum to 1")
    return Y


def _weight_array(values, what: str, n: int | None = None) -> Array:
    """A 1-d (or given-length) array of finite weights >= 0, with clear errors."""
    try:
        w = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be numbers; got {type(values).__name__}") from None
    if n is not None and (w.ndim != 1 or len(w) != n):
        raise InvalidInputError(f"{what} must have one weight per class ({n}); got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise InvalidInputError(f"{what} must be finite numbers (no NaN or inf)")
    if np.any(w < 0):
        raise InvalidInputError(f"{what} must be >= 0; got a weight of {w.min()}")
    return w


def row_weights(loss: Loss, Y: Array, sample_weight=None, class_weight=None) -> Array | None:
    """The weight of each row of the checked targets ``Y`` (user layout: (batch, n) or
    (batch, time, n)): ``sample_weight[i]`` — one per sample, or for sequence targets one per
    (sample, step) — times ``class_weight[class of the row]``; None when both are None.

    ``class_weight`` is a dict {class: weight} (classes not named weigh 1) or a sequence with one
    weight per class. It needs ``cross_entropy`` with one-hot targets (class indices become one-hot)
    or ``binary_cross_entropy`` with one output and 0/1 targets (classes 0 and 1).
    """
    if sample_weight is None and class_weight is None:
        return None
    Y = np.asarray(Y)
    rows = Y.shape[:-1]
    w = np.ones(rows, dtype=np.float64)
    if sample_weight is not None:
        sw = _weight_array(sample_weight, "sample_weight")
        if sw.shape == rows[:1] or sw.shape == rows:
            w = w * (sw if sw.shape == rows else sw.reshape(sw.shape + (1,) * (len(rows) - 1)))
        else:
            allowed = f"({rows[0]},)" + (f" or {rows}" if len(rows) > 1 else "")
            raise InvalidInputError(f"sample_weight must have shape {allowed}, one weight per sample"
                                    f"{' (or per sample and step)' if len(rows) > 1 else ''}; got shape {sw.shape}")
    if class_weight is not None:
        w = w * _class_weights(loss, Y, class_weight)
    if not w.sum() > 0:
        raise InvalidInputError("the sample and class weights are all 0: nothing to learn from")
    return w


def _class_weights(loss: Loss, Y: Array, class_weight) -> Array:
    if loss.name == "cross_entropy":
        n = Y.shape[-1]
    elif loss.name == "binary_cross_entropy":
        if Y.shape[-1] != 1:
            raise InvalidInputError("class_weight with binary_cross_entropy needs a network with one output "
                                    f"(classes 0 and 1); this one has {Y.shape[-1]}")
        n = 2
    else:
        raise InvalidInputError(f"class_weight needs a classification loss (cross_entropy or "
                                f"binary_cross_entropy); the loss is {loss.name!r}")
    if isinstance(class_weight, Mapping):
        cw = np.ones(n)
        for k, v in class_weight.items():
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n:
                raise InvalidInputError(f"class_weight names class {k!r}, which is not a class of this "
                                        f"network (0 to {n - 1})")
            cw[int(k)] = _weight_array([v], f"class_weight[{k}]")[0]
    else:
        cw = _weight_array(class_weight, "class_weight", n)
    if loss.name == "binary_cross_entropy":
        y = Y[..., 0]
        if not np.all((y == 0) | (y == 1)):
            raise InvalidInputError("class_weight with binary_cross_entropy needs targets of 0 or 1")
        return np.where(y == 1, cw[1], cw[0])
    if not np.all((Y == 0) | (Y == 1)):
        raise InvalidInputError("class_weight with cross_entropy needs class labels or one-hot targets, "
                                "not probabilities")
    return Y.astype(np.float64) @ cw
