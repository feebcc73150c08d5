"""Loss functions: the value, and its gradient with respect to the network's output.

All losses are means (over every element for ``mse`` and ``binary_cross_entropy``, over every
sample for ``cross_entropy``), as in PyTorch's defaults. When the output activation is the loss's
natural partner (sigmoid for binary cross-entropy, softmax for cross-entropy) the engines use the
``*_from_logits`` forms: the same numbers, computed without ever taking the log of 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import LabelError, ShapeError, UnknownNameError

Array = np.ndarray

_EPS = 1e-12


def _mse(y_hat: Array, y: Array) -> float:
    return float(np.mean((y_hat - y) ** 2))


def _mse_grad(y_hat: Array, y: Array) -> Array:
    return (2.0 / y.size) * (y_hat - y)  # ∂/∂ŷ mean((ŷ − y)²)


def _bce(p: Array, y: Array) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _bce_grad(p: Array, y: Array) -> Array:
    p = np.clip(p, _EPS, 1 - _EPS)
    return (p - y) / (p * (1 - p)) / y.size


def _bce_logits(z: Array, y: Array) -> tuple[float, Array]:
    # −[y log σ(z) + (1−y) log(1−σ(z))] = max(z,0) − z·y + log(1 + e^−|z|)   (never overflows)
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    sig = 0.5 * (1.0 + np.tanh(0.5 * z))
    return float(np.mean(loss)), (sig - y) / y.size  # ∂/∂z = (σ(z) − y) / N


def _ce(p: Array, y: Array) -> float:
    n = p.size // p.shape[-1]
    return float(-np.sum(y * np.log(np.clip(p, _EPS, None))) / n)


def _ce_grad(p: Array, y: Array) -> Array:
    n = p.size // p.shape[-1]
    return -y / np.clip(p, _EPS, None) / n


def _ce_logits(z: Array, y: Array) -> tuple[float, Array]:
    # log-sum-exp: log Σ e^z = m + log Σ e^(z−m), m = max z.   loss = logsumexp(z) − Σ y·z
    n = z.size // z.shape[-1]
    m = z.max(axis=-1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=-1, keepdims=True)
    log_p = z - m - np.log(s)
    loss = float(-np.sum(y * log_p) / n)
    return loss, (e / s - y) / n  # ∂/∂z = (softmax(z) − y) / N  (rows of y sum to 1)


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
