"""``nm.fit``: history, validation, early stopping, L1/L2, gradient clipping, the progress bar,
starting params, dtype, determinism, and checkpoints that survive a real ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nomagic as nm
from nomagic.engines import tensor
from nomagic.io import safetensors as st
from nomagic.train.checkpoints import CHECKPOINT_FILE


def _regression(rng, n=40, d=3, k=2):
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, k))
    return X, np.tanh(X @ W) + 0.1 * rng.normal(size=(n, k))


def _classification(rng, n=48, d=3):
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)


def _mlp(d=3, k=2, out="linear"):
    return nm.inputs(d) | nm.dense(5, activation="tanh") | nm.dense(k, activation=out)


def _random_params(net, seed=0, dtype="float64"):
    r = np.random.default_rng(seed)
    return nm.Params({s.key: r.normal(0.0, 0.5, s.shape).astype(dtype) for s in net.param_specs()})


def _assert_params_equal(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _weights_only(net):
    return {s.key for s in net.param_specs() if s.role == "weight"}


# -- history and validation ---------------------------------------------------------------------------


def test_history_one_dict_per_epoch(rng):
    X, Y = _regression(rng)
    model = nm.fit(_mlp(), X, Y, epochs=4, batch_size=8, seed=0)
    assert isinstance(model, nm.Model)
    assert [h["epoch"] for h in model.history] == [1, 2, 3, 4]
    for h in model.history:
        assert isinstance(h["loss"], float) and np.isfinite(h["loss"])
        assert "val_loss" not in h
    assert model.history[-1]["loss"] < model.history[0]["loss"]
    assert model.info["epochs_run"] == 4 and model.info["stopped_early"] is False


def test_history_with_validation_data_and_accuracy(rng):
    X, y = _classification(rng)
    Xv, yv = _classification(rng, n=20)
    net = _mlp(k=2, out="softmax")
    model = nm.fit(net, X, y, loss="cross_entropy", epochs=3, batch_size=16, seed=0,
                   validation_data=(Xv, yv))
    for h in model.history:
        assert {"epoch", "loss", "val_loss", "val_accuracy"} <= set(h)
        assert 0.0 <= h["val_accuracy"] <= 1.0
    # the last record's validation numbers are those of the returned params
    last = model.history[-1]
    ev = model.evaluate(Xv, yv)
    assert last["val_loss"] == pytest.approx(ev["loss"], rel=1e-6)
    assert last["val_accuracy"] == ev["accuracy"]
    # mse has no accuracy
    Xr, Yr = _regression(rng)
    m2 = nm.fit(_mlp(), Xr, Yr, epochs=2, validation_split=0.25)
    assert all("val_loss" in h and "val_accuracy" not in h for h in m2.history)


def test_validation_split_takes_the_last_fraction(rng):
    X, Y = _regression(rng, n=40)
    net = _mlp()
    a = nm.fit(net, X, Y, epochs=3, batch_size=8, seed=2, validation_split=0.25)
    b = nm.fit(net, X[:30], Y[:30], epochs=3, batch_size=8, seed=2, validation_data=(X[30:], Y[30:]))
    _assert_params_equal(a.params, b.params)
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    with pytest.raises(nm.InvalidInputError, match="not both"):
        nm.fit(net, X, Y, validation_split=0.25, validation_data=(X, Y))
    for bad in (1.0, 1.5, -0.1, 0.001, 1):
        with pytest.raises(nm.InvalidInputError, match="validation_split"):
            nm.fit(net, X, Y, validation_split=bad)


# -- early stopping ------------------------------------------------------------------------------------------


def _rising_val_case(rng):
    """Train towards W; validation wants −W. From zero weights, validation loss only rises."""
    X = rng.normal(size=(64, 3))
    W = np.array([[1.0], [-2.0], [0.5]])
    Xv = rng.normal(size=(32, 3))
    net = nm.inputs(3) | nm.dense(1, bias=False)
    zeros = {"dense_0.weight": np.zeros((3, 1))}
    kwargs = dict(optimizer=nm.sgd(0.05), batch_size=16, seed=0, params=zeros,
                  validation_data=(Xv, -(Xv @ W)))
    return net, X, X @ W, kwargs


def test_early_stopping_stops_and_restores_best(rng):
    net, X, Y, kw = _rising_val_case(rng)
    model = nm.fit(net, X, Y, epochs=50, early_stopping=2, **kw)
    vals = [h["val_loss"] for h in model.history]
    assert len(vals) == 3 and vals[0] < vals[1] < vals[2]  # best at epoch 1, then 2 bad epochs
    assert model.info["stopped_early"] is True and model.info["epochs_run"] == 3
    best = nm.fit(net, X, Y, epochs=1, **kw)  # the params as they were after epoch 1
    _assert_params_equal(model.params, best.params)
    # without restoring, the last params are kept
    last = nm.fit(net, X, Y, epochs=50, early_stopping=nm.EarlyStopping(patience=2, restore_best=False), **kw)
    _assert_params_equal(last.params, nm.fit(net, X, Y, epochs=3, **kw).params)
    assert not np.array_equal(last.params["dense_0.weight"], model.params["dense_0.weight"])


def test_early_stopping_on_training_loss_and_errors(rng):
    X, Y = _regression(rng)
    net = _mlp()
    # training loss keeps falling: patience is never exhausted
    model = nm.fit(net, X, Y, epochs=5, batch_size=40, optimizer=nm.sgd(0.01), early_stopping=2)
    assert len(model.history) == 5 and model.info["stopped_early"] is False
    with pytest.raises(nm.InvalidInputError, match="val_loss"):
        nm.fit(net, X, Y, epochs=2, early_stopping=nm.EarlyStopping(monitor="val_loss"))
    for bad in (True, 0, -1, "5"):
        with pytest.raises(nm.InvalidInputError, match="early_stopping"):
            nm.fit(net, X, Y, epochs=2, early_stopping=bad)


# -- regularisation and clipping -------------------------------------------------------------------------------


def _one_sgd_step(net, X, Y, p0, lr, **kw):
    """One full-batch SGD step through nm.fit."""
    return nm.fit(net, X, Y, optimizer=nm.sgd(lr), epochs=1, batch_size=len(X), shuffle=False,
                  params=p0, **kw)


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_penalty_one_step_by_hand(penalty, rng):
    X, Y = _regression(rng)
    net = _mlp()
    p0 = _random_params(net)
    lam, lr = 0.05, 0.1
    model = _one_sgd_step(net, X, Y, p0, lr, **{penalty: lam})
    loss, g = net.loss_and_grad(p0, X, Y, loss="mse")
    weights = _weights_only(net)
    pen = 0.0
    for k in p0:
        grad = np.array(g[k])
        if k in weights:  # l1·Σ|w| → l1·sign(w) ;  l2·Σw² → 2·l2·w ; biases are not penalised
            grad += lam * np.sign(p0[k]) if penalty == "l1" else 2 * lam * p0[k]
            pen += lam * (np.abs(p0[k]).sum() if penalty == "l1" else (p0[k] ** 2).sum())
        np.testing.assert_allclose(model.params[k], p0[k] - lr * grad, rtol=1e-12, atol=1e-14, err_msg=k)
    assert model.history[0]["loss"] == pytest.approx(loss + pen, rel=1e-12)


def test_l2_gradient_matches_torch(rng):
    torch = pytest.importorskip("torch")
    X, Y = _regression(rng)
    net = _mlp()
    p0 = _random_params(net)
    lam, lr = 0.03, 0.2
    model = _one_sgd_step(net, X, Y, p0, lr, l2=lam)
    t = {k: torch.tensor(np.array(v), requires_grad=True) for k, v in p0.items()}
    h = torch.tanh(torch.from_numpy(X) @ t["dense_0.weight"] + t["dense_0.bias"])
    out = h @ t["dense_1.weight"] + t["dense_1.bias"]
    obj = torch.nn.functional.mse_loss(out, torch.from_numpy(Y))
    obj = obj + lam * sum((t[k] ** 2).sum() for k in _weights_only(net))
    obj.backward()
    with torch.no_grad():
        for k, v in t.items():
            np.testing.assert_allclose(model.params[k], (v - lr * v.grad).numpy(), rtol=1e-12, atol=1e-14)
    assert model.history[0]["loss"] == pytest.approx(obj.item(), rel=1e-12)


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_penalty_shrinks_weights(penalty, rng):
    X, Y = _regression(rng, n=60)
    net = _mlp()
    kw = dict(epochs=30, batch_size=20, seed=0, optimizer=nm.adam(0.02))
    plain = nm.fit(net, X, Y, **kw)
    reg = nm.fit(net, X, Y, **kw, **{penalty: 0.05})
    weights = _weights_only(net)

    def size(p):
        return sum(float(np.abs(p[k]).sum() if penalty == "l1" else (p[k] ** 2).sum()) for k in weights)

    assert size(reg.params) < 0.8 * size(plain.params)


def test_penalty_skips_masked_synapses(rng):
    g = nm.GraphBuilder(3)
    h = g.neuron([g.inputs[0], g.inputs[1]], activation="tanh")
    k = g.neuron([g.inputs[1], g.inputs[2]], activation="tanh")
    y = g.neuron([h, k, g.inputs[0]], activation="linear")
    net = g.build(outputs=[y])
    masked = [b for b in net.blocks if b.mask is not None]
    assert masked
    X, Y = _regression(rng, k=1)
    p0 = {s.key: _random_params(net)[s.key] * (s.mask if s.mask is not None else 1) for s in net.param_specs()}
    model = _one_sgd_step(net, X, Y, nm.Params(p0), 0.1, l1=0.5, l2=0.5)
    for b in masked:
        assert np.all(model.params[b.weight][~b.mask] == 0)  # absent synapses stay absent


def test_clip_norm_caps_the_global_gradient(rng):
    X, Y = _regression(rng)
    net = _mlp()
    p0 = _random_params(net)
    lr = 0.1
    _, g = net.loss_and_grad(p0, X, Y)
    raw = float(np.sqrt(sum((g[k] ** 2).sum() for k in g)))
    clip = raw / 10
    model = _one_sgd_step(net, X, Y, p0, lr, clip_norm=clip)
    delta = {k: np.asarray(model.params[k]) - p0[k] for k in p0}
    norm = float(np.sqrt(sum((d ** 2).sum() for d in delta.values())))
    assert norm == pytest.approx(lr * clip, rel=1e-10)
    for k in p0:  # same direction as the raw gradient, only shorter
        np.testing.assert_allclose(delta[k], -lr * g[k] * (clip / raw), rtol=1e-10, atol=1e-15)
    # a gradient within the limit is left alone
    loose = _one_sgd_step(net, X, Y, p0, lr, clip_norm=raw * 2)
    for k in p0:
        np.testing.assert_allclose(loose.params[k], p0[k] - lr * g[k], rtol=1e-12, atol=1e-15)
    for bad in (0, -1.0, float("nan"), "1"):
        with pytest.raises(nm.InvalidInputError, match="clip_norm"):
            nm.fit(net, X, Y, clip_norm=bad)


# -- progress bar -------------------------------------------------------------------------------------------------


def test_progress_bar_shown_when_verbose(rng, capsys):
    X, Y = _regression(rng)
    nm.fit(_mlp(), X, Y, epochs=2, batch_size=8, verbose=True)
    captured = capsys.readouterr()
    assert "epoch 1/2" in captured.err and "epoch 2/2" in captured.err
    assert "loss" in captured.err and "5/5" in captured.err
    assert captured.out == ""


def test_progress_bar_silent_when_not_a_tty(rng, capsys):
    X, Y = _regression(rng)
    assert not sys.stderr.isatty()
    nm.fit(_mlp(), X, Y, epochs=2, batch_size=8)  # verbose=None: only on a terminal
    nm.fit(_mlp(), X, Y, epochs=2, batch_size=8, verbose=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


# -- starting params, dtype, determinism ----------------------------------------------------------------------


def test_params_start_training_from_given_params(rng):
    X, Y = _regression(rng)
    net = _mlp()
    p0 = _random_params(net, seed=7)
    before = {k: np.array(v) for k, v in p0.items()}
    lr = 0.1
    model = _one_sgd_step(net, X, Y, p0, lr)
    _, g = net.loss_and_grad(p0, X, Y)
    for k in p0:
        np.testing.assert_allclose(model.params[k], p0[k] - lr * g[k], rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(p0[k], before[k])  # the given params are not changed
    # a plain dict of arrays works too, and training continues where a model left off
    cont = nm.fit(net, X, Y, epochs=2, params=dict(model.params), seed=0)
    assert cont.history[0]["loss"] < model.history[0]["loss"]
    with pytest.raises(nm.ParamsError):
        nm.fit(net, X, Y, params={"dense_0.weight": np.zeros((3, 5))})
    with pytest.raises(nm.ParamsError):
        nm.fit(net, X, Y, params={**dict(p0), "dense_0.weight": np.zeros((5, 3))})


def test_dtype(rng):
    X, Y = _regression(rng)
    net = _mlp()
    m32 = nm.fit(net, X, Y, epochs=1)
    m64 = nm.fit(net, X, Y, epochs=1, dtype="float64")
    assert all(v.dtype == np.float32 for v in m32.params.values())
    assert all(v.dtype == np.float64 for v in m64.params.values())
    assert m64.predict(X).dtype == np.float64 and m32.predict(X).dtype == np.float32
    assert m64.info["dtype"] == "float64"
    # float32 starting params are converted when float64 is asked for
    m = nm.fit(net, X, Y, epochs=1, params=net.init(seed=0), dtype="float64")
    assert m.params.dtype == np.float64
    # float64 and float32 follow the same path: close numbers
    for k in m32.params:
        np.testing.assert_allclose(m32.params[k], m64.params[k], atol=1e-4)
    with pytest.raises(nm.InvalidInputError, match="dtype"):
        nm.fit(net, X, Y, dtype="float16")


def test_determinism(rng):
    X, y = _classification(rng)
    net = _mlp(out="softmax")
    kw = dict(loss="cross_entropy", epochs=4, batch_size=8, validation_split=0.25, l2=1e-3, clip_norm=5.0)
    a = nm.fit(net, X, y, seed=11, **kw)
    b = nm.fit(net, X, y, seed=11, **kw)
    _assert_params_equal(a.params, b.params)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    c = nm.fit(net, X, y, seed=12, **kw)
    assert not np.array_equal(a.params["dense_0.weight"], c.params["dense_0.weight"])


def test_recurrent_fit_runs(rng):
    X = rng.normal(size=(24, 5, 2))
    Y = X.sum(axis=(1, 2))[:, None] / 5
    model = nm.fit(nm.inputs(2) | nm.gru(4) | nm.dense(1), X, Y, epochs=3, batch_size=8, seed=0,
                   validation_split=0.25, dtype="float64", truncate=3)
    assert len(model.history) == 3 and "val_loss" in model.history[0]


# -- checkpoints --------------------------------------------------------------------------------------------------

TRAIN_SCRIPT = textwrap.dedent('''
    import sys

    import numpy as np

    import nomagic as nm
    from nomagic.io import safetensors as st

    checkpoint, out, epochs = sys.argv[1] or None, sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6000, 6))
    y = (X[:, 0] * X[:, 1] + X[:, 2] > 0).astype(int)
    net = nm.inputs(6) | nm.dense(16, activation="tanh") | nm.dense(2, activation="softmax")
    model = nm.fit(net, X, y, loss="cross_entropy", optimizer=nm.adam(1e-3), epochs=epochs,
                   batch_size=4, seed=3, validation_split=0.2, l2=1e-4,
                   early_stopping=nm.EarlyStopping(patience=1000), checkpoint=checkpoint, verbose=False)
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in model.history]
    st.save_file(out, dict(model.params), {"history": repr(history)})
''')


def _ckpt_epoch(path) -> int:
    _, meta = st.load_file(path)
    return json.loads(meta["state"])["epoch"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_checkpoint_resumes_exactly_after_kill(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    epochs = "12"
    ckpt = tmp_path / "ckpt"

    def start(checkpoint, out):
        return subprocess.Popen([sys.executable, str(script), checkpoint, str(tmp_path / out), epochs],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    baseline = start("", "baseline.safetensors")  # the uninterrupted run, side by side
    victim = start(str(ckpt), "resumed.safetensors")
    deadline = time.monotonic() + 120
    while not (ckpt / CHECKPOINT_FILE).exists():
        assert victim.poll() is None, victim.communicate()[1].decode()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    done = _ckpt_epoch(ckpt / CHECKPOINT_FILE)
    assert 1 <= done < int(epochs)  # killed part way through
    assert not (tmp_path / "resumed.safetensors").exists()

    resumed = start(str(ckpt), "resumed.safetensors")  # same arguments: picks up at epoch done+1
    for proc in (resumed, baseline):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    a, meta_a = st.load_file(tmp_path / "baseline.safetensors")
    b, meta_b = st.load_file(tmp_path / "resumed.safetensors")
    assert set(a) == set(b)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k  # bit-identical
    assert meta_a["history"] == meta_b["history"]  # the history survived the kill too
    assert _ckpt_epoch(ckpt / CHECKPOINT_FILE) == int(epochs)


def _ckpt_fit(rng_seed, ckpt, **overrides):
    rng = np.random.default_rng(rng_seed)
    X, y = _classification(rng, n=40)
    kw = dict(loss="cross_entropy", optimizer=nm.adam(0.01), epochs=3, batch_size=8, seed=0,
              checkpoint=ckpt, validation_split=0.25, early_stopping=5)
    kw.update(overrides)
    X = kw.pop("X", X)
    return nm.fit(_mlp(out="softmax"), X, y, **kw)


def test_checkpoint_from_other_data_or_settings_is_refused(tmp_path):
    ckpt = tmp_path / "ckpt"
    _ckpt_fit(0, ckpt)
    path = ckpt / CHECKPOINT_FILE
    before = path.read_bytes()
    X_other = np.random.default_rng(99).normal(size=(40, 3))
    for change in ({"X": X_other}, {"seed": 1}, {"batch_size": 4}, {"optimizer": nm.adam(0.02)},
                   {"clip_norm": 1.0}, {"shuffle": False}, {"l2": 0.1}, {"dtype": "float64"},
                   {"validation_split": 0.5}, {"early_stopping": 2}):
        with pytest.raises(nm.NomagicError, match="other data or settings"):
            _ckpt_fit(0, ckpt, **change)
        assert path.read_bytes() == before, change
    assert sorted(os.listdir(ckpt)) == [CHECKPOINT_FILE]
    # a damaged checkpoint is a ModelFileError, and is left as it is
    path.write_bytes(before[:-5])
    with pytest.raises(nm.ModelFileError):
        _ckpt_fit(0, ckpt)
    assert path.read_bytes() == before[:-5]
    # a file where the checkpoint directory should be
    with pytest.raises(nm.InvalidInputError, match="directory"):
        _ckpt_fit(0, path)


def test_completed_checkpointed_run_returns_at_once(tmp_path, monkeypatch):
    ckpt = tmp_path / "ckpt"
    first = _ckpt_fit(0, ckpt)
    calls = []
    real = tensor.Trainer.train_batch

    def counting(self, X, Y):
        calls.append(1)
        return real(self, X, Y)

    monkeypatch.setattr(tensor.Trainer, "train_batch", counting)
    again = _ckpt_fit(0, ckpt)
    assert calls == []  # nothing trained
    _assert_params_equal(first.params, again.params)
    assert again.history == first.history
    # asking for more epochs continues the same run: equal to one run of that length
    more = _ckpt_fit(0, ckpt, epochs=5)
    assert len(calls) == 2 * 4  # two more epochs of 4 batches
    monkeypatch.undo()
    straight = _ckpt_fit(0, None, epochs=5)
    _assert_params_equal(more.params, straight.params)
