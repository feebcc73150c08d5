"""The model: an immutable directed graph of neurons, stored as populations and blocks.

A *population* is a group of neurons that share activation and aggregation (a layer is one; a
lone neuron is a population of one). A *block* joins a source population to a target population:
either a trainable weight matrix (``dense``, optionally masked so that only some synapses exist)
or fixed one-to-one synapses (``one_to_one``, weight ``scale``: what gated cells use to wire
products and sums). A *recurrent* block carries its source's value from the previous time step.

The neuron-level view (who sends to whom, with which weight) is derived: ``Network.neurons()``.
Engines run networks; a ``Network`` itself only describes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import GraphError, UnknownNameError
from .activations import get_activation

AGGREGATIONS = ("sum", "product")

# -- pictures: a hook, not an import --------------------------------------------------------------
# A Network (and a trained Model) shows itself in Jupyter through ``_repr_png_`` / ``_repr_svg_``.
# The drawing lives in ``nomagic.apps.draw`` and needs matplotlib, and ``model/`` may not import
# ``apps/`` (tests/test_layers.py). So the model keeps a slot for a renderer, and the package's
# front door, ``nomagic/__init__.py``, fills it at import time with a function that imports
# ``apps.draw`` (and matplotlib) only when a picture is first asked for. Without a renderer, or
# without matplotlib, the repr methods return None and Jupyter shows the text repr instead.
_renderer: Callable[[Any, Any, str], bytes] | None = None


def set_renderer(renderer: Callable[[Any, Any, str], bytes] | None) -> None:
    """Install ``renderer(net, params, fmt) -> bytes`` (fmt ``"png"`` or ``"svg"``) for the repr methods."""
    global _renderer
    _renderer = renderer


def render(net: Network, params, fmt: str) -> bytes | None:
    """The picture of ``net`` (with ``params`` or None) as bytes, or None when nothing can draw it."""
    from ..errors import MissingDependencyError

    if _renderer is None:
        return None
    try:
        return _renderer(net, params, fmt)
    except MissingDependencyError:
        return None


@dataclass(frozen=True)
class Population:
    """A group of neurons with one activation and one aggregation.

    ``bias`` is the param key of the population's bias vector, or None for no bias.
    ``static`` marks populations after a sequence was reduced to its last step: in a recurrent
    network they are evaluated once, not at every time step.
    ``dropout`` is a rate in [0, 1): in a training step with a dropout key, the population's
    output is multiplied by a mask (``nomagic.model.dropout``); only linear populations may have
    one (``nm.dropout`` builds them), and they may not feed a recurrent synapse.
    """

    name: str
    size: int
    activation: str = "linear"
    aggregation: str = "sum"
    bias: str | None = None
    role: str = "neuron"  # "input" or "neuron"
    layer: str = ""
    static: bool = False
    labels: tuple[str, ...] | None = None
    dropout: float = 0.0

    def neuron_name(self, i: int) -> str:
        return self.labels[i] if self.labels else f"{self.name}[{i}]"


@dataclass(frozen=True, eq=False)
class Block:
    """Synapses from ``source`` to ``target``.

    ``kind="dense"``: weight matrix ``params[weight]`` of shape (source size, target size);
    ``mask`` (bool, same shape) says which synapses exist, None meaning all.
    ``kind="one_to_one"``: neuron i of the source feeds neuron i of the target with the fixed
    weight ``scale`` (sizes must match; nothing to train).
    """

    source: str
    target: str
    kind: str = "dense"
    weight: str | None = None
    mask: np.ndarray | None = None
    recurrent: bool = False
    scale: float = 1.0
    init: str = "auto"  # "auto" (by activation), "glorot", "he", "uniform_hidden", "zeros"


@dataclass(frozen=True)
class Layer:
    """What one builder call added: used for names, drawing, torch and ONNX conversion."""

    name: str
    kind: str
    populations: tuple[str, ...]
    output: str
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ParamSpec:
    """One trainable array: its key, shape and how to initialise it."""

    key: str
    shape: tuple[int, ...]
    role: str  # "weight" or "bias"
    init: str
    activation: str
    fan_in: int
    fan_out: int
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class Synapse:
    """One synapse in the neuron-level view."""

    source: str
    target: str
    weight: str | None  # param key, or None for a fixed weight
    index: tuple[int, int] | None  # (row, col) in that param
    value: float | None  # the fixed weight when ``weight`` is None
    recurrent: bool


@dataclass(frozen=True)
class NeuronView:
    """One neuron in the neuron-level view: what a neuron process is spawned from."""

    name: str
    population: str
    index: int
    activation: str
    aggregation: str
    bias: tuple[str, int] | None
    inputs: tuple[Synapse, ...]


class Network:
    """An immutable directed graph of neurons. Build with ``nm.inputs(n) | nm.dense(k) | ...``."""

    __slots__ = ("populations", "blocks", "layers", "outputs", "_memo", "__weakref__")

    def __init__(
        self,
        populations: Iterable[Population],
        blocks: Iterable[Block] = (),
        layers: Iterable[Layer] = (),
        outputs: Iterable[tuple[str, tuple[int, ...]]] | None = None,
    ) -> None:
        pops = tuple(populations)
        object.__setattr__(self, "populations", pops)
        object.__setattr__(self, "blocks", tuple(blocks))
        object.__setattr__(self, "layers", tuple(layers))
        if outputs is None:
            last = pops[-1]
            outputs = ((last.name, tuple(range(last.size))),)
        object.__setattr__(self, "outputs", tuple((p, tuple(ix)) for p, ix in outputs))
        object.__setattr__(self, "_memo", {})
        self._check()

    def __setattr__(self, name, value):
        raise AttributeError("a Network is immutable: build a new one with the pipe |")

    # -- the pipe ---------------------------------------------------------------------------
    def __or__(self, stage: Callable[[Network], Network]) -> Network:
        if not callable(stage):
            raise GraphError(
                f"the right side of | must be a layer builder such as nm.dense(8); got {stage!r}"
            )
        net = stage(self)
        if not isinstance(net, Network):
            raise GraphError(f"{stage!r} did not return a Network")
        return net

    # -- lookups ----------------------------------------------------------------------------
    def population(self, name: str) -> Population:
        try:
            return self._pop_index()[name]
        except KeyError:
            raise GraphError(f"no population named {name!r}") from None

    def _pop_index(self) -> dict[str, Population]:
        if "pops" not in self._memo:
            self._memo["pops"] = {p.name: p for p in self.populations}
        return self._memo["pops"]

    @property
    def input_population(self) -> Population:
        return self.populations[0]

    @property
    def n_inputs(self) -> int:
        return self.populations[0].size

    @property
    def n_outputs(self) -> int:
        return sum(len(ix) for _, ix in self.outputs)

    @property
    def output_population(self) -> Population | None:
        """The output population when the output is exactly one whole population, else None."""
        if len(self.outputs) == 1:
            name, ix = self.outputs[0]
            pop = self.population(name)
            if ix == tuple(range(pop.size)):
                return pop
        return None

    @property
    def is_recurrent(self) -> bool:
        """True when the network reads sequences (it has a recurrent synapse)."""
        return any(b.recurrent for b in self.blocks)

    @property
    def returns_sequences(self) -> bool:
        return self.is_recurrent and not any(
            self.population(p).static for p, _ in self.outputs
        )

    def incoming(self, name: str) -> tuple[Block, ...]:
        if "incoming" not in self._memo:
            table: dict[str, list[Block]] = {p.name: [] for p in self.populations}
            for b in self.blocks:
                table[b.target].append(b)
            self._memo["incoming"] = {k: tuple(v) for k, v in table.items()}
        return self._memo["incoming"][name]

    def layer_names(self) -> set[str]:
        return {layer.name for layer in self.layers}

    def next_layer_name(self, kind: str) -> str:
        taken = self.layer_names() | {p.name for p in self.populations}
        i = sum(1 for layer in self.layers if layer.kind == kind)
        while f"{kind}_{i}" in taken:
            i += 1
        return f"{kind}_{i}"

    # -- params ------------------------------------------------------------------------------
    def param_specs(self) -> tuple[ParamSpec, ...]:
        """Every trainable array in a fixed order (the order ``init`` draws them in)."""
        if "specs" in self._memo:
            return self._memo["specs"]
        specs: list[ParamSpec] = []
        for pop in self.populations:
            if pop.role == "input":
                continue
            blocks = self.incoming(pop.name)
            fan_in_total = 0
            for b in blocks:
                if b.kind == "dense":
                    src = self.population(b.source).size
                    fan_in_total += src if b.mask is None else int(b.mask.sum(axis=0).max(initial=0))
            for b in blocks:
                if b.kind != "dense":
                    continue
                shape = (self.population(b.source).size, pop.size)
                specs.append(ParamSpec(b.weight, shape, "weight", b.init, pop.activation,
                                       max(fan_in_total, 1), pop.size, b.mask))
            if pop.bias is not None:
                specs.append(ParamSpec(pop.bias, (pop.size,), "bias", "zeros", pop.activation,
                                       max(fan_in_total, 1), pop.size))
        # several populations may share one bias or weight key only if shapes agree
        seen: dict[str, ParamSpec] = {}
        unique = []
        for s in specs:
            if s.key in seen:
                if seen[s.key].shape != s.shape:
                    raise GraphError(f"param {s.key!r} is used with two shapes")
                continue
            seen[s.key] = s
            unique.append(s)
        self._memo["specs"] = tuple(unique)
        return self._memo["specs"]

    def init(self, seed: int = 0, dtype: str = "float32"):
        """Fresh params for this network, fully determined by ``seed``."""
        from .params import init_params

        return init_params(self, seed=seed, dtype=dtype)

    # -- running (delegated to engines) ---------------------------------------------------------
    def predict(self, params, X, engine: str = "tensor", batch_size: int | None = None,
                **engine_options) -> np.ndarray:
        """The network's output for inputs ``X`` ((batch, features) or (batch, time, features));
        ``batch_size=N`` computes it N samples at a time, in bounded memory (the same numbers)."""
        from ..engines import get_engine

        if batch_size is not None:
            engine_options["batch_size"] = batch_size
        return get_engine(engine).predict(self, params, X, **engine_options)

    def loss_and_grad(self, params, X, Y, loss: str = "mse", engine: str = "tensor",
                      **engine_options):
        """The mean loss over the batch and its gradient: a dict with the keys of ``params``."""
        from ..engines import get_engine

        return get_engine(engine).loss_and_grad(self, params, X, Y, loss=loss, **engine_options)

    # -- the neuron-level view ----------------------------------------------------------------
    def neurons(self) -> list[NeuronView]:
        """Every neuron with its incoming synapses: the graph the processes engine spawns."""
        views = []
        for pop in self.populations:
            if pop.role == "input":
                continue
            inputs: list[list[Synapse]] = [[] for _ in range(pop.size)]
            for b in self.incoming(pop.name):
                src = self.population(b.source)
                if b.kind == "one_to_one":
                    for i in range(pop.size):
                        inputs[i].append(Synapse(src.neuron_name(i), pop.neuron_name(i), None,
                                                 None, b.scale, b.recurrent))
                    continue
                for j in range(pop.size):
                    rows = range(src.size) if b.mask is None else np.flatnonzero(b.mask[:, j])
                    for i in rows:
                        inputs[j].append(Synapse(src.neuron_name(int(i)), pop.neuron_name(j),
                                                 b.weight, (int(i), j), None, b.recurrent))
            for j in range(pop.size):
                views.append(NeuronView(pop.neuron_name(j), pop.name, j, pop.activation,
                                        pop.aggregation,
                                        (pop.bias, j) if pop.bias is not None else None,
                                        tuple(inputs[j])))
        return views

    @property
    def n_neurons(self) -> int:
        return sum(p.size for p in self.populations if p.role != "input")

    # -- checks -------------------------------------------------------------------------------
    def _check(self) -> None:
        pops = self.populations
        if not pops or pops[0].role != "input":
            raise GraphError("a network starts with an input population: nm.inputs(n)")
        names = [p.name for p in pops]
        if len(set(names)) != len(names):
            raise GraphError(f"population names must be unique; got {names}")
        position = {n: i for i, n in enumerate(names)}
        for p in pops:
            if p.size < 1:
                raise GraphError(f"population {p.name!r} must have at least one neuron")
            get_activation(p.activation)
            if p.aggregation not in AGGREGATIONS:
                raise UnknownNameError(
                    f"unknown aggregation {p.aggregation!r}; choose one of: {', '.join(AGGREGATIONS)}"
                )
            if p.role == "input" and position[p.name] != 0:
                raise GraphError("only the first population may be the input population")
            if p.dropout:
                if isinstance(p.dropout, bool) or not isinstance(p.dropout, (int, float)) \
                        or not 0.0 < p.dropout < 1.0 or p.role == "input" or p.activation != "linear":
                    raise GraphError(f"population {p.name!r}: dropout needs a linear neuron population and "
                                     f"a rate in [0, 1); got rate {p.dropout!r}, activation {p.activation!r}")
        for b in self.blocks:
            if b.source not in position or b.target not in position:
                raise GraphError(f"block {b.source!r} -> {b.target!r} names an unknown population")
            if self.population(b.target).role == "input":
                raise GraphError("nothing may feed the input population")
            if not b.recurrent and position[b.source] >= position[b.target]:
                raise GraphError(
                    f"block {b.source!r} -> {b.target!r} goes backwards: a feed-forward synapse "
                    "must point to a later population (use a recurrent synapse for a loop)"
                )
            src, dst = self.population(b.source), self.population(b.target)
            if b.recurrent and src.dropout:
                raise GraphError(f"dropout population {b.source!r} feeds a recurrent synapse; dropout goes "
                                 "between layers, never on recurrent connections")
            if b.kind == "dense":
                if not b.weight:
                    raise GraphError(f"dense block {b.source!r} -> {b.target!r} needs a param key")
                if b.mask is not None and b.mask.shape != (src.size, dst.size):
                    raise GraphError(f"mask of block {b.source!r} -> {b.target!r} has the wrong shape")
            elif b.kind == "one_to_one":
                if src.size != dst.size:
                    raise GraphError(
                        f"one_to_one block {b.source!r} -> {b.target!r} joins populations of "
                        f"sizes {src.size} and {dst.size}; they must match"
                    )
            else:
                raise UnknownNameError(f"unknown block kind {b.kind!r}; use 'dense' or 'one_to_one'")
        for p in pops[1:]:
            if not self.incoming(p.name) and p.bias is None:
                raise GraphError(f"population {p.name!r} has no inputs and no bias")
        if self.populations[0].static and self.is_recurrent:
            raise GraphError("the input population of a recurrent network cannot be static")
        for name, ix in self.outputs:
            pop = self.population(name)
            if pop.role == "input" and len(pops) > 1:
                raise GraphError("an output must be a neuron, not an input")
            if not ix or min(ix) < 0 or max(ix) >= pop.size:
                raise GraphError(f"output indices {ix} out of range for population {name!r}")
        statics = {p.name for p in pops if p.static}
        for b in self.blocks:
            if b.target not in statics and b.source in statics:
                raise GraphError(
                    f"{b.target!r} reads sequences but {b.source!r} returns only the last step; "
                    "build the earlier recurrent layer with return_sequences=True"
                )
        if statics and not self.is_recurrent:
            raise GraphError("return_sequences only applies to recurrent networks")

    # -- display ----------------------------------------------------------------------------------
    def summary(self) -> str:
        """A table of layers, populations and param counts."""
        specs = {s.key: s for s in self.param_specs()}
        lines = [f"{'layer':<16}{'kind':<12}{'units':>7}  {'activation':<10}{'params':>9}"]
        total = 0
        for layer in self.layers:
            keys = {b.weight for p in layer.populations for b in self.incoming(p) if b.weight}
            keys |= {self.population(p).bias for p in layer.populations
                     if self.population(p).bias}
            n = sum(int(np.prod(specs[k].shape)) for k in keys if k in specs)
            total += n
            out = self.population(layer.output)
            lines.append(f"{layer.name:<16}{layer.kind:<12}{out.size:>7}  "
                         f"{out.activation:<10}{n:>9}")
        lines.append(f"total params: {total}")
        return "\n".join(lines)

    def _repr_png_(self) -> bytes | None:
        """Jupyter: the network's neurons and synapses (see ``nomagic.apps.draw.draw_network``)."""
        return render(self, None, "png")

    def _repr_svg_(self) -> str | None:
        data = render(self, None, "svg")
        return None if data is None else data.decode("utf-8")

    def __repr__(self) -> str:
        chain = " | ".join(
            f"{layer.kind}({self.population(layer.output).size})" for layer in self.layers
        )
        return f"Network({chain or 'empty'})"

    # -- (de)serialisable description ----------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready description: data only, so that loading never runs code."""

        def block(b: Block) -> dict:
            d = {"source": b.source, "target": b.target, "kind": b.kind, "weight": b.weight,
                 "recurrent": b.recurrent, "scale": b.scale, "init": b.init}
            if b.mask is not None:
                d["mask"] = [[int(i), int(j)] for i, j in zip(*np.nonzero(b.mask))]
            return d

        def population(p: Population) -> dict:
            d = {"name": p.name, "size": p.size, "activation": p.activation,
                 "aggregation": p.aggregation, "bias": p.bias, "role": p.role, "layer": p.layer,
                 "static": p.static, "labels": list(p.labels) if p.labels else None}
            if p.dropout:  # only then: files and fingerprints of networks without dropout stay as they were
                d["dropout"] = p.dropout
            return d

        return {
            "populations": [population(p) for p in self.populations],
            "blocks": [block(b) for b in self.blocks],
            "layers": [{"name": la.name, "kind": la.kind, "populations": list(la.populations),
                        "output": la.output, "config": dict(la.config)} for la in self.layers],
            "outputs": [[p, list(ix)] for p, ix in self.outputs],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Network:
        """Rebuild a network from ``to_dict``'s description (raises GraphError if malformed)."""
        try:
            pops = [Population(name=str(p["name"]), size=int(p["size"]),
                               activation=str(p["activation"]), aggregation=str(p["aggregation"]),
                               bias=None if p["bias"] is None else str(p["bias"]),
                               role=str(p["role"]), layer=str(p["layer"]),
                               static=bool(p["static"]),
                               labels=tuple(map(str, p["labels"])) if p.get("labels") else None,
                               dropout=float(p.get("dropout", 0.0)))
                    for p in d["populations"]]
            sizes = {p.name: p.size for p in pops}
            blocks = []
            for b in d["blocks"]:
                mask = None
                if b.get("mask") is not None:
                    mask = np.zeros((sizes[b["source"]], sizes[b["target"]]), dtype=bool)
                    for i, j in b["mask"]:
                        mask[int(i), int(j)] = True
                    mask.setflags(write=False)
                blocks.append(Block(source=str(b["source"]), target=str(b["target"]),
                                    kind=str(b["kind"]),
                                    weight=None if b["weight"] is None else str(b["weight"]),
                                    mask=mask, recurrent=bool(b["recurrent"]),
                                    scale=float(b["scale"]), init=str(b["init"])))
            layers = [Layer(str(la["name"]), str(la["kind"]), tuple(map(str, la["populations"])),
                            str(la["output"]), dict(la["config"])) for la in d["layers"]]
            outputs = [(str(p), tuple(int(i) for i in ix)) for p, ix in d["outputs"]]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise GraphError(f"malformed network description: {exc!r}") from None
        return cls(pops, blocks, layers, outputs)

    def __eq__(self, other) -> bool:
        return isinstance(other, Network) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))


def with_populations(net: Network, pops: Iterable[Population], blocks: Iterable[Block],
                     layer: Layer, outputs=None) -> Network:
    """A new network: ``net`` plus the given populations, blocks and layer record."""
    return Network(net.populations + tuple(pops), net.blocks + tuple(blocks),
                   net.layers + (layer,), outputs)


def replace_population(pop: Population, **changes) -> Population:
    return replace(pop, **changes)
