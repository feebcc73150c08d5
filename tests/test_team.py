"""The tensor engine's own threads (engines/_blas.py ``Team``) and the optimizer's cache-sized pieces:
same numbers as the plain path."""

import numpy as np
import pytest

import nomagic as nm
from nomagic.engines.tensor import Trainer
from nomagic.engines.tensor import blas as _blas


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("shape", [(300, 200, 100), (100, 200, 300), (64, 64, 64), (1000, 3, 2)])
@pytest.mark.parametrize("size", [2, 3])
def test_team_matmul_equals_numpy(monkeypatch, rng, shape, size):
    monkeypatch.setattr(_blas, "SMALL_GEMM", 1)  # cut every product
    m, k, n = shape
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    team = _blas.Team(size)
    try:
        for x, y in ((a, b), (np.ascontiguousarray(a.T).T, b), (a, np.ascontiguousarray(b.T).T)):
            out = np.empty((m, n))
            assert team.matmul(x, y, out) is out
            np.testing.assert_allclose(out, x @ y, rtol=1e-13, atol=1e-12)
    finally:
        team.close()


def test_team_share_takes_every_item_once_and_raises(rng):
    team = _blas.Team(3)
    try:
        seen = []
        team.share(lambda k, item: seen.append((k, item)), range(100))
        assert sorted(item for _, item in seen) == list(range(100))
        assert {k for k, _ in seen} <= {0, 1, 2}

        def fail(k, item):
            if item == 7:
                raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            team.share(fail, range(20))
    finally:
        team.close()
    with pytest.raises(RuntimeError):
        team.share(lambda k, item: None, range(5))


@pytest.mark.parametrize("opt", [lambda: nm.adam(1e-2), lambda: nm.sgd(0.05, momentum=0.9), lambda: nm.sgd(0.1)],
                         ids=["adam", "sgd-momentum", "sgd"])
def test_optimizer_pieces_give_the_same_numbers(monkeypatch, rng, opt):
    """A long vector is updated piece by piece (one scratch piece reused): same numbers as whole."""
    n = 1000
    p, g0 = rng.standard_normal(n), rng.standard_normal(n)
    results = []
    for chunk, chunk_min in ((1 << 15, 1 << 18), (64, 100)):
        o = opt()
        monkeypatch.setattr(type(o), "CHUNK", chunk)
        monkeypatch.setattr(type(o), "CHUNK_MIN", chunk_min)
        w, slots = p.copy(), {s: np.zeros(n) for s in o.slot_names}
        for t in range(1, 4):
            o.apply_(t, w, g0 * t, slots, np.empty(n))
        results.append((w, slots))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for s in results[0][1]:
        np.testing.assert_array_equal(results[0][1][s], results[1][1][s])


def _wide(rng, n_in=128, units=256, out=3, rows=320):
    net = nm.inputs(n_in) | nm.dense(units, activation="relu") | nm.dense(units, activation="tanh") | \
        nm.dense(out, activation="softmax")
    return net, rng.standard_normal((rows, n_in)), rng.integers(0, out, rows)


def test_team_mode_fit_equals_blas_mode(monkeypatch, rng):
    """A big plain MLP trains on the engine's own threads ("team" mode) with the numbers of the
    BLAS's threads ("blas" mode), the optimizer's update shared among the threads or not."""
    net, X, y = _wide(rng)
    monkeypatch.setattr(_blas, "SMALL_GEMM", 1_000_000)  # batch 64 × 128 × 256 is "big"
    monkeypatch.setattr(_blas, "blas_threads", lambda: 2)
    kw = dict(loss="cross_entropy", optimizer=nm.adam(1e-3), epochs=2, batch_size=64, seed=0, dtype="float64",
              verbose=False)
    modes, choose = [], Trainer._mode

    def recorded(self, shape):
        modes.append(choose(self, shape))
        return modes[-1]

    monkeypatch.setattr(Trainer, "_mode", recorded)
    monkeypatch.setattr(Trainer, "TEAM_MAX", 1)
    blas = nm.fit(net, X, y, **kw)
    assert set(modes) == {"blas"}
    monkeypatch.setattr(Trainer, "TEAM_MAX", 4)
    monkeypatch.setattr(Trainer, "PARALLEL_MIN", 1000)
    monkeypatch.setattr(Trainer, "CHUNK", 5000)
    modes.clear()
    team = nm.fit(net, X, y, **kw)
    assert set(modes) == {"team"}
    for k in blas.params:
        np.testing.assert_allclose(team.params[k], blas.params[k], rtol=0, atol=1e-12, err_msg=k)


def test_team_mode_gives_blas_threads_back(monkeypatch, rng):
    before = _blas.blas_threads()
    if before is None or before < 2:
        pytest.skip("needs a BLAS that threadpoolctl sees, with 2 threads or more")
    net, X, y = _wide(rng)
    monkeypatch.setattr(_blas, "SMALL_GEMM", 1_000_000)
    monkeypatch.setattr(Trainer, "TEAM_MAX", max(before, 2))
    nm.fit(net, X, y, loss="cross_entropy", epochs=1, batch_size=64, verbose=False)
    assert _blas.blas_threads() == before
