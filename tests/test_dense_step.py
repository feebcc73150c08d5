"""The tensor engine's training step for plain MLPs (``fused._DenseStep``) against the generic
path: the same numbers to rounding in float64, on small batches (backward pass feature-major) and
large ones (batch-major), for every loss, activation and bias setting it takes, through
``loss_and_grad`` and through whole ``nm.fit`` runs (Adam, a last partial batch, a Workspace
reused across steps)."""

import numpy as np
import pytest

import nomagic as nm
from nomagic.engines.tensor.fused import _DenseStep

TOL = 1e-12
F = 6


def _net(hidden, out_act, bias=True):
    return nm.inputs(F) | nm.dense(9, activation=hidden) | nm.dense(7, activation="relu", bias=bias) \
        | nm.dense(3, activation=out_act)


def _targets(loss, rng, n):
    if loss == "cross_entropy":
        return rng.integers(0, 3, n)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, (n, 3)).astype(float)
    return rng.standard_normal((n, 3))


@pytest.mark.parametrize("rows", [1, 5, _DenseStep.FM_ROWS - 1, _DenseStep.FM_ROWS, 80])
@pytest.mark.parametrize("loss,out_act", [("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"),
                                          ("mse", "linear"), ("mse", "tanh"), ("mse", "relu"), ("mse", "softmax")])
def test_loss_and_grad_equals_the_generic_path(rows, loss, out_act):
    rng = np.random.default_rng(rows)
    for hidden in ("relu", "tanh", "sigmoid", "linear"):
        for bias in (True, False):
            net = _net(hidden, out_act, bias)
            p = nm.Params({k: v + 0.1 * rng.standard_normal(v.shape)
                           for k, v in net.init(seed=1, dtype="float64").items()})
            X, Y = rng.standard_normal((rows, F)), _targets(loss, rng, rows)
            l1, g1 = net.loss_and_grad(p, X, Y, loss=loss)
            l0, g0 = net.loss_and_grad(p, X, Y, loss=loss, fused=False)
            assert abs(l1 - l0) <= TOL
            for k in p:
                np.testing.assert_allclose(g1[k], g0[k], rtol=0, atol=TOL, err_msg=f"{hidden} {bias} {k}")


@pytest.mark.parametrize("batch_size", [16, 70])
@pytest.mark.parametrize("loss,out_act", [("cross_entropy", "softmax"), ("mse", "tanh")])
def test_fit_equals_the_generic_path(batch_size, loss, out_act):
    rng = np.random.default_rng(0)
    n = 150  # a last partial batch of 6 or 10 rows: a second step of another size
    X, Y = rng.standard_normal((n, F)), _targets(loss, rng, n)
    net = _net("relu", out_act)
    runs = [nm.fit(net, X, Y, loss=loss, optimizer=nm.adam(1e-2), epochs=3, batch_size=batch_size,
                   dtype="float64", verbose=False, fused=fused) for fused in (True, False)]
    for k in runs[0].params:
        np.testing.assert_allclose(runs[0].params[k], runs[1].params[k], rtol=0, atol=1e-10, err_msg=k)
    np.testing.assert_allclose([h["loss"] for h in runs[0].history], [h["loss"] for h in runs[1].history],
                               rtol=1e-10)
    assert [h["accuracy"] for h in runs[0].history if "accuracy" in h] == \
        [h["accuracy"] for h in runs[1].history if "accuracy" in h]
