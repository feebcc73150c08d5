"""Rosenblatt's perceptron rule: how a step neuron learns, since gradient descent cannot move it
(the step's derivative is 0 almost everywhere).

For each sample in turn::

    ŷ = step(w·x + b)          (1 where w·x + b ≥ 0, else 0)
    w ← w + lr·(y − ŷ)·x
    b ← b + lr·(y − ŷ)

A wrong answer moves the boundary towards the sample; a right one changes nothing. On linearly
separable data the rule stops making mistakes after a finite number of updates.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, LabelError
from ..model.graph import Network
from ..model.layers import dense, inputs
from ..model.params import Params, as_dtype
from ..model.validation import check_inputs
from .model import Model


def perceptron_network(n_inputs: int) -> Network:
    """One step neuron reading ``n_inputs`` features: ``nm.inputs(n) | nm.dense(1, "step")``."""
    return inputs(n_inputs) | dense(1, activation="step", name="neuron")


def _check_binary(y, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape not in ((n,), (n, 1)):
        raise InvalidInputError(f"perceptron targets must be {n} values 0 or 1; got shape {y.shape}")
    y = y.reshape(n).astype(np.float64)
    if not np.all((y == 0) | (y == 1)):
        raise LabelError("perceptron targets must be 0 or 1")
    return y


def perceptron_epoch(params, X, y, lr: float = 1.0, order=None) -> tuple[Params, int]:
    """One pass of the rule over the samples (in ``order``, default as given): the new params
    and the number of mistakes made on the way. Pure: ``params`` is not changed."""
    w = np.array(params["neuron.weight"][:, 0], dtype=np.float64)
    b = float(params["neuron.bias"][0])
    mistakes = 0
    for i in range(len(X)) if order is None else order:
        x = X[i]
        y_hat = 1.0 if float(x @ w) + b >= 0.0 else 0.0
        err = y[i] - y_hat
        if err:
            w += lr * err * x
            b += lr * err
            mistakes += 1
    dt = params["neuron.weight"].dtype
    return Params({"neuron.weight": w[:, None].astype(dt), "neuron.bias": np.array([b], dtype=dt)}), mistakes


def fit_perceptron(X, y, epochs: int = 20, lr: float = 1.0, seed: int = 0, dtype="float64",
                   pocket: bool = False) -> Model:
    """Train a step neuron with the perceptron rule, visiting the samples in a seeded order each
    epoch; stops early after an epoch without mistakes. ``history`` has each epoch's mistakes
    during the pass and its training error rate after it.

    On data that no straight line separates the rule never settles; ``pocket=True`` keeps the
    params with the lowest training error seen after any epoch (Gallant's pocket algorithm)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidInputError(f"epochs must be an integer >= 1; got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
        raise InvalidInputError(f"lr must be a positive number; got {lr!r}")
    X = np.asarray(X)
    if X.ndim != 2:
        raise InvalidInputError(f"perceptron inputs are (samples, features); got shape {X.shape}")
    net = perceptron_network(X.shape[1])
    dt = as_dtype(dtype)
    X = check_inputs(net, X, dt).astype(np.float64)
    y = _check_binary(y, len(X))
    params = Params({"neuron.weight": np.zeros((X.shape[1], 1), dt), "neuron.bias": np.zeros(1, dt)})
    rng = np.random.default_rng(seed)
    history = []
    best, best_error = params, np.inf
    for epoch in range(1, epochs + 1):
        params, mistakes = perceptron_epoch(params, X, y, lr, rng.permutation(len(X)))
        error = float(np.mean((X @ params["neuron.weight"][:, 0] + params["neuron.bias"][0] >= 0) != y))
        history.append({"epoch": epoch, "mistakes": mistakes, "loss": error})
        if error < best_error:
            best, best_error = params, error
        if mistakes == 0:
            break
    final = best if pocket else params
    return Model(net, final, history, "mse",
                 {"trained_by": "perceptron rule" + (" (pocket)" if pocket else ""), "lr": lr, "seed": seed})
