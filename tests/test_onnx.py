"""``nm.export_onnx``: the exported graph runs in onnxruntime with the outputs of ``predict``.

float32 must agree within 1e-5, float64 within 1e-10, for MLPs with every activation, graphs of
neurons (skip connections, product neurons, partial outputs), and recurrent networks (Elman,
LSTM, GRU, stacked, sequences out), for any batch size and any sequence length.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from conftest import random_params

import nomagic as nm

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = {"float32": 1e-5, "float64": 1e-10}
ACTIVATIONS = ["linear", "step", "sigmoid", "tanh", "relu", "softmax"]


def _params(net: nm.Network, dtype: str, seed: int = 0, scale: float = 0.6) -> nm.Params:
    """Random params with non-zero biases (``init`` zeroes them), in ``dtype``."""
    return random_params(net, seed=seed, scale=scale).astype(dtype)


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check(net: nm.Network, params, X, path, dtype: str) -> np.ndarray:
    """Export, run in onnxruntime, compare with ``predict``; returns the onnx output."""
    nm.export_onnx(net, path, params=params)
    X = np.asarray(X, dtype=dtype)
    got = _session(path).run(["Y"], {"X": X})[0]
    want = net.predict(params, X)
    assert got.dtype == np.dtype(dtype)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype])
    return got


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_every_activation(activation, dtype, tmp_path, rng):
    net = (nm.inputs(4) | nm.dense(7, activation=activation) | nm.dense(5, activation="tanh")
           | nm.dense(3, activation=activation))
    params = _params(net, dtype)
    X = rng.normal(size=(9, 4))
    if activation == "step":  # keep every pre-activation clear of the threshold
        z = X @ np.asarray(params["dense_0.weight"], dtype=np.float64) + params["dense_0.bias"]
        assert np.abs(z).min() > 1e-4
    _check(net, params, X, tmp_path / "mlp.onnx", dtype)


def test_model_from_fit_and_dynamic_batch(tmp_path, rng):
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    net = nm.inputs(3) | nm.dense(6, activation="relu") | nm.dense(2, activation="softmax")
    model = nm.fit(net, X, y, loss="cross_entropy", epochs=3, batch_size=8, seed=0)
    path = tmp_path / "model.onnx"
    nm.export_onnx(model, path)
    sess = _session(path)
    assert [i.name for i in sess.get_inputs()] == ["X"]
    assert [o.name for o in sess.get_outputs()] == ["Y"]
    assert isinstance(sess.get_inputs()[0].shape[0], str)  # a dynamic batch dimension
    for n in (1, 5, 40):
        Xn = X[:n].astype(np.float32)
        np.testing.assert_allclose(sess.run(["Y"], {"X": Xn})[0], model.predict(Xn), rtol=0, atol=1e-5)
    # the weights are initializers in the params' dtype
    m = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    np.testing.assert_array_equal(inits["dense_0.weight"], model.params["dense_0.weight"])
    assert inits["dense_0.weight"].dtype == np.float32


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_graph_dag_with_skips_product_and_partial_outputs(dtype, tmp_path, rng):
    g = nm.GraphBuilder(3)
    x = g.inputs
    h1 = g.neuron([x[0], x[1]], activation="tanh")
    h2 = g.neuron([x[1], x[2]], activation="relu")
    h3 = g.neuron([x[0], x[2]], activation="sigmoid")
    p = g.neuron([h1, h2], activation="linear", aggregation="product")  # a product neuron
    s = g.neuron([h1, h2, h3, x[0]], activation="tanh")  # skip connection from a sensor
    q = g.neuron([p, s, x[2]], activation="sigmoid")
    st = g.neuron([h1, x[1]], activation="step", bias=False)
    net = g.build(outputs=[q, h3, p, st])  # outputs from several populations, some partial
    assert len(net.outputs) > 1
    assert any(b.mask is not None for b in net.blocks)  # masked blocks are exercised
    params = _params(net, dtype, seed=3)
    _check(net, params, rng.normal(size=(11, 3)), tmp_path / "dag.onnx", dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lone_neuron(dtype, tmp_path):
    net, params = nm.Neuron([0.5, -1.0, 0.25], bias=0.2, activation="sigmoid").as_network(dtype)
    _check(net, params, [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]], tmp_path / "neuron.onnx", dtype)


RECURRENT = {
    "elman": lambda: nm.inputs(3) | nm.recurrent(5) | nm.dense(2, activation="sigmoid"),
    "elman_relu": lambda: nm.inputs(3) | nm.recurrent(4, activation="relu") | nm.dense(1),
    "lstm": lambda: nm.inputs(3) | nm.lstm(5) | nm.dense(3, activation="softmax"),
    "gru": lambda: nm.inputs(3) | nm.gru(5) | nm.dense(2),
    "lstm_seq": lambda: nm.inputs(3) | nm.lstm(4, return_sequences=True) | nm.dense(2, activation="tanh"),
    "gru_seq": lambda: nm.inputs(3) | nm.gru(4, return_sequences=True),
    "stacked": lambda: (nm.inputs(3) | nm.gru(5, return_sequences=True) | nm.lstm(4, return_sequences=True)
                        | nm.recurrent(3) | nm.dense(2)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", sorted(RECURRENT))
def test_recurrent_any_length(kind, dtype, tmp_path, rng):
    net = RECURRENT[kind]()
    params = _params(net, dtype, seed=1, scale=0.5)
    path = tmp_path / f"{kind}.onnx"
    got = _check(net, params, rng.normal(size=(4, 6, 3)), path, dtype)
    assert got.ndim == (3 if net.returns_sequences else 2)
    sess = _session(path)
    for batch, steps in ((1, 1), (3, 11), (2, 2)):  # one exported file, any batch and length
        X = rng.normal(size=(batch, steps, 3)).astype(dtype)
        np.testing.assert_allclose(sess.run(["Y"], {"X": X})[0], net.predict(params, X),
                                   rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("return_sequences", [True, False])
def test_recurrent_graph_of_neurons(return_sequences, tmp_path, rng):
    g = nm.GraphBuilder(2)
    x = g.inputs
    h = g.neuron([x[0], x[1]], activation="tanh")
    k = g.neuron([x[1]], activation="sigmoid")
    y = g.neuron([h, k, x[0]], activation="linear")
    g.connect(h, h, recurrent=True)  # a self-loop
    g.connect(y, k, recurrent=True)  # a loop from a later neuron back to an earlier one
    net = g.build(outputs=[y], return_sequences=return_sequences)
    params = _params(net, "float64", seed=4)
    _check(net, params, rng.normal(size=(3, 5, 2)), tmp_path / "loop.onnx", "float64")


@pytest.mark.parametrize("recurrent", [False, True])
def test_neuron_with_only_a_bias(recurrent, tmp_path, rng):
    g = nm.GraphBuilder(2)
    c = g.neuron([], activation="tanh")  # no inputs: a constant, batch-sized in the export
    h = g.neuron([g.inputs[0], c], activation="tanh")
    if recurrent:
        g.connect(h, h, recurrent=True)
    net = g.build(outputs=[h, c])
    X = rng.normal(size=(3, 4, 2) if recurrent else (3, 2))
    _check(net, _params(net, "float64", seed=5), X, tmp_path / "bias.onnx", "float64")


def test_trained_recurrent_model(tmp_path, rng):
    X = rng.normal(size=(16, 5, 2))
    Y = X.sum(axis=(1, 2))[:, None]
    model = nm.fit(nm.inputs(2) | nm.lstm(4) | nm.dense(1), X, Y, epochs=2, batch_size=8, seed=0)
    nm.export_onnx(model, tmp_path / "seq.onnx")
    got = _session(tmp_path / "seq.onnx").run(["Y"], {"X": X.astype(np.float32)})[0]
    np.testing.assert_allclose(got, model.predict(X), rtol=0, atol=1e-5)


def test_argument_errors(tmp_path):
    net = nm.inputs(2) | nm.dense(1)
    params = net.init(seed=0)
    with pytest.raises(nm.ParamsError, match="params"):
        nm.export_onnx(net, tmp_path / "a.onnx")
    with pytest.raises(nm.InvalidInputError, match="Model .* or a Network"):
        nm.export_onnx({"dense_0.weight": 1}, tmp_path / "a.onnx")
    with pytest.raises(nm.ParamsError):
        nm.export_onnx(net, tmp_path / "a.onnx", params={"dense_0.weight": np.zeros((2, 1))})
    with pytest.raises(nm.ParamsError):
        nm.export_onnx(net, tmp_path / "a.onnx", params={"dense_0.weight": np.zeros((3, 1)),
                                                        "dense_0.bias": np.zeros(1)})
    for bad in (5, "17", True, 99):
        with pytest.raises(nm.InvalidInputError, match="opset"):
            nm.export_onnx(net, tmp_path / "a.onnx", params=params, opset=bad)
    with pytest.raises(nm.InvalidInputError):
        nm.export_onnx(net, 123, params=params)
    with pytest.raises(nm.InvalidInputError, match="directory"):
        nm.export_onnx(net, tmp_path, params=params)
    with pytest.raises(nm.InvalidInputError, match="does not exist"):
        nm.export_onnx(net, tmp_path / "no" / "such" / "dir.onnx", params=params)
    assert os.listdir(tmp_path) == []  # nothing written by a failed export


def test_other_opsets_and_atomic_overwrite(tmp_path, rng):
    net = nm.inputs(2) | nm.dense(3, activation="softmax")
    params = _params(net, "float32")
    path = tmp_path / "m.onnx"
    for opset in (13, 15, 17):
        nm.export_onnx(net, path, params=params, opset=opset)
        assert onnx.load(str(path)).opset_import[0].version == opset
        X = rng.normal(size=(3, 2)).astype(np.float32)
        np.testing.assert_allclose(_session(path).run(["Y"], {"X": X})[0], net.predict(params, X), atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]  # no temporary files left behind


def test_missing_onnx_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes ``import onnx`` fail as if not installed
    net = nm.inputs(2) | nm.dense(1)
    with pytest.raises(nm.MissingDependencyError, match=r"pip install 'nomagic\[onnx\]'") as info:
        nm.export_onnx(net, tmp_path / "a.onnx", params=net.init(seed=0))
    assert isinstance(info.value, nm.NomagicError) and isinstance(info.value, ImportError)
    assert not (tmp_path / "a.onnx").exists()
