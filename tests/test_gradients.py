"""Finite-difference checks of ``net.loss_and_grad``: MLPs, random graphs of neurons, one neuron.

Every check runs in float64 and asks for a relative error below 1e-6 between the hand-written
backward pass and central differences of the loss.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import check_net_gradients, numeric_grad, random_params, random_targets, rel_error

import nomagic as nm

ACTIVATIONS = ["linear", "step", "sigmoid", "tanh", "relu", "softmax"]

# which output activations each loss is checked with: the partner (fused, from logits) and a
# non-partner (the generic path: loss gradient on outputs, then the activation's backward)
LOSS_OUTPUTS = {
    "mse": ACTIVATIONS,
    "binary_cross_entropy": ["sigmoid", "softmax"],
    "cross_entropy": ["softmax", "sigmoid"],
}




@pytest.mark.parametrize("hidden", ACTIVATIONS)
@pytest.mark.parametrize("loss,output", [(loss, out) for loss, outs in LOSS_OUTPUTS.items() for out in outs])
def test_mlp_gradients(hidden, loss, output, rng):
    net = (nm.inputs(3) | nm.dense(4, activation=hidden) | nm.dense(3, activation="tanh")
           | nm.dense(3, activation=output))
    params = random_params(net, seed=1)
    X = rng.normal(size=(6, 3))
    Y = random_targets(rng, loss, 6, 3)
    check_net_gradients(net, params, X, Y, loss)


@pytest.mark.parametrize("loss,output", [("mse", "linear"), ("binary_cross_entropy", "sigmoid")])
def test_single_output_mlp_gradients(loss, output, rng):
    net = nm.inputs(2) | nm.dense(5, activation="relu") | nm.dense(1, activation=output)
    params = random_params(net, seed=2)
    X = rng.normal(size=(8, 2))
    Y = rng.uniform(0, 1, 8)  # a 1-D target for a single output
    check_net_gradients(net, params, X, Y, loss)


def test_mlp_without_bias_gradients(rng):
    net = nm.inputs(3) | nm.dense(4, activation="tanh", bias=False) | nm.dense(2, activation="sigmoid")
    params = random_params(net, seed=3)
    assert "dense_0.bias" not in params
    check_net_gradients(net, params, rng.normal(size=(5, 3)), rng.uniform(0, 1, (5, 2)),
                        "binary_cross_entropy")


def test_step_layer_passes_no_gradient(rng):
    # the step function is flat almost everywhere: nothing before it learns by gradient descent
    net = nm.inputs(3) | nm.dense(4, activation="step") | nm.dense(2)
    params = random_params(net, seed=4)
    _, grads = net.loss_and_grad(params, rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))
    assert not grads["dense_0.weight"].any() and not grads["dense_0.bias"].any()
    assert grads["dense_1.weight"].any()


# -- random directed acyclic graphs, neuron by neuron ----------------------------------------------


def random_graph(seed: int, *, n_inputs: int = 3, n_neurons: int = 9, n_outputs: int = 3,
                 output_activation: str | None = None):
    """A random DAG: every neuron reads a random subset of earlier sensors and neurons (skip
    connections across depths), some neurons multiply their inputs, the last few are outputs.
    Every hidden neuron feeds something, so that every param reaches the loss."""
    r = np.random.default_rng(seed)
    g = nm.GraphBuilder(n_inputs)
    nodes = list(g.inputs)
    neurons, unread = [], []
    for i in range(n_neurons):
        is_output = i >= n_neurons - n_outputs
        k = int(r.integers(1, min(4, len(nodes)) + 1))
        picked = {int(j) for j in r.choice(len(nodes), size=k, replace=False)}
        if is_output and unread:  # hidden neurons nobody reads yet: the outputs read them
            share = unread[: max(1, len(unread) // (n_neurons - i))]
            picked |= {nodes.index(u) for u in share}
        sources = [nodes[j] for j in sorted(picked)]
        if is_output and output_activation is not None:
            activation = output_activation
        else:
            activation = str(r.choice(["linear", "sigmoid", "tanh", "relu"]))
        aggregation = "product" if (not is_output and len(sources) >= 2 and r.random() < 0.35) else "sum"
        bias = bool(r.random() < 0.8)
        ref = g.neuron(sources, activation=activation, aggregation=aggregation, bias=bias)
        unread = [u for u in unread if u not in sources]
        if not is_output:
            unread.append(ref)
        nodes.append(ref)
        neurons.append(ref)
    assert not unread
    outputs = neurons[-n_outputs:]
    return g.build(outputs=outputs), outputs


@pytest.mark.parametrize("seed", range(8))
def test_random_graph_gradients(seed, rng):
    net, _ = random_graph(seed)
    kinds = {p.aggregation for p in net.populations[1:]}
    assert net.n_outputs == 3
    params = random_params(net, seed=seed, scale=0.8)
    X = rng.normal(size=(8, net.n_inputs))
    check_net_gradients(net, params, X, rng.normal(size=(8, 3)), "mse")
    if seed == 0:
        assert "product" in kinds  # the seeds do exercise product neurons


def test_random_graphs_cover_skips_products_and_several_populations():
    skips = products = multi_pop_outputs = 0
    for seed in range(8):
        net, _ = random_graph(seed)
        products += sum(p.aggregation == "product" for p in net.populations)
        multi_pop_outputs += len(net.outputs) > 1
        depth = {p.name: int(p.name[1:].split("_")[0]) for p in net.populations[1:]}
        depth["inputs"] = 0
        skips += sum(depth[b.target] - depth[b.source] > 1 for b in net.blocks)
    assert skips and products and multi_pop_outputs


@pytest.mark.parametrize("seed", range(3))
def test_random_graph_gradients_with_sigmoid_outputs_and_bce(seed, rng):
    net, _ = random_graph(100 + seed, n_inputs=4, n_neurons=10, n_outputs=2, output_activation="sigmoid")
    params = random_params(net, seed=seed)
    X = rng.normal(size=(6, 4))
    check_net_gradients(net, params, X, rng.uniform(0, 1, (6, 2)), "binary_cross_entropy")


def test_hand_built_graph_gradients(rng):
    # the builder's docstring example: a sensor read by two depths, a skip connection to the output
    g = nm.GraphBuilder(3)
    x = g.inputs
    h1 = g.neuron([x[0], x[1]], activation="tanh")
    h2 = g.neuron([x[1], x[2], h1], activation="relu")
    gate = g.neuron([h1, x[2]], activation="sigmoid", aggregation="product")
    y = g.neuron([h1, h2, gate, x[0]], activation="sigmoid")
    net = g.build(outputs=[y])
    params = random_params(net, seed=7)
    check_net_gradients(net, params, rng.normal(size=(7, 3)), rng.uniform(0, 1, 7), "binary_cross_entropy")


def test_graph_with_recurrent_synapse_gradients(rng):
    g = nm.GraphBuilder(2)
    x = g.inputs
    h = g.neuron([x[0], x[1]], activation="tanh")
    g.connect(h, h, recurrent=True)
    y = g.neuron([h, x[0]], activation="linear")
    net = g.build(outputs=[y])
    params = random_params(net, seed=8)
    X = rng.normal(size=(4, 5, 2))
    check_net_gradients(net, params, X, rng.normal(size=(4, 5, 1)), "mse")


# -- the lone neuron --------------------------------------------------------------------------------


@pytest.mark.parametrize("activation,loss", [("sigmoid", "binary_cross_entropy"), ("sigmoid", "mse"),
                                             ("tanh", "mse"), ("linear", "mse"), ("relu", "mse")])
def test_lone_neuron_gradients(activation, loss, rng):
    neuron = nm.Neuron([0.5, -1.2, 0.3], bias=0.1, activation=activation)
    net, params = neuron.as_network()
    X = rng.normal(size=(9, 3))
    Y = rng.uniform(0, 1, 9)
    check_net_gradients(net, params, X, Y, loss)


def test_lone_sigmoid_neuron_gradient_by_hand(rng):
    # mse on σ(w·x + b): ∂L/∂w = mean(2(a − y) a(1 − a) x)
    w, b = np.array([0.7, -0.4]), 0.2
    net, params = nm.Neuron(w, bias=b, activation="sigmoid").as_network()
    X = rng.normal(size=(6, 2))
    y = rng.uniform(0, 1, 6)
    a = 1 / (1 + np.exp(-(X @ w + b)))
    d = 2 * (a - y) * a * (1 - a) / len(y)
    value, grads = net.loss_and_grad(params, X, y, loss="mse")
    assert value == pytest.approx(np.mean((a - y) ** 2), rel=1e-13)
    np.testing.assert_allclose(grads["neuron.weight"][:, 0], X.T @ d, rtol=1e-12)
    np.testing.assert_allclose(grads["neuron.bias"], [d.sum()], rtol=1e-12)


def test_numeric_grad_helper_is_correct():
    # the checker itself, on a function whose gradient is known: f = Σ w² + 3b
    params = nm.Params({"w": np.array([[1.0, -2.0]]), "b": np.array([0.5])})
    g = numeric_grad(lambda p: float(np.sum(p["w"] ** 2) + 3 * p["b"][0]), params)
    assert rel_error(g["w"], [[2.0, -4.0]]) < 1e-9 and rel_error(g["b"], [3.0]) < 1e-9
    assert list(itertools.chain(params["w"].ravel())) == [1.0, -2.0]  # unchanged
