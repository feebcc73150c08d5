"""Activation functions, each with its forward formula and its derivative written out.

``backward(z, a, da)`` turns the gradient with respect to the activation's output ``a`` into the
gradient with respect to its input ``z`` (for element-wise functions: ``da * f'(z)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import UnknownNameError

Array = np.ndarray


def _linear(z: Array) -> Array:
    return z


def _linear_grad(z: Array, a: Array, da: Array) -> Array:
    return da


def _step(z: Array) -> Array:
    # Heaviside: 1 where z >= 0. Its derivative is 0 almost everywhere, so gradient descent
    # cannot train a step neuron: the classic perceptron rule (nm.fit_perceptron) does.
    return (z >= 0).astype(z.dtype)


def _step_grad(z: Array, a: Array, da: Array) -> Array:
    return np.zeros_like(da)


def _sigmoid(z: Array) -> Array:
    # 1 / (1 + e^-z), computed as 0.5 * (1 + tanh(z / 2)): the same value, never overflows.
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _sigmoid_grad(z: Array, a: Array, da: Array) -> Array:
    return da * a * (1.0 - a)  # σ'(z) = σ(z)(1 − σ(z))


def _tanh(z: Array) -> Array:
    return np.tanh(z)


def _tanh_grad(z: Array, a: Array, da: Array) -> Array:
    return da * (1.0 - a * a)  # tanh'(z) = 1 − tanh(z)²


def _relu(z: Array) -> Array:
    return np.maximum(z, 0)


def _relu_grad(z: Array, a: Array, da: Array) -> Array:
    return da * (z > 0)  # 1 where z > 0, else 0 (0 at the kink, as PyTorch does)


def _softmax(z: Array) -> Array:
    # Subtracting the row maximum keeps exp from overflowing; the result is unchanged.
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_grad(z: Array, a: Array, da: Array) -> Array:
    # Jacobian-vector product: ∂a_i/∂z_j = a_i(δ_ij − a_j)  ⇒  dz = a ⊙ (da − Σ_j da_j a_j)
    return a * (da - (da * a).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class Activation:
    """An activation function: its name, forward formula and backward formula."""

    name: str
    forward: Callable[[Array], Array]
    backward: Callable[[Array, Array, Array], Array]
    elementwise: bool = True

    def __call__(self, z: Array) -> Array:
        return self.forward(z)


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation("linear", _linear, _linear_grad),
    "step": Activation("step", _step, _step_grad),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_grad),
    "tanh": Activation("tanh", _tanh, _tanh_grad),
    "relu": Activation("relu", _relu, _relu_grad),
    "softmax": Activation("softmax", _softmax, _softmax_grad, elementwise=False),
}


def get_activation(name: str) -> Activation:
    """Look an activation up by name, with a clear error for unknown names."""
    if isinstance(name, Activation):
        return name
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}"
        ) from None
