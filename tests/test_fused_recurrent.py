"""The tensor engine's fast path (engines/fused.py) against its generic path, which is the reference.

Both run the same formulas; in float64 they must agree to rounding (1e-12) on outputs, the loss
and every gradient, for every layer kind, with sequences returned or not, stacked layers,
truncated BPTT and dense layers before and after.
"""

import numpy as np
import pytest

import nomagic as nm
from nomagic.engines.tensor.fused import chain_for

TOL = 1e-12
B, T, F = 5, 7, 3
KINDS = ["recurrent", "lstm", "gru"]


def _params(net, seed=3):
    rng = np.random.default_rng(seed)
    p = net.init(seed=seed, dtype="float64")
    # non-zero biases, so that every bias path is exercised
    return nm.Params({k: v + 0.1 * rng.standard_normal(v.shape) for k, v in p.items()})


def _compare(net, X, Y, loss="mse", truncate=None):
    assert chain_for(net) is not None, "a piped chain of layers must take the fast path"
    p = _params(net)
    np.testing.assert_allclose(net.predict(p, X), net.predict(p, X, fused=False), rtol=0, atol=TOL)
    l1, g1 = net.loss_and_grad(p, X, Y, loss=loss, truncate=truncate)
    l0, g0 = net.loss_and_grad(p, X, Y, loss=loss, truncate=truncate, fused=False)
    assert abs(l1 - l0) <= TOL
    assert set(g1) == set(g0) == set(p)
    for k in p:
        assert g1[k].shape == p[k].shape and g1[k].dtype == p[k].dtype
        np.testing.assert_allclose(g1[k], g0[k], rtol=0, atol=TOL, err_msg=k)
    assert sum(int(np.any(g0[k] != 0)) for k in p) >= len(p) // 2  # the comparison is not vacuous


@pytest.fixture
def rng():
    return np.random.default_rng(1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("truncate", [None, 1, 3, 100])
def test_last_step_then_dense(kind, truncate, rng):
    net = nm.inputs(F) | getattr(nm, kind)(6) | nm.dense(2)
    _compare(net, rng.standard_normal((B, T, F)), rng.standard_normal((B, 2)), truncate=truncate)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("truncate", [None, 2])
def test_sequences_stacked_with_dense_before_and_after(kind, truncate, rng):
    layer = getattr(nm, kind)
    net = (nm.inputs(F) | nm.dense(4, activation="tanh") | layer(6, return_sequences=True)
           | layer(5) | nm.dense(3, activation="softmax"))
    _compare(net, rng.standard_normal((B, T, F)), rng.integers(0, 3, B), "cross_entropy", truncate)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("truncate", [None, 4])
def test_return_sequences_outputs(kind, truncate, rng):
    layer = getattr(nm, kind)
    net = nm.inputs(F) | nm.dense(5, activation="relu") | layer(6, return_sequences=True) | nm.dense(2)
    _compare(net, rng.standard_normal((B, T, F)), rng.standard_normal((B, T, 2)), truncate=truncate)
    net = nm.inputs(F) | layer(4, return_sequences=True) | nm.dense(3, activation="softmax")
    _compare(net, rng.standard_normal((B, T, F)), rng.integers(0, 3, (B, T)), "cross_entropy", truncate)
    net = nm.inputs(F) | layer(4, return_sequences=True)
    _compare(net, rng.standard_normal((B, T, F)), rng.standard_normal((B, T, 4)), truncate=truncate)


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_layer_as_output_and_one_step(kind, rng):
    layer = getattr(nm, kind)
    _compare(nm.inputs(F) | layer(4), rng.standard_normal((B, T, F)), rng.standard_normal((B, 4)))
    _compare(nm.inputs(F) | layer(4) | nm.dense(2), rng.standard_normal((B, 1, F)), rng.standard_normal((B, 2)))


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "linear", "softmax"])
def test_elman_activations_and_fused_losses(activation, rng):
    X = rng.standard_normal((B, T, F))
    net = nm.inputs(F) | nm.recurrent(4, activation=activation, return_sequences=True)
    if activation == "sigmoid":  # binary cross-entropy from the logits of the recurrent layer
        _compare(net, X, rng.integers(0, 2, (B, T, 4)).astype(float), "binary_cross_entropy", 3)
    elif activation == "softmax":
        _compare(net, X, rng.integers(0, 4, (B, T)), "cross_entropy", 3)
    else:
        _compare(net, X, rng.standard_normal((B, T, 4)), "mse", 3)
    _compare(nm.inputs(F) | nm.recurrent(4, activation=activation) | nm.dense(1), X, rng.standard_normal((B, 1)))


@pytest.mark.parametrize("loss,out_act", [("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"),
                                          ("mse", "linear"), ("mse", "softmax"), ("mse", "tanh")])
def test_dense_chains(loss, out_act, rng):
    X = rng.standard_normal((B, F))
    for hidden in ("relu", "tanh", "sigmoid", "linear", "step"):
        net = nm.inputs(F) | nm.dense(8, activation=hidden) | nm.dense(6, activation="relu", bias=False) \
            | nm.dense(3, activation=out_act)
        if loss == "cross_entropy":
            Y = rng.integers(0, 3, B)
        elif loss == "binary_cross_entropy":
            Y = rng.integers(0, 2, (B, 3)).astype(float)
        else:
            Y = rng.standard_normal((B, 3))
        _compare(net, X, Y, loss)


def test_graph_builder_networks_stay_on_the_generic_path():
    g = nm.GraphBuilder(2)
    a = g.neuron([g.inputs[0], g.inputs[1]], activation="tanh")
    b = g.neuron([a, g.inputs[1]], activation="sigmoid")
    net = g.build(outputs=[b])
    assert chain_for(net) is None
    p = net.init(seed=0, dtype="float64")
    X = np.random.default_rng(0).standard_normal((4, 2))
    np.testing.assert_allclose(net.predict(p, X), net.predict(p, X, fused=False), rtol=0, atol=0)


def test_a_network_read_back_from_its_description_keeps_the_fast_path(rng):
    net = nm.inputs(F) | nm.lstm(4) | nm.dense(2)
    again = nm.Network.from_dict(net.to_dict())
    assert chain_for(again) is not None
    _compare(again, rng.standard_normal((B, T, F)), rng.standard_normal((B, 2)))


@pytest.mark.parametrize("kind", KINDS + ["dense"])
def test_training_steps_match_the_generic_path(kind, rng):
    if kind == "dense":
        net = nm.inputs(F) | nm.dense(8, activation="relu") | nm.dense(3, activation="softmax")
        X, Y = rng.standard_normal((20, F)), rng.integers(0, 3, 20)
    else:
        net = nm.inputs(F) | getattr(nm, kind)(6, return_sequences=True) | getattr(nm, kind)(4) \
            | nm.dense(3, activation="softmax")
        X, Y = rng.standard_normal((20, T, F)), rng.integers(0, 3, 20)
    kw = dict(loss="cross_entropy", optimizer=nm.adam(1e-2), epochs=3, batch_size=6, seed=0,
              dtype="float64", verbose=False, clip_norm=1.0, l2=1e-3)
    if kind != "dense":
        kw["truncate"] = 5
    fast = nm.fit(net, X, Y, **kw)
    slow = nm.fit(net, X, Y, fused=False, **kw)
    for k in fast.params:
        np.testing.assert_allclose(fast.params[k], slow.params[k], rtol=0, atol=1e-10, err_msg=k)
    assert [h["loss"] for h in fast.history] == pytest.approx([h["loss"] for h in slow.history], abs=1e-12)


def test_float32_agrees_with_the_generic_path(rng):
    net = nm.inputs(F) | nm.gru(8, return_sequences=True) | nm.lstm(8) | nm.dense(2)
    p = net.init(seed=0)
    X, Y = rng.standard_normal((B, T, F)).astype(np.float32), rng.standard_normal((B, 2))
    l1, g1 = net.loss_and_grad(p, X, Y)
    l0, g0 = net.loss_and_grad(p, X, Y, fused=False)
    assert abs(l1 - l0) < 1e-5
    for k in p:
        assert g1[k].dtype == np.float32
        np.testing.assert_allclose(g1[k], g0[k], rtol=0, atol=1e-5, err_msg=k)


def test_fused_option_is_checked():
    net = nm.inputs(2) | nm.dense(1)
    with pytest.raises(nm.InvalidInputError):
        net.predict(net.init(), np.zeros((1, 2)), fused="yes")


def test_inputs_and_params_are_not_modified(rng):
    net = nm.inputs(F) | nm.dense(4, activation="relu") | nm.lstm(3) | nm.dense(2, activation="softmax")
    p = net.init(seed=0, dtype="float64")
    X = rng.standard_normal((B, T, F))
    X0 = X.copy()
    before = {k: v.copy() for k, v in p.items()}
    net.loss_and_grad(p, X, rng.integers(0, 2, B), loss="cross_entropy")
    net.predict(p, X)
    np.testing.assert_array_equal(X, X0)
    for k in p:
        np.testing.assert_array_equal(p[k], before[k])


def test_optimizer_step_split_among_threads_gives_the_same_numbers(monkeypatch, rng):
    from nomagic.engines.tensor import Trainer
    from nomagic.engines.tensor import blas as _blas

    net = nm.inputs(F) | nm.dense(40, activation="tanh") | nm.dense(2)
    X, Y = rng.standard_normal((30, F)), rng.standard_normal((30, 2))
    kw = dict(loss="mse", optimizer=nm.adam(1e-2), epochs=2, batch_size=8, seed=0, dtype="float64", verbose=False)
    whole = nm.fit(net, X, Y, **kw)
    monkeypatch.setattr(Trainer, "PARALLEL_MIN", 1)
    monkeypatch.setattr(Trainer, "CHUNK", 7)
    monkeypatch.setattr(_blas, "blas_threads", lambda: 3)
    split = nm.fit(net, X, Y, **kw)
    for k in whole.params:
        np.testing.assert_array_equal(whole.params[k], split.params[k])


def test_blas_threads_are_given_back(rng):
    from nomagic.engines.tensor import blas as _blas

    before = _blas.blas_threads()
    if before is None:
        pytest.skip("threadpoolctl cannot see NumPy's BLAS here")
    with _blas.single_threaded(True):
        assert _blas.blas_threads() == 1
        with _blas.single_threaded(True):  # nested
            assert _blas.blas_threads() == 1
        assert _blas.blas_threads() == 1
    assert _blas.blas_threads() == before
    net = nm.inputs(F) | nm.dense(4, activation="relu") | nm.dense(2)
    nm.fit(net, rng.standard_normal((20, F)), rng.standard_normal((20, 2)), epochs=2, batch_size=5, verbose=False)
    assert _blas.blas_threads() == before
