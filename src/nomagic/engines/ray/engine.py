"""The ray engine's interface: ``predict``, ``loss_and_grad`` and ``Trainer``.

Two strategies (``strategy=``):

* ``"model"`` (the default): the neuron processes of the network spread over Ray actors, each
  running the processes engine's neuron state machine on its group (``model.RayNetwork``);
* ``"data"``: every worker computes the gradient of its share of the batch on the tensor
  engine, and the driver steps the optimizer once (``data.DataParallel``).

Options: ``workers``, ``strategy``, ``partition`` (model only), ``address``, ``timeout``,
``max_restarts``, ``restart_period``, ``on_round``, ``actor_options``; see ``RayNetwork``.
"""

from __future__ import annotations

import numpy as np

from ...errors import InvalidInputError
from ...model.graph import Network
from ...model.params import Params, check_params
from ...model.validation import check_inputs
from ..base import check_batch_size, in_batches
from ..objective import check_truncate, checked_gradient_args
from ..processes.protocol import user_layout
from .data import DataParallel
from .model import RayNetwork
from .session import import_ray

OPTIONS = {"workers", "strategy", "partition", "address", "timeout", "max_restarts", "restart_period",
           "on_round", "actor_options"}
STRATEGIES = ("model", "data")


def _options(options: dict) -> tuple[str, dict]:
    unknown = set(options) - OPTIONS
    if unknown:
        raise InvalidInputError(f"the ray engine takes no options {sorted(unknown)}; it knows {sorted(OPTIONS)}")
    options = dict(options)
    strategy = options.pop("strategy", "model")
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"strategy must be 'model' (neurons spread over workers) or 'data' "
                                f"(the batch spread over workers); got {strategy!r}")
    if strategy == "data" and options.get("partition") is not None:
        raise InvalidInputError("partition= places neurons: it goes with strategy='model', not 'data'")
    if strategy == "data":
        options.pop("partition", None)
    import_ray()  # a clear MissingDependencyError before anything else
    return strategy, options


def predict(net: Network, params, X, batch_size: int | None = None, **options) -> np.ndarray:
    """The network's outputs for X, computed on Ray workers (``batch_size=N``: N samples at a time)."""
    check_batch_size(batch_size)
    strategy, options = _options(options)
    P = check_params(net, params)
    X = check_inputs(net, X, next(iter(P.values())).dtype)
    if strategy == "data":
        dp = DataParallel(net, P, **options)
        try:
            return in_batches(dp.predict, X, batch_size)
        finally:
            dp.close()
    rn = RayNetwork(net, P, **options)
    try:
        return in_batches(rn.predict, X, batch_size)
    finally:
        rn.close()


def loss_and_grad(net: Network, params, X, Y, loss: str = "mse", truncate: int | None = None, dropout_key=None,
                  **options):
    """Loss and gradients on Ray workers (no update); ``dropout_key`` as the tensor engine's."""
    key, loss_fn, P, X, Y = checked_gradient_args(net, params, X, Y, loss, truncate, dropout_key)
    strategy, options = _options(options)
    if strategy == "data":
        dp = DataParallel(net, P, None, None, loss_fn, truncate=truncate, **options)
        try:
            value, g = dp.gradient(X, Y, key)
        finally:
            dp.close()
        return value, Params(dp.layout.to_params(g))
    rn = RayNetwork(net, P, **options)
    try:
        value, grads = rn.train_batch(X, Y, loss_fn, truncate, commit=False, dropout=key)
    finally:
        rn.close()
    return value, rn._to_params(grads)


class Trainer:
    """``nm.fit(..., engine="ray", workers=N, strategy="model" | "data")``."""

    def __init__(self, net: Network, params, optimizer, opt_state, loss, *, l1: float = 0.0, l2: float = 0.0,
                 clip_norm: float | None = None, truncate: int | None = None, **options) -> None:
        self.strategy, options = _options(options)
        self.loss, self.truncate = loss, truncate
        check_truncate(truncate)
        if self.strategy == "data":
            self.impl = DataParallel(net, params, optimizer, opt_state, loss, l1=l1, l2=l2, clip_norm=clip_norm,
                                     truncate=truncate, **options)
        else:
            self.impl = RayNetwork(net, params, optimizer=optimizer, opt_state=opt_state, l1=l1, l2=l2,
                                   clip_norm=clip_norm, **options)

    def train_batch(self, X: np.ndarray, Y: np.ndarray, dropout_key: tuple | None = None) -> float:
        if self.strategy == "data":
            return self.impl.train_batch(X, Y, dropout_key)
        return self.impl.train_batch(X, Y, self.loss, self.truncate, dropout=dropout_key)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.strategy == "data":
            return self.impl.predict(X)
        return user_layout(self.impl.forward(X))

    def params(self) -> Params:
        return self.impl.params()

    def set_params(self, params) -> None:
        if self.strategy == "data":
            self.impl.set_params(params)
        else:
            self.impl.set_params(params, self.impl.opt_state())

    def opt_state(self):
        return self.impl.opt_state()

    def close(self) -> None:
        self.impl.close()


__all__ = ["Trainer", "loss_and_grad", "predict"]
