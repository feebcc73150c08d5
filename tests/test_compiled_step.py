"""The dense step as two compiled loops that call NumPy's BLAS themselves (``engines/compiled.py``:
``blas_row``, ``blas_products``; ``tensor/fused.py``: ``_forward_loop``, ``_backward_loop``).

Each BLAS call must be the one ``np.matmul`` makes, so every product is checked against
``np.matmul`` bit for bit, over the layouts NumPy chooses between; products NumPy would make
otherwise are refused. The step itself is checked against the NumPy calls it replaces, bit for
bit, and every way it steps aside is checked to give the NumPy numbers."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import dense_step

import nomagic as nm
from nomagic.engines import compiled
from nomagic.engines.tensor import fused

pytest.importorskip("numba")

FLOATS = [np.float32, np.float64]


@pytest.fixture
def blas(use_compiled):
    """Compiled loops on, and NumPy's BLAS reachable from them (skips where NumPy's BLAS is not
    the scipy-openblas its wheels ship)."""
    use_compiled(True)
    if not compiled.blas_ready():
        pytest.skip("NumPy's BLAS is not scipy-openblas with 64-bit integers")
    return compiled.kernel(compiled.blas_products)


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _matrix(r, shape, dt, layout: str) -> np.ndarray:
    """A matrix of ``shape`` whose memory is row-major ("C"), column-major ("F") or the transpose
    of a row-major array ("T": the view NumPy sees for ``z.T``)."""
    v = r.standard_normal(shape).astype(dt)
    if layout == "C":
        return v
    if layout == "F":
        return np.asfortranarray(v)
    return np.ascontiguousarray(v.T).T


def _product(blas_products, a, b, out, x=None) -> bool:
    row = compiled.blas_row(a, b, out, x)
    if row is None:
        return False
    out[...] = np.nan
    blas_products(row[None, :], 0, 1, np.zeros((1, 1)) if x is None else x)
    return True


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("la", ["C", "T"])
@pytest.mark.parametrize("lb", ["C", "T"])
@pytest.mark.parametrize("lo", ["C", "F"])
@pytest.mark.parametrize("shape", [(7, 13, 5), (33, 64, 17), (128, 32, 128)])
def test_a_matrix_product_is_the_gemm_numpy_makes_bit_for_bit(blas, dt, la, lb, lo, shape):
    m, n, p = shape
    r = np.random.default_rng(m * n + p)
    a, b = _matrix(r, (m, n), dt, la), _matrix(r, (n, p), dt, lb)
    want = np.empty((m, p), dt, order=lo)  # NumPy's own call on the same out (its layout decides the call)
    np.matmul(a, b, out=want)
    out = np.empty((m, p), dt, order=lo)
    assert _product(blas, a, b, out)
    assert _bits(out) == _bits(want)
    assert out.dtype == np.dtype(dt)


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("layout", ["C", "T"])
@pytest.mark.parametrize("side", ["matrix @ vector", "vector @ matrix"])
def test_a_product_with_a_vector_is_the_gemv_numpy_makes_bit_for_bit(blas, dt, layout, side):
    """The dense step's bias gradients: a sum over the batch as a product with a vector of ones."""
    r = np.random.default_rng(5)
    M = _matrix(r, (37, 29), dt, layout)
    if side == "matrix @ vector":
        v = r.standard_normal(29).astype(dt)
        a, b, out = M, v, np.empty(37, dt)
    else:
        v = r.standard_normal(37).astype(dt)
        a, b, out = v, M, np.empty(29, dt)
    want = np.matmul(a, b)
    assert _product(blas, a, b, out)
    assert _bits(out) == _bits(want)


@pytest.mark.parametrize("transposed", [False, True])
def test_the_batch_is_read_at_each_call(blas, transposed):
    """An operand that is ``x`` (or ``x.T``) is written as address 0 and read from the ``x`` given
    to ``blas_products``: the same row serves every batch of that shape."""
    r = np.random.default_rng(6)
    x = r.standard_normal((16, 8))
    W = r.standard_normal((16, 4) if transposed else (8, 4))
    a = x.T if transposed else x
    row = compiled.blas_row(a, W, np.empty((a.shape[0], 4)), x)
    assert row is not None and row[7] == 0
    for _ in range(3):
        batch = r.standard_normal((16, 8))
        out = np.empty((a.shape[0], 4))
        row = compiled.blas_row(a, W, out, x)
        blas(row[None, :], 0, 1, batch)
        assert _bits(out) == _bits(np.matmul(batch.T if transposed else batch, W))
    assert compiled.blas_row(x[1:], np.ones((8, 4)), np.empty((15, 4)), x) is None  # a view of x that starts later


def test_products_numpy_makes_otherwise_are_refused():
    """Where np.matmul would copy an operand, call syrk, use no BLAS at all or not run,
    ``blas_row`` says None (and the step keeps NumPy's call)."""
    r = np.random.default_rng(7)
    a, b, out = r.standard_normal((6, 5)), r.standard_normal((5, 4)), np.zeros((6, 4))
    assert compiled.blas_row(a, b, out) is not None
    big = r.standard_normal((6, 10))
    refused = {
        "a dimension of 1": (r.standard_normal((1, 5)), b, np.empty((1, 4))),
        "an inner dimension of 1": (r.standard_normal((6, 1)), r.standard_normal((1, 4)), out),
        "a strided operand (NumPy copies it)": (big[:, ::2], b, out),
        "a @ a.T (NumPy calls syrk)": (a, a.T, np.empty((6, 6))),
        "out overlapping an input": (np.ones((4, 4)), np.ones((4, 4)), None),
        "mixed dtypes": (a.astype(np.float32), b, out),
        "integers": (a.astype(np.int64), b.astype(np.int64), out.astype(np.int64)),
        "three dimensions": (np.ones((2, 6, 5)), b, np.empty((2, 6, 4))),
        "no elements": (np.ones((6, 0)), np.ones((0, 4)), out),
        "a wrong out shape": (a, b, np.empty((4, 6))),
        "a strided vector": (a, np.ones(10)[::2], np.empty(6)),
        "two vectors": (np.ones(5), np.ones(5), np.empty(())),
    }
    for why, (x, y, o) in refused.items():
        if o is None:
            o = x  # out is the first input
        assert compiled.blas_row(x, y, o) is None, why
    raw = np.zeros(6 * 4 * 8 + 1, np.uint8)
    unaligned = raw[1:].view(np.float64).reshape(6, 4)
    assert not unaligned.flags.aligned
    assert compiled.blas_row(a, b, unaligned) is None


# -- the step --------------------------------------------------------------------------------------


def _outputs(step) -> list[np.ndarray]:
    """What a step leaves behind: every gradient, and the logits."""
    grads = [g for L in step.layers for g in (L["gW"], L["gb"]) if g is not None]
    return [g.copy() for g in grads] + [np.array(step.ws.out[0])]


NETS = {
    "digits-like": lambda: nm.inputs(6) | nm.dense(16, activation="relu") | nm.dense(12, activation="relu")
    | nm.dense(10, activation="softmax"),
    "no biases": lambda: nm.inputs(6) | nm.dense(9, activation="relu", bias=False)
    | nm.dense(4, activation="softmax", bias=False),
    "deep": lambda: nm.inputs(6) | nm.dense(8, activation="relu") | nm.dense(8, activation="relu", bias=False)
    | nm.dense(8, activation="relu") | nm.dense(3, activation="softmax"),
}


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("rows", [2, 3, 32, 64, 128])  # feature-major deltas below 64 rows, batch-major from 64
@pytest.mark.parametrize("name", list(NETS))
def test_the_compiled_step_gives_the_numpy_calls_numbers_bit_for_bit(blas, dt, rows, name):
    net = NETS[name]()
    tr, step = dense_step(net, rows, dt, steps=2)
    assert step.tape is not None
    r = np.random.default_rng(rows)
    for _ in range(3):
        X = (r.standard_normal((rows, 6)) * 10.0 ** r.integers(-3, 3, (rows, 6))).astype(dt)
        Y = np.eye(net.n_outputs, dtype=dt)[r.integers(0, net.n_outputs, rows)]
        want = step._run_numpy(X, Y), _outputs(step)
        got = step._run_compiled(X, Y), _outputs(step)
        assert np.float64(got[0]).tobytes() == np.float64(want[0]).tobytes()
        for g, w in zip(got[1], want[1]):
            assert _bits(g) == _bits(w)
        assert np.isfinite(got[0]) and got[0] >= 0  # large logits may give a loss of exactly 0
    tr.close()


def test_read_only_params_take_the_compiled_step_and_give_the_numpy_numbers(blas, use_compiled, recwarn):
    """A chain's step run twice in one workspace on read-only params (as ``nm.Params`` holds them):
    it binds its loops without a warning, and the loss and gradients are the NumPy calls' to the
    bit."""
    from nomagic.engines.tensor.fused import Workspace, chain_for
    from nomagic.model.losses import get_loss

    net = NETS["deep"]()
    r = np.random.default_rng(3)
    params = nm.Params({k: v + 0.1 * r.standard_normal(v.shape) for k, v in net.init(seed=1, dtype="float64").items()})
    assert not any(v.flags.writeable for v in params.values())
    X, Y = r.standard_normal((12, 6)), np.eye(3)[r.integers(0, 3, 12)]
    chain, loss = chain_for(net), get_loss("cross_entropy")

    def twice():
        ws, G = Workspace(), {k: np.zeros_like(v) for k, v in params.items()}
        values = [chain.loss_and_grad(params, ws, X, Y, loss, G) for _ in range(2)]
        step = next(v for k, v in ws.arrays.items() if isinstance(k, tuple) and k[0] == "dense step")
        return values, G, step

    got, got_G, step = twice()
    assert step.tape is not None
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert compiled.enabled()
    use_compiled(False)
    want, want_G, step = twice()
    assert step.tape is None
    assert got == want
    for k in params:
        assert _bits(got_G[k]) == _bits(want_G[k])


def test_run_takes_the_compiled_loops_for_a_contiguous_batch_only(blas, monkeypatch):
    """A batch in column-major memory gets the NumPy calls (the rows were made for row-major
    batches) and the same numbers."""
    net = NETS["digits-like"]()
    tr, step = dense_step(net, 8, np.float64, steps=2)
    taken = []
    real = fused._DenseStep._run_compiled
    monkeypatch.setattr(fused._DenseStep, "_run_compiled", lambda self, X, Y: taken.append(1) or real(self, X, Y))
    r = np.random.default_rng(1)
    X, Y = r.standard_normal((8, 6)), np.eye(10)[r.integers(0, 10, 8)]
    v1, out1 = step.run(X, Y), _outputs(step)
    assert taken == [1]
    v2, out2 = step.run(np.asfortranarray(X), Y), _outputs(step)
    assert taken == [1]
    assert v1 == v2
    for a, b in zip(out1, out2):
        assert _bits(a) == _bits(b)
    tr.close()


def test_the_step_binds_its_compiled_loops_only_where_they_apply(blas, use_compiled):
    """relu hidden layers under softmax with cross-entropy, more than one sample, from the second
    run: the tape; a tanh layer, a batch of one, a lone softmax layer, a first run, numba off: the
    NumPy calls."""
    cases = {
        "relu": (NETS["digits-like"](), 8, True),
        "tanh": (nm.inputs(6) | nm.dense(8, activation="tanh") | nm.dense(10, activation="softmax"), 8, False),
        "one sample": (NETS["digits-like"](), 1, False),
        "softmax alone": (nm.inputs(6) | nm.dense(10, activation="softmax"), 8, False),
    }
    for why, (net, rows, want) in cases.items():
        tr, step = dense_step(net, rows, np.float64, steps=2)
        assert (step.tape is not None) == want, why
        tr.close()
    tr, step = dense_step(NETS["digits-like"](), 8, np.float64, steps=1)
    assert step.tape is None  # bound at the second run: a one-off call never pays for it
    tr.close()
    use_compiled(False)
    tr, step = dense_step(NETS["digits-like"](), 8, np.float64, steps=2)
    assert step.tape is None
    tr.close()


def test_a_step_whose_loops_disagree_keeps_the_numpy_calls(blas, monkeypatch):
    """The check at bind: were the compiled step to give other bits (here one gradient nudged by
    an ulp), the step would keep its NumPy calls, and training their numbers."""
    real = fused._DenseStep._run_compiled

    def nudged(self, X, Y):
        value = real(self, X, Y)
        g = self.layers[0]["gW"]
        g.flat[0] = np.nextafter(g.flat[0], np.inf)
        return value

    monkeypatch.setattr(fused._DenseStep, "_run_compiled", nudged)
    r = np.random.default_rng(2)
    X, y = r.standard_normal((40, 6)), r.integers(0, 10, 40)
    net = NETS["digits-like"]()
    tr, step = dense_step(net, 8, np.float64, steps=2)
    assert step.tape is None
    tr.close()
    got = nm.fit(net, X, y, loss="cross_entropy", epochs=2, batch_size=8, seed=0, verbose=False)
    monkeypatch.setattr(fused._DenseStep, "_run_compiled", real)
    want = nm.fit(net, X, y, loss="cross_entropy", epochs=2, batch_size=8, seed=0, verbose=False)
    for k in want.params:
        assert _bits(got.params[k]) == _bits(want.params[k])


def test_another_blas_keeps_the_numpy_calls(monkeypatch, use_compiled):
    """NumPy built on a BLAS other than scipy-openblas with 64-bit integers: no BLAS calls from
    compiled code, and training runs as before."""
    use_compiled(True)
    config = {**np.__config__.CONFIG, "Build Dependencies": {"blas": {"name": "accelerate"}}}
    monkeypatch.setattr(np.__config__, "CONFIG", config)
    monkeypatch.delitem(compiled._state, "blas", raising=False)
    assert not compiled.blas_ready()
    tr, step = dense_step(NETS["digits-like"](), 8, np.float64, steps=2)
    assert step.tape is None and step.softmax_loops is not None
    tr.close()
    monkeypatch.delitem(compiled._state, "blas", raising=False)


def test_the_compiled_step_loads_from_numbas_cache_in_a_new_process(tmp_path):
    """The loops call the BLAS by a name registered in each process: a second process, which
    loads them from numba's cache on disk, trains to the same params as the first."""
    code = ("import numpy as np, nomagic as nm; from nomagic.engines import compiled; "
            "r = np.random.default_rng(0); X, y = r.standard_normal((64, 6)), r.integers(0, 4, 64); "
            "net = nm.inputs(6) | nm.dense(8, activation='relu') | nm.dense(4, activation='softmax'); "
            "m = nm.fit(net, X, y, loss='cross_entropy', epochs=2, batch_size=16, verbose=False); "
            "import sys; sys.stdout.write(str(compiled.blas_ready()) + ' ' + m.params['dense_1.weight'].tobytes().hex())")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NOMAGIC_NUMBA": "1"}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout == runs[1].stdout
    assert any(p.suffix == ".nbc" for p in tmp_path.rglob("*"))  # the second run had a cache to load


def test_a_loop_may_call_other_loops_by_name(use_compiled):
    """``kernel(loop, uses)``: the loops it names are compiled and given to it; made once."""
    use_compiled(True)
    fast = compiled.kernel(_outer, (_inner,))
    v = np.arange(5.0)
    fast(v)
    np.testing.assert_array_equal(v, [1.0, 3.0, 5.0, 7.0, 9.0])
    assert compiled.kernel(_outer, (_inner,)) is fast
    with pytest.raises(Exception):  # noqa: B017 - numba's typing error: _inner is not compiled for it
        compiled.kernel(_outer)(v)


def _inner(v, i):
    v[i] = 2 * v[i] + 1


def _outer(v):
    for i in range(v.shape[0]):
        _inner(v, i)
