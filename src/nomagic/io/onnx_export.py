"""Export a network to ONNX: the same populations and blocks, spelled as ONNX operators.

    nm.export_onnx(model, "plan.onnx")            # a Model from nm.fit or nm.load
    nm.export_onnx(net, "net.onnx", params=params)

The graph has one input ``"X"`` ((batch, features), or (batch, time, features) for a recurrent
network; batch and time are dynamic) and one output ``"Y"``. Every population becomes a few
operators: a dense block is ``MatMul`` (a masked block's weights are multiplied by its mask at
export time), a one-to-one block is the source itself or a ``Mul`` by its fixed weight; the
contributions are added (``sum`` aggregation) or multiplied (``product``), the bias is an
``Add``, and the activation is ``Identity``, ``Sigmoid``, ``Tanh``, ``Relu``, ``Softmax``
(last axis) or, for ``step``, ``Cast(GreaterOrEqual(z, 0))``. Outputs that are parts of
several populations are gathered and concatenated.

A recurrent network becomes one ONNX ``Scan`` over the time axis whose body computes every
population that runs at each time step, exactly as the tensor engine does: a recurrent synapse
reads its source's value from the previous step (zeros before the first), the loop carries those
values as its state, so sequences of any length run. Populations that read only the last step
(``return_sequences=False``) are computed after the loop from its final state.

Weights are stored as initializers in the params' dtype (float32 or float64). The file is
checked with ``onnx.checker`` and written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ..errors import GraphError, InvalidInputError, ParamsError, require
from ..model.graph import Block, Network, Population
from ..model.params import check_params

MIN_OPSET = 13  # Softmax over the last axis alone, GreaterOrEqual, negative Gather indices

_ELEMENTWISE = {"linear": "Identity", "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}


def export_onnx(model_or_net, path: str | os.PathLike, params: Mapping[str, np.ndarray] | None = None,
                opset: int = 17) -> None:
    """Write ``model_or_net`` (a ``Model``, or a ``Network`` with ``params``) as an ONNX file.

    Runs in onnxruntime with the outputs of ``predict`` (input ``"X"``, output ``"Y"``, dynamic
    batch and sequence length). Needs the ``onnx`` package: ``pip install 'nomagic[onnx]'``.
    """
    if isinstance(getattr(model_or_net, "net", None), Network):  # a Model
        net = model_or_net.net
        if params is None:
            params = model_or_net.params
    elif isinstance(model_or_net, Network):
        net = model_or_net
        if params is None:
            raise ParamsError("exporting a Network needs its params: "
                              "nm.export_onnx(net, path, params=params) (or export a trained Model)")
    else:
        raise InvalidInputError(f"export_onnx needs a Model (from nm.fit or nm.load) or a Network; "
                                f"got {type(model_or_net).__name__}")
    if not isinstance(path, (str, os.PathLike)) or not str(os.fspath(path)):
        raise InvalidInputError(f"path must be a file name; got {path!r}")
    onnx = require("onnx", "onnx")
    newest = int(onnx.defs.onnx_opset_version())
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise InvalidInputError(f"opset must be an integer from {MIN_OPSET} to {newest}; got {opset!r}")
    P = check_params(net, params)
    dt = next(iter(P.values())).dtype if P else np.dtype(np.float32)

    model = _Exporter(onnx, net, P, dt).build(int(opset))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:  # a bug here, not a user error; still say so clearly
        raise GraphError(f"the exported ONNX graph failed onnx's checker: {exc}") from exc

    from .safetensors import atomic_write_bytes

    atomic_write_bytes(path, model.SerializeToString())


class _Graph:
    """Nodes of one ONNX graph (the main graph or the Scan body), with fresh value names."""

    def __init__(self, exporter: _Exporter, prefix: str) -> None:
        self.ex = exporter
        self.prefix = prefix
        self.nodes: list = []

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.ex.fresh(self.prefix + hint)
        self.nodes.append(self.ex.helper.make_node(op_type, inputs, [out], **attrs))
        return out


class _Exporter:
    def __init__(self, onnx, net: Network, P: Mapping[str, np.ndarray], dt: np.dtype) -> None:
        self.onnx, self.helper, self.numpy_helper = onnx, onnx.helper, onnx.numpy_helper
        self.net, self.P, self.dt = net, P, dt
        self.elem = onnx.TensorProto.DOUBLE if dt == np.float64 else onnx.TensorProto.FLOAT
        self.initializers: list = []
        self.used: set[str] = {"X", "Y"}
        self.consts: dict = {}
        self.weights: dict = {}
        self.main = _Graph(self, "")

    # -- names, constants, weights -----------------------------------------------------------
    def fresh(self, hint: str) -> str:
        name, i = hint, 1
        while name in self.used:
            name, i = f"{hint}_{i}", i + 1
        self.used.add(name)
        return name

    def initializer(self, array: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, value: float) -> str:
        """A scalar of the params' dtype (shared by every graph through the outer scope)."""
        key = ("scalar", float(value))
        if key not in self.consts:
            self.consts[key] = self.initializer(np.array(value, dtype=self.dt), f"const_{value:g}")
        return self.consts[key]

    def weight(self, b: Block) -> str:
        """A dense block's weight matrix; a masked block's is multiplied by its mask here."""
        if b.mask is None:
            key = (b.weight, None)
            if key not in self.weights:
                self.weights[key] = self.initializer(np.asarray(self.P[b.weight], dtype=self.dt), b.weight)
        else:
            key = (b.weight, id(b))
            if key not in self.weights:
                w = np.asarray(self.P[b.weight], dtype=self.dt) * b.mask
                self.weights[key] = self.initializer(w.astype(self.dt), f"{b.weight}.masked")
        return self.weights[key]

    def bias(self, key: str) -> str:
        k = ("bias", key)
        if k not in self.weights:
            self.weights[k] = self.initializer(np.asarray(self.P[key], dtype=self.dt), key)
        return self.weights[k]

    def batch_dim(self) -> str:
        """The batch size of ``X`` as a 1-D int64 tensor (computed in the main graph)."""
        if "batch" not in self.consts:
            shape = self.main.op("Shape", ["X"], "X_shape")
            zero = self.initializer(np.array([0], dtype=np.int64), "axis0")
            self.consts["batch"] = self.main.op("Gather", [shape, zero], "batch_size", axis=0)
        return self.consts["batch"]

    def zeros(self, size: int) -> str:
        """Zeros of shape (batch, size), in the main graph (the Scan body reads them too)."""
        key = ("zeros", size)
        if key not in self.consts:
            width = self.initializer(np.array([size], dtype=np.int64), f"width_{size}")
            shape = self.main.op("Concat", [self.batch_dim(), width], f"shape_b_{size}", axis=0)
            value = self.helper.make_tensor("value", self.elem, [1], [0.0])
            self.consts[key] = self.main.op("ConstantOfShape", [shape], f"zeros_{size}", value=value)
        return self.consts[key]

    # -- one population ---------------------------------------------------------------------------
    def population(self, g: _Graph, pop: Population, read) -> str:
        """Emit ``activation(aggregate(contributions) + bias)``; ``read(block)`` names a source."""
        terms = []
        for b in self.net.incoming(pop.name):
            x = read(b)
            if b.kind == "dense":
                terms.append(g.op("MatMul", [x, self.weight(b)], f"{pop.name}.{b.source}.xW"))
            elif b.scale == 1.0:
                terms.append(x)
            else:
                terms.append(g.op("Mul", [x, self.const(b.scale)], f"{pop.name}.{b.source}.scaled"))
        combine = "Mul" if pop.aggregation == "product" else "Add"
        z = terms[0] if terms else None
        for t in terms[1:]:
            z = g.op(combine, [z, t], f"{pop.name}.{'prod' if combine == 'Mul' else 'sum'}")
        if pop.bias is not None:
            z = g.op("Add", [z if z is not None else self.zeros(pop.size), self.bias(pop.bias)],
                     f"{pop.name}.z")
        if z is None:  # cannot happen for a checked network (a population needs inputs or a bias)
            raise GraphError(f"population {pop.name!r} has no inputs and no bias")
        act = pop.activation
        if act == "softmax":
            return g.op("Softmax", [z], f"{pop.name}.a", axis=-1)
        if act == "step":
            ge = g.op("GreaterOrEqual", [z, self.const(0.0)], f"{pop.name}.ge0")
            return g.op("Cast", [ge], f"{pop.name}.a", to=self.elem)
        if act not in _ELEMENTWISE:
            raise GraphError(f"activation {act!r} cannot be exported to ONNX")
        return g.op(_ELEMENTWISE[act], [z], f"{pop.name}.a")

    # -- the whole network -------------------------------------------------------------------------
    def build(self, opset: int):
        helper, net = self.helper, self.net
        if net.is_recurrent:
            x_shape = ["batch", "time", net.n_inputs]
            values, seq = self.recurrent()
        else:
            x_shape = ["batch", net.n_inputs]
            values, seq = self.feedforward(), False
        parts = []
        for name, ix in net.outputs:
            v = values[name]
            if tuple(ix) != tuple(range(net.population(name).size)):
                idx = self.initializer(np.array(ix, dtype=np.int64), f"{name}.out_index")
                v = self.main.op("Gather", [v, idx], f"{name}.out", axis=-1)
            parts.append(v)
        y = parts[0] if len(parts) == 1 else self.main.op("Concat", parts, "outputs", axis=-1)
        self.main.nodes.append(helper.make_node("Identity", [y], ["Y"]))
        y_shape = (["batch", "time"] if seq else ["batch"]) + [net.n_outputs]
        graph = helper.make_graph(
            self.main.nodes, "nomagic",
            [helper.make_tensor_value_info("X", self.elem, x_shape)],
            [helper.make_tensor_value_info("Y", self.elem, y_shape)],
            initializer=self.initializers,
        )
        opsets = [helper.make_opsetid("", opset)]
        from ..version import __version__

        model = helper.make_model(graph, opset_imports=opsets, producer_name="nomagic",
                                  producer_version=__version__,
                                  doc_string=f"nomagic network: {net!r}")
        model.ir_version = helper.find_min_ir_version_for(opsets)
        return model

    def feedforward(self) -> dict[str, str]:
        net = self.net
        values = {net.populations[0].name: "X"}
        for pop in net.populations[1:]:
            values[pop.name] = self.population(self.main, pop, lambda b: values[b.source])
        return values

    def recurrent(self) -> tuple[dict[str, str], bool]:
        """A Scan over time for every per-step population, then the last-step populations."""
        helper, net = self.helper, self.net
        inp = net.populations[0].name
        steps = [p for p in net.populations[1:] if not p.static]
        statics = [p for p in net.populations[1:] if p.static]
        static_names = {p.name for p in statics}
        for b in net.blocks:
            if b.recurrent and b.source in static_names:
                raise GraphError(f"recurrent block {b.source!r} -> {b.target!r} reads a last-step "
                                 "population; it cannot be exported")
        # the loop carries: sources of recurrent synapses (their previous value), and the
        # per-step populations that last-step populations read (their final value)
        carried: list[str] = []
        for b in net.blocks:
            want = b.recurrent or (b.target in static_names and b.source not in static_names
                                   and b.source != inp)
            if want and b.source not in carried:
                carried.append(b.source)
        sizes = {p.name: p.size for p in net.populations}
        seq = net.returns_sequences
        if not seq and any(name not in static_names for name, _ in net.outputs):
            raise GraphError("the outputs mix whole sequences and last steps; they cannot be "
                             "concatenated")
        seq_outs = list(dict.fromkeys(name for name, _ in net.outputs)) if seq else []

        body = _Graph(self, "step/")
        prev = {name: self.fresh(f"step/prev/{name}") for name in carried}
        x_t = self.fresh("step/x")
        current = {inp: x_t}

        def read_step(b: Block) -> str:
            return prev[b.source] if b.recurrent else current[b.source]

        for pop in steps:
            current[pop.name] = self.population(body, pop, read_step)
        body_outputs, state_out, seq_out = [], [], []
        for name in carried:
            out = body.op("Identity", [current[name]], f"next/{name}")
            body_outputs.append(helper.make_tensor_value_info(out, self.elem, [None, sizes[name]]))
            state_out.append(self.fresh(f"final/{name}"))
        for name in seq_outs:
            out = body.op("Identity", [current[name]], f"out/{name}")
            body_outputs.append(helper.make_tensor_value_info(out, self.elem, [None, sizes[name]]))
            seq_out.append(self.fresh(f"sequence/{name}"))
        body_inputs = [helper.make_tensor_value_info(prev[n], self.elem, [None, sizes[n]]) for n in carried]
        body_inputs.append(helper.make_tensor_value_info(x_t, self.elem, [None, net.n_inputs]))
        body_graph = helper.make_graph(body.nodes, "time_step", body_inputs, body_outputs)

        initial = [self.zeros(sizes[n]) for n in carried]  # recurrent values start at zero
        attrs = {"body": body_graph, "num_scan_inputs": 1, "scan_input_axes": [1]}
        if seq_out:
            attrs["scan_output_axes"] = [1] * len(seq_out)  # (batch, time, n) like predict
        self.main.nodes.append(helper.make_node("Scan", initial + ["X"], state_out + seq_out,
                                                name="time_loop", **attrs))
        final = dict(zip(carried, state_out))
        values = dict(zip(seq_outs, seq_out))
        last_x = None

        def read_static(b: Block) -> str:
            nonlocal last_x
            if b.source in static_names:
                return values[b.source]
            if b.source == inp:  # the last time step of the input
                if last_x is None:
                    idx = self.initializer(np.array(-1, dtype=np.int64), "last_step")
                    last_x = self.main.op("Gather", ["X", idx], "X_last", axis=1)
                return last_x
            return final[b.source]

        for pop in statics:
            values[pop.name] = self.population(self.main, pop, read_static)
        return values, seq
