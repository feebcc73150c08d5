"""Layer builders for the pipe: ``nm.inputs(4) | nm.dense(8, activation="tanh") | ...``.

A builder is a ``Stage``: a function from a network to a bigger network. ``net | stage`` is
``stage(net)``, Python's spelling of Elixir's ``net |> stage``; stages also compose on their own
(``block = nm.dense(8) | nm.dense(8)``), to be piped onto a network later.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import GraphError, InvalidInputError
from .activations import get_activation
from .graph import Block, Layer, Network, Population, with_populations


class Stage:
    """A named network → network function; compose with ``|``."""

    def __init__(self, fn: Callable[[Network], Network], label: str) -> None:
        self._fn = fn
        self._label = label

    def __call__(self, net: Network) -> Network:
        if not isinstance(net, Network):
            raise GraphError(f"{self._label} must be piped onto a network, e.g. "
                             f"nm.inputs(4) | {self._label}")
        return self._fn(net)

    def __or__(self, other: Callable[[Network], Network]) -> Stage:
        if not callable(other):
            raise GraphError(f"cannot pipe into {other!r}: not a layer builder")
        return Stage(lambda net: other(self(net)), f"{self._label} | {other!r}")

    def __repr__(self) -> str:
        return self._label


def _check_units(units, what: str) -> int:
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise InvalidInputError(f"{what} must be a positive integer; got {units!r}")
    return units


def _check_name(net: Network, name: str | None, kind: str) -> str:
    if name is None:
        return net.next_layer_name(kind)
    if not isinstance(name, str) or not name or "." in name:
        raise InvalidInputError(f"layer name must be a non-empty string without dots; got {name!r}")
    if name in net.layer_names() or name in {p.name for p in net.populations}:
        raise GraphError(f"a layer named {name!r} already exists; names must be unique")
    return name


def inputs(n: int, name: str = "inputs") -> Network:
    """A network of ``n`` sensors (input features) and nothing else yet."""
    _check_units(n, "the number of inputs")
    pop = Population(name=name, size=n, role="input", layer=name, bias=None)
    return Network([pop], [], [Layer(name, "inputs", (name,), name, {"units": n})])


def last_output(net: Network) -> Population:
    """The population a new layer reads from: the network's current (single) output."""
    pop = net.output_population
    if pop is None:
        raise GraphError("the pipe needs a network whose output is one whole population")
    return pop


def dense(units: int, activation: str = "linear", *, bias: bool = True,
          name: str | None = None) -> Stage:
    """A fully connected layer: ``a = activation(x @ W + b)`` with ``W`` of shape (in, units)."""
    _check_units(units, "units")
    get_activation(activation)

    def build(net: Network) -> Network:
        layer = _check_name(net, name, "dense")
        src = last_output(net)
        pop = Population(name=layer, size=units, activation=activation,
                         bias=f"{layer}.bias" if bias else None, layer=layer, static=src.static)
        block = Block(src.name, layer, "dense", weight=f"{layer}.weight")
        config = {"units": units, "activation": activation, "bias": bias}
        return with_populations(net, [pop], [block], Layer(layer, "dense", (layer,), layer, config))

    return Stage(build, f"dense({units}, activation={activation!r})")
