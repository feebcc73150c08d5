"""Params to and from PyTorch state dicts, and ``nm.torch_module``: round trips per layer kind."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import random_params

import nomagic as nm
from nomagic.model.graph import Network

torch = pytest.importorskip("torch")


def nets():
    """One network per layer kind (and a few mixtures), labelled for pytest ids."""
    return {
        "dense": nm.inputs(3) | nm.dense(4, "tanh") | nm.dense(2, "softmax"),
        "dense_no_bias": nm.inputs(3) | nm.dense(4, "relu", bias=False) | nm.dense(1, "sigmoid"),
        "recurrent": nm.inputs(3) | nm.recurrent(4) | nm.dense(2),
        "recurrent_relu_seq": nm.inputs(3) | nm.recurrent(4, "relu", return_sequences=True),
        "lstm": nm.inputs(3) | nm.lstm(4) | nm.dense(2),
        "lstm_seq": nm.inputs(3) | nm.dense(5, "tanh") | nm.lstm(4, return_sequences=True)
        | nm.dense(2, "sigmoid"),
        "gru": nm.inputs(3) | nm.gru(4) | nm.dense(2),
        "gru_seq": nm.inputs(3) | nm.gru(4, return_sequences=True),
        "stacked": nm.inputs(3) | nm.lstm(4, return_sequences=True) | nm.gru(3, return_sequences=True)
        | nm.recurrent(5) | nm.dense(2, "tanh") | nm.dense(1),
    }


NETS = nets()
KINDS = list(NETS)


def inputs_for(net, rng, batch=4, time=6):
    shape = (batch, time, net.n_inputs) if net.is_recurrent else (batch, net.n_inputs)
    return rng.normal(size=shape)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ours_to_torch_to_ours_is_identical(kind, dtype):
    net = NETS[kind]
    params = random_params(net, seed=3).astype(dtype)
    state = nm.to_torch_state_dict(net, params)
    model = nm.torch_module(net)
    assert list(state) == list(model.state_dict())  # same keys, in torch's own order
    for key, tensor in state.items():
        assert tensor.dtype == getattr(torch, dtype)
        assert tuple(tensor.shape) == tuple(model.state_dict()[key].shape), key
    back = nm.from_torch_state_dict(net, state)
    assert list(back) == [s.key for s in net.param_specs()]
    for key in params:
        assert back[key].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(back[key], params[key], err_msg=key)


@pytest.mark.parametrize("kind", KINDS)
def test_torch_to_ours_to_torch_identical_up_to_bias_split(kind):
    net = NETS[kind]
    torch.manual_seed(0)
    model = nm.torch_module(net, dtype="float64")  # torch's own init: both biases non-zero
    original = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = nm.from_torch_state_dict(net, model)  # a module is accepted as well as its state dict
    assert params.dtype == np.float64
    again = nm.to_torch_state_dict(net, params)
    assert list(again) == list(original)
    gru_layers = {la.name for la in net.layers if la.kind == "gru"}
    for key, value in original.items():
        if "bias_" not in key or key.endswith(".bias"):
            assert torch.equal(again[key], value), key
            continue
        if key.endswith("bias_hh_l0"):
            continue  # checked with its bias_ih partner
        hh = key.replace("bias_ih_l0", "bias_hh_l0")
        layer = key.split(".")[0]
        total_before = original[key] + original[hh]
        total_after = again[key] + again[hh]
        if layer in gru_layers:  # the n gate keeps its two biases apart
            u = value.shape[0] // 3
            assert torch.equal(total_after[:2 * u], total_before[:2 * u])
            assert torch.equal(again[key][2 * u:], original[key][2 * u:])
            assert torch.equal(again[hh][2 * u:], original[hh][2 * u:])
            assert torch.all(again[hh][:2 * u] == 0)
        else:
            assert torch.equal(total_after, total_before)
            assert torch.all(again[hh] == 0)
    # and the same function: torch model and nomagic agree
    x = inputs_for(net, np.random.default_rng(1))
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.predict(params, x), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_torch_module_computes_the_same_function(kind, rng):
    net = NETS[kind]
    params = random_params(net, seed=5)
    model = nm.torch_module(net, params)
    assert next(model.parameters()).dtype == torch.float64
    x = inputs_for(net, rng)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    ours = net.predict(params, x)
    assert got.shape == ours.shape
    np.testing.assert_allclose(got, ours, rtol=0, atol=1e-12)
    model32 = nm.torch_module(net, params, dtype="float32")
    assert next(model32.parameters()).dtype == torch.float32


def test_state_dict_layout_matches_the_documentation():
    net = nm.inputs(2) | nm.gru(3) | nm.dense(1)
    p = dict(random_params(net, seed=0))
    s = nm.to_torch_state_dict(net, p)
    np.testing.assert_array_equal(s["gru_0.weight_ih_l0"].numpy(),
                                  np.concatenate([p["gru_0.W_r"], p["gru_0.W_z"], p["gru_0.W_n"]], 1).T)
    np.testing.assert_array_equal(s["gru_0.weight_hh_l0"].numpy(),
                                  np.concatenate([p["gru_0.U_r"], p["gru_0.U_z"], p["gru_0.U_n"]], 1).T)
    np.testing.assert_array_equal(s["gru_0.bias_ih_l0"].numpy(),
                                  np.concatenate([p["gru_0.b_r"], p["gru_0.b_z"], p["gru_0.b_n"]]))
    np.testing.assert_array_equal(s["gru_0.bias_hh_l0"].numpy(), np.concatenate([np.zeros(6), p["gru_0.b_hn"]]))
    np.testing.assert_array_equal(s["dense_0.weight"].numpy(), p["dense_0.weight"].T)
    net = nm.inputs(2) | nm.lstm(3, name="memory")
    p = dict(random_params(net, seed=0))
    s = nm.to_torch_state_dict(net, p)
    assert list(s) == ["memory.weight_ih_l0", "memory.weight_hh_l0", "memory.bias_ih_l0", "memory.bias_hh_l0"]
    np.testing.assert_array_equal(s["memory.bias_ih_l0"].numpy(),
                                  np.concatenate([p[f"memory.b_{g}"] for g in "ifgo"]))
    net = nm.inputs(2) | nm.recurrent(3)
    p = dict(random_params(net, seed=0))
    s = nm.to_torch_state_dict(net, p)
    np.testing.assert_array_equal(s["recurrent_0.weight_hh_l0"].numpy(), p["recurrent_0.U"].T)
    np.testing.assert_array_equal(s["recurrent_0.bias_hh_l0"].numpy(), np.zeros(3))
    # tensors own their memory: changing one leaves the params alone
    s["recurrent_0.weight_ih_l0"][0, 0] = 123.0
    assert p["recurrent_0.W"][0, 0] != 123.0


def test_float16_state_dict_widens():
    net = nm.inputs(2) | nm.dense(2)
    state = {"dense_0.weight": torch.ones(2, 2, dtype=torch.float16), "dense_0.bias": torch.zeros(2)}
    p = nm.from_torch_state_dict(net, state)
    assert p.dtype == np.float32
    assert nm.from_torch_state_dict(net, state, dtype="float64").dtype == np.float64
    np.testing.assert_array_equal(p["dense_0.weight"], np.ones((2, 2)))


# -- errors --------------------------------------------------------------------------------------


def test_graph_builder_networks_are_refused():
    g = nm.GraphBuilder(2)
    h = g.neuron(g.inputs, activation="tanh")
    g.connect(h, h, recurrent=True)
    net = g.build([h])
    with pytest.raises(nm.GraphError, match="GraphBuilder"):
        nm.to_torch_state_dict(net, net.init())
    with pytest.raises(nm.GraphError, match="GraphBuilder"):
        nm.from_torch_state_dict(net, {})
    with pytest.raises(nm.GraphError, match="GraphBuilder"):
        nm.torch_module(net)


def test_a_changed_network_is_refused():
    net = nm.inputs(2) | nm.dense(3) | nm.dense(1)
    d = net.to_dict()
    d["blocks"].append({"source": "inputs", "target": "dense_1", "kind": "dense", "weight": "skip",
                        "recurrent": False, "scale": 1.0, "init": "auto"})
    changed = Network.from_dict(d)
    with pytest.raises(nm.GraphError, match="plain chain"):
        nm.to_torch_state_dict(changed, changed.init())


def test_not_a_network():
    with pytest.raises(nm.InvalidInputError, match="Network"):
        nm.torch_module("lstm")


def test_state_dict_mismatches():
    net = nm.inputs(3) | nm.lstm(4) | nm.dense(2)
    good = nm.to_torch_state_dict(net, net.init(dtype="float64"))
    missing = dict(good)
    del missing["lstm_0.bias_hh_l0"]
    with pytest.raises(nm.ParamsError, match=r"missing \['lstm_0.bias_hh_l0'\]"):
        nm.from_torch_state_dict(net, missing)
    extra = {**good, "lstm_0.weight_ih_l1": torch.zeros(16, 4)}
    with pytest.raises(nm.ParamsError, match="unexpected.*weight_ih_l1"):
        nm.from_torch_state_dict(net, extra)
    shaped = {**good, "dense_0.weight": torch.zeros(2, 5)}
    with pytest.raises(nm.ParamsError, match=r"dense_0.weight.*\(2, 5\).*\(2, 4\)"):
        nm.from_torch_state_dict(net, shaped)
    other = nm.torch_module(nm.inputs(3) | nm.gru(4) | nm.dense(2))
    with pytest.raises(nm.ParamsError, match="missing"):
        nm.from_torch_state_dict(net, other)
    with pytest.raises(nm.ParamsError, match="not a tensor"):
        nm.from_torch_state_dict(net, {**good, "dense_0.bias": [0.0, 0.0]})
    with pytest.raises(nm.ParamsError, match="floats"):
        nm.from_torch_state_dict(net, {**good, "dense_0.bias": torch.zeros(2, dtype=torch.int64)})
    with pytest.raises(nm.ParamsError, match="NaN"):
        nm.from_torch_state_dict(net, {**good, "dense_0.bias": torch.tensor([0.0, float("nan")])})
    with pytest.raises(nm.ParamsError, match="state dict"):
        nm.from_torch_state_dict(net, [1, 2, 3])
    with pytest.raises(nm.InvalidInputError, match="dtype"):
        nm.from_torch_state_dict(net, good, dtype="int8")


def test_params_that_do_not_fit():
    net = nm.inputs(3) | nm.gru(4)
    with pytest.raises(nm.ParamsError):
        nm.to_torch_state_dict(net, (nm.inputs(3) | nm.lstm(4)).init())
    with pytest.raises(nm.ParamsError):
        nm.torch_module(net, {"gru_0.W_r": np.zeros((3, 4))})


def test_rnn_activation_torch_lacks():
    net = nm.inputs(2) | nm.recurrent(3, "sigmoid")
    with pytest.raises(nm.GraphError, match="tanh and relu"):
        nm.torch_module(net)
    # the params themselves still convert both ways
    p = random_params(net)
    back = nm.from_torch_state_dict(net, nm.to_torch_state_dict(net, p))
    np.testing.assert_array_equal(back["recurrent_0.U"], p["recurrent_0.U"])


def test_layer_name_that_torch_cannot_use():
    net = nm.inputs(2) | nm.dense(3, name="keys")
    with pytest.raises(nm.GraphError, match="torch module name"):
        nm.torch_module(net)


def test_missing_torch_is_a_clear_error(monkeypatch):
    net = nm.inputs(2) | nm.dense(1)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(nm.MissingDependencyError, match=r"nomagic\[torch\]"):
        nm.to_torch_state_dict(net, net.init())
