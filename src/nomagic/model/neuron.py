"""A lone neuron: the picture in every introduction, evaluated on its own.

    y = activation(w · x + b)

``Neuron.as_network()`` turns it into a one-neuron network that every engine can run and train.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, NonFiniteError, ShapeError
from .activations import get_activation
from .graph import Network
from .params import Params


@dataclass(frozen=True)
class Neuron:
    """Weights, a bias and an activation: ``Neuron([0.5, -1.0], bias=0.2, activation="step")``."""

    weights: tuple[float, ...]
    bias: float = 0.0
    activation: str = "sigmoid"

    def __init__(self, weights, bias: float = 0.0, activation: str = "sigmoid") -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ShapeError(f"a neuron's weights are a non-empty 1-D list; got shape {w.shape}")
        if not np.all(np.isfinite(w)) or not np.isfinite(bias):
            raise NonFiniteError("a neuron's weights and bias must be finite numbers")
        if get_activation(activation).name == "softmax":
            raise InvalidInputError("softmax needs a population of neurons; a lone neuron cannot use it")
        object.__setattr__(self, "weights", tuple(float(x) for x in w))
        object.__setattr__(self, "bias", float(bias))
        object.__setattr__(self, "activation", activation)

    def __call__(self, x) -> np.ndarray | float:
        """The neuron's output for one input vector (a float) or a batch (a vector)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1:] != (len(self.weights),) or x.ndim > 2:
            raise ShapeError(f"this neuron has {len(self.weights)} inputs; got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise NonFiniteError("inputs hold NaN or infinity")
        z = x @ np.asarray(self.weights) + self.bias  # weighted sum plus bias
        a = get_activation(self.activation).forward(np.asarray(z))
        return float(a) if x.ndim == 1 else a

    def as_network(self, dtype: str = "float64") -> tuple[Network, Params]:
        """The same neuron as a network and its params (to train it or run it on any engine)."""
        from .layers import dense, inputs

        net = inputs(len(self.weights)) | dense(1, activation=self.activation, name="neuron")
        params = Params({"neuron.weight": np.asarray(self.weights, dtype=dtype)[:, None],
                         "neuron.bias": np.asarray([self.bias], dtype=dtype)})
        return net, params
