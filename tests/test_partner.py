"""The tensor engine's second core: a plain MLP's steps shared with a partner process
(``engines/tensor/partner.py``, ``two_cores.py``) give the same params, bit for bit, as the steps
on one core; a partner that dies, fails or is left by its parent ends cleanly, within bounds."""

import gc
import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nomagic as nm
from nomagic.engines.tensor import partner as pt
from nomagic.engines.tensor import two_cores
from nomagic.errors import EngineError, InvalidInputError

pytestmark = pytest.mark.skipif(not pt.available(), reason="no partner process on this machine")

F = 6


@pytest.fixture(autouse=True)
def always_shared(monkeypatch, request):
    """Every step on two cores once the partner is ready, small as these networks are: no
    probing (it has its own test), no lower bound on the size."""
    monkeypatch.setattr(two_cores, "MIN_PARAMS", 0)
    if "probe" not in request.node.name:
        monkeypatch.setattr(two_cores.TwoCores, "PROBE", 0)


def test_small_and_big_models_keep_to_one_core(monkeypatch):
    from nomagic.engines.tensor.fused import chain_for
    from nomagic.model.params import FlatLayout

    monkeypatch.undo()
    chain = chain_for(_net("relu", "softmax"))
    for n in (two_cores.MIN_PARAMS - 1, two_cores.MAX_PARAMS + 1):
        assert two_cores.make(chain, FlatLayout({"w": (n,)}), np.float32, 2) is None
    assert two_cores.make(chain, FlatLayout({"w": (two_cores.MIN_PARAMS,)}), np.float32, 2) is not None


def _ready() -> pt.Partner:
    p = pt.partner()
    assert p is not None and p.ready(wait=60.0), "the partner did not start"
    return p


def _data(loss: str, n: int = 150, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, F))
    if loss == "cross_entropy":
        return X, rng.integers(0, 3, n)
    return X, rng.standard_normal((n, 3))


def _net(hidden: str, out_act: str, depth: int = 3):
    net = nm.inputs(F) | nm.dense(9, activation=hidden)
    for _ in range(depth - 2):
        net = net | nm.dense(7, activation="relu")
    return net | nm.dense(3, activation=out_act)


def _fit(partner: bool, net, X, Y, **kw):
    return nm.fit(net, X, Y, seed=3, verbose=False, partner=partner, **kw)


def _assert_identical(a, b):
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
    for s in a.opt_state.slots:
        for k in a.opt_state.slots[s]:
            assert np.array_equal(a.opt_state.slots[s][k], b.opt_state.slots[s][k]), (s, k)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


OPTIMIZERS = {
    "adam": lambda: nm.adam(1e-2),
    "adamw-cosine": lambda: nm.adamw(nm.cosine_decay(1e-2, total_steps=40, warmup_steps=5), weight_decay=0.1),
    "sgd-nesterov": lambda: nm.sgd(1e-2, momentum=0.9, nesterov=True),
    "rmsprop": lambda: nm.rmsprop(1e-3, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("batch_size", [16, 70])  # deltas feature-major / batch-major; last batch partial
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_shared_steps_equal_steps_on_one_core(opt, batch_size):
    p = _ready()
    X, Y = _data("cross_entropy")
    net = _net("relu", "softmax")
    kw = dict(loss="cross_entropy", epochs=3, batch_size=batch_size, dtype="float64")
    before = p.steps
    shared = _fit(True, net, X, Y, optimizer=OPTIMIZERS[opt](), **kw)
    assert p.steps - before == 3 * -(-150 // batch_size), "every step should have been shared"
    alone = _fit(False, net, X, Y, optimizer=OPTIMIZERS[opt](), **kw)
    assert p.steps - before == 3 * -(-150 // batch_size)
    _assert_identical(shared, alone)


@pytest.mark.parametrize("hidden,loss,out_act,dtype,depth", [
    ("tanh", "mse", "linear", "float32", 3),
    ("sigmoid", "mse", "tanh", "float64", 2),
    ("linear", "cross_entropy", "softmax", "float32", 4),
])
def test_shared_steps_for_other_activations_losses_and_depths(hidden, loss, out_act, dtype, depth):
    p = _ready()
    X, Y = _data(loss, seed=1)
    net = _net(hidden, out_act, depth)
    kw = dict(loss=loss, optimizer=nm.adam(1e-2), epochs=2, batch_size=32, dtype=dtype)
    before = p.steps
    shared = _fit(True, net, X, Y, **kw)
    assert p.steps > before
    _assert_identical(shared, _fit(False, net, X, Y, **kw))


def test_penalties_clipping_and_a_plateau_schedule_are_shared_too():
    p = _ready()
    X, Y = _data("cross_entropy", seed=2)
    net = _net("relu", "softmax")

    def run(partner):
        plateau = nm.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, threshold=10.0, threshold_mode="abs")
        return _fit(partner, net, X, Y, loss="cross_entropy", optimizer=nm.adam(5e-2), epochs=4,
                    batch_size=20, l1=1e-3, l2=1e-2, clip_norm=0.5, dtype="float64", callbacks=[plateau])

    before = p.steps
    shared = run(True)
    assert p.steps > before
    _assert_identical(shared, run(False))


def test_continuing_on_two_cores_equals_one_run():
    _ready()
    X, Y = _data("cross_entropy", seed=4)
    net = _net("relu", "softmax")
    kw = dict(loss="cross_entropy", optimizer=nm.adam(1e-2), batch_size=25, dtype="float32")
    half = _fit(True, net, X, Y, epochs=2, **kw)
    both = _fit(True, half, X, Y, epochs=2, **kw)
    _assert_identical(both, _fit(False, net, X, Y, epochs=4, **kw))


def test_partner_option_is_checked():
    X, Y = _data("cross_entropy")
    with pytest.raises(InvalidInputError, match="partner must be True or False"):
        _fit("yes", _net("relu", "softmax"), X, Y, loss="cross_entropy", epochs=1)


def test_by_default_every_step_stays_here():
    p = _ready()
    X, Y = _data("cross_entropy")
    before = p.steps
    nm.fit(_net("relu", "softmax"), X, Y, loss="cross_entropy", epochs=2, batch_size=16, verbose=False)
    assert p.steps == before


def test_partner_false_keeps_every_step_here():
    p = _ready()
    X, Y = _data("cross_entropy")
    before = p.steps
    _fit(False, _net("relu", "softmax"), X, Y, loss="cross_entropy", epochs=2, batch_size=16)
    assert p.steps == before


def test_environment_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("NOMAGIC_PARTNER", "0")
    assert not pt.available()


def test_a_killed_partner_ends_the_run_with_a_clear_error_then_training_goes_on():
    p = _ready()
    X, Y = _data("cross_entropy", n=400)
    net = _net("relu", "softmax")

    class Kill(nm.Callback):
        def on_batch_end(self, loop):
            if loop.batch == 3 and loop.epoch == 0:
                os.kill(p.proc.pid, signal.SIGKILL)
                p.proc.wait(timeout=10)

    t0 = time.monotonic()
    with pytest.raises(EngineError, match="partner process"):
        _fit(True, net, X, Y, loss="cross_entropy", epochs=3, batch_size=16, callbacks=[Kill()])
    assert time.monotonic() - t0 < 30
    kw = dict(loss="cross_entropy", optimizer=nm.adam(1e-2), epochs=2, batch_size=16)
    again = _fit(True, net, X, Y, **kw)  # a new partner (or one core): the same numbers
    _assert_identical(again, _fit(False, net, X, Y, **kw))


def test_an_exception_inside_a_shared_step_leaves_the_partner_usable(monkeypatch):
    from nomagic.engines.tensor import fused

    p = _ready()
    X, Y = _data("cross_entropy")
    net = _net("relu", "softmax")
    original = fused._DenseStep._delta_below

    def failing(self, k):
        raise RuntimeError("injected")

    monkeypatch.setattr(fused._DenseStep, "_delta_below", failing)
    with pytest.raises(RuntimeError, match="injected"):
        _fit(True, net, X, Y, loss="cross_entropy", epochs=1, batch_size=16)
    monkeypatch.setattr(fused._DenseStep, "_delta_below", original)
    kw = dict(loss="cross_entropy", optimizer=nm.adam(1e-2), epochs=2, batch_size=16)
    before = p.steps
    shared = _fit(True, net, X, Y, **kw)
    assert p.steps > before and not p.broken
    _assert_identical(shared, _fit(False, net, X, Y, **kw))


def test_an_error_in_the_partner_is_reported_and_it_carries_on():
    p = _ready()
    arena = pt.Arena(pt.Arena.nbytes([((3, 4), np.float64)] * 3))
    a, b, out = arena.empty((3, 4), np.float64), arena.empty((3, 4), np.float64), arena.empty((3, 4), np.float64)
    a[...], b[...] = 1.0, 2.0
    with p.lock:
        p.attach(arena)
        bad = p.register([("matmul", arena.ref(a), arena.ref(b), arena.ref(out))], None)  # (3,4)·(3,4)
        good = p.register([("matmul", arena.ref(a), arena.ref(b.T), arena.ref(out[:, :3]))], None)
        step = p.begin(bad)
        with pytest.raises(EngineError, match="partner process failed: ValueError"):
            p.finish(step)
        step = p.begin(good)
        p.finish(step)
    assert np.array_equal(out[:, :3], a @ b.T)
    p.forget([bad, good], [arena.key])


def test_the_partner_sleeps_once_a_fit_is_over():
    p = _ready()
    X, Y = _data("cross_entropy")
    _fit(True, _net("relu", "softmax"), X, Y, loss="cross_entropy", epochs=1, batch_size=16)
    gc.collect()
    deadline = time.monotonic() + 5
    while p.ints[pt.STATE] != pt.ASLEEP and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.ints[pt.STATE] == pt.ASLEEP


def test_no_shared_memory_file_is_left_behind():
    _ready()
    before = set(glob.glob("/dev/shm/nomagic-*"))
    X, Y = _data("cross_entropy")
    for bs in (16, 70):
        _fit(True, _net("relu", "softmax"), X, Y, loss="cross_entropy", epochs=1, batch_size=bs)
    gc.collect()
    assert set(glob.glob("/dev/shm/nomagic-*")) <= before


def test_the_partner_leaves_with_its_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        from nomagic.engines.tensor import partner as pt
        p = pt.partner()
        assert p.ready(wait=60.0)
        print(p.proc.pid, flush=True)
        os._exit(0)  # no atexit, no goodbye: the partner must notice by itself
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the partner outlived its parent by 10 s")


@pytest.mark.parametrize("slow", ["shared", "alone"])
def test_the_probe_picks_the_faster_way(monkeypatch, slow):
    from nomagic.engines.tensor.engine import Trainer
    from nomagic.model.losses import get_loss

    p = _ready()
    monkeypatch.setattr(two_cores.TwoCores, "PROBE", 3)  # a median of 3: one slow wake-up does not count
    monkeypatch.setattr(two_cores.TwoCores, "PERIOD", 10)
    target = (two_cores.TwoCores, "_shared") if slow == "shared" else (Trainer, "_step_here")
    original = getattr(*target)

    def slower(*args, **kw):
        time.sleep(0.02)
        return original(*args, **kw)

    monkeypatch.setattr(*target, slower)
    net = _net("relu", "softmax")
    X, Y = _data("cross_entropy")
    params = net.init(seed=0, dtype="float64")
    opt = nm.adam(1e-2)
    tr = Trainer(net, params, opt, opt.init(params), get_loss("cross_entropy"), partner=True)
    Yb = np.eye(3)[Y[:16]]
    try:
        before = p.steps
        for _ in range(10):  # probe: shared, alone, three times; then 4 steps the faster way
            tr.train_batch(X[:16], Yb)
        assert p.steps - before == (3 if slow == "shared" else 7)
        assert tr.step_count == 10
    finally:
        tr.close()
