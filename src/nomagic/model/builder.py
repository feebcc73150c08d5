"""Build any directed graph of neurons, neuron by neuron.

    g = nm.GraphBuilder(3)                       # three sensors: g.inputs[0..2]
    x = g.inputs
    h1 = g.neuron([x[0], x[1]], activation="tanh")
    h2 = g.neuron([x[1], x[2], h1], activation="relu")    # reads a sensor and a neuron
    y = g.neuron([h1, h2, x[0]], activation="sigmoid")    # a skip connection from x0
    net = g.build(outputs=[y])

``g.connect(a, b, recurrent=True)`` adds a synapse carrying ``a``'s value from the previous
time step (loops are allowed only that way). ``build`` groups neurons of equal depth and kind
into populations joined by masked blocks, so the result runs as fast as a layered network and
takes the same ``init`` / ``predict`` / ``loss_and_grad`` / ``fit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GraphError, InvalidInputError, UnknownNameError
from .activations import get_activation
from .graph import AGGREGATIONS, Block, Layer, Network, Population


@dataclass(frozen=True)
class NeuronRef:
    """A handle on a sensor or neuron of a ``GraphBuilder``."""

    builder_id: int
    index: int
    name: str

    def __repr__(self) -> str:
        return f"<neuron {self.name}>"


@dataclass
class _Spec:
    name: str
    activation: str
    aggregation: str
    bias: bool
    sources: list  # (source index, recurrent)


class GraphBuilder:
    """Collects sensors, neurons and synapses; ``build`` makes an immutable ``Network``."""

    def __init__(self, n_inputs: int, names: list[str] | None = None) -> None:
        if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or n_inputs < 1:
            raise InvalidInputError(f"n_inputs must be a positive integer; got {n_inputs!r}")
        names = list(names) if names is not None else [f"x{i}" for i in range(n_inputs)]
        if len(names) != n_inputs:
            raise InvalidInputError("give one name per input")
        self._specs: list[_Spec | None] = [None] * n_inputs  # None marks a sensor
        self._names = list(names)
        self.inputs = [NeuronRef(id(self), i, n) for i, n in enumerate(names)]

    def _ref(self, ref) -> int:
        if not isinstance(ref, NeuronRef) or ref.builder_id != id(self):
            raise GraphError(f"{ref!r} is not a neuron of this builder")
        return ref.index

    def neuron(self, sources=(), activation: str = "sigmoid", *, aggregation: str = "sum",
               bias: bool = True, name: str | None = None) -> NeuronRef:
        """Add a neuron reading ``sources`` (sensors or earlier neurons); returns its handle."""
        get_activation(activation)
        if activation == "softmax":
            raise GraphError("softmax couples a whole layer; use nm.dense(..., activation="
                             "'softmax') or 'sigmoid' neurons in a hand-built graph")
        if aggregation not in AGGREGATIONS:
            raise UnknownNameError(f"unknown aggregation {aggregation!r}; choose one of: "
                                   f"{', '.join(AGGREGATIONS)}")
        index = len(self._specs)
        name = name or f"n{index - len(self.inputs)}"
        if name in self._names:
            raise GraphError(f"a neuron named {name!r} already exists")
        sources = list(sources)
        indices = [self._ref(s) for s in sources]  # check every handle before adding anything
        if len(set(indices)) != len(indices):
            raise GraphError(f"neuron {name!r} lists the same source twice")
        self._specs.append(_Spec(name, activation, aggregation, bias, []))
        self._names.append(name)
        ref = NeuronRef(id(self), index, name)
        for s in sources:
            self.connect(s, ref)
        return ref

    def connect(self, source: NeuronRef, target: NeuronRef, *, recurrent: bool = False) -> None:
        """Add a synapse ``source → target`` (from the previous time step if ``recurrent``)."""
        s, t = self._ref(source), self._ref(target)
        spec = self._specs[t]
        if spec is None:
            raise GraphError(f"{target.name} is a sensor; sensors have no incoming synapses")
        if not recurrent and s >= t:
            raise GraphError(f"{source.name} -> {target.name} would make a loop (or read a later "
                             "neuron); only recurrent synapses may do that")
        if (s, recurrent) in spec.sources:
            raise GraphError(f"{source.name} -> {target.name} exists already")
        spec.sources.append((s, recurrent))

    def build(self, outputs, *, return_sequences: bool = True) -> Network:
        """The network with the given output neurons (in that order)."""
        outs = [self._ref(o) for o in outputs]
        if not outs or len(set(outs)) != len(outs):
            raise GraphError("give one or more distinct output neurons")
        n_in = len(self.inputs)
        if any(self._specs[o] is None for o in outs):
            raise GraphError("an output must be a neuron, not a sensor")
        specs = self._specs
        depth = [0] * len(specs)
        for i in range(n_in, len(specs)):
            spec = specs[i]
            if not spec.sources and not spec.bias:
                raise GraphError(f"neuron {spec.name} has no inputs and no bias")
            depth[i] = 1 + max([depth[s] for s, rec in spec.sources if not rec], default=0)
        # group: equal depth and kind share a population; a product neuron stands alone
        groups: dict[tuple, list[int]] = {}
        for i in range(n_in, len(specs)):
            sp = specs[i]
            key = (depth[i], sp.activation, sp.aggregation, sp.bias,
                   i if sp.aggregation == "product" else -1)
            groups.setdefault(key, []).append(i)
        ordered = sorted(groups.items(), key=lambda kv: (kv[0][0], kv[1][0]))
        where: dict[int, tuple[str, int]] = {i: ("inputs", i) for i in range(n_in)}
        pops = [Population("inputs", n_in, role="input", layer="graph_inputs",
                           labels=tuple(self._names[:n_in]))]
        for g, (key, members) in enumerate(ordered):
            d, act, agg, has_bias, _ = key
            pname = f"d{d}_{act}_{g}" if agg == "sum" else f"d{d}_product_{g}"
            for j, i in enumerate(members):
                where[i] = (pname, j)
            pops.append(Population(pname, len(members), act, agg,
                                   f"{pname}.bias" if has_bias else None, layer="graph",
                                   labels=tuple(self._names[i] for i in members)))
        sizes = {p.name: p.size for p in pops}
        blocks = []
        for p in pops[1:]:
            members = [i for i in range(n_in, len(specs)) if where[i][0] == p.name]
            if p.aggregation == "product":  # one block per synapse: each is its own factor
                (i,) = members
                for k, (s, rec) in enumerate(specs[i].sources):
                    src, row = where[s]
                    mask = np.zeros((sizes[src], 1), dtype=bool)
                    mask[row, 0] = True
                    mask.setflags(write=False)
                    blocks.append(Block(src, p.name, "dense", f"{p.name}.w{k}", mask, rec))
                continue
            masks: dict[tuple[str, bool], np.ndarray] = {}
            for j, i in enumerate(members):
                for s, rec in specs[i].sources:
                    src, row = where[s]
                    m = masks.setdefault((src, rec), np.zeros((sizes[src], p.size), dtype=bool))
                    m[row, j] = True
            for (src, rec), m in masks.items():
                m.setflags(write=False)
                key = f"{p.name}.from_{src}" + ("_prev" if rec else "")
                blocks.append(Block(src, p.name, "dense", key, None if m.all() else m, rec))
        layers = [Layer("graph_inputs", "inputs", ("inputs",), "inputs", {"units": n_in}),
                  Layer("graph", "graph", tuple(p.name for p in pops[1:]), pops[-1].name,
                        {"neurons": len(specs) - n_in})]
        out_pairs: list[tuple[str, list[int]]] = []
        for o in outs:
            pname, j = where[o]
            if out_pairs and out_pairs[-1][0] == pname:
                out_pairs[-1][1].append(j)
            else:
                out_pairs.append((pname, [j]))
        outputs_spec = [(p, tuple(ix)) for p, ix in out_pairs]
        recurrent = any(rec for sp in specs[n_in:] for _, rec in sp.sources)
        if not return_sequences:
            if not recurrent:
                raise GraphError("return_sequences only applies to graphs with recurrent synapses")
            if len(outputs_spec) != 1 or list(outputs_spec[0][1]) != list(
                    range(sizes[outputs_spec[0][0]])):
                raise GraphError("return_sequences=False needs the outputs to be one whole "
                                 "population: give output neurons of equal depth and kind")
            src = outputs_spec[0][0]
            pops.append(Population("last_step", sizes[src], "linear", "sum", None,
                                   layer="last_step", static=True,
                                   labels=tuple(f"{self._names[o]}@last" for o in outs)))
            blocks.append(Block(src, "last_step", "one_to_one"))
            layers.append(Layer("last_step", "last_step", ("last_step",), "last_step", {}))
            outputs_spec = [("last_step", tuple(range(sizes[src])))]
        return Network(pops, blocks, layers, outputs_spec)
