"""Recurrent layers as graphs of neurons: Elman RNN, LSTM and GRU.

Each cell is spelled out with the same parts as any other network: populations with ``sum`` or
``product`` aggregation, dense blocks (trainable), one-to-one blocks (fixed weights ±1) and
recurrent blocks (the previous time step's value). The formulas are PyTorch's:

Elman:  h = tanh(x·W + h₋₁·U + b)
LSTM:   i = σ(x·W_i + h₋₁·U_i + b_i)   f = σ(…_f)   g = tanh(…_g)   o = σ(…_o)
        c = f ⊙ c₋₁ + i ⊙ g            h = o ⊙ tanh(c)
GRU:    r = σ(x·W_r + h₋₁·U_r + b_r)   z = σ(…_z)
        n = tanh(x·W_n + b_n + r ⊙ (h₋₁·U_n + b_hn))
        h = (1 − z) ⊙ n + z ⊙ h₋₁  =  n + z ⊙ (h₋₁ − n)
"""

from __future__ import annotations

from ..errors import GraphError
from .activations import get_activation
from .gates import LSTM_GATES
from .graph import Block, Layer, Network, Population, with_populations
from .layers import Stage, _check_name, _check_units, last_output


def _source(net: Network, kind: str) -> Population:
    src = last_output(net)
    if src.static:
        raise GraphError(f"{kind} reads sequences, but the layer before it returns only the last "
                         "step; build that layer with return_sequences=True")
    return src


def _gate(layer: str, name: str, units: int, activation: str, src: Population, hidden: str,
          bias: bool = True) -> tuple[Population, list[Block]]:
    """A gate population: activation(x·W + h₋₁·U + b), weights initialised as PyTorch does."""
    pop = Population(f"{layer}.{name}", units, activation,
                     bias=f"{layer}.b_{name}" if bias else None, layer=layer)
    return pop, [
        Block(src.name, pop.name, "dense", f"{layer}.W_{name}", init="uniform_hidden"),
        Block(hidden, pop.name, "dense", f"{layer}.U_{name}", recurrent=True, init="uniform_hidden"),
    ]


def _fixed(name: str, units: int, aggregation: str, activation: str, layer: str,
           sources: list[tuple[str, float, bool]]) -> tuple[Population, list[Block]]:
    """A population wired one-to-one with fixed weights: a product or a plain sum."""
    pop = Population(name, units, activation, aggregation, None, layer=layer)
    return pop, [Block(s, name, "one_to_one", scale=w, recurrent=rec) for s, w, rec in sources]


def _finish(net: Network, layer: str, kind: str, pops, blocks, hidden: str, units: int,
            return_sequences: bool, config: dict) -> Network:
    output = hidden
    if not return_sequences:  # a static copy of the last step is what later layers read
        last = Population(f"{layer}.last", units, "linear", bias=None, layer=layer, static=True)
        pops.append(last)
        blocks.append(Block(hidden, last.name, "one_to_one"))
        output = last.name
    config = {**config, "units": units, "return_sequences": return_sequences}
    return with_populations(net, pops, blocks,
                            Layer(layer, kind, tuple(p.name for p in pops), output, config))


def recurrent(units: int, activation: str = "tanh", *, return_sequences: bool = False,
              name: str | None = None) -> Stage:
    """An Elman RNN layer: h_t = activation(x_t·W + h_{t−1}·U + b)."""
    _check_units(units, "units")
    get_activation(activation)

    def build(net: Network) -> Network:
        layer = _check_name(net, name, "recurrent")
        src = _source(net, "recurrent")
        h = Population(f"{layer}.h", units, activation, bias=f"{layer}.b", layer=layer)
        blocks = [Block(src.name, h.name, "dense", f"{layer}.W", init="uniform_hidden"),
                  Block(h.name, h.name, "dense", f"{layer}.U", recurrent=True,
                        init="uniform_hidden")]
        return _finish(net, layer, "recurrent", [h], blocks, h.name, units, return_sequences,
                       {"activation": activation})

    return Stage(build, f"recurrent({units})")


def lstm(units: int, *, return_sequences: bool = False, name: str | None = None) -> Stage:
    """A long short-term memory layer (PyTorch's gate formulas)."""
    _check_units(units, "units")

    def build(net: Network) -> Network:
        layer = _check_name(net, name, "lstm")
        src = _source(net, "lstm")
        h, c = f"{layer}.h", f"{layer}.c"
        pops, blocks = [], []
        for gate, act in LSTM_GATES:
            p, b = _gate(layer, gate, units, act, src, h)
            pops.append(p)
            blocks += b
        for p, b in (
            _fixed(f"{layer}.ig", units, "product", "linear", layer,
                   [(f"{layer}.i", 1.0, False), (f"{layer}.g", 1.0, False)]),
            _fixed(f"{layer}.fc", units, "product", "linear", layer,
                   [(f"{layer}.f", 1.0, False), (c, 1.0, True)]),
            _fixed(c, units, "sum", "linear", layer,
                   [(f"{layer}.ig", 1.0, False), (f"{layer}.fc", 1.0, False)]),
            _fixed(f"{layer}.tc", units, "sum", "tanh", layer, [(c, 1.0, False)]),
            _fixed(h, units, "product", "linear", layer,
                   [(f"{layer}.o", 1.0, False), (f"{layer}.tc", 1.0, False)]),
        ):
            pops.append(p)
            blocks += b
        return _finish(net, layer, "lstm", pops, blocks, h, units, return_sequences, {})

    return Stage(build, f"lstm({units})")


def gru(units: int, *, return_sequences: bool = False, name: str | None = None) -> Stage:
    """A gated recurrent unit layer (PyTorch's formulas, with the reset gate after U_n)."""
    _check_units(units, "units")

    def build(net: Network) -> Network:
        layer = _check_name(net, name, "gru")
        src = _source(net, "gru")
        h = f"{layer}.h"
        pops, blocks = [], []
        for gate in ("r", "z"):
            p, b = _gate(layer, gate, units, "sigmoid", src, h)
            pops.append(p)
            blocks += b
        hn = Population(f"{layer}.hn", units, "linear", bias=f"{layer}.b_hn", layer=layer)
        pops.append(hn)
        blocks.append(Block(h, hn.name, "dense", f"{layer}.U_n", recurrent=True,
                            init="uniform_hidden"))
        p, b = _fixed(f"{layer}.rhn", units, "product", "linear", layer,
                      [(f"{layer}.r", 1.0, False), (hn.name, 1.0, False)])
        pops.append(p)
        blocks += b
        n = Population(f"{layer}.n", units, "tanh", bias=f"{layer}.b_n", layer=layer)
        pops.append(n)
        blocks += [Block(src.name, n.name, "dense", f"{layer}.W_n", init="uniform_hidden"),
                   Block(f"{layer}.rhn", n.name, "one_to_one")]
        for p, b in (
            _fixed(f"{layer}.d", units, "sum", "linear", layer,
                   [(h, 1.0, True), (n.name, -1.0, False)]),
            _fixed(f"{layer}.zd", units, "product", "linear", layer,
                   [(f"{layer}.z", 1.0, False), (f"{layer}.d", 1.0, False)]),
            _fixed(h, units, "sum", "linear", layer,
                   [(n.name, 1.0, False), (f"{layer}.zd", 1.0, False)]),
        ):
            pops.append(p)
            blocks += b
        return _finish(net, layer, "gru", pops, blocks, h, units, return_sequences, {})

    return Stage(build, f"gru({units})")
