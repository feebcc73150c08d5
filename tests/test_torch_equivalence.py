"""The same params in nomagic and in an equivalent PyTorch model give the same numbers (float64):
forward outputs, every gradient, optimizer steps, and a few steps of training with ``nm.fit``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_params, random_targets, torch_grad_as_ours, torch_mlp_from_params

import nomagic as nm

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = 1e-10


def _torch_loss(loss: str, out, Y, *, logits: bool):
    """torch's loss on the model output (``logits``: the output activation was left out)."""
    if loss == "mse":
        return F.mse_loss(out, Y)
    if loss == "binary_cross_entropy":
        return F.binary_cross_entropy_with_logits(out, Y) if logits else F.binary_cross_entropy(out, Y)
    if Y.dtype == torch.int64:
        return F.cross_entropy(out, Y) if logits else F.nll_loss(torch.log(out), Y)
    return F.cross_entropy(out, Y) if logits else -(Y * torch.log(out)).sum(dim=1).mean()


CASES = [
    # (hidden activations, output activation, loss)
    (("tanh", "relu"), "linear", "mse"),
    (("sigmoid",), "sigmoid", "mse"),
    (("relu", "relu"), "softmax", "cross_entropy"),
    (("tanh",), "sigmoid", "binary_cross_entropy"),
    (("linear", "sigmoid"), "tanh", "mse"),
    (("relu",), "softmax", "mse"),
    (("softmax",), "relu", "mse"),
]


def _mlp(hidden, output, n_in=5, width=7, n_out=3):
    net = nm.inputs(n_in)
    for act in hidden:
        net = net | nm.dense(width, activation=act)
    return net | nm.dense(n_out, activation=output)




@pytest.mark.parametrize("hidden,output,loss", CASES)
def test_forward_and_gradients_equal_torch(hidden, output, loss, rng):
    net = _mlp(hidden, output)
    params = random_params(net, seed=len(hidden) * 10 + len(output))
    X = rng.normal(size=(11, 5))
    Y = random_targets(rng, loss, 11, 3)

    model, tparams = torch_mlp_from_params(net, params)
    out = model(torch.from_numpy(X))
    np.testing.assert_allclose(net.predict(params, X), out.detach().numpy(), rtol=0, atol=TOL)

    value, grads = net.loss_and_grad(params, X, Y, loss=loss)
    ref = _torch_loss(loss, out, torch.from_numpy(Y), logits=False)
    ref.backward()
    assert abs(value - ref.item()) < TOL
    assert set(grads) == set(tparams)
    for k, t in tparams.items():
        np.testing.assert_allclose(grads[k], torch_grad_as_ours(k, t), rtol=0, atol=TOL, err_msg=k)


@pytest.mark.parametrize("output,loss", [("sigmoid", "binary_cross_entropy"), ("softmax", "cross_entropy")])
def test_fused_losses_equal_torch_from_logits(output, loss, rng):
    # torch's recommended form: no final activation, a loss that takes logits
    net = _mlp(("tanh",), output)
    params = random_params(net, seed=5, scale=1.5)
    X = rng.normal(size=(9, 5))
    Y = random_targets(rng, loss, 9, 3)
    if loss == "cross_entropy":
        Y_soft = rng.dirichlet(np.ones(3), 9)  # probability targets too
    model, tparams = torch_mlp_from_params(net, params, final_activation=False)
    for targets in ([Y, Y_soft] if loss == "cross_entropy" else [Y]):
        model.zero_grad()
        ref = _torch_loss(loss, model(torch.from_numpy(X)), torch.from_numpy(targets), logits=True)
        ref.backward()
        value, grads = net.loss_and_grad(params, X, targets, loss=loss)
        assert abs(value - ref.item()) < TOL
        for k, t in tparams.items():
            np.testing.assert_allclose(grads[k], torch_grad_as_ours(k, t), rtol=0, atol=TOL, err_msg=k)


def test_layers_without_bias_equal_torch(rng):
    net = nm.inputs(4) | nm.dense(6, activation="tanh", bias=False) | nm.dense(2, bias=False)
    params = random_params(net, seed=9)
    model, tparams = torch_mlp_from_params(net, params)
    X, Y = rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    out = model(torch.from_numpy(X))
    F.mse_loss(out, torch.from_numpy(Y)).backward()
    np.testing.assert_allclose(net.predict(params, X), out.detach().numpy(), atol=TOL, rtol=0)
    _, grads = net.loss_and_grad(params, X, Y)
    assert set(grads) == {"dense_0.weight", "dense_1.weight"}
    for k, t in tparams.items():
        np.testing.assert_allclose(grads[k], torch_grad_as_ours(k, t), rtol=0, atol=TOL)


def test_lone_neuron_equals_torch_linear(rng):
    neuron = nm.Neuron([0.3, -0.8, 1.1], bias=-0.2, activation="sigmoid")
    lin = torch.nn.Linear(3, 1, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.3, -0.8, 1.1]], dtype=torch.float64))
        lin.bias.copy_(torch.tensor([-0.2], dtype=torch.float64))
    X = rng.normal(size=(6, 3))
    ref = torch.sigmoid(lin(torch.from_numpy(X))).detach().numpy()[:, 0]
    np.testing.assert_allclose(neuron(X), ref, rtol=0, atol=TOL)
    net, params = neuron.as_network()
    np.testing.assert_allclose(net.predict(params, X)[:, 0], ref, rtol=0, atol=TOL)


# -- optimizers ---------------------------------------------------------------------------------


def _copy(arrays):
    return {k: np.array(v, copy=True) for k, v in arrays.items()}


def _grad_sequence(params, steps, seed):
    r = np.random.default_rng(seed)
    return [{k: r.normal(size=v.shape) for k, v in params.items()} for _ in range(steps)]


@pytest.mark.parametrize("ours,theirs", [
    (lambda: nm.adam(1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    (lambda: nm.adam(3e-3, beta1=0.8, beta2=0.99, eps=1e-6),
     lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.8, 0.99), eps=1e-6)),
    (lambda: nm.sgd(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (lambda: nm.sgd(0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
], ids=["adam", "adam-custom", "sgd", "sgd-momentum"])
def test_optimizer_step_equals_torch(ours, theirs):
    net = nm.inputs(3) | nm.dense(4, activation="tanh") | nm.dense(2)
    params = random_params(net, seed=11)
    tensors = {k: torch.tensor(np.array(v), requires_grad=True) for k, v in params.items()}
    topt = theirs(list(tensors.values()))
    opt = ours()
    state = opt.init(params)
    before = {k: np.array(v) for k, v in params.items()}
    p = params
    for g in _grad_sequence(params, 6, seed=3):
        p_before, slots_before = _copy(p), {s: _copy(a) for s, a in state.slots.items()}
        new_state, p_new = opt.step(state, p, g)
        for k in p:  # pure: the params and state given are untouched
            np.testing.assert_array_equal(p[k], p_before[k])
            for s in slots_before:
                np.testing.assert_array_equal(state.slots[s][k], slots_before[s][k])
        state, p = new_state, p_new
        for k, t in tensors.items():
            t.grad = torch.from_numpy(g[k].copy())
        topt.step()
        for k, t in tensors.items():
            np.testing.assert_allclose(p[k], t.detach().numpy(), rtol=0, atol=1e-12, err_msg=k)
    assert state.step == 6
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


# -- training with nm.fit -------------------------------------------------------------------------


def _torch_train(net, params, X, Y, loss, make_opt, epochs, batch_size, *, logits: bool):
    model, tparams = torch_mlp_from_params(net, params, final_activation=not logits)
    opt = make_opt(list(model.parameters()))
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(X), batch_size):
            opt.zero_grad()
            value = _torch_loss(loss, model(tX[start:start + batch_size]), tY[start:start + batch_size],
                                logits=logits)
            value.backward()
            opt.step()
            total += value.item() * len(tX[start:start + batch_size])
        losses.append(total / len(X))
    values = {k: t.detach().numpy() for k, t in tparams.items()}
    return {k: v.T if k.endswith(".weight") else v for k, v in values.items()}, losses


@pytest.mark.parametrize("loss,output,ours,theirs,batch", [
    ("mse", "linear", lambda: nm.sgd(0.1), lambda p: torch.optim.SGD(p, lr=0.1), None),
    ("cross_entropy", "softmax", lambda: nm.adam(1e-2), lambda p: torch.optim.Adam(p, lr=1e-2), None),
    ("binary_cross_entropy", "sigmoid", lambda: nm.sgd(0.2, momentum=0.9),
     lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.9), None),
    ("cross_entropy", "softmax", lambda: nm.adam(5e-3), lambda p: torch.optim.Adam(p, lr=5e-3), 8),
], ids=["mse-sgd", "ce-adam", "bce-momentum", "ce-adam-minibatch"])
def test_fit_equals_torch_training(loss, output, ours, theirs, batch, rng):
    net = nm.inputs(4) | nm.dense(6, activation="tanh") | nm.dense(5, activation="relu") \
        | nm.dense(3, activation=output)
    params = net.init(seed=2, dtype="float64")
    X = rng.normal(size=(20, 4))
    Y = random_targets(rng, loss, 20, 3)
    batch_size = batch or len(X)
    epochs = 5
    model = nm.fit(net, X, Y, loss=loss, optimizer=ours(), epochs=epochs, batch_size=batch_size,
                   shuffle=False, params=params, verbose=False)
    assert model.params.dtype == np.float64
    want, losses = _torch_train(net, params, X, Y, loss, theirs, epochs, batch_size,
                                logits=loss != "mse")
    for k, v in want.items():
        np.testing.assert_allclose(model.params[k], v, rtol=0, atol=1e-8, err_msg=k)
        assert not np.allclose(model.params[k], params[k])  # training did move them
    np.testing.assert_allclose([h["loss"] for h in model.history], losses, rtol=1e-10)


def test_fit_one_epoch_full_batch_is_one_optimizer_step(rng):
    net = nm.inputs(3) | nm.dense(4, activation="sigmoid") | nm.dense(1)
    params = random_params(net, seed=4)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(10, 1))
    model = nm.fit(net, X, Y, loss="mse", optimizer=nm.adam(1e-2), epochs=1, batch_size=10,
                   shuffle=False, params=params, verbose=False)
    _, grads = net.loss_and_grad(params, X, Y, loss="mse")
    opt = nm.adam(1e-2)
    _, stepped = opt.step(opt.init(params), params, grads)
    for k in params:
        np.testing.assert_allclose(model.params[k], stepped[k], rtol=0, atol=1e-14)
    torch_params, _ = _torch_train(net, params, X, Y, "mse", lambda p: torch.optim.Adam(p, lr=1e-2), 1, 10,
                                   logits=False)
    for k in params:
        np.testing.assert_allclose(model.params[k], torch_params[k], rtol=0, atol=1e-12)
