"""Dropout together with truncated BPTT and batched predict (the two features met in a merge).

- ``nm.fit(..., tbptt=k)`` on a network with dropout: every chunk of a batch gets the batch's
  dropout key (one mask per sequence), so training is reproducible, differs from the same network
  without dropout, agrees between the fused and the generic path, and ``tbptt=T`` (one chunk) is
  plain training with dropout;
- ``predict(..., dropout_key=..., batch_size=N)`` equals the unbatched call (to rounding, as
  ``tests/test_predict_batches.py``): each batch's masks are those of its rows' positions in X.
"""

from __future__ import annotations

import numpy as np
import pytest

import nomagic as nm

FIT = {"optimizer": "adam", "batch_size": 4, "seed": 5, "dtype": "float64", "verbose": False, "epochs": 2}


def _net(rate: float, seq: bool):
    return (nm.inputs(2) | nm.lstm(4, return_sequences=True) | nm.dropout(rate) | nm.gru(3, return_sequences=seq)
            | nm.dropout(rate) | nm.dense(2))


def _data(seq: bool):
    r = np.random.default_rng(7)
    X = r.normal(size=(10, 6, 2))
    return X, r.normal(size=(10, 6, 2) if seq else (10, 2))


def _diff(a, b) -> float:
    assert set(a) == set(b)
    return max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a)


@pytest.mark.parametrize("seq", [True, False])
def test_tbptt_with_dropout_is_reproducible_and_drops(seq):
    X, Y = _data(seq)
    net = _net(0.5, seq)
    params = net.init(seed=1, dtype="float64")
    a = nm.fit(net, X, Y, params=params, tbptt=2, **FIT).params
    b = nm.fit(net, X, Y, params=params, tbptt=2, **FIT).params
    assert _diff(a, b) == 0.0
    generic = nm.fit(net, X, Y, params=params, tbptt=2, fused=False, **FIT).params
    assert _diff(a, generic) < 1e-9
    plain = nm.fit(_net(0.0, seq), X, Y, params=params, tbptt=2, **FIT).params
    assert _diff(a, plain) > 1e-4


@pytest.mark.parametrize("seq", [True, False])
def test_tbptt_of_one_chunk_is_plain_training_with_dropout(seq):
    X, Y = _data(seq)
    net = _net(0.4, seq)
    params = net.init(seed=2, dtype="float64")
    chunked = nm.fit(net, X, Y, params=params, tbptt=X.shape[1], **FIT).params
    plain = nm.fit(net, X, Y, params=params, **FIT).params
    assert _diff(chunked, plain) < 1e-12


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("seq", [True, False, None])  # None: a dense network
def test_batched_predict_with_a_dropout_key_equals_the_unbatched_call(fused, seq):
    if seq is None:
        net = nm.inputs(3) | nm.dense(8, "tanh") | nm.dropout(0.5) | nm.dense(2)
        X = np.random.default_rng(3).normal(size=(11, 3))
    else:
        net = _net(0.5, seq)
        X = _data(seq)[0]
    params = net.init(seed=4, dtype="float64")
    for key in [(1, 2, 3), (1, 2, 3, 5)]:
        whole = net.predict(params, X, dropout_key=key, fused=fused)
        for bs in (1, 3, 4, 11, 50):
            part = net.predict(params, X, dropout_key=key, fused=fused, batch_size=bs)
            np.testing.assert_allclose(part, whole, rtol=0, atol=1e-14)  # the BLAS may round by shape
        assert np.abs(whole - net.predict(params, X, fused=fused, batch_size=3)).max() > 1e-6
    np.testing.assert_allclose(net.predict(params, X, batch_size=4), net.predict(params, X), rtol=0, atol=1e-14)
