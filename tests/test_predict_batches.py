"""``predict(..., batch_size=N)``: the same outputs as all at once, on every engine and path."""

from __future__ import annotations

import numpy as np
import pytest

import nomagic as nm


@pytest.mark.parametrize("engine,options", [("tensor", {}), ("tensor", {"fused": False}), ("processes", {})])
@pytest.mark.parametrize("seq", [False, True])
def test_batched_predict_equals_unbatched(engine, options, seq, rng):
    net = nm.inputs(3) | nm.lstm(4, return_sequences=seq) | nm.dense(2, activation="softmax")
    p = net.init(seed=0, dtype="float64")
    X = rng.normal(size=(11, 5, 3))
    whole = net.predict(p, X, engine=engine, **options)
    for n in (1, 4, 11, 50):
        np.testing.assert_allclose(net.predict(p, X, engine=engine, batch_size=n, **options), whole,
                                   rtol=0, atol=1e-14)


def test_batched_predict_on_a_model_and_a_dense_net(rng):
    net = nm.inputs(3) | nm.dense(8, activation="relu") | nm.dense(2)
    X = rng.normal(size=(1001, 3))
    model = nm.fit(net, X, X[:, :2], epochs=1, verbose=False)
    whole = model.predict(X)
    out = model.predict(X, batch_size=100)
    assert out.shape == whole.shape and out.dtype == whole.dtype
    np.testing.assert_allclose(out, whole, rtol=1e-6, atol=1e-7)  # float32; BLAS blocking may differ


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_bad_batch_size(bad, rng):
    net = nm.inputs(3) | nm.dense(2)
    with pytest.raises(nm.InvalidInputError, match="batch_size must be a positive integer"):
        net.predict(net.init(seed=0), rng.normal(size=(4, 3)), batch_size=bad)
    with pytest.raises(nm.InvalidInputError, match="batch_size must be a positive integer"):
        net.predict(net.init(seed=0), rng.normal(size=(4, 3)), engine="processes", batch_size=bad)
