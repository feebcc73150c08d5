"""Per-class and per-sample weights in the losses: the weighted mean Σ wᵢ·lᵢ / Σ wᵢ, against
PyTorch (CrossEntropyLoss(weight=...), BCELoss with weights) and the definition (mse), finite
differences in float64, both engines, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import numeric_grad

import nomagic as nm
from nomagic.model.losses import row_weights

torch = pytest.importorskip("torch")
nn = torch.nn


def _linear(n_in, n_out, act):
    return nm.inputs(n_in) | nm.dense(n_out, activation=act, name="out")


def _torch_linear(net, params):
    lin = nn.Linear(*params["out.weight"].shape).double()
    state = nm.to_torch_state_dict(net, params)
    lin.load_state_dict({"weight": torch.as_tensor(state["out.weight"]).clone(),
                         "bias": torch.as_tensor(state["out.bias"]).clone()})
    return lin


def _grads_of(lin):
    return {"out.weight": lin.weight.grad.numpy().T, "out.bias": lin.bias.grad.numpy()}


@pytest.mark.parametrize("engine", ["tensor", "processes"])
def test_class_weights_equal_torch_cross_entropy(engine, rng):
    net = _linear(4, 3, "softmax")
    p = net.init(seed=0, dtype="float64")
    X, y = rng.normal(size=(9, 4)), rng.integers(0, 3, 9)
    cw = np.array([0.5, 2.0, 3.0])
    w = row_weights(nm.get_loss("cross_entropy"), np.eye(3)[y], class_weight=cw)
    np.testing.assert_array_equal(w, cw[y])
    value, grads = net.loss_and_grad(p, X, y, loss="cross_entropy", sample_weight=w, engine=engine)
    lin = _torch_linear(net, p)
    ref = nn.CrossEntropyLoss(weight=torch.tensor(cw))(lin(torch.tensor(X)), torch.tensor(y))
    ref.backward()
    assert value == pytest.approx(ref.item(), abs=1e-12)
    for k, g in _grads_of(lin).items():
        np.testing.assert_allclose(grads[k], g, rtol=0, atol=1e-12)


@pytest.mark.parametrize("engine", ["tensor", "processes"])
@pytest.mark.parametrize("act", ["sigmoid", "tanh"])  # fused from the logits, and from the outputs
def test_weighted_bce_equals_torch(engine, act, rng):
    net = _linear(4, 1, act)
    p = net.init(seed=1, dtype="float64")
    X = rng.normal(size=(8, 4))
    y = rng.integers(0, 2, (8, 1)).astype(float)
    sw = rng.uniform(0.1, 3.0, 8)
    if act == "tanh":  # outputs in (0, 1) with a non-partner activation: tanh(z)/2 + 1/2 is not it, so
        X = 0.1 * X    # keep tanh's outputs positive by choosing the bias
        p = nm.Params({**p, "out.bias": np.array([1.0])})
    value, grads = net.loss_and_grad(p, X, y, loss="binary_cross_entropy", sample_weight=sw, engine=engine)
    lin = _torch_linear(net, p)
    z = lin(torch.tensor(X))
    out = torch.sigmoid(z) if act == "sigmoid" else torch.tanh(z)
    w = torch.tensor(sw)[:, None]
    ref = nn.BCELoss(weight=w, reduction="sum")(out, torch.tensor(y)) / w.sum()
    ref.backward()
    assert value == pytest.approx(ref.item(), abs=1e-12)
    for k, g in _grads_of(lin).items():
        np.testing.assert_allclose(grads[k], g, rtol=0, atol=1e-12)


def test_weighted_mse_from_the_definition_and_finite_differences(rng):
    net = nm.inputs(3) | nm.dense(4, activation="tanh") | nm.dense(2)
    p = net.init(seed=2, dtype="float64")
    X, Y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    sw = rng.uniform(0, 2, 7)
    value, grads = net.loss_and_grad(p, X, Y, sample_weight=sw)
    y_hat = net.predict(p, X)
    assert value == pytest.approx(np.sum(sw * np.mean((y_hat - Y) ** 2, axis=1)) / sw.sum(), abs=1e-13)
    num = numeric_grad(lambda q: net.loss_and_grad(q, X, Y, sample_weight=sw)[0], p)
    for k in p:
        np.testing.assert_allclose(grads[k], num[k], rtol=0, atol=1e-8)
    # weights all equal: the plain mean
    assert net.loss_and_grad(p, X, Y, sample_weight=np.full(7, 3.0))[0] == pytest.approx(
        net.loss_and_grad(p, X, Y)[0], abs=1e-14)


@pytest.mark.parametrize("loss,out", [("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"),
                                      ("mse", "linear")])
def test_sequence_weights_per_sample_and_step(loss, out, rng):
    n_out = 1 if loss == "binary_cross_entropy" else 3
    net = nm.inputs(2) | nm.gru(3, return_sequences=True) | nm.dense(n_out, activation=out)
    p = net.init(seed=3, dtype="float64")
    X = rng.normal(size=(4, 5, 2))
    if loss == "cross_entropy":
        Y = rng.integers(0, 3, (4, 5))
    elif loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (4, 5, 1)).astype(float)
    else:
        Y = rng.normal(size=(4, 5, 3))
    w = rng.uniform(0, 2, (4, 5))
    value, grads = net.loss_and_grad(p, X, Y, loss=loss, sample_weight=w)
    num = numeric_grad(lambda q: net.loss_and_grad(q, X, Y, loss=loss, sample_weight=w)[0], p)
    for k in p:
        np.testing.assert_allclose(grads[k], num[k], rtol=0, atol=1e-8, err_msg=k)
    for fused in (False,):
        v2, g2 = net.loss_and_grad(p, X, Y, loss=loss, sample_weight=w, fused=fused)
        assert v2 == pytest.approx(value, abs=1e-13)
    v3, g3 = net.loss_and_grad(p, X, Y, loss=loss, sample_weight=w, engine="processes")
    assert v3 == pytest.approx(value, abs=1e-12)
    for k in p:
        np.testing.assert_allclose(g3[k], grads[k], rtol=0, atol=1e-12)
    # a weight per sample is the same weight at every step
    ws = rng.uniform(0, 2, 4)
    a = net.loss_and_grad(p, X, Y, loss=loss, sample_weight=ws)[0]
    b = net.loss_and_grad(p, X, Y, loss=loss, sample_weight=np.repeat(ws[:, None], 5, axis=1))[0]
    assert a == pytest.approx(b, abs=1e-14)


def test_fit_with_class_weight_equals_a_torch_loop(rng):
    net = _linear(4, 3, "softmax")
    p = net.init(seed=4, dtype="float64")
    X, y = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    sw = rng.uniform(0.2, 2, 20)
    cw = {0: 0.3, 2: 4.0}
    model = nm.fit(net, X, y, loss="cross_entropy", optimizer=nm.sgd(0.1), epochs=3, batch_size=6, seed=1,
                   params=p, class_weight=cw, sample_weight=sw, verbose=False)
    lin = _torch_linear(net, p)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    cwt = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64)
    losses = []
    for epoch in range(3):
        order = np.random.default_rng([1, epoch]).permutation(20)
        total = 0.0
        for s in range(0, 20, 6):
            idx = order[s:s + 6]
            logp = torch.log_softmax(lin(torch.tensor(X[idx])), -1)
            w = torch.tensor(sw[idx]) * cwt[torch.tensor(y[idx])]
            loss = -(w * logp[torch.arange(len(idx)), torch.tensor(y[idx])]).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / 20)
    for k, g in {"out.weight": lin.weight.detach().numpy().T, "out.bias": lin.bias.detach().numpy()}.items():
        np.testing.assert_allclose(model.params[k], g, rtol=0, atol=1e-12)
    np.testing.assert_allclose([h["loss"] for h in model.history], losses, rtol=0, atol=1e-12)
    # the processes engine trains to the same params
    theirs = nm.fit(net, X, y, loss="cross_entropy", optimizer=nm.sgd(0.1), epochs=3, batch_size=6, seed=1,
                    params=p, class_weight=cw, sample_weight=sw, verbose=False, engine="processes")
    for k in p:
        np.testing.assert_allclose(theirs.params[k], model.params[k], rtol=0, atol=1e-12)


def test_binary_class_weight(rng):
    y = np.array([0, 1, 1, 0], float)[:, None]
    w = row_weights(nm.get_loss("binary_cross_entropy"), y, sample_weight=[1, 2, 3, 4], class_weight={1: 5.0})
    np.testing.assert_array_equal(w, [1, 10, 15, 4])


@pytest.mark.parametrize("kw,match", [
    ({"sample_weight": np.ones(5)}, r"sample_weight must have shape \(6,\)"),
    ({"sample_weight": -np.ones(6)}, "sample_weight must be >= 0"),
    ({"sample_weight": np.array([1, 1, np.nan, 1, 1, 1])}, "finite"),
    ({"sample_weight": np.zeros(6)}, "all 0"),
    ({"sample_weight": ["a"] * 6}, "sample_weight must be numbers"),
    ({"class_weight": {3: 1.0}}, r"class 3, which is not a class of this network \(0 to 2\)"),
    ({"class_weight": {"cat": 1.0}}, "class 'cat'"),
    ({"class_weight": [1.0, 2.0]}, r"one weight per class \(3\)"),
    ({"class_weight": {0: -1.0}}, "must be >= 0"),
    ({"class_weight": {0: float("nan")}}, "finite"),
])
def test_bad_weights(kw, match, rng):
    net = _linear(2, 3, "softmax")
    X, y = rng.normal(size=(6, 2)), rng.integers(0, 3, 6)
    with pytest.raises(nm.InvalidInputError, match=match):
        nm.fit(net, X, y, loss="cross_entropy", epochs=1, verbose=False, **kw)


def test_bad_weights_for_the_loss(rng):
    X = rng.normal(size=(6, 2))
    with pytest.raises(nm.InvalidInputError, match="class_weight needs a classification loss"):
        nm.fit(_linear(2, 1, "linear"), X, rng.normal(size=6), epochs=1, class_weight={0: 2.0}, verbose=False)
    with pytest.raises(nm.InvalidInputError, match="not probabilities"):
        nm.fit(_linear(2, 2, "softmax"), X, np.full((6, 2), 0.5), loss="cross_entropy", epochs=1,
               class_weight=[1, 2], verbose=False)
    with pytest.raises(nm.InvalidInputError, match="one output"):
        nm.fit(_linear(2, 2, "sigmoid"), X, np.ones((6, 2)), loss="binary_cross_entropy", epochs=1,
               class_weight=[1, 2], verbose=False)
    with pytest.raises(nm.InvalidInputError, match=r"sample_weight must have shape \(6,\)"):
        _linear(2, 1, "linear").loss_and_grad(_linear(2, 1, "linear").init(seed=0), X, np.zeros(6),
                                              sample_weight=np.ones((6, 2)))
