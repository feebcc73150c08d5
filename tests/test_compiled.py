"""The optimizers' compiled updates (``engines/compiled.py``): the loop numba compiles gives the
NumPy passes' numbers to the bit, for every optimizer and option, in float32 and float64; it
runs where it can and steps aside where it cannot (no numba, ``NOMAGIC_NUMBA=0``, vectors it
cannot take), and training gives the same params either way."""

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
from nomagic.train import optimizers as O

numba = pytest.importorskip("numba")

OPTIMIZERS = {
    "adam": lambda: nm.adam(1e-3),
    "adam-l2": lambda: nm.adam(1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
    "adamw": lambda: nm.adamw(3e-3, weight_decay=0.05),
    "adamw-cosine": lambda: nm.adamw(nm.cosine_decay(1e-2, 60, warmup_steps=5), weight_decay=0.01),
    "sgd": lambda: nm.sgd(0.1),
    "sgd-l2": lambda: nm.sgd(0.1, weight_decay=0.01),
    "sgd-momentum": lambda: nm.sgd(0.05, momentum=0.9),
    "sgd-nesterov-l2": lambda: nm.sgd(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "rmsprop": lambda: nm.rmsprop(1e-2),
    "rmsprop-momentum": lambda: nm.rmsprop(1e-3, momentum=0.5),
    "rmsprop-centered": lambda: nm.rmsprop(1e-3, alpha=0.9, eps=1e-6, centered=True),
    "rmsprop-all": lambda: nm.rmsprop(1e-3, momentum=0.9, centered=True, weight_decay=0.1),
}


def _spread(r: np.random.Generator, n: int, dt) -> np.ndarray:
    """Values over twenty orders of magnitude, both signs, with exact zeros among them."""
    x = r.standard_normal(n) * 10.0 ** r.integers(-12, 8, n)
    x[r.random(n) < 0.05] = 0.0
    return x.astype(dt)


def _run(make, dt, steps: int = 60, n: int = 3001):
    opt = make()
    r = np.random.default_rng(7)
    p = _spread(r, n, dt)
    slots = {s: np.zeros(n, dt) for s in opt.slot_names}
    for t in range(1, steps + 1):
        opt.apply_(t, p, _spread(r, n, dt), slots, np.empty(n, dt))
    return p, slots


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(OPTIMIZERS))
def test_compiled_loop_gives_the_numpy_passes_bit_for_bit(case, dt, use_compiled):
    use_compiled(True)
    assert compiled.enabled()
    p1, s1 = _run(OPTIMIZERS[case], dt)
    use_compiled(False)
    assert not compiled.enabled()
    p2, s2 = _run(OPTIMIZERS[case], dt)
    assert p1.dtype == p2.dtype == np.dtype(dt)
    np.testing.assert_array_equal(p1, p2)
    for s in s1:
        np.testing.assert_array_equal(s1[s], s2[s])
    assert np.isfinite(p1).all()


def test_the_loop_is_what_runs_when_numba_is_on(monkeypatch, use_compiled):
    """With numba on, Adam's update is one call of its compiled loop; with it off, none."""
    calls = []
    real = compiled.kernel

    def spy(loop, uses=()):
        fast = real(loop, uses)
        if fast is None:
            return None

        def call(*args):
            calls.append(loop.__name__)
            return fast(*args)
        return call

    monkeypatch.setattr(compiled, "kernel", spy)
    opt = nm.adam(1e-3)
    p, g = np.ones(10), np.full(10, 0.5)
    slots = {s: np.zeros(10) for s in opt.slot_names}
    use_compiled(True)
    opt.apply_(1, p, g, slots, np.empty(10))
    assert calls == ["_adam_loop"]
    use_compiled(False)
    opt.apply_(2, p, g, slots, np.empty(10))
    assert calls == ["_adam_loop"]


@pytest.mark.parametrize("case", ["adam-l2", "sgd-nesterov-l2", "rmsprop-all"])
def test_vectors_the_loop_cannot_take_get_the_numpy_passes(case, use_compiled):
    """A strided view, a float16 vector, mixed dtypes: NumPy runs them, with the same numbers."""
    use_compiled(True)
    want, _ = _run(OPTIMIZERS[case], np.float64, steps=5, n=50)
    opt = OPTIMIZERS[case]()
    r = np.random.default_rng(7)
    big = np.zeros(100)
    p = big[::2]  # every other element: not contiguous
    p[...] = _spread(r, 50, np.float64)
    assert not compiled.fits(p)
    slots = {s: np.zeros(50) for s in opt.slot_names}
    for t in range(1, 6):
        opt.apply_(t, p, _spread(r, 50, np.float64), slots, np.empty(50))
    np.testing.assert_array_equal(p, want)
    assert not compiled.fits(np.zeros(4, np.float16))
    assert not compiled.fits(np.zeros(4), np.zeros(4, np.float32))
    assert not compiled.fits(np.zeros((2, 2)))
    frozen = np.zeros(4)
    frozen.flags.writeable = False
    assert not compiled.fits(np.zeros(4), frozen)
    assert compiled.fits(np.zeros(4, np.float32), np.ones(4, np.float32))


def test_pure_step_leaves_its_inputs_alone_on_the_compiled_path(use_compiled):
    use_compiled(True)
    opt = nm.adamw(1e-2, weight_decay=0.1)
    params = {"w": np.arange(6.0).reshape(2, 3), "b": np.ones(3)}
    grads = {"w": np.full((2, 3), 0.25), "b": np.full(3, -1.0)}
    state = opt.init(params)
    before = {k: v.copy() for k, v in params.items()}
    new_state, new_params = opt.step(state, params, grads)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
        np.testing.assert_array_equal(state.slots["m"][k], 0.0)
        assert not np.array_equal(new_params[k], params[k])
    assert new_state.step == 1


@pytest.mark.parametrize("make", [lambda: nm.adam(1e-2, weight_decay=1e-3),
                                  lambda: nm.sgd(0.05, momentum=0.9, nesterov=True),
                                  lambda: nm.rmsprop(1e-3, centered=True)], ids=["adam", "sgd", "rmsprop"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [16, 80])  # the dense step's small-batch layout, and the other
@pytest.mark.parametrize("top_bias", [True, False])
def test_fit_gives_the_same_params_with_and_without_numba(dtype, batch, top_bias, make, use_compiled):
    """A relu MLP trained by nm.fit (tensor engine, its dense step): bit-identical params and
    optimizer slots whether the relu, the softmax and the updates ran compiled or as NumPy calls."""
    r = np.random.default_rng(0)
    X = r.standard_normal((200, 8))
    y = r.integers(0, 3, 200)
    net = nm.inputs(8) | nm.dense(16, activation="relu") | nm.dense(12, activation="relu") \
        | nm.dense(3, activation="softmax", bias=top_bias)
    models = []
    for on in (True, False):
        use_compiled(on)
        models.append(nm.fit(net, X, y, loss="cross_entropy", optimizer=make(), epochs=3, batch_size=batch,
                             seed=1, dtype=dtype, verbose=False))
    a, b = models
    for k in a.params:
        assert a.params[k].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a.params[k], b.params[k])
    for s in a.opt_state.slots:
        for k in a.params:
            np.testing.assert_array_equal(a.opt_state.slots[s][k], b.opt_state.slots[s][k])
    assert a.history[-1]["loss"] < a.history[0]["loss"]  # it trained


def test_without_numba_the_numpy_passes_run(monkeypatch):
    """numba missing (its import fails): ``enabled()`` is False, no kernel is made, and training
    still works."""
    monkeypatch.setitem(compiled._state, "numba", False)
    monkeypatch.setitem(compiled._state, "on", None)
    monkeypatch.delenv("NOMAGIC_NUMBA", raising=False)
    assert not compiled.enabled()
    assert compiled.kernel(O._adam_loop) is None
    r = np.random.default_rng(0)
    model = nm.fit(nm.inputs(3) | nm.dense(2, activation="softmax"), r.standard_normal((20, 3)), r.integers(0, 2, 20),
                   loss="cross_entropy", epochs=2, verbose=False)
    assert all(np.isfinite(v).all() for v in model.params.values())
    monkeypatch.setitem(compiled._state, "on", None)


def test_environment_turns_the_loops_off():
    code = ("from nomagic.engines import compiled; import sys; "
            "sys.stdout.write(str(compiled.enabled()))")
    env = {**os.environ, "NOMAGIC_NUMBA": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout == "False", out.stderr
    env["NOMAGIC_NUMBA"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout == "True", out.stderr


def test_no_writable_cache_compiles_without_one(monkeypatch):
    """numba refuses ``cache=True`` when it has nowhere to write: the loop is compiled anyway."""
    real = numba.njit
    asked = []

    def njit(fn, **kw):
        asked.append(kw.get("cache", False))
        if kw.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(fn, **kw)

    def loop(p, c):
        for i in range(p.shape[0]):
            p[i] = p[i] * c[0]

    monkeypatch.setattr(numba, "njit", njit)
    monkeypatch.setitem(compiled._state, "kernels", {})
    fast = compiled.kernel(loop)
    assert asked == [True, False]
    p = np.arange(4.0)
    fast(p, np.array([2.0]))
    np.testing.assert_array_equal(p, [0.0, 2.0, 4.0, 6.0])
    assert compiled.kernel(loop) is fast  # made once


# -- the dense step's relu ---------------------------------------------------------------------------


def _bits(a: np.ndarray) -> np.ndarray:
    """The array's bit patterns: tells +0 from −0 and one NaN from another."""
    return np.ascontiguousarray(a).view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _specials(r: np.random.Generator, shape, dt) -> np.ndarray:
    x = r.standard_normal(shape) * 10.0 ** r.integers(-40, 5, shape)
    flat = x.reshape(-1)
    for k, v in enumerate([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45]):
        flat[k * 5] = v
    return x.astype(dt)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_bias_relu_loop_is_add_then_maximum_bit_for_bit(dt):
    r = np.random.default_rng(3)
    z, b = _specials(r, (33, 40), dt), _specials(r, (40,), dt)
    want = np.maximum(z + b, np.zeros((), dt))
    got = z.copy()
    compiled.kernel(fused._bias_relu_loop)(got, b)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(_bits(got), _bits(want))
    assert np.isnan(got).any() and (got == 0).any() and (got > 0).any()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("transposed", [False, True])
def test_relu_grad_loop_is_the_masked_product_bit_for_bit(dt, transposed):
    """d·(a > 0), with ``a`` as it comes in the dense step: the same shape as d, or a transposed view."""
    r = np.random.default_rng(4)
    d = _specials(r, (24, 40), dt)
    z = _specials(r, (40, 24) if transposed else (24, 40), dt)
    a = z.T if transposed else z
    with np.errstate(invalid="ignore"):  # inf·0
        want = d * (a > 0)
    got = d.copy()
    compiled.kernel(fused._relu_grad_loop)(got, a)
    np.testing.assert_array_equal(_bits(got), _bits(want))
    assert np.signbit(got[(a <= 0) & (d < 0)]).all()  # −0 where d < 0 is cut, as d·0 gives


def test_dense_step_binds_the_relu_loops_only_where_they_apply(use_compiled):
    """relu layers with a bias get both loops; a tanh layer neither; with numba off, none."""
    from nomagic.engines.tensor.engine import Trainer
    from nomagic.model.losses import get_loss

    net = nm.inputs(4) | nm.dense(8, activation="relu") | nm.dense(6, activation="tanh") \
        | nm.dense(5, activation="relu", bias=False) | nm.dense(2, activation="softmax")
    X, Y = np.random.default_rng(0).standard_normal((10, 4)), np.eye(2)[np.arange(10) % 2]
    for on in (True, False):
        use_compiled(on)
        params = net.init(seed=0)
        tr = Trainer(net, params, nm.adam(), nm.adam().init(params), get_loss("cross_entropy"))
        tr.train_batch(X, Y)
        step = next(v for k, v in tr.ws.arrays.items() if isinstance(k, tuple) and k[0] == "dense step")
        got = [(L["bias_relu"] is not None, L["relu_grad"] is not None) for L in step.layers]
        assert got == ([(True, True), (False, False), (False, True), (False, False)] if on else [(False, False)] * 4)
        tr.close()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 2, 32, 128])
@pytest.mark.parametrize("targets", ["one-hot", "soft"])
def test_softmax_loops_give_the_numpy_calls_bit_for_bit(dt, rows, targets, use_compiled):
    """The dense step's softmax with cross-entropy: the loss, the gradient (softmax − y)/n and the
    log-sum-exp, from logits over many orders of magnitude (a NaN among them in one column)."""
    use_compiled(True)
    net = nm.inputs(4) | nm.dense(8, activation="relu") | nm.dense(10, activation="softmax")
    tr, step = dense_step(net, rows, dt)
    if rows == 1:  # a lone column is contiguous: NumPy sums it pairwise, so the loops stay out
        assert step.softmax_loops is None
        tr.close()
        return
    assert step.softmax_loops is not None
    r = np.random.default_rng(rows)
    zT = (r.standard_normal((10, rows)) * 10.0 ** r.integers(-3, 2, (10, rows))).astype(dt)
    Y = np.eye(10, dtype=dt)[r.integers(0, 10, rows)] if targets == "one-hot" \
        else r.dirichlet(np.ones(10), rows).astype(dt)
    loops = step.softmax_loops

    step.top_bias[...] = r.standard_normal(10)  # it adds the top layer's bias first

    def both(z):
        outs = []
        for step.softmax_loops in (loops, None):
            dT, logits = np.empty_like(z), z.copy()
            with np.errstate(invalid="ignore"):
                value = step._softmax_ce(logits, Y, dT)
            outs.append((value, dT, step.s.copy(), logits))
        return outs

    (v1, d1, s1, z1), (v2, d2, s2, z2) = both(zT)
    assert v1 == v2 and np.isfinite(v1) and v1 > 0
    np.testing.assert_array_equal(_bits(d1), _bits(d2))
    np.testing.assert_array_equal(_bits(s1), _bits(s2))
    np.testing.assert_array_equal(_bits(z1), _bits(z2))
    np.testing.assert_array_equal(z1, zT + step.top_bias[:, None])
    zT[3, 0] = np.nan  # one sample's logits with a NaN: its column NaN both ways, the others equal
    (v1, d1, _, _), (v2, d2, _, _) = both(zT)
    assert np.isnan(v1) and np.isnan(v2) and np.isnan(d1[:, 0]).all()
    np.testing.assert_array_equal(_bits(d1[:, 1:]), _bits(d2[:, 1:]))
    tr.close()


def test_a_loop_numba_cannot_compile_falls_back_to_numpy_with_a_warning(monkeypatch, use_compiled):
    """numba failing to compile a loop (here: every loop raises at its first call, as a typing
    error would) turns the compiled loops off with a warning; training runs its NumPy calls and
    gives their numbers."""
    r = np.random.default_rng(0)
    X, y = r.standard_normal((64, 8)), r.integers(0, 3, 64)
    net = nm.inputs(8) | nm.dense(16, activation="relu") | nm.dense(3, activation="softmax")
    use_compiled(False)
    want = nm.fit(net, X, y, loss="cross_entropy", epochs=2, batch_size=16, verbose=False)
    use_compiled(True)

    def broken(loop):
        def fail(*args):
            raise RuntimeError(f"cannot type {loop.__name__}")
        fail.__name__ = loop.__name__
        return fail

    monkeypatch.setattr(compiled, "kernel", lambda loop, uses=(): broken(loop) if compiled.enabled() else None)
    with pytest.warns(RuntimeWarning, match="numba could not compile .*NumPy calls instead"):
        got = nm.fit(net, X, y, loss="cross_entropy", epochs=2, batch_size=16, verbose=False)
    assert not compiled.enabled()
    for k in want.params:
        np.testing.assert_array_equal(got.params[k], want.params[k])
    # the pure step of an optimizer that was never prepared falls back the same way
    compiled.reset()
    opt = nm.adam(1e-2)
    params, grads = {"w": np.ones(3)}, {"w": np.full(3, 0.5)}
    with pytest.warns(RuntimeWarning, match="_adam_loop"):
        _, new = opt.step(opt.init(params), params, grads)
    use_compiled(False)
    _, ref = opt.step(opt.init(params), params, grads)
    np.testing.assert_array_equal(new["w"], ref["w"])


def test_prepare_takes_a_dtype_and_says_so_otherwise():
    opt = nm.adam(1e-3)
    with pytest.raises(nm.NomagicError, match="dtype must be a NumPy dtype"):
        opt.prepare("not a dtype")
    opt.prepare("int64")  # no loop for integers: nothing to make, nothing raised
    opt.prepare(np.float32)
