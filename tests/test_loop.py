"""Training as a loop of handlers: callbacks (events, stop, log, errors), metrics, continuing a
model bit for bit on both engines, the optimizer state in model files, the progress bar, and a
``nm.Loop`` assembled by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nomagic as nm
from nomagic.engines import tensor
from nomagic.io import model_file as files
from nomagic.io import safetensors as st
from nomagic.train.checkpoints import CHECKPOINT_FILE


def _regression(rng, n=40, d=3, k=2):
    X = rng.normal(size=(n, d))
    return X, np.tanh(X @ rng.normal(size=(d, k))) + 0.1 * rng.normal(size=(n, k))


def _classification(rng, n=48, d=3, k=3):
    X = rng.normal(size=(n, d))
    return X, (np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.5]) % k).astype(int)


def _mlp(d=3, k=2, out="linear"):
    return nm.inputs(d) | nm.dense(5, activation="tanh") | nm.dense(k, activation=out)


def _same_params(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype
        assert a[k].tobytes() == b[k].tobytes(), k


def _same_opt_state(a, b):
    assert a.step == b.step and set(a.slots) == set(b.slots)
    for s in a.slots:
        _same_params(a.slots[s], b.slots[s])


def _no_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


# -- callbacks: events, stop, log ---------------------------------------------------------------------


class Recorder(nm.Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, loop):
        self.events.append("fit_start")

    def on_epoch_start(self, loop):
        self.events.append("epoch_start")

    def on_batch_end(self, loop):
        self.events.append("batch_end")

    def on_epoch_end(self, loop):
        self.events.append("epoch_end")

    def on_fit_end(self, loop):
        self.events.append("fit_end")


def test_events_in_order_and_batch_end_once_per_batch(rng):
    X, Y = _regression(rng, n=40)
    rec = Recorder()
    model = nm.fit(_mlp(), X, Y, epochs=3, batch_size=8, callbacks=[rec])  # 5 batches an epoch
    expected = ["fit_start"] + (["epoch_start"] + ["batch_end"] * 5 + ["epoch_end"]) * 3 + ["fit_end"]
    assert rec.events == expected
    assert len(model.history) == 3
    # a last, short batch is a batch too
    rec = Recorder()
    nm.fit(_mlp(), X, Y, epochs=1, batch_size=16, callbacks=[rec])
    assert rec.events.count("batch_end") == 3


class StopAfter(nm.Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, loop):
        loop.log("twice_loss", 2 * loop.record["loss"])
        if loop.epoch >= self.epochs:
            loop.stop("enough")


def test_callback_stops_training_and_logs_a_metric(rng):
    X, Y = _regression(rng)
    model = nm.fit(_mlp(), X, Y, epochs=10, batch_size=8, callbacks=[StopAfter(2)])
    assert len(model.history) == 2
    assert model.info["stopped_early"] is True and model.info["stop_reason"] == "enough"
    assert model.epoch == 2 and model.info["epochs_run"] == 2
    for h in model.history:
        assert h["twice_loss"] == 2 * h["loss"]
    # the params are those of two epochs
    _same_params(model.params, nm.fit(_mlp(), X, Y, epochs=2, batch_size=8).params)


class StopMidEpoch(nm.Callback):
    def on_batch_end(self, loop):
        if loop.epoch == 1 and loop.batch == 1:
            loop.stop("mid-epoch")


def test_stop_from_batch_end_ends_after_that_batch(rng):
    X, Y = _regression(rng, n=40)
    rec = Recorder()
    model = nm.fit(_mlp(), X, Y, epochs=5, batch_size=8, callbacks=[StopMidEpoch(), rec])
    assert len(model.history) == 2  # the second epoch ended after its second batch
    assert rec.events[-4:] == ["batch_end", "batch_end", "epoch_end", "fit_end"]
    assert rec.events.count("batch_end") == 5 + 2


def test_bad_log_and_bad_callbacks_are_refused(rng):
    X, Y = _regression(rng)

    class LogsText(nm.Callback):
        def on_epoch_end(self, loop):
            loop.log("note", "text")

    with pytest.raises(nm.InvalidInputError, match="needs a number"):
        nm.fit(_mlp(), X, Y, epochs=1, callbacks=[LogsText()])
    with pytest.raises(nm.InvalidInputError, match="Callback"):
        nm.fit(_mlp(), X, Y, epochs=1, callbacks=[lambda loop: None])


# -- a raising callback -------------------------------------------------------------------------------------


class MyLogger(nm.Callback):
    def on_epoch_end(self, loop):
        if loop.epoch == 2:
            return 1 / 0


def test_raising_callback_names_itself_and_keeps_the_checkpoint(rng, tmp_path, monkeypatch):
    X, y = _classification(rng)
    closed = []
    real_close = tensor.Trainer.close

    def close(self):
        closed.append(1)
        real_close(self)

    monkeypatch.setattr(tensor.Trainer, "close", close)
    ckpt = tmp_path / "ckpt"
    kw = dict(loss="cross_entropy", epochs=4, batch_size=8, seed=1, checkpoint=ckpt)
    net = _mlp(k=3, out="softmax")
    with pytest.raises(nm.CallbackError) as info:
        nm.fit(net, X, y, callbacks=[MyLogger()], **kw)
    assert str(info.value).startswith("callback MyLogger.on_epoch_end raised ZeroDivisionError: division by zero")
    assert isinstance(info.value, nm.NomagicError)
    assert closed == [1]  # the trainer was closed
    # the checkpoint of epoch 1 is there, whole, and a run without the bad callback resumes from it
    _, meta = st.load_file(ckpt / CHECKPOINT_FILE)
    assert json.loads(meta["state"])["epoch"] == 1
    resumed = nm.fit(net, X, y, **kw)
    straight = nm.fit(net, X, y, **{**kw, "checkpoint": None})
    _same_params(resumed.params, straight.params)
    assert _no_seconds(resumed.history) == _no_seconds(straight.history)


# -- continuing a model -----------------------------------------------------------------------------------


def _rising_val_case(rng):
    """Train towards W; validation wants −W: from zero weights, validation loss only rises."""
    X = rng.normal(size=(64, 3))
    W = np.array([[1.0], [-2.0], [0.5]])
    Xv = rng.normal(size=(32, 3))
    net = nm.inputs(3) | nm.dense(1, bias=False)
    zeros = {"dense_0.weight": np.zeros((3, 1))}
    return net, X, X @ W, zeros, (Xv, -(Xv @ W))


@pytest.mark.parametrize("engine", ["tensor", "processes"])
def test_two_epochs_then_two_more_equal_four(engine, rng):
    X, y = _classification(rng, n=30)
    net = _mlp(k=3, out="softmax")
    kw = dict(batch_size=8, seed=3, engine=engine, dtype="float64")
    four = nm.fit(net, X, y, loss="cross_entropy", optimizer=nm.adam(0.02), epochs=4, **kw)
    two = nm.fit(net, X, y, loss="cross_entropy", optimizer=nm.adam(0.02), epochs=2, **kw)
    assert two.epoch == 2 and two.opt_state.step == 2 * 4
    more = nm.fit(two, X, y, epochs=2, **kw)  # the model's loss and optimizer
    _same_params(more.params, four.params)
    _same_opt_state(more.opt_state, four.opt_state)
    assert more.epoch == 4 and more.info["epochs_run"] == 4
    assert _no_seconds(more.history) == _no_seconds(four.history)
    assert [h["epoch"] for h in more.history] == [1, 2, 3, 4]


@pytest.mark.parametrize("engine", ["tensor", "processes"])
def test_continuing_with_validation_and_early_stopping(engine, rng, tmp_path):
    net, X, Y, zeros, val = _rising_val_case(rng)
    kw = dict(optimizer=nm.sgd(0.05), batch_size=16, seed=0, validation_data=val, early_stopping=3,
              engine=engine)
    four = nm.fit(net, X, Y, params=zeros, epochs=10, **kw)  # best at epoch 1; stops after epoch 4
    assert four.info["stopped_early"] is True and four.epoch == 4
    two = nm.fit(net, X, Y, params=zeros, epochs=2, **kw)
    assert two.info["stopped_early"] is False
    more = nm.fit(two, X, Y, epochs=8, **kw)  # early stopping goes on counting where it was
    _same_params(more.params, four.params)  # the params of epoch 1, restored
    assert _no_seconds(more.history) == _no_seconds(four.history)
    assert more.epoch == 4 and more.info["stopped_early"] is True
    # through a model file too
    two.save(tmp_path / "two.nomagic")
    again = nm.fit(nm.load(tmp_path / "two.nomagic"), X, Y, epochs=8, **kw)
    _same_params(again.params, four.params)
    # no stop in the first half, no restore: plain validation continues exactly as well
    kw2 = {k: v for k, v in kw.items() if k != "early_stopping"}
    _same_params(nm.fit(nm.fit(net, X, Y, params=zeros, epochs=1, **kw2), X, Y, epochs=2, **kw2).params,
                 nm.fit(net, X, Y, params=zeros, epochs=3, **kw2).params)


def test_continuing_rules(rng):
    X, Y = _regression(rng)
    model = nm.fit(_mlp(), X, Y, epochs=1, optimizer=nm.sgd(0.1, momentum=0.9))
    with pytest.raises(nm.InvalidInputError, match="not both"):
        nm.fit(model, X, Y, params=model.params)
    # another kind of optimizer starts with a fresh state; the model's own is kept otherwise
    adam = nm.fit(model, X, Y, epochs=1, optimizer="adam")
    assert adam.opt_state.step == 2 and set(adam.opt_state.slots) == {"m", "v"}
    assert adam.info["optimizer"]["name"] == "adam"
    same = nm.fit(model, X, Y, epochs=1)
    assert same.info["optimizer"] == model.info["optimizer"] and same.opt_state.step == 4
    # a model built by hand starts at epoch 0 with fresh optimizer state
    hand = nm.Model(model.net, model.params)
    assert hand.epoch == 0 and hand.opt_state is None
    assert nm.fit(hand, X, Y, epochs=1).epoch == 1


# -- model files ------------------------------------------------------------------------------------------


def test_model_file_round_trips_optimizer_state_and_epoch(rng, tmp_path):
    net, X, Y, zeros, val = _rising_val_case(rng)
    model = nm.fit(net, X, Y, params=zeros, epochs=2, optimizer=nm.adam(0.01), batch_size=16,
                   validation_data=val, early_stopping=5)
    path = tmp_path / "m.nomagic"
    model.save(path)
    tensors, meta = st.load_file(path)
    assert {"opt/m/dense_0.weight", "opt/v/dense_0.weight", "best/dense_0.weight"} <= set(tensors)
    assert json.loads(meta["optimizer"]) == model.info["optimizer"] and meta["epoch"] == "2"
    loaded = nm.load(path)
    assert loaded.epoch == 2
    _same_params(loaded.params, model.params)
    _same_opt_state(loaded.opt_state, model.opt_state)
    assert loaded.loop_state["monitor"] == "val_loss" and loaded.loop_state["wait"] == 1
    _same_params(loaded.loop_state["best"], model.loop_state["best"])
    # a damaged optimizer slot is a ModelFileError
    bad = dict(tensors)
    bad["opt/m/dense_0.weight"] = np.zeros((2, 1))
    meta_bad = {**meta}
    meta_bad["checksum"] = files._checksum(meta_bad, bad)
    path.write_bytes(st.dumps(bad, meta_bad))
    with pytest.raises(nm.ModelFileError, match="optimizer slot"):
        nm.load(path)


def test_old_model_file_without_training_state_still_loads(rng, tmp_path):
    X, Y = _regression(rng)
    model = nm.fit(_mlp(), X, Y, epochs=3)
    path = tmp_path / "old.nomagic"
    model.save(path)
    tensors, meta = st.load_file(path)
    old_tensors = {k: v for k, v in tensors.items() if "/" not in k}
    old_meta = {k: v for k, v in meta.items() if k in ("format", "version", "network", "loss", "history", "info")}
    old_meta["checksum"] = files._checksum(old_meta, old_tensors)
    path.write_bytes(st.dumps(old_tensors, old_meta))
    loaded = nm.load(path)
    _same_params(loaded.params, model.params)
    assert loaded.opt_state is None and loaded.loop_state == {}
    assert loaded.epoch == 3  # from info["epochs_run"]
    cont = nm.fit(loaded, X, Y, epochs=1)  # fresh optimizer state, shuffling goes on at epoch 3
    assert cont.epoch == 4 and cont.opt_state.step == 2
    # a model without a trained epoch count at all (built by hand) reads as epoch 0
    nm.Model(model.net, model.params).save(path)
    assert nm.load(path).epoch == 0


# -- metrics ------------------------------------------------------------------------------------------------


def test_accuracy_matches_numpy(rng):
    X, y = _classification(rng, n=40)
    Xv, yv = _classification(rng, n=25)
    net = _mlp(k=3, out="softmax")
    p0 = net.init(seed=4, dtype="float64")
    # one full batch: the epoch's training accuracy is that of the starting params
    model = nm.fit(net, X, y, loss="cross_entropy", epochs=1, batch_size=len(X), params=p0,
                   validation_data=(Xv, yv))
    h = model.history[0]
    assert h["accuracy"] == float(np.mean(net.predict(p0, X).argmax(axis=1) == y))
    assert h["val_accuracy"] == float(np.mean(model.predict(Xv).argmax(axis=1) == yv))


class Outputs(nm.Callback):
    """Records every batch's targets and outputs (before its step)."""

    needs_outputs = True

    def __init__(self):
        self.batches = []

    def on_batch_end(self, loop):
        self.batches.append((loop.yb.copy(), np.array(loop.outputs)))


@pytest.mark.parametrize("engine", ["tensor", "processes"])
def test_training_accuracy_is_the_batch_weighted_average(engine, rng):
    X, y = _classification(rng, n=45)
    net = _mlp(k=3, out="softmax")
    rec = Outputs()
    model = nm.fit(net, X, y, loss="cross_entropy", epochs=1, batch_size=10, dtype="float64",
                   engine=engine, callbacks=[rec])
    assert [len(yb) for yb, _ in rec.batches] == [10, 10, 10, 10, 5]
    per_batch = [(np.mean(out.argmax(1) == yb.argmax(1)), len(yb)) for yb, out in rec.batches]
    expected = sum(a * m for a, m in per_batch) / 45
    assert model.history[0]["accuracy"] == pytest.approx(expected, abs=1e-12)
    # the outputs a handler sees are the network's, before the step: the first batch's from p0
    p0 = net.init(seed=0, dtype="float64")
    order = np.random.default_rng([0, 0]).permutation(45)
    np.testing.assert_allclose(rec.batches[0][1], net.predict(p0, X[order[:10]]), rtol=1e-12, atol=1e-14)


def test_mae_and_user_metrics(rng):
    X, Y = _regression(rng)
    Xv, Yv = _regression(rng, n=12)
    net = _mlp()
    p0 = net.init(seed=2, dtype="float64")

    def max_error(y_true, y_pred):
        return float(np.max(np.abs(y_true - y_pred)))

    model = nm.fit(net, X, Y, epochs=2, batch_size=len(X), params=p0, validation_data=(Xv, Yv),
                   metrics=[max_error, "mae"])
    first, last = model.history
    assert first["mae"] == pytest.approx(float(np.mean(np.abs(net.predict(p0, X) - Y))), rel=1e-12)
    assert first["max_error"] == pytest.approx(max_error(Y, net.predict(p0, X)), rel=1e-12)
    pv = model.predict(Xv)
    assert last["val_mae"] == pytest.approx(float(np.mean(np.abs(pv - Yv))), rel=1e-12)
    assert last["val_max_error"] == pytest.approx(max_error(Yv, pv), rel=1e-12)
    assert model.evaluate(Xv, Yv)["mae"] == pytest.approx(last["val_mae"], rel=1e-12)
    # a dict names them
    named = nm.fit(net, X, Y, epochs=1, metrics={"worst": max_error})
    assert "worst" in named.history[0]


def test_bad_metrics_are_named(rng):
    X, Y = _regression(rng)
    net = _mlp()
    with pytest.raises(nm.InvalidInputError, match="metric 3 is not callable"):
        nm.fit(net, X, Y, epochs=1, metrics=[3])
    with pytest.raises(nm.InvalidInputError, match="'f1' is not callable"):
        nm.fit(net, X, Y, epochs=1, metrics={"f1": "x"})
    with pytest.raises(nm.InvalidInputError, match="no usable name"):
        nm.fit(net, X, Y, epochs=1, metrics=[lambda a, b: 0.0])

    def text(y_true, y_pred):
        return "high"

    def nan(y_true, y_pred):
        return float("nan")

    def broken(y_true, y_pred):
        raise ValueError("oops")

    for fn, message in ((text, "metric 'text' returned str"), (nan, "metric 'nan' returned nan"),
                        (broken, "metric 'broken' raised ValueError: oops")):
        with pytest.raises(nm.NomagicError, match=message):
            nm.fit(net, X, Y, epochs=1, metrics=[fn])


# -- progress ---------------------------------------------------------------------------------------------


def test_progress_silent_off_a_terminal_and_shows_rate_and_eta_when_asked(rng, capsys):
    X, Y = _regression(rng, n=200)
    nm.fit(_mlp(), X, Y, epochs=2, batch_size=8, callbacks=[StopAfter(5)])
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    nm.fit(_mlp(), X, Y, epochs=2, batch_size=8, verbose=True)
    err = capsys.readouterr().err
    assert "samples/s" in err and "ETA" in err and "25/25" in err and "mae" in err


# -- a loop by hand ------------------------------------------------------------------------------------------


class BestEpoch(nm.Callback):
    """Keeps the epoch with the lowest loss; stops once the loss is below ``goal``."""

    def __init__(self, goal):
        self.goal, self.best = goal, None

    def on_epoch_end(self, loop):
        if self.best is None or loop.record["loss"] < self.best[1]:
            self.best = (loop.epoch, loop.record["loss"])
        if loop.record["loss"] < self.goal:
            loop.stop("goal reached")


def test_loop_assembled_by_hand(rng):
    X, Y = _regression(rng)
    net = _mlp()
    best = BestEpoch(goal=0.0)
    with nm.Loop(net, X, Y, optimizer=nm.sgd(0.1), batch_size=8, handlers=[nm.History(), best]) as loop:
        loop.run(epochs=3)
        loop.run(epochs=2)  # two more
        params = loop.params
    assert [h["epoch"] for h in loop.history] == [1, 2, 3, 4, 5]
    assert best.best[0] in range(1, 6)
    # the same as nm.fit's five epochs (fit adds metrics, which change no params)
    _same_params(params, nm.fit(net, X, Y, optimizer=nm.sgd(0.1), batch_size=8, epochs=5).params)
    # a handler that stops it
    with nm.Loop(net, X, Y, handlers=[nm.TrainingMetrics(), nm.History(), BestEpoch(goal=1e9)]) as loop:
        loop.run(epochs=10)
    assert len(loop.history) == 1 and loop.stop_reason == "goal reached" and "mae" in loop.history[0]
    with pytest.raises(nm.InvalidInputError, match="none of the methods"):
        nm.Loop(net, X, Y, handlers=[object()])


def test_last_outputs_are_the_outputs_before_the_step(rng):
    """The tensor engine hands back a batch's outputs; they are those of the params before it."""
    cases = ((_mlp(k=3, out="softmax"), rng.normal(size=(12, 3)), rng.integers(0, 3, 12), "cross_entropy"),
             (nm.inputs(2) | nm.gru(4) | nm.dense(1), rng.normal(size=(12, 5, 2)), rng.normal(size=(12, 1)), "mse"))
    for net, Xn, Y, loss in cases:
        p0 = net.init(seed=1, dtype="float64")
        rec = Outputs()
        nm.fit(net, Xn, Y, loss=loss, epochs=1, batch_size=12, shuffle=False, params=p0, callbacks=[rec])
        np.testing.assert_allclose(rec.batches[0][1], net.predict(p0, Xn), rtol=1e-12, atol=1e-14)
