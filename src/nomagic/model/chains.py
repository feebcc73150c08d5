"""Is this network a plain chain of layers, and which? One answer for every part that maps a
network onto whole-layer operations: the fused tensor kernels and torch conversion.

A network is a plain chain when it was piped from ``nm.inputs(n)`` through ``dense``,
``recurrent``, ``lstm``, ``gru`` and ``dropout`` layers and not changed since: rebuilding it from its layer
records gives the same populations and blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .graph import Network

CHAIN_KINDS = ("dense", "recurrent", "lstm", "gru", "dropout")


@dataclass(frozen=True)
class ChainLayer:
    """One layer of a plain chain: what a whole-layer operation needs to know."""

    kind: str  # "dense", "recurrent", "lstm", "gru" or "dropout"
    name: str
    units: int
    n_in: int
    activation: str  # dense and recurrent; "tanh" for the gated cells; "linear" for dropout
    bias: bool
    return_sequences: bool
    rate: float = 0.0  # dropout only


def _stage(layer):
    from .dropout import dropout
    from .layers import dense
    from .recurrent import gru, lstm, recurrent

    c = layer.config
    if layer.kind == "dropout":
        return dropout(float(c["rate"]), name=layer.name)
    if layer.kind == "dense":
        return dense(int(c["units"]), c["activation"], bias=bool(c["bias"]), name=layer.name)
    if layer.kind == "recurrent":
        return recurrent(int(c["units"]), c["activation"], return_sequences=bool(c["return_sequences"]),
                         name=layer.name)
    build = lstm if layer.kind == "lstm" else gru
    return build(int(c["units"]), return_sequences=bool(c["return_sequences"]), name=layer.name)


def _same_structure(a: Network, b: Network) -> bool:
    """Same populations (labels aside), blocks and outputs; masked blocks never count as a chain."""
    if len(a.populations) != len(b.populations) or len(a.blocks) != len(b.blocks) or a.outputs != b.outputs:
        return False
    if any(replace(p, labels=None) != replace(q, labels=None) for p, q in zip(a.populations, b.populations)):
        return False
    for x, y in zip(a.blocks, b.blocks):
        if (x.source, x.target, x.kind, x.weight, x.recurrent, x.scale) != \
                (y.source, y.target, y.kind, y.weight, y.recurrent, y.scale):
            return False
        if x.mask is not None or y.mask is not None:
            return False
    return True


def why_not_chain(net: Network) -> str | None:
    """None when ``net`` is a plain chain; else why not, in a sentence."""
    from .layers import inputs

    layers = net.layers
    if not layers or layers[0].kind != "inputs":
        return "it was not piped from nm.inputs(n)"
    for layer in layers[1:]:
        if layer.kind not in CHAIN_KINDS:
            return (f"layer {layer.name!r} is of kind {layer.kind!r}; only {', '.join(CHAIN_KINDS)} layers "
                    "make a plain chain (graphs built neuron by neuron with nm.GraphBuilder do not)")
    try:
        rebuilt = inputs(net.n_inputs, name=layers[0].name)
        for layer in layers[1:]:
            rebuilt = rebuilt | _stage(layer)
    except Exception as exc:  # any config the builders refuse
        return f"its layer records are malformed: {exc!r}"
    if len(layers) < 2:
        return "it has no layers after its inputs"
    if not _same_structure(net, rebuilt):
        return ("it was changed after it was piped together (its populations or blocks differ from what "
                "its layers build)")
    return None


def plain_chain(net: Network) -> tuple[ChainLayer, ...] | None:
    """The layers of ``net`` in order when it is a plain chain, else None."""
    if why_not_chain(net) is not None:
        return None
    out = []
    for layer in net.layers[1:]:
        c = layer.config
        prev = net.layers[net.layers.index(layer) - 1]
        if layer.kind == "dropout":
            n = net.population(prev.output).size
            out.append(ChainLayer("dropout", layer.name, n, n, "linear", False, False, float(c["rate"])))
            continue
        out.append(ChainLayer(layer.kind, layer.name, int(c["units"]), net.population(prev.output).size,
                              str(c.get("activation", "tanh")), bool(c.get("bias", True)),
                              bool(c.get("return_sequences", False))))
    return tuple(out)
