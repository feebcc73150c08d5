"""The model as a value: pipes, stages, immutability, params, the neuron-level view, round trips,
graphs built neuron by neuron, the lone neuron, and XOR learned end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import nomagic as nm

# -- the pipe and stages ---------------------------------------------------------------------------


def test_pipe_builds_layers_in_order():
    net = nm.inputs(4) | nm.dense(8, activation="tanh") | nm.dense(1, activation="sigmoid")
    assert isinstance(net, nm.Network)
    assert [layer.kind for layer in net.layers] == ["inputs", "dense", "dense"]
    assert [p.size for p in net.populations] == [4, 8, 1]
    assert [p.activation for p in net.populations[1:]] == ["tanh", "sigmoid"]
    assert net.n_inputs == 4 and net.n_outputs == 1 and net.n_neurons == 9
    assert not net.is_recurrent
    assert repr(net) == "Network(inputs(4) | dense(8) | dense(1))"
    shapes = {s.key: s.shape for s in net.param_specs()}
    assert shapes == {"dense_0.weight": (4, 8), "dense_0.bias": (8,),
                      "dense_1.weight": (8, 1), "dense_1.bias": (1,)}


def test_pipe_returns_new_networks_and_leaves_the_old_one_alone():
    base = nm.inputs(3) | nm.dense(5)
    longer = base | nm.dense(2)
    assert len(base.layers) == 2 and len(longer.layers) == 3
    assert base.n_outputs == 5 and longer.n_outputs == 2


def test_stages_compose_before_being_piped():
    head = nm.dense(8, activation="relu") | nm.dense(2)
    assert isinstance(head, nm.Stage)
    piped = nm.inputs(3) | head
    direct = nm.inputs(3) | nm.dense(8, activation="relu") | nm.dense(2)
    assert piped == direct
    # the same stage reused on another network
    other = nm.inputs(5) | nm.dense(4) | head
    assert [p.size for p in other.populations] == [5, 4, 8, 2]
    params = piped.init(seed=1, dtype="float64")
    X = np.random.default_rng(0).normal(size=(3, 3))
    np.testing.assert_array_equal(piped.predict(params, X), direct.predict(params, X))


def test_pipe_rejects_what_is_not_a_builder():
    with pytest.raises(nm.GraphError, match="layer builder"):
        nm.inputs(3) | 5
    with pytest.raises(nm.GraphError, match="layer builder"):
        nm.dense(3) | "relu"
    with pytest.raises(nm.GraphError, match="piped onto a network"):
        nm.dense(3)(42)


def test_named_layers_and_duplicate_names():
    net = nm.inputs(2) | nm.dense(3, name="hidden") | nm.dense(1, name="out")
    assert set(net.init()) == {"hidden.weight", "hidden.bias", "out.weight", "out.bias"}
    with pytest.raises(nm.GraphError, match="already exists"):
        nm.inputs(2) | nm.dense(3, name="a") | nm.dense(3, name="a")
    with pytest.raises(nm.InvalidInputError, match="without dots"):
        nm.inputs(2) | nm.dense(3, name="a.b")


def test_dense_forward_is_x_at_w_plus_b():
    net = nm.inputs(3) | nm.dense(2, activation="tanh")
    W = np.array([[0.1, -0.2], [0.3, 0.4], [-0.5, 0.6]])
    b = np.array([0.05, -0.05])
    X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    got = net.predict(nm.Params({"dense_0.weight": W, "dense_0.bias": b}), X)
    want = [[math.tanh(sum(X[i, k] * W[k, j] for k in range(3)) + b[j]) for j in range(2)] for i in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-14)


# -- immutability and params ---------------------------------------------------------------------


def test_network_attributes_cannot_be_set():
    net = nm.inputs(2) | nm.dense(1)
    with pytest.raises(AttributeError, match="immutable"):
        net.populations = ()
    with pytest.raises(AttributeError, match="immutable"):
        net.anything = 1
    with pytest.raises(dataclasses_frozen_error()):
        net.populations[1].size = 5  # populations are frozen dataclasses


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_params_are_read_only():
    net = nm.inputs(2) | nm.dense(3) | nm.dense(1)
    params = net.init(seed=0)
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(ValueError, match="read-only"):
        params["dense_0.weight"][0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        params["dense_0.bias"] += 1.0
    with pytest.raises(TypeError):
        params["dense_0.weight"] = np.zeros((2, 3))
    with pytest.raises(TypeError):
        del params["dense_0.weight"]
    with pytest.raises(AttributeError, match="immutable"):
        params.extra = 1
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_params_copy_what_they_are_given():
    w = np.ones((2, 1))
    params = nm.Params({"dense_0.weight": w, "dense_0.bias": np.zeros(1)})
    w[0, 0] = 5.0  # the caller's array changes; the params do not
    assert params["dense_0.weight"][0, 0] == 1.0
    replaced = params.replace(**{"dense_0.bias": np.array([2.0])})
    assert replaced["dense_0.bias"][0] == 2.0 and params["dense_0.bias"][0] == 0.0
    with pytest.raises(nm.ParamsError, match="unknown param keys"):
        params.replace(nope=np.zeros(1))


def test_init_is_deterministic_by_seed():
    net = nm.inputs(4) | nm.dense(8, activation="relu") | nm.dense(3, activation="softmax")
    a, b, c = net.init(seed=7), net.init(seed=7), net.init(seed=8)
    assert list(a) == list(b) == list(c)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    assert not np.array_equal(a["dense_0.weight"], c["dense_0.weight"])


def test_init_dtypes():
    net = nm.inputs(4) | nm.dense(3)
    assert all(v.dtype == np.float32 for v in net.init(seed=0).values())
    p64 = net.init(seed=0, dtype="float64")
    assert all(v.dtype == np.float64 for v in p64.values())
    assert p64.dtype == np.float64
    assert all(v.dtype == np.float64 for v in net.init(seed=0, dtype=np.float64).values())
    # the same draws, rounded: float32 params are the float64 ones in lower precision
    np.testing.assert_allclose(net.init(seed=0)["dense_0.weight"], p64["dense_0.weight"], rtol=1e-6)
    with pytest.raises(nm.InvalidInputError, match="float32"):
        net.init(seed=0, dtype="float16")
    with pytest.raises(nm.InvalidInputError, match="seed"):
        net.init(seed=-1)


def test_init_scales_and_zero_biases():
    # He for relu (std √(2/fan_in)), Glorot uniform otherwise (|w| ≤ √(6/(fan_in+fan_out)))
    net = nm.inputs(400) | nm.dense(300, activation="relu") | nm.dense(50, activation="tanh")
    p = net.init(seed=0, dtype="float64")
    assert p["dense_0.weight"].std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert np.abs(p["dense_1.weight"]).max() <= math.sqrt(6 / 350)
    assert p["dense_1.weight"].std() == pytest.approx(math.sqrt(6 / 350) / math.sqrt(3), rel=0.03)
    assert not p["dense_0.bias"].any() and not p["dense_1.bias"].any()


def test_predict_output_is_a_fresh_array_in_the_params_dtype():
    net = nm.inputs(2) | nm.dense(2)
    X = np.ones((3, 2))
    assert net.predict(net.init(seed=0), X).dtype == np.float32
    out = net.predict(net.init(seed=0, dtype="float64"), X)
    assert out.dtype == np.float64 and out.flags.writeable


# -- summary, neuron-level view, round trips -------------------------------------------------------


def test_summary_lists_layers_and_param_counts():
    net = nm.inputs(3) | nm.dense(8, activation="relu") | nm.dense(2, activation="softmax")
    text = net.summary()
    lines = text.splitlines()
    assert "dense_0" in lines[2] and "relu" in lines[2] and lines[2].split()[-1] == str(3 * 8 + 8)
    assert "dense_1" in lines[3] and "softmax" in lines[3] and lines[3].split()[-1] == str(8 * 2 + 2)
    assert lines[-1] == f"total params: {3 * 8 + 8 + 8 * 2 + 2}"
    total = sum(v.size for v in net.init().values())
    assert lines[-1].endswith(str(total))


def test_neuron_view_counts():
    net = nm.inputs(3) | nm.dense(8, activation="relu") | nm.dense(2, bias=False)
    views = net.neurons()
    assert len(views) == 10 == net.n_neurons
    assert sum(len(v.inputs) for v in views) == 3 * 8 + 8 * 2
    first = views[0]
    assert first.name == "dense_0[0]" and first.activation == "relu" and first.aggregation == "sum"
    assert first.bias == ("dense_0.bias", 0)
    assert [s.source for s in first.inputs] == ["inputs[0]", "inputs[1]", "inputs[2]"]
    assert all(s.weight == "dense_0.weight" and s.index == (i, 0) for i, s in enumerate(first.inputs))
    last = views[-1]
    assert last.bias is None and len(last.inputs) == 8
    assert {s.source for s in last.inputs} == {f"dense_0[{i}]" for i in range(8)}


def test_neuron_view_of_a_hand_built_graph():
    g = nm.GraphBuilder(3, names=["a", "b", "c"])
    h = g.neuron([g.inputs[0], g.inputs[2]], activation="tanh", name="h")
    y = g.neuron([h, g.inputs[1]], activation="sigmoid", name="y")
    net = g.build(outputs=[y])
    views = {v.name: v for v in net.neurons()}
    assert set(views) == {"h", "y"}
    assert sorted(s.source for s in views["h"].inputs) == ["a", "c"]
    assert sorted(s.source for s in views["y"].inputs) == ["b", "h"]  # the skip connection from b
    assert sum(len(v.inputs) for v in views.values()) == 4


@pytest.mark.parametrize("build", [
    lambda: nm.inputs(4) | nm.dense(6, activation="tanh") | nm.dense(3, activation="softmax"),
    lambda: nm.inputs(3) | nm.dense(2, activation="relu", bias=False, name="h") | nm.dense(1),
    lambda: nm.inputs(3) | nm.lstm(4) | nm.dense(2),
    lambda: nm.inputs(2) | nm.gru(3, return_sequences=True) | nm.recurrent(2),
], ids=["mlp", "named", "lstm", "gru-rnn"])
def test_to_dict_from_dict_round_trip(build):
    net = build()
    d = net.to_dict()
    again = nm.Network.from_dict(json.loads(json.dumps(d)))  # data only: survives JSON
    assert again == net and again.to_dict() == d
    assert hash(again) == hash(net)
    params = net.init(seed=3, dtype="float64")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 5, net.n_inputs)) if net.is_recurrent else rng.normal(size=(4, net.n_inputs))
    np.testing.assert_array_equal(again.predict(params, X), net.predict(params, X))


def test_round_trip_of_a_masked_graph():
    g = nm.GraphBuilder(3)
    x = g.inputs
    h1 = g.neuron([x[0], x[1]], activation="tanh")
    h2 = g.neuron([x[2], h1], activation="relu")
    p = g.neuron([h1, h2], activation="linear", aggregation="product")
    y = g.neuron([h2, p, x[0]], activation="sigmoid")
    net = g.build(outputs=[y, h2])
    again = nm.Network.from_dict(json.loads(json.dumps(net.to_dict())))
    assert again == net
    params = net.init(seed=1, dtype="float64")
    X = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_array_equal(again.predict(params, X), net.predict(params, X))


def test_from_dict_rejects_malformed_descriptions():
    with pytest.raises(nm.GraphError, match="malformed"):
        nm.Network.from_dict({"populations": 3})
    d = (nm.inputs(2) | nm.dense(1)).to_dict()
    d["blocks"][0]["source"] = "nowhere"
    with pytest.raises(nm.GraphError):
        nm.Network.from_dict(d)


# -- GraphBuilder ------------------------------------------------------------------------------------


def _skip_graph():
    g = nm.GraphBuilder(3)
    x = g.inputs
    h1 = g.neuron([x[0], x[1]], activation="tanh", name="h1")
    h2 = g.neuron([x[1], x[2], h1], activation="relu", name="h2")
    y = g.neuron([h1, h2, x[0]], activation="sigmoid", name="y")  # skips from x0 and h1
    return g, g.build(outputs=[y])


def test_graph_builder_skip_connections_by_hand():
    _, net = _skip_graph()
    params = net.init(seed=0, dtype="float64")
    # set every synapse weight and bias by hand through the neuron-level view
    r = np.random.default_rng(5)
    arrays = {k: np.array(v) for k, v in params.items()}
    weights = {}
    for v in net.neurons():
        for s in v.inputs:
            w = float(r.normal())
            arrays[s.weight][s.index] = w
            weights[(s.source, v.name)] = w
        if v.bias:
            arrays[v.bias[0]][v.bias[1]] = float(r.normal())
    params = nm.Params(arrays)
    bias = {v.name: params[v.bias[0]][v.bias[1]] for v in net.neurons()}
    x = [0.3, -1.2, 0.8]

    def w(a, b):
        return weights[(a, b)]

    h1 = math.tanh(w("x0", "h1") * x[0] + w("x1", "h1") * x[1] + bias["h1"])
    h2 = max(0.0, w("x1", "h2") * x[1] + w("x2", "h2") * x[2] + w("h1", "h2") * h1 + bias["h2"])
    zy = w("h1", "y") * h1 + w("h2", "y") * h2 + w("x0", "y") * x[0] + bias["y"]
    y = 1 / (1 + math.exp(-zy))
    assert net.predict(params, np.array([x]))[0, 0] == pytest.approx(y, rel=1e-13)


def test_graph_builder_product_neuron_by_hand():
    g = nm.GraphBuilder(2)
    p = g.neuron(g.inputs, activation="linear", aggregation="product", bias=False, name="p")
    net = g.build(outputs=[p])
    params = {k: np.ones_like(v) for k, v in net.init(seed=0, dtype="float64").items()}
    keys = sorted(params)
    params[keys[0]] = params[keys[0]] * 2.0  # the first factor's weight is 2
    out = net.predict(nm.Params(params), np.array([[3.0, 5.0], [-1.0, 4.0]]))
    np.testing.assert_allclose(out[:, 0], [2 * 3 * 5, 2 * -1 * 4])


def test_graph_builder_several_outputs_in_the_order_given():
    g = nm.GraphBuilder(2)
    a = g.neuron(g.inputs, activation="linear", name="a")
    b = g.neuron([a], activation="linear", name="b")
    net = g.build(outputs=[b, a])
    params = {k: np.ones_like(v) for k, v in net.init(seed=0, dtype="float64").items()}
    out = net.predict(nm.Params(params), np.array([[1.0, 2.0]]))
    np.testing.assert_allclose(out, [[1 + 2 + 1 + 1, 1 + 2 + 1]])  # b = a + 1, a = x0 + x1 + 1


def test_graph_builder_recurrent_synapse():
    g = nm.GraphBuilder(1)
    h = g.neuron(g.inputs, activation="linear", bias=False, name="h")
    g.connect(h, h, recurrent=True)  # h_t = w·x_t + u·h_{t-1}
    net = g.build(outputs=[h])
    assert net.is_recurrent and net.returns_sequences
    keys = {s.key for s in net.param_specs()}
    w_key = next(k for k in keys if not k.endswith("_prev"))
    u_key = next(k for k in keys if k.endswith("_prev"))
    params = nm.Params({w_key: np.array([[2.0]]), u_key: np.array([[0.5]])})
    X = np.array([[[1.0], [0.0], [3.0]]])  # (batch, time, features)
    out = net.predict(params, X)
    np.testing.assert_allclose(out[0, :, 0], [2.0, 1.0, 6.5])
    last = g.build(outputs=[h], return_sequences=False)
    np.testing.assert_allclose(last.predict(params, X), [[6.5]])
    with pytest.raises(nm.ShapeError, match="3-D"):
        net.predict(params, X[:, 0, :])


def test_graph_builder_rejects_loops():
    g = nm.GraphBuilder(2)
    a = g.neuron(g.inputs, name="a")
    b = g.neuron([a], name="b")
    with pytest.raises(nm.GraphError, match="loop"):
        g.connect(b, a)
    with pytest.raises(nm.GraphError, match="loop"):
        g.connect(a, a)
    with pytest.raises(nm.GraphError, match="exists already"):
        g.connect(g.inputs[0], a)
    with pytest.raises(nm.GraphError, match="sensor"):
        g.connect(a, g.inputs[0], recurrent=True)
    net = g.build(outputs=[b])  # the failed calls left the builder usable and unchanged
    assert sum(len(v.inputs) for v in net.neurons()) == 3


def test_graph_builder_rejects_foreign_handles():
    g, other = nm.GraphBuilder(2), nm.GraphBuilder(2)
    a = g.neuron(g.inputs, name="a")
    with pytest.raises(nm.GraphError, match="not a neuron of this builder"):
        g.neuron([other.inputs[0]], name="b")
    with pytest.raises(nm.GraphError, match="not a neuron of this builder"):
        g.connect(other.inputs[0], a)
    with pytest.raises(nm.GraphError, match="not a neuron of this builder"):
        g.build(outputs=[other.inputs[0]])
    with pytest.raises(nm.GraphError, match="not a neuron of this builder"):
        g.neuron(["a"])
    with pytest.raises(nm.GraphError, match="same source twice"):
        g.neuron([a, a], name="b")
    # nothing half-built was left behind: the name "b" is still free, one neuron in the graph
    g.neuron([a], name="b")
    net = g.build(outputs=[a])
    assert [v.name for v in net.neurons()] == ["a", "b"]


def test_graph_builder_rejects_duplicate_names_and_bad_outputs():
    g = nm.GraphBuilder(2, names=["x", "y"])
    a = g.neuron(g.inputs, name="a")
    with pytest.raises(nm.GraphError, match="already exists"):
        g.neuron(g.inputs, name="a")
    with pytest.raises(nm.GraphError, match="already exists"):
        g.neuron(g.inputs, name="x")
    with pytest.raises(nm.GraphError, match="distinct"):
        g.build(outputs=[a, a])
    with pytest.raises(nm.GraphError, match="distinct"):
        g.build(outputs=[])
    with pytest.raises(nm.GraphError, match="sensor"):
        g.build(outputs=[g.inputs[0]])
    with pytest.raises(nm.GraphError, match="softmax"):
        g.neuron(g.inputs, activation="softmax")
    g.neuron([], bias=False, name="lonely")
    with pytest.raises(nm.GraphError, match="lonely has no inputs and no bias"):
        g.build(outputs=[a])
    with pytest.raises(nm.InvalidInputError, match="one name per input"):
        nm.GraphBuilder(2, names=["only"])
    with pytest.raises(nm.InvalidInputError, match="positive integer"):
        nm.GraphBuilder(0)


def test_graph_builder_return_sequences_needs_recurrence():
    g = nm.GraphBuilder(2)
    a = g.neuron(g.inputs)
    with pytest.raises(nm.GraphError, match="recurrent"):
        g.build(outputs=[a], return_sequences=False)


# -- the lone neuron ----------------------------------------------------------------------------------


def test_neuron_by_hand():
    n = nm.Neuron([0.5, -1.0, 2.0], bias=0.25, activation="sigmoid")
    x = [1.0, 2.0, -0.5]
    z = 0.5 * 1.0 - 1.0 * 2.0 + 2.0 * -0.5 + 0.25
    assert n(x) == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-15)
    assert isinstance(n(x), float)
    batch = n([x, [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(batch, [1 / (1 + math.exp(-z)), 1 / (1 + math.exp(-0.25))], rtol=1e-15)
    assert nm.Neuron([1.0, 1.0], bias=-1.5, activation="step")([1, 1]) == 1.0  # AND
    assert nm.Neuron([1.0, 1.0], bias=-1.5, activation="step")([1, 0]) == 0.0
    assert nm.Neuron([2.0], bias=1.0, activation="tanh")([0.5]) == pytest.approx(math.tanh(2.0))
    assert nm.Neuron([2.0], bias=-3.0, activation="relu")([1.0]) == 0.0


def test_neuron_as_network_agrees():
    n = nm.Neuron([0.5, -1.0, 2.0], bias=0.25, activation="tanh")
    net, params = n.as_network()
    X = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_allclose(net.predict(params, X)[:, 0], n(X), rtol=1e-15)
    assert params.dtype == np.float64 and net.n_neurons == 1


def test_neuron_is_immutable_and_checked():
    n = nm.Neuron([1.0, 2.0])
    with pytest.raises(AttributeError):
        n.bias = 3.0
    with pytest.raises(nm.ShapeError, match="2 inputs"):
        n([1.0, 2.0, 3.0])
    with pytest.raises(nm.ShapeError):
        nm.Neuron([])
    with pytest.raises(nm.NonFiniteError):
        nm.Neuron([1.0, float("nan")])
    with pytest.raises(nm.NonFiniteError):
        n([1.0, float("inf")])
    with pytest.raises(nm.InvalidInputError, match="softmax"):
        nm.Neuron([1.0], activation="softmax")
    with pytest.raises(nm.UnknownNameError):
        nm.Neuron([1.0], activation="gelu")


# -- end to end: XOR ---------------------------------------------------------------------------------


def test_xor_is_learned():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0], dtype=float)
    net = nm.inputs(2) | nm.dense(4, activation="tanh") | nm.dense(1, activation="sigmoid")
    model = nm.fit(net, X, y, loss="binary_cross_entropy", optimizer=nm.adam(0.05), epochs=300,
                   batch_size=4, seed=0, verbose=False)
    np.testing.assert_array_equal(np.round(model.predict(X)[:, 0]), [0, 1, 1, 0])
    assert model.history[-1]["loss"] < 0.05 < model.history[0]["loss"]
    assert len(model.history) == 300 and model.history[0]["epoch"] == 1
    assert model.evaluate(X, y)["accuracy"] == 1.0
    # and the same seed gives the same model
    again = nm.fit(net, X, y, loss="binary_cross_entropy", optimizer=nm.adam(0.05), epochs=300,
                   batch_size=4, seed=0, verbose=False)
    for k in model.params:
        np.testing.assert_array_equal(again.params[k], model.params[k])
