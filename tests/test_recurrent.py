"""Recurrent networks: gradients by finite differences, and everything against PyTorch.

Elman RNN, LSTM and GRU, alone and stacked, with and without ``return_sequences``, between dense
layers and inside ``nm.GraphBuilder`` graphs; forward, gradients, Adam training and truncated BPTT
equal PyTorch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` in float64 (torch models built with
``nm.torch_module``, params moved with ``nm.to_torch_state_dict``).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import check_net_gradients, random_params, rel_error

import nomagic as nm

try:
    import torch
except ImportError:  # the torch comparisons are skipped; finite differences still run
    torch = None

CELLS = {"recurrent": nm.recurrent, "lstm": nm.lstm, "gru": nm.gru}
B, T, F = 3, 5, 2  # batch, time steps, features


def cell(kind: str, units: int, **kw):
    return CELLS[kind](units, **kw)


def architectures(kind: str) -> dict:
    """Networks around one cell kind, each with the targets' trailing shape and loss."""
    c = lambda units, **kw: cell(kind, units, **kw)  # noqa: E731
    return {
        "single": (nm.inputs(F) | c(3), "mse"),
        "single_seq": (nm.inputs(F) | c(3, return_sequences=True), "mse"),
        "dense_around": (nm.inputs(F) | nm.dense(3, "tanh") | c(3) | nm.dense(2, "sigmoid"),
                         "binary_cross_entropy"),
        "dense_around_seq": (nm.inputs(F) | nm.dense(3, "relu") | c(3, return_sequences=True)
                             | nm.dense(3, "softmax"), "cross_entropy"),
        "stacked": (nm.inputs(F) | c(3, return_sequences=True) | c(2) | nm.dense(2), "mse"),
        "stacked_seq": (nm.inputs(F) | c(2, return_sequences=True) | nm.dense(3, "tanh")
                        | c(3, return_sequences=True), "mse"),
    }


def data_for(net: nm.Network, loss: str, rng, batch: int = B, time: int = T):
    X = rng.normal(size=(batch, time, net.n_inputs))
    lead = (batch, time) if net.returns_sequences else (batch,)
    if loss == "cross_entropy":
        Y = rng.integers(0, net.n_outputs, size=lead)
    elif loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, size=lead + (net.n_outputs,)).astype(np.float64)
    else:
        Y = rng.normal(size=lead + (net.n_outputs,))
    return X, Y


ALL = [(kind, arch) for kind in CELLS for arch in architectures(kind)]
IDS = [f"{k}-{a}" for k, a in ALL]


# -- finite differences ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "arch"), ALL, ids=IDS)
def test_gradients_match_finite_differences(kind, arch, rng):
    net, loss = architectures(kind)[arch]
    params = random_params(net, seed=1, scale=0.6)
    X, Y = data_for(net, loss, rng)
    check_net_gradients(net, params, X, Y, loss, tol=1e-6)


def test_mixed_cells_stacked_match_finite_differences(rng):
    net = (nm.inputs(F) | nm.gru(3, return_sequences=True) | nm.lstm(2, return_sequences=True)
           | nm.recurrent(3, "relu") | nm.dense(2))
    X, Y = data_for(net, "mse", rng)
    check_net_gradients(net, random_params(net, seed=2, scale=0.6), X, Y, "mse")


def graph_with_loops(return_sequences: bool) -> nm.Network:
    """A hand-built graph: self-loops, a loop between two neurons, a product neuron in a loop."""
    g = nm.GraphBuilder(2)
    x = g.inputs
    a = g.neuron([x[0], x[1]], activation="tanh", name="a")
    b = g.neuron([a, x[1]], activation="sigmoid", name="b")
    p = g.neuron([a, b], activation="linear", aggregation="product", name="p")
    y1 = g.neuron([p, a], activation="tanh", name="y1")
    y2 = g.neuron([p, b, x[0]], activation="tanh", name="y2")
    g.connect(a, a, recurrent=True)       # self-loop
    g.connect(b, a, recurrent=True)       # a later neuron feeds an earlier one, one step late
    g.connect(p, b, recurrent=True)       # the product's previous value
    g.connect(y2, y1, recurrent=True)     # across outputs
    return g.build([y1, y2], return_sequences=return_sequences)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_graph_builder_recurrent_gradients(return_sequences, rng):
    net = graph_with_loops(return_sequences)
    assert net.is_recurrent and net.returns_sequences == return_sequences
    X, Y = data_for(net, "mse", rng, time=6)
    check_net_gradients(net, random_params(net, seed=4, scale=0.8), X, Y, "mse")


def test_graph_builder_recurrent_then_dense_gradients(rng):
    g = nm.GraphBuilder(3)
    h = [g.neuron(g.inputs, activation="tanh") for _ in range(2)]
    for i in range(2):
        for j in range(2):
            g.connect(h[i], h[j], recurrent=True)
    net = g.build(h, return_sequences=False) | nm.dense(2, "tanh") | nm.dense(1)
    X, Y = data_for(net, "mse", rng)
    check_net_gradients(net, random_params(net, seed=6), X, Y, "mse")


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("truncate", [1, 2, 4])
def test_truncated_gradients_are_a_different_exact_gradient(kind, truncate, rng):
    """truncate changes the gradient (unless it covers every step), never the loss."""
    net = nm.inputs(F) | cell(kind, 3) | nm.dense(1)
    params = random_params(net, seed=1)
    X, Y = data_for(net, "mse", rng, time=6)
    full_loss, full = net.loss_and_grad(params, X, Y)
    loss, cut = net.loss_and_grad(params, X, Y, truncate=truncate)
    assert loss == full_loss
    assert rel_error(cut["dense_0.weight"], full["dense_0.weight"]) < 1e-15  # not recurrent
    assert max(rel_error(cut[k], full[k]) for k in params) > 1e-6
    _, same = net.loss_and_grad(params, X, Y, truncate=6)
    for k in params:
        np.testing.assert_array_equal(same[k], full[k])


# -- PyTorch as the reference ------------------------------------------------------------------------

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def torch_forward(net: nm.Network, model, x, truncate: int | None = None):
    """Run ``nm.torch_module(net)`` layer by layer; with ``truncate=k`` the recurrent state that
    enters step t is detached for every t ≤ T − k (so a gradient crosses at most k − 1 steps
    back from the last step: exactly the tensor engine's truncated BPTT)."""
    from conftest import torch_activation

    steps = x.shape[1]
    for layer in net.layers[1:]:
        module = model[layer.name]
        if layer.kind == "dense":
            x = torch_activation(layer.config["activation"])(module(x))
            continue
        if truncate is None:
            out, _ = module(x)
        else:
            state, outs = None, []
            for t in range(steps):
                if state is not None and t <= steps - truncate:
                    state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
                o, state = module(x[:, t:t + 1], state)
                outs.append(o)
            out = torch.cat(outs, dim=1)
        x = out if layer.config["return_sequences"] else out[:, -1]
    return x


def torch_loss(name: str, out, Y):
    Yt = torch.from_numpy(np.asarray(Y))
    if name == "mse":
        return torch.nn.functional.mse_loss(out, Yt)
    if name == "binary_cross_entropy":
        return torch.nn.functional.binary_cross_entropy(out, Yt)
    if name == "cross_entropy":  # out holds softmax probabilities; Y class indices
        logp = torch.log(out).reshape(-1, out.shape[-1])
        return torch.nn.functional.nll_loss(logp, Yt.reshape(-1))
    raise AssertionError(name)


def bias_hh_mask(net: nm.Network, key: str):
    """Which entries of a torch ``bias_hh`` are real params of ours: only the GRU's b_hn."""
    layer = next(la for la in net.layers if la.name == key.split(".")[0])
    units = layer.config["units"]
    k = {"recurrent": 1, "lstm": 4, "gru": 3}[layer.kind]
    mask = torch.zeros(k * units, dtype=torch.float64)
    if layer.kind == "gru":
        mask[2 * units:] = 1.0
    return mask


def torch_grads_as_ours(net: nm.Network, model) -> nm.Params:
    """Torch's gradients in our keys. Torch's two biases per gate get the same gradient (they are
    only added); ours is that one gradient, so ``bias_hh`` counts only where it is a param of ours
    (the GRU's b_hn)."""
    grads = {}
    for key, p in model.named_parameters():
        g = p.grad.detach().clone()
        if key.endswith("bias_hh_l0"):
            mask = bias_hh_mask(net, key)
            twin = dict(model.named_parameters())[key.replace("_hh_", "_ih_")].grad
            assert torch.allclose(g * (1 - mask), twin * (1 - mask), rtol=0, atol=1e-14)
            g = g * mask
        grads[key] = g
    return nm.from_torch_state_dict(net, grads, dtype="float64")


def torch_loss_and_grad(net, params, X, Y, loss: str, truncate: int | None = None):
    model = nm.torch_module(net, params)
    out = torch_forward(net, model, torch.from_numpy(X), truncate)
    value = torch_loss(loss, out, Y)
    value.backward()
    return out.detach().numpy(), value.item(), torch_grads_as_ours(net, model)


def assert_close_params(ours, theirs, tol=1e-8):
    assert set(ours) == set(theirs)
    for k in ours:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=0, atol=tol, err_msg=k)


@needs_torch
@pytest.mark.parametrize(("kind", "arch"), ALL, ids=IDS)
def test_forward_and_gradients_equal_torch(kind, arch, rng):
    net, loss = architectures(kind)[arch]
    params = random_params(net, seed=7, scale=0.6)
    X, Y = data_for(net, loss, rng, batch=4, time=7)
    out, value, grads = torch_loss_and_grad(net, params, X, Y, loss)
    np.testing.assert_allclose(net.predict(params, X), out, rtol=0, atol=1e-12)
    ours_value, ours = net.loss_and_grad(params, X, Y, loss=loss)
    assert abs(ours_value - value) < 1e-10
    assert_close_params(ours, grads, 1e-10)


@needs_torch
def test_torch_module_matches_nn_lstm_with_two_layers(rng):
    """Stacking two of our LSTMs is torch's ``nn.LSTM(num_layers=2)``."""
    net = nm.inputs(F) | nm.lstm(3, return_sequences=True) | nm.lstm(3, return_sequences=True)
    params = random_params(net, seed=9)
    X = rng.normal(size=(2, 6, F))
    two = torch.nn.LSTM(F, 3, num_layers=2, batch_first=True, dtype=torch.float64)
    state = nm.to_torch_state_dict(net, params)
    with torch.no_grad():
        for layer_index, name in enumerate(("lstm_0", "lstm_1")):
            for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(two, f"{part}_l{layer_index}").copy_(state[f"{name}.{part}_l0"])
        want = two(torch.from_numpy(X))[0].numpy()
    np.testing.assert_allclose(net.predict(params, X), want, rtol=0, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("truncate", [1, 2, 3, 6, 9])
def test_truncated_bptt_equals_torch_with_detach(kind, return_sequences, truncate, rng):
    """``truncate=k``: the recurrent state entering steps 1..T−k is detached (see torch_forward)."""
    net = (nm.inputs(F) | nm.dense(3, "tanh") | cell(kind, 3, return_sequences=True)
           | cell(kind, 2, return_sequences=return_sequences) | nm.dense(2))
    params = random_params(net, seed=11, scale=0.6)
    X, Y = data_for(net, "mse", rng, batch=3, time=6)
    _, value, grads = torch_loss_and_grad(net, params, X, Y, "mse", truncate=truncate)
    ours_value, ours = net.loss_and_grad(params, X, Y, loss="mse", truncate=truncate)
    assert abs(ours_value - value) < 1e-12
    assert_close_params(ours, grads, 1e-10)


def test_truncated_bptt_in_graphs(rng):
    """Hand-built graphs follow the same definition: a delta crosses a recurrent synapse into
    step t − 1 only from steps t > T − k. Worked out by hand on a linear self-loop."""
    net = graph_with_loops(return_sequences=False)
    params = random_params(net, seed=4, scale=0.8)
    X, Y = data_for(net, "mse", rng, time=5)
    _, full = net.loss_and_grad(params, X, Y)
    _, same = net.loss_and_grad(params, X, Y, truncate=5)
    _, one = net.loss_and_grad(params, X, Y, truncate=1)
    for k in params:
        np.testing.assert_array_equal(same[k], full[k])
    assert max(rel_error(one[k], full[k]) for k in params) > 1e-6
    g = nm.GraphBuilder(1)
    h = g.neuron([g.inputs[0]], activation="linear", bias=False)
    g.connect(h, h, recurrent=True)
    loop = g.build([h], return_sequences=False)
    (w_key,) = [k for k in loop.param_specs() if k.key.endswith("from_inputs")]
    (u_key,) = [k for k in loop.param_specs() if k.key.endswith("_prev")]
    w, u = 0.7, 0.5
    p = nm.Params({w_key.key: np.array([[w]]), u_key.key: np.array([[u]])})
    xs = np.array([[[1.0], [2.0], [3.0]]])
    # h_t = w x_t + u h_{t-1}: h_0 = w, h_1 = 2w + uw, h_2 = 3w + u h_1; loss = h_2² (target 0)
    h0 = w * 1.0
    h1 = w * 2.0 + u * h0
    h2 = w * 3.0 + u * h1
    dh2 = 2 * h2
    for k, dw, du in (
        (1, dh2 * 3.0, dh2 * h1),                                       # only the last step
        (2, dh2 * (3.0 + u * 2.0), dh2 * (h1 + u * h0)),                # and one step back
        (3, dh2 * (3.0 + u * 2.0 + u * u * 1.0), dh2 * (h1 + u * h0)),  # full BPTT
    ):
        _, gr = loop.loss_and_grad(p, xs, np.array([[0.0]]), truncate=k)
        assert gr[w_key.key][0, 0] == pytest.approx(dw, rel=1e-12), k
        assert gr[u_key.key][0, 0] == pytest.approx(du, rel=1e-12), k


@needs_torch
@pytest.mark.parametrize("kind", list(CELLS))
def test_fit_adam_equals_torch_training(kind, rng):
    net = (nm.inputs(F) | cell(kind, 4, return_sequences=True) | cell(kind, 3)
           | nm.dense(2, "tanh") | nm.dense(1))
    run_fit_against_torch(net, "mse", rng)


@needs_torch
@pytest.mark.parametrize("kind", list(CELLS))
def test_fit_adam_per_step_loss_equals_torch_training(kind, rng):
    net = nm.inputs(F) | nm.dense(3, "tanh") | cell(kind, 4, return_sequences=True) | nm.dense(2)
    run_fit_against_torch(net, "mse", rng)


@needs_torch
def test_fit_adam_truncated_equals_torch_training(rng):
    net = nm.inputs(F) | nm.gru(3, return_sequences=True) | nm.lstm(3) | nm.dense(1)
    run_fit_against_torch(net, "mse", rng, truncate=2)


@needs_torch
def test_fit_adam_classification_per_step_equals_torch_training(rng):
    net = nm.inputs(F) | nm.lstm(4, return_sequences=True) | nm.dense(3, "softmax")
    run_fit_against_torch(net, "cross_entropy", rng)


def run_fit_against_torch(net, loss, rng, truncate=None, epochs=3, batch_size=4, lr=0.02):
    params = random_params(net, seed=13, scale=0.5)
    X, Y = data_for(net, loss, rng, batch=10, time=6)
    model = nm.fit(net, X, Y, loss=loss, optimizer=nm.adam(lr), epochs=epochs, batch_size=batch_size,
                   shuffle=False, params=params, dtype="float64", truncate=truncate, verbose=False)
    tm = nm.torch_module(net, params)
    for key, p in tm.named_parameters():  # bias_hh: only the GRU's b_hn is a param of ours;
        if key.endswith("bias_hh_l0"):  # zero gradients leave Adam's update exactly 0
            mask = bias_hh_mask(net, key)
            p.register_hook(lambda g, m=mask: g * m)
    opt = torch.optim.Adam(tm.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(X), batch_size):
            xb, yb = X[start:start + batch_size], Y[start:start + batch_size]
            opt.zero_grad()
            value = torch_loss(loss, torch_forward(net, tm, torch.from_numpy(xb), truncate), yb)
            value.backward()
            opt.step()
            total += value.item() * len(xb)
        losses.append(total / len(X))
    assert_close_params(model.params, nm.from_torch_state_dict(net, tm), 1e-8)
    np.testing.assert_allclose([h["loss"] for h in model.history], losses, rtol=1e-10)
    # training moved the params, so the comparison is not vacuous
    assert max(np.abs(model.params[k] - params[k]).max() for k in params) > 1e-3


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CELLS))
def test_two_dimensional_data_to_a_recurrent_network(kind):
    net = nm.inputs(F) | cell(kind, 3) | nm.dense(1)
    params = net.init()
    X2 = np.zeros((4, F))
    with pytest.raises(nm.ShapeError, match="3-D .*recurrent network reads sequences"):
        net.predict(params, X2)
    with pytest.raises(nm.ShapeError, match="3-D"):
        net.loss_and_grad(params, X2, np.zeros((4, 1)))
    with pytest.raises(nm.ShapeError, match="3-D"):
        nm.fit(net, X2, np.zeros((4, 1)), epochs=1, verbose=False)


def test_three_dimensional_data_to_a_dense_network():
    net = nm.inputs(F) | nm.dense(1)
    with pytest.raises(nm.ShapeError, match="2-D"):
        net.predict(net.init(), np.zeros((4, 3, F)))


def test_ragged_sequences():
    net = nm.inputs(F) | nm.lstm(3) | nm.dense(1)
    ragged = [[[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]], [[0.0, 1.0]]]
    with pytest.raises(nm.ShapeError, match="ragged|inhomogeneous"):
        net.predict(net.init(), ragged)
    with pytest.raises(nm.ShapeError, match="ragged|inhomogeneous"):
        nm.fit(net, ragged, [[1.0], [2.0]], epochs=1, verbose=False)
    ragged_features = [[[0.0, 1.0], [1.0]], [[0.0, 1.0], [1.0, 2.0]]]
    with pytest.raises(nm.ShapeError):
        net.predict(net.init(), ragged_features)


def test_sequence_targets_of_the_wrong_shape(rng):
    net = nm.inputs(F) | nm.gru(3, return_sequences=True) | nm.dense(2)
    X = rng.normal(size=(4, 5, F))
    with pytest.raises(nm.ShapeError, match=r"\(4, 5, 2\)"):
        net.loss_and_grad(net.init(), X, np.zeros((4, 2)))
    last = nm.inputs(F) | nm.gru(3) | nm.dense(2)
    with pytest.raises(nm.ShapeError, match=r"\(4, 2\)"):
        last.loss_and_grad(last.init(), X, np.zeros((4, 5, 2)))


def test_wrong_feature_count_empty_and_nan_sequences():
    net = nm.inputs(F) | nm.recurrent(3)
    with pytest.raises(nm.ShapeError, match="2 inputs"):
        net.predict(net.init(), np.zeros((2, 4, F + 1)))
    with pytest.raises(nm.EmptyDataError, match="length 0"):
        net.predict(net.init(), np.zeros((2, 0, F)))
    X = np.zeros((2, 4, F))
    X[1, 2, 0] = np.nan
    with pytest.raises(nm.NonFiniteError):
        net.predict(net.init(), X)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_truncate(bad):
    net = nm.inputs(F) | nm.lstm(2)
    with pytest.raises(nm.InvalidInputError, match="truncate"):
        net.loss_and_grad(net.init(), np.zeros((2, 3, F)), np.zeros((2, 2)), truncate=bad)


def test_windows_longer_than_the_series():
    with pytest.raises(nm.ShapeError, match="needs at least 31 steps; the series has 30"):
        nm.windows(np.zeros((30, F)), 30)


def test_recurrent_layer_after_a_last_step_layer():
    with pytest.raises(nm.GraphError, match="return_sequences=True"):
        nm.inputs(F) | nm.lstm(3) | nm.gru(2)
