"""The processes engine's interface: ``predict``, ``loss_and_grad`` and ``Trainer``, each on a
``ProcessNetwork`` (``network``): every neuron a process that only exchanges messages.

The package: ``protocol`` (every message, named), ``neuron``, ``sensor``, ``actuator``, ``cortex``
(the roles, as state machines that do not know how they are run), ``transport`` (the generator
runtime running them as supervised processes), ``network`` (``ProcessNetwork``), ``trace``
(recorded and live traces), ``faults`` (test hooks), ``wiring`` (the neuron-level graph).
"""

from __future__ import annotations

import numpy as np

from ...errors import InvalidInputError
from ...model.graph import Network
from ...model.losses import row_weights
from ...model.params import Params
from ...model.validation import check_inputs
from ..base import check_batch_size, in_batches
from ..objective import checked_gradient_args
from .faults import Fault, InjectedCrash
from .network import ProcessNetwork
from .protocol import user_layout
from .trace import format_event


def _options(options: dict) -> dict:
    allowed = {"trace", "timeout", "faults", "max_restarts", "restart_period", "on_event"}
    unknown = set(options) - allowed
    if unknown:
        raise InvalidInputError(f"the processes engine takes no options {sorted(unknown)}; "
                                f"it knows {sorted(allowed)}")
    return options


def predict(net: Network, params, X, batch_size: int | None = None, **options) -> np.ndarray:
    """The network's outputs for X, computed by a society of neuron processes
    (``batch_size=N``: N samples at a time)."""
    check_batch_size(batch_size)
    pn = ProcessNetwork(net, params, **_options(options))
    try:
        return in_batches(pn.predict, check_inputs(net, X, pn.dtype), batch_size)
    finally:
        pn.close()


def loss_and_grad(net: Network, params, X, Y, loss: str = "mse", truncate: int | None = None,
                  dropout_key=None, sample_weight=None, **options):
    """Loss and gradients, by one forward and one backward pass of messages (no update).
    ``dropout_key=(seed, epoch, batch)`` applies the dropout masks of that key (as in training);
    None: dropout layers are the identity. ``sample_weight``: the weighted mean loss, as on the
    tensor engine (the cortex computes it)."""
    key, loss_fn, P, X, Y = checked_gradient_args(net, params, X, Y, loss, truncate, dropout_key)
    w = row_weights(loss_fn, Y, sample_weight)
    if w is not None:
        loss_fn = _weighted(loss_fn, w, X.dtype)
    pn = ProcessNetwork(net, P, **_options(options))
    try:
        value, grads = pn.train_batch(X, Y, loss_fn, truncate, commit=False, dropout=key)
    finally:
        pn.close()
    return value, pn._to_params(grads)


def _weighted(loss_fn, w, dt):
    """The loss weighted by row weights (user layout), in the cortex's layout ((time, batch))."""
    w = np.asarray(w, dtype=dt)
    return loss_fn.weighted(np.ascontiguousarray(w.T) if w.ndim == 2 else w)


class Trainer:
    """``nm.fit(..., engine="processes")``: the neurons train themselves, batch after batch.

    The loss may be weighted (``sample_weight``): the cortex computes the weighted mean. It has
    no recurrent state to start from, so ``nm.fit(..., tbptt=k)`` is refused on this engine.
    """

    def __init__(self, net: Network, params, optimizer, opt_state, loss, *, l1: float = 0.0,
                 l2: float = 0.0, clip_norm: float | None = None, truncate: int | None = None,
                 **options) -> None:
        self.loss, self.truncate = loss, truncate
        self.pn = ProcessNetwork(net, params, optimizer=optimizer, opt_state=opt_state, l1=l1,
                                 l2=l2, clip_norm=clip_norm, **_options(options))

    def train_batch(self, X: np.ndarray, Y: np.ndarray, dropout_key: tuple | None = None,
                    sample_weight=None) -> float:
        loss = self.loss if sample_weight is None else _weighted(self.loss, sample_weight, X.dtype)
        return self.pn.train_batch(X, Y, loss, self.truncate, dropout=dropout_key)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return user_layout(self.pn.forward(X))

    def params(self) -> Params:
        return self.pn.params()

    def set_params(self, params) -> None:
        self.pn.set_params(params, self.pn.opt_state())

    def opt_state(self):
        return self.pn.opt_state()

    def close(self) -> None:
        self.pn.close()


__all__ = ["Fault", "InjectedCrash", "ProcessNetwork", "Trainer", "format_event", "loss_and_grad",
           "predict"]
