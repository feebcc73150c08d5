"""The engine contract: what ``net.predict(..., engine=NAME)``, ``net.loss_and_grad`` and
``nm.fit`` rely on. Every engine module (tensor, processes, ray) provides these three names.

An engine is found by name through :func:`nomagic.engines.get_engine` — the one door in the
layering that points up: the model calls an engine it does not import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class OptState:
    """Optimizer state: the step count and one slot array per param per slot name."""

    step: int
    slots: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)


class UpdateRule(Protocol):
    """What an engine needs of an optimizer: its slot names, fresh state, and the update of one
    flat vector in place (written once per optimizer, in ``nomagic.train.optimizers``)."""

    slot_names: tuple[str, ...]

    def init(self, params: Mapping[str, np.ndarray]) -> OptState: ...

    def apply_(self, t: int, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray],
               tmp: np.ndarray) -> None: ...


@runtime_checkable
class Trainer(Protocol):
    """Mini-batch training that keeps params and optimizer state inside the engine.

    Built as ``Trainer(net, params, optimizer, opt_state, loss, *, l1, l2, clip_norm, truncate,
    **engine_options)``; ``nm.fit`` drives it batch by batch and always calls ``close``.
    """

    def train_batch(self, X: np.ndarray, Y: np.ndarray, dropout_key: tuple | None = None, state=None,
                    sample_weight=None) -> float:
        """One optimizer step on a checked batch; returns the objective (loss + penalty) before it.

        ``dropout_key`` (seed, epoch, batch) decides the dropout masks (``nomagic.model.dropout``);
        ``nm.Loop`` passes it only for a network with dropout layers.

        Two more optional keywords, which ``nm.fit`` passes only when they are used (an engine
        without them refuses those settings with a clear error; every engine takes
        ``dropout_key``):

        - ``sample_weight``: one weight per row of ``Y`` ((batch,) or (batch, time), user layout,
          checked by ``losses.row_weights``): the loss is the weighted mean ``Σ w·l / Σ w``
          (``Loss.weighted``);
        - ``state``: the recurrent layers start from this state instead of zeros (what
          ``last_state()`` returned for the chunk before); no gradient flows into it.
        """

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Outputs for checked inputs with the current params."""

    def params(self) -> Mapping[str, np.ndarray]:
        """A copy of the current params (read-only arrays)."""

    def set_params(self, params: Mapping[str, np.ndarray]) -> None:
        """Replace the current params (restoring the best epoch, say)."""

    def opt_state(self) -> OptState:
        """A copy of the current optimizer state."""

    def close(self) -> None:
        """Release what the trainer holds (processes, threads, actors). Safe to call twice."""

    # Optional: ``last_outputs(logits_ok=False) -> np.ndarray | None``, the outputs of the last
    # batch trained, before its step (with ``logits_ok``, a softmax/sigmoid output fused with its
    # loss may come as logits). ``nm.Loop`` uses it for training metrics; on an engine without
    # it, the tensor engine's ``predict`` computes them from ``params()`` before each step.
    #
    # Optional, for truncated BPTT by chunks (``nm.fit(..., tbptt=k)``; the tensor engine has
    # them, an engine without them refuses ``tbptt``):
    #   ``last_state() -> dict``: the recurrent state after the last step of the last batch
    #     trained, computed by its forward pass (before its optimizer step), as copies:
    #     {population name: (batch, size)} for every population a recurrent synapse reads
    #     (a builder's layer: "<layer>.h", and "<layer>.c" for an LSTM);
    #   ``advance(X, state=None, dropout_key=None) -> dict``: the forward pass alone over checked
    #     inputs, from ``state`` (with the batch's dropout masks when given a key): no loss, no
    #     step; returns the final state as ``last_state`` does.


class Engine(Protocol):
    """An engine module: pure ``predict`` and ``loss_and_grad``, and a ``Trainer`` class."""

    Trainer: type

    def predict(self, net: Any, params: Mapping[str, np.ndarray], X: np.ndarray, **options) -> np.ndarray: ...

    def loss_and_grad(self, net: Any, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
                      loss: str = "mse", truncate: int | None = None, **options
                      ) -> tuple[float, Mapping[str, np.ndarray]]: ...


def check_batch_size(batch_size) -> int | None:
    """``batch_size`` of ``predict``: None (all at once) or a positive integer."""
    from ..errors import InvalidInputError

    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer (or None: all at once); got {batch_size!r}")
    return int(batch_size)


def in_batches(fn, X: np.ndarray, batch_size: int | None, with_start: bool = False) -> np.ndarray:
    """``fn(X)`` computed ``batch_size`` samples at a time into one preallocated output, so that
    a predict on a large X holds one batch's intermediate arrays at a time. ``fn`` gets checked
    inputs and returns outputs in user layout (the batch first). ``with_start``: ``fn(Xb, start)``
    also gets the position in X of the batch's first row (a dropout key's ``first_row``, so that
    the masks are those of the unbatched call)."""
    batch_size = check_batch_size(batch_size)
    n = len(X)

    def call(start: int, stop: int) -> np.ndarray:
        Xb = X if start == 0 and stop >= n else X[start:stop]
        return fn(Xb, start) if with_start else fn(Xb)

    if batch_size is None or batch_size >= n:
        return call(0, n)
    first = call(0, batch_size)
    out = np.empty((n,) + first.shape[1:], dtype=first.dtype)
    out[:batch_size] = first
    for start in range(batch_size, n, batch_size):
        out[start:start + batch_size] = call(start, start + batch_size)
    return out


class GradientStep:
    """The update rule an engine uses when it is given no optimizer: ``θ ← θ − g``
    (plain gradient descent with learning rate 1, as ``nm.sgd(1.0)``)."""

    name = "gradient step"
    slot_names: tuple[str, ...] = ()

    def init(self, params: Mapping[str, np.ndarray]) -> OptState:
        return OptState(0, {})

    def apply_(self, t: int, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray],
               tmp: np.ndarray) -> None:
        p -= g
