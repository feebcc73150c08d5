"""Params to and from PyTorch, and the same network as a torch ``nn.Module``.

A network piped from ``nm.dense``, ``nm.recurrent``, ``nm.lstm``, ``nm.gru`` and ``nm.dropout`` layers maps onto
an ``nn.ModuleDict`` with one module per layer, keyed by our layer names, so the state-dict keys
are ``<layer>.<torch name>``:

=============  =================  =============================================================
our layer      torch module       state-dict entries (ours → torch)
=============  =================  =============================================================
dense          ``nn.Linear``      ``weight`` = W.T (out, in), ``bias`` = b
recurrent      ``nn.RNN``         ``weight_ih_l0`` = W.T, ``weight_hh_l0`` = U.T,
                                  ``bias_ih_l0`` = b, ``bias_hh_l0`` = 0
lstm           ``nn.LSTM``        gates stacked in torch's order i, f, g, o:
                                  ``weight_ih_l0`` = [W_i.T; W_f.T; W_g.T; W_o.T], likewise
                                  ``weight_hh_l0`` from U, ``bias_ih_l0`` = [b_i; b_f; b_g; b_o],
                                  ``bias_hh_l0`` = 0
gru            ``nn.GRU``         gates in torch's order r, z, n: ``weight_ih_l0`` from W,
                                  ``weight_hh_l0`` from U, ``bias_ih_l0`` = [b_r; b_z; b_n],
                                  ``bias_hh_l0`` = [0; 0; b_hn]
dropout        ``nn.Dropout``     none (the identity at inference, in ``eval()`` mode; in
                                  ``train()`` mode torch draws its own masks, not ours)
=============  =================  =============================================================

Torch keeps two biases per gate where one is enough (they are only ever added), except the GRU's
n gate, whose hidden bias sits inside the reset product. So ``to_torch_state_dict`` writes our
bias into ``bias_ih`` and zeros into ``bias_hh``, and ``from_torch_state_dict`` adds them back
up (keeping ``b_hn`` apart). Torch is optional: ``pip install 'nomagic[torch]'``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..engines.cache import PlanCache
from ..errors import GraphError, InvalidInputError, ParamsError, require
from ..model.chains import CHAIN_KINDS, why_not_chain
from ..model.gates import GATES
from ..model.graph import Network
from ..model.params import Params, as_dtype, check_params

SUPPORTED = CHAIN_KINDS
TORCH_RNN_ACTIVATIONS = ("tanh", "relu")


def _torch():
    return require("torch", "torch")


def _check_chain(net: Network) -> tuple:
    why = why_not_chain(net)
    if why is not None:
        raise GraphError(f"torch conversion needs a plain chain of {', '.join(SUPPORTED)} layers piped from "
                         f"nm.inputs(n); this network is not one: {why}")
    return tuple(net.layers[1:])


_LAYERS: PlanCache[tuple] = PlanCache()


def _layers(net: Network):
    """The network's trainable layers, after checking it is a plain chain of supported layers."""
    if not isinstance(net, Network):
        raise InvalidInputError(f"expected a Network; got {type(net).__name__}")
    return _LAYERS.get(net, _check_chain)


def _in_size(net: Network, layer) -> int:
    """The width of what ``layer`` reads: the previous layer's output size."""
    index = net.layers.index(layer)
    prev = net.layers[index - 1]
    return net.population(prev.output).size


def _torch_shapes(net: Network) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the torch twin, with its shape, in torch's order."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in _layers(net):
        if layer.kind == "dropout":  # no params
            continue
        units, n_in = int(layer.config["units"]), _in_size(net, layer)
        if layer.kind == "dense":
            shapes[f"{layer.name}.weight"] = (units, n_in)
            if layer.config["bias"]:
                shapes[f"{layer.name}.bias"] = (units,)
            continue
        k = len(GATES.get(layer.kind, ("h",)))
        shapes[f"{layer.name}.weight_ih_l0"] = (k * units, n_in)
        shapes[f"{layer.name}.weight_hh_l0"] = (k * units, units)
        shapes[f"{layer.name}.bias_ih_l0"] = (k * units,)
        shapes[f"{layer.name}.bias_hh_l0"] = (k * units,)
    return shapes


def to_torch_state_dict(net: Network, params) -> dict:
    """Our params as the state dict of ``nm.torch_module(net)`` (``dict[str, torch.Tensor]``,
    same dtype as the params; new tensors that share no memory with ``params``)."""
    torch = _torch()
    layers = _layers(net)
    P = check_params(net, params)
    out: dict[str, np.ndarray] = {}
    for layer in layers:
        name = layer.name
        if layer.kind == "dropout":  # no params
            continue
        if layer.kind == "dense":
            out[f"{name}.weight"] = P[f"{name}.weight"].T
            if layer.config["bias"]:
                out[f"{name}.bias"] = P[f"{name}.bias"]
            continue
        if layer.kind == "recurrent":
            W, U, b = P[f"{name}.W"], P[f"{name}.U"], P[f"{name}.b"]
            b_hh = np.zeros_like(b)
        else:
            gates = GATES[layer.kind]
            W = np.concatenate([P[f"{name}.W_{g}"] for g in gates], axis=1)
            U = np.concatenate([P[f"{name}.U_{g}"] for g in gates], axis=1)
            b = np.concatenate([P[f"{name}.b_{g}"] for g in gates])
            b_hh = np.zeros_like(b)
            if layer.kind == "gru":
                units = int(layer.config["units"])
                b_hh[2 * units:] = P[f"{name}.b_hn"]
        out[f"{name}.weight_ih_l0"] = W.T
        out[f"{name}.weight_hh_l0"] = U.T
        out[f"{name}.bias_ih_l0"] = b
        out[f"{name}.bias_hh_l0"] = b_hh
    return {k: torch.from_numpy(np.array(v, copy=True, order="C")) for k, v in out.items()}


def _to_numpy(key: str, value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    detach = getattr(value, "detach", None)
    if detach is None:
        raise ParamsError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
    t = detach().cpu()
    if not t.is_floating_point():
        raise ParamsError(f"state dict entry {key!r} has dtype {t.dtype}; expected floats")
    if t.dtype not in (_torch().float32, _torch().float64):
        t = t.double()  # float16 / bfloat16 widen exactly
    return t.numpy()


def from_torch_state_dict(net: Network, state_dict, dtype=None) -> Params:
    """Params for ``net`` from a torch state dict (or module) laid out like ``nm.torch_module``.

    ``dtype`` (float32 or float64) defaults to the tensors' own (float64 if they are float64,
    else float32). Torch's two biases per gate are added up into our one; the GRU's hidden
    n-gate bias becomes ``b_hn``. Missing, extra or misshapen entries raise ``ParamsError``.
    """
    layers = _layers(net)
    if hasattr(state_dict, "state_dict") and callable(state_dict.state_dict):
        state_dict = state_dict.state_dict()
    if not isinstance(state_dict, Mapping):
        raise ParamsError(f"expected a torch state dict (a mapping of name → tensor); got "
                          f"{type(state_dict).__name__}")
    shapes = _torch_shapes(net)
    got = set(state_dict)
    if got != set(shapes):
        missing, extra = sorted(set(shapes) - got), sorted(got - set(shapes))
        raise ParamsError("the state dict does not match the network: "
                          + (f"missing {missing}" if missing else "")
                          + ("; " if missing and extra else "")
                          + (f"unexpected {extra}" if extra else "")
                          + " (build the torch model with nm.torch_module(net))")
    S = {}
    for key, shape in shapes.items():
        a = _to_numpy(key, state_dict[key])
        if tuple(a.shape) != shape:
            raise ParamsError(f"state dict entry {key!r} has shape {tuple(a.shape)}; the network "
                              f"needs {shape}")
        S[key] = a
    if dtype is None:
        dt = np.dtype(np.float64) if all(a.dtype == np.float64 for a in S.values()) and S \
            else np.dtype(np.float32)
    else:
        dt = as_dtype(dtype)
    S = {k: np.asarray(v, dtype=np.float64) for k, v in S.items()}  # sums in float64, then round
    ours: dict[str, np.ndarray] = {}
    for layer in layers:
        name = layer.name
        if layer.kind == "dropout":  # no params
            continue
        if layer.kind == "dense":
            ours[f"{name}.weight"] = S[f"{name}.weight"].T
            if layer.config["bias"]:
                ours[f"{name}.bias"] = S[f"{name}.bias"]
            continue
        W, U = S[f"{name}.weight_ih_l0"].T, S[f"{name}.weight_hh_l0"].T
        b_ih, b_hh = S[f"{name}.bias_ih_l0"], S[f"{name}.bias_hh_l0"]
        if layer.kind == "recurrent":
            ours[f"{name}.W"], ours[f"{name}.U"], ours[f"{name}.b"] = W, U, b_ih + b_hh
            continue
        units = int(layer.config["units"])
        for k, g in enumerate(GATES[layer.kind]):
            cols = slice(k * units, (k + 1) * units)
            ours[f"{name}.W_{g}"] = W[:, cols]
            ours[f"{name}.U_{g}"] = U[:, cols]
            if layer.kind == "gru" and g == "n":
                ours[f"{name}.b_n"] = b_ih[cols]
                ours[f"{name}.b_hn"] = b_hh[cols]
            else:
                ours[f"{name}.b_{g}"] = b_ih[cols] + b_hh[cols]
    arrays = {s.key: np.array(ours[s.key], dtype=dt, order="C") for s in net.param_specs()}
    check_params(net, arrays)  # finite values
    return Params._adopt(arrays)


def _activation(torch, name: str):
    if name == "linear":
        return None
    if name == "step":
        return lambda z: (z >= 0).to(z.dtype)
    if name == "softmax":
        return lambda z: torch.softmax(z, dim=-1)
    return getattr(torch, name)  # sigmoid, tanh, relu


_MODULE_CLASS = None


def _module_class():
    """``NomagicTorchModel``: an ``nn.ModuleDict`` that runs its layers in order."""
    global _MODULE_CLASS
    if _MODULE_CLASS is not None:
        return _MODULE_CLASS
    torch = _torch()

    class NomagicTorchModel(torch.nn.ModuleDict):
        """The torch twin of a nomagic network: layers keyed by our layer names, run in order.

        Inputs: (batch, features) or (batch, time, features) with ``batch_first=True``.
        """

        def __init__(self, specs) -> None:
            super().__init__({name: module for name, module, _, _ in specs})
            self._plan = [(name, kind, extra) for name, _, kind, extra in specs]

        def forward(self, x):
            for name, kind, extra in self._plan:
                module = self[name]
                if kind == "dense":
                    x = module(x)
                    if extra is not None:
                        x = _activation(torch, extra)(x)
                elif kind == "dropout":  # nn.Dropout: the identity in eval mode
                    x = module(x)
                else:
                    x, _ = module(x)
                    if not extra:  # return_sequences=False: the last step only
                        x = x[:, -1]
            return x

    _MODULE_CLASS = NomagicTorchModel
    return _MODULE_CLASS


def torch_module(net: Network, params=None, dtype=None):
    """The same network as a torch ``nn.Module`` (an ``nn.ModuleDict`` of ``nn.Linear``,
    ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` with ``batch_first=True``) whose forward applies the
    activations and keeps the last step where a layer has ``return_sequences=False``.

    With ``params``, their values are loaded into it (in their dtype, unless ``dtype`` is
    given); otherwise it keeps torch's own initialisation (float32, or ``dtype``).
    """
    torch = _torch()
    nn = torch.nn
    layers = _layers(net)
    specs = []
    for layer in layers:
        c = layer.config
        if layer.kind == "dropout":
            specs.append((layer.name, nn.Dropout(float(c["rate"])), "dropout", None))
            continue
        units, n_in = int(c["units"]), _in_size(net, layer)
        if layer.kind == "dense":
            act = c["activation"]
            specs.append((layer.name, nn.Linear(n_in, units, bias=bool(c["bias"])), "dense",
                          None if act == "linear" else act))
            continue
        if layer.kind == "recurrent":
            if c["activation"] not in TORCH_RNN_ACTIVATIONS:
                raise GraphError(f"layer {layer.name!r} uses activation {c['activation']!r}; torch's "
                                 f"nn.RNN knows only {' and '.join(TORCH_RNN_ACTIVATIONS)}")
            module = nn.RNN(n_in, units, nonlinearity=c["activation"], batch_first=True)
        else:
            module = (nn.LSTM if layer.kind == "lstm" else nn.GRU)(n_in, units, batch_first=True)
        specs.append((layer.name, module, layer.kind, bool(c["return_sequences"])))
    try:
        model = _module_class()(specs)
    except KeyError as exc:  # a layer name that clashes with an nn.Module attribute
        raise GraphError(f"a layer name cannot be used as a torch module name: {exc}") from None
    if params is not None:
        state = to_torch_state_dict(net, params)
        if dtype is not None:
            state = {k: v.to(getattr(torch, as_dtype(dtype).name)) for k, v in state.items()}
        model = model.to(next(iter(state.values())).dtype) if state else model
        model.load_state_dict(state)
    elif dtype is not None:
        model = model.to(getattr(torch, as_dtype(dtype).name))
    return model
