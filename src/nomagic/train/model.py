"""A trained model: the network, its params and how training went; saved and loaded as a
model file (``nomagic.io.model_file``), which is data only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engines.base import OptState
from ..io import model_file
from ..model.graph import Network, render
from ..model.losses import get_loss
from ..model.params import Params
from ..model.validation import check_inputs, check_targets
from .metrics import builtin_metrics, compute


@dataclass(frozen=True)
class Model:
    """A trained network: the graph, its params, and how training went.

    ``opt_state`` (the optimizer's step count and slots), ``epoch`` (epochs trained so far) and
    ``loop_state`` (early stopping's best value, wait and best params) let
    ``nm.fit(model, X, Y, epochs=k)`` continue training exactly where it stopped; all three
    are saved in the model file. A model built by hand has none of them and starts afresh.
    """

    net: Network
    params: Params
    history: list[dict] = field(default_factory=list)
    loss: str = "mse"
    info: Mapping[str, Any] = field(default_factory=dict)
    opt_state: OptState | None = None
    epoch: int = 0
    loop_state: Mapping[str, Any] = field(default_factory=dict)

    def predict(self, X, engine: str = "tensor", batch_size: int | None = None, **engine_options) -> np.ndarray:
        """The outputs for ``X``; ``batch_size=N`` computes them N samples at a time."""
        return self.net.predict(self.params, X, engine=engine, batch_size=batch_size, **engine_options)

    def evaluate(self, X, Y, loss: str | None = None) -> dict[str, float]:
        """Loss on the given data, with accuracy (classification losses) or mae (mse)."""
        loss_fn = get_loss(loss or self.loss)
        dt = self.params.dtype
        X = check_inputs(self.net, X, dt)
        Y = check_targets(self.net, loss_fn, Y, X, dt)
        return evaluate_outputs(self.net.predict(self.params, X), Y, loss_fn)

    def save(self, path) -> None:
        """Write the model to ``path`` (JSON topology + safetensors tensors), atomically."""
        model_file.save(self, path)

    def _repr_png_(self) -> bytes | None:
        """Jupyter: the network drawn with its params (weights as colour and width, biases as fill)."""
        return render(self.net, self.params, "png")

    def _repr_svg_(self) -> str | None:
        data = render(self.net, self.params, "svg")
        return None if data is None else data.decode("utf-8")


def evaluate_outputs(y_hat: np.ndarray, Y: np.ndarray, loss_fn) -> dict[str, float]:
    """The loss of outputs ``y_hat`` against targets ``Y`` and the loss's built-in metrics:
    the accuracy for classification, the mean absolute error for mse."""
    out = {"loss": float(loss_fn.value(y_hat, Y))}
    for metric in builtin_metrics(loss_fn.name):
        out[metric.name] = compute(metric, Y, y_hat)
    return out


def load(path) -> Model:
    """Read a model written by ``Model.save``; raises ``ModelFileError`` if the file is damaged."""
    return Model(*model_file.read(path))
