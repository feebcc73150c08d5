"""Activations and losses on their own: derivatives, numerical stability, agreement with torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import numeric_grad_array, rel_error

import nomagic as nm

torch = pytest.importorskip("torch")
F = torch.nn.functional

ELEMENTWISE = ["linear", "step", "sigmoid", "tanh", "relu"]


def _away_from_kinks(rng, shape):
    """Random pre-activations at least 0.05 away from 0 (relu's kink, step's jump)."""
    z = rng.normal(0.0, 2.0, shape)
    return np.where(np.abs(z) < 0.05, 0.05 + np.abs(z), z)


# -- activations ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ELEMENTWISE + ["softmax"])
def test_activation_backward_matches_finite_differences(name, rng):
    act = nm.get_activation(name)
    z = _away_from_kinks(rng, (5, 4))
    da = rng.normal(size=(5, 4))
    a = act.forward(z)
    dz = act.backward(z, a, da)
    # backward is the vector-Jacobian product: the gradient of Σ da ⊙ f(z) with respect to z
    numeric = numeric_grad_array(lambda zz: float(np.sum(da * act.forward(zz))), z)
    assert dz.shape == z.shape
    assert rel_error(dz, numeric) < 1e-8 or np.abs(dz - numeric).max() < 1e-9


def test_softmax_backward_is_the_jacobian_vector_product(rng):
    act = nm.get_activation("softmax")
    z = rng.normal(size=(3, 5))
    da = rng.normal(size=(3, 5))
    a = act.forward(z)
    dz = act.backward(z, a, da)
    for row in range(3):
        p = a[row]
        jac = np.diag(p) - np.outer(p, p)  # ∂p_i/∂z_j = p_i(δ_ij − p_j), symmetric
        np.testing.assert_allclose(dz[row], jac.T @ da[row], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "softmax", "linear"])
def test_activation_forward_matches_torch(name, rng):
    z = rng.normal(0.0, 3.0, (6, 4))
    ours = nm.get_activation(name).forward(z)
    t = torch.from_numpy(z)
    ref = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
           "softmax": lambda x: torch.softmax(x, dim=-1), "linear": lambda x: x}[name](t).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=1e-15)


def test_step_is_heaviside():
    z = np.array([-2.0, -1e-300, 0.0, 1e-300, 3.0])
    np.testing.assert_array_equal(nm.get_activation("step").forward(z), [0, 0, 1, 1, 1])


def test_relu_gradient_at_zero_is_zero_like_torch():
    act = nm.get_activation("relu")
    z = np.array([[0.0, -1.0, 2.0]])
    dz = act.backward(z, act.forward(z), np.ones_like(z))
    t = torch.tensor(z, requires_grad=True)
    torch.relu(t).sum().backward()
    np.testing.assert_array_equal(dz, t.grad.numpy())


def test_sigmoid_is_stable_at_extremes():
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        a = nm.get_activation("sigmoid").forward(z)
    assert np.all(np.isfinite(a))
    assert a[0] == 0.0 and a[-1] == 1.0 and a[2] == 0.5
    # σ is computed as (1 + tanh(z/2)) / 2: exact to ~1e-16 absolute everywhere (far in the
    # negative tail that is not relative precision: σ(−50) ≈ 2e-22 comes out as 0)
    np.testing.assert_allclose(a[1], 1 / (1 + math.exp(50)), rtol=0, atol=1e-16)
    np.testing.assert_allclose(a[3], 1 / (1 + math.exp(-50)), rtol=1e-15)
    zz = np.linspace(-30, 30, 601)
    ref = 1 / (1 + np.exp(-zz))
    np.testing.assert_allclose(nm.get_activation("sigmoid").forward(zz), ref, rtol=0, atol=5e-16)


def test_softmax_is_stable_at_extremes():
    act = nm.get_activation("softmax")
    z = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 1000.0], [-1000.0, -1000.0, -999.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        a = act.forward(z)
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a[0], [1.0, 0.0, 0.0], atol=1e-300)
    np.testing.assert_allclose(a[1], [1 / 3] * 3, rtol=1e-15)
    e = math.exp(1.0)  # the last row is softmax([0, 0, 1])
    np.testing.assert_allclose(a[2], [1 / (2 + e), 1 / (2 + e), e / (2 + e)], rtol=1e-14)
    np.testing.assert_allclose(a.sum(axis=-1), 1.0, rtol=1e-15)


def test_unknown_activation():
    with pytest.raises(nm.UnknownNameError, match="swish.*choose one of"):
        nm.get_activation("swish")


# -- losses: the fused from-logits forms -------------------------------------------------------


def test_bce_from_logits_is_finite_and_equals_torch_at_extreme_logits():
    bce = nm.get_loss("binary_cross_entropy")
    z = np.array([[-1000.0], [-40.0], [0.0], [40.0], [1000.0], [1000.0], [-1000.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0], [1.0], [0.0], [1.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, dz = bce.from_logits(z, y)
    assert np.isfinite(value) and np.all(np.isfinite(dz))
    tz = torch.tensor(z, requires_grad=True)
    ref = F.binary_cross_entropy_with_logits(tz, torch.from_numpy(y))
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-14)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-14, atol=1e-300)
    # a wrong answer 1000 logits away costs 1000 (the per-sample loss is |z| there)
    value_one, _ = bce.from_logits(np.array([[1000.0]]), np.array([[0.0]]))
    assert value_one == pytest.approx(1000.0, rel=1e-15)


def test_ce_from_logits_is_finite_and_equals_torch_at_extreme_logits():
    ce = nm.get_loss("cross_entropy")
    z = np.array([[1000.0, 0.0, -1000.0], [1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -1000.0],
                  [500.0, 1000.0, -1000.0]])
    labels = np.array([0, 2, 1, 0])
    y = np.eye(3)[labels]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, dz = ce.from_logits(z, y)
    assert np.isfinite(value) and np.all(np.isfinite(dz))
    tz = torch.tensor(z, requires_grad=True)
    ref = F.cross_entropy(tz, torch.from_numpy(labels))
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-14)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-14, atol=1e-300)
    # by hand: losses 0, 2000, log 3, 500 → mean
    assert value == pytest.approx((0 + 2000 + math.log(3) + 500) / 4, rel=1e-15)


@pytest.mark.parametrize("name", ["binary_cross_entropy", "cross_entropy"])
def test_extreme_logits_through_a_network_stay_finite(name):
    # a one-layer net with huge weights: its output pre-activations are ±1000
    out_act = "sigmoid" if name == "binary_cross_entropy" else "softmax"
    n_out = 1 if name == "binary_cross_entropy" else 3
    net = nm.inputs(2) | nm.dense(n_out, activation=out_act)
    W = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0]])[:, :n_out]
    params = nm.Params({"dense_0.weight": W, "dense_0.bias": np.zeros(n_out)})
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    Y = np.array([[0.0], [1.0]]) if n_out == 1 else np.array([1, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, grads = net.loss_and_grad(params, X, Y, loss=name)
    assert np.isfinite(value)
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    tX = torch.from_numpy(X)
    logits = tX @ torch.from_numpy(W)
    if n_out == 1:
        ref = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(Y))
    else:
        ref = F.cross_entropy(logits, torch.from_numpy(Y))
    assert value == pytest.approx(ref.item(), rel=1e-14)
    assert value > 100  # both samples are confidently wrong


# -- losses on outputs, against torch ---------------------------------------------------------


def _data(rng, name, n=7, k=3):
    if name == "mse":
        return rng.normal(size=(n, k)), rng.normal(size=(n, k))
    if name == "binary_cross_entropy":
        return rng.uniform(0.05, 0.95, (n, k)), rng.uniform(0.0, 1.0, (n, k))
    logits = rng.normal(size=(n, k))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return p, np.eye(k)[rng.integers(0, k, n)]


def _torch_loss(name, p, y):
    if name == "mse":
        return F.mse_loss(p, y)
    if name == "binary_cross_entropy":
        return F.binary_cross_entropy(p, y)
    return F.nll_loss(torch.log(p), y.argmax(dim=1))


@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy", "cross_entropy"])
def test_loss_value_and_gradient_match_torch(name, rng):
    loss = nm.get_loss(name)
    y_hat, y = _data(rng, name)
    tp = torch.tensor(y_hat, requires_grad=True)
    ref = _torch_loss(name, tp, torch.from_numpy(y))
    ref.backward()
    assert loss.value(y_hat, y) == pytest.approx(ref.item(), rel=1e-13)
    np.testing.assert_allclose(loss.grad(y_hat, y), tp.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy", "cross_entropy"])
def test_loss_gradient_matches_finite_differences(name, rng):
    loss = nm.get_loss(name)
    y_hat, y = _data(rng, name)
    numeric = numeric_grad_array(lambda p: loss.value(p, y), y_hat)
    assert rel_error(loss.grad(y_hat, y), numeric) < 1e-8


@pytest.mark.parametrize("name", ["binary_cross_entropy", "cross_entropy"])
def test_fused_loss_matches_torch_from_logits(name, rng):
    loss = nm.get_loss(name)
    z = rng.normal(0.0, 3.0, (8, 4))
    tz = torch.tensor(z, requires_grad=True)
    if name == "binary_cross_entropy":
        y = rng.uniform(0, 1, (8, 4))
        ref = F.binary_cross_entropy_with_logits(tz, torch.from_numpy(y))
    else:
        labels = rng.integers(0, 4, 8)
        y = np.eye(4)[labels]
        ref = F.cross_entropy(tz, torch.from_numpy(labels))
    ref.backward()
    value, dz = loss.from_logits(z, y)
    assert value == pytest.approx(ref.item(), rel=1e-13)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-12, atol=1e-15)
    # and the fused form is the unfused loss of the partner activation, with its chain rule
    act = nm.get_activation(loss.partner)
    a = act.forward(z)
    assert value == pytest.approx(loss.value(a, y), rel=1e-12)
    np.testing.assert_allclose(dz, act.backward(z, a, loss.grad(a, y)), rtol=1e-9, atol=1e-14)
    numeric = numeric_grad_array(lambda zz: loss.from_logits(zz, y)[0], z)
    assert rel_error(dz, numeric) < 1e-8


def test_cross_entropy_with_soft_targets_matches_torch(rng):
    z = rng.normal(size=(5, 3))
    y = rng.dirichlet(np.ones(3), 5)
    value, dz = nm.get_loss("cross_entropy").from_logits(z, y)
    tz = torch.tensor(z, requires_grad=True)
    ref = F.cross_entropy(tz, torch.from_numpy(y))  # torch takes probabilities too
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-13)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_cross_entropy_class_indices_equal_one_hot(rng):
    net = nm.inputs(4) | nm.dense(5, activation="tanh") | nm.dense(3, activation="softmax")
    params = net.init(seed=3, dtype="float64")
    X = rng.normal(size=(10, 4))
    labels = rng.integers(0, 3, 10)
    one_hot = np.eye(3)[labels]
    v1, g1 = net.loss_and_grad(params, X, labels, loss="cross_entropy")
    v2, g2 = net.loss_and_grad(params, X, one_hot, loss="cross_entropy")
    v3, g3 = net.loss_and_grad(params, X, labels.astype(np.float64), loss="cross_entropy")
    assert v1 == v2 == v3
    for k in params:
        np.testing.assert_array_equal(g1[k], g2[k])
        np.testing.assert_array_equal(g1[k], g3[k])
    # and the value is torch's on the logits
    logits = np.tanh(X @ params["dense_0.weight"] + params["dense_0.bias"]) @ params["dense_1.weight"] \
        + params["dense_1.bias"]
    ref = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    assert v1 == pytest.approx(ref, rel=1e-13)


def test_targets_are_prepared_to_the_output_shape():
    ce = nm.get_loss("cross_entropy")
    np.testing.assert_array_equal(ce.targets(np.array([2, 0]), 3, np.float64), [[0, 0, 1], [1, 0, 0]])
    mse = nm.get_loss("mse")
    assert mse.targets(np.array([1.0, 2.0]), 1, np.float64).shape == (2, 1)


def test_losses_are_means_like_torch(rng):
    # doubling the batch with a copy of itself leaves every loss unchanged
    for name in ("mse", "binary_cross_entropy", "cross_entropy"):
        loss = nm.get_loss(name)
        y_hat, y = _data(rng, name)
        twice = loss.value(np.concatenate([y_hat, y_hat]), np.concatenate([y, y]))
        assert twice == pytest.approx(loss.value(y_hat, y), rel=1e-14)


def test_unknown_loss():
    with pytest.raises(nm.UnknownNameError, match="hinge.*choose one of"):
        nm.get_loss("hinge")
