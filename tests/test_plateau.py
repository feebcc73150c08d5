"""Reduce-on-plateau as a loop handler: ``nm.fit(..., callbacks=[nm.ReduceLROnPlateau(...)])``
equals a PyTorch loop with ``torch.optim.lr_scheduler.ReduceLROnPlateau`` stepped on the same
per-epoch losses; a killed run resumed from its checkpoint, and a continued model, end with the
params of an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest

import nomagic as nm

torch = pytest.importorskip("torch")
nn = torch.nn

KW = dict(factor=0.5, patience=0, threshold=0.2, cooldown=1, min_lr=0.01)


def _data(n=30):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    return X, np.tanh(X @ rng.normal(size=(3, 2))) + 0.1 * rng.normal(size=(n, 2))


def _net():
    return nm.inputs(3) | nm.dense(6, activation="tanh", name="hid") | nm.dense(2, name="out")


def _fit(X, Y, epochs, params=None, **kw):
    kw.setdefault("callbacks", [nm.ReduceLROnPlateau(monitor="loss", **KW)])
    return nm.fit(kw.pop("model", None) or _net(), X, Y, optimizer=nm.adam(0.05), epochs=epochs, batch_size=8,
                  seed=2, params=params, verbose=False, **kw)


def test_plateau_handler_equals_torch_reduce_lr_on_plateau():
    X, Y = _data()
    net = _net()
    p = net.init(seed=1, dtype="float64")
    model = _fit(X, Y, 12, params=p)
    state = nm.to_torch_state_dict(net, p)
    tm = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    tm.load_state_dict({"0.weight": state["hid.weight"], "0.bias": state["hid.bias"],
                        "2.weight": state["out.weight"], "2.bias": state["out.bias"]})
    opt = torch.optim.Adam(tm.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **KW)
    losses, lrs = [], []
    for epoch in range(12):
        order = np.random.default_rng([2, epoch]).permutation(len(X))
        total = 0.0
        for s in range(0, len(X), 8):
            idx = order[s:s + 8]
            loss = nn.MSELoss()(tm(torch.tensor(X[idx])), torch.tensor(Y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(X))
        sched.step(losses[-1])
        lrs.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose([h["loss"] for h in model.history], losses, rtol=0, atol=1e-12)
    np.testing.assert_allclose([h["lr"] for h in model.history], lrs, rtol=0, atol=1e-15)
    assert len(set(lrs)) >= 3  # the rate was cut more than once, down to min_lr
    ours = {"hid.weight": tm[0].weight.detach().numpy().T, "hid.bias": tm[0].bias.detach().numpy(),
            "out.weight": tm[2].weight.detach().numpy().T, "out.bias": tm[2].bias.detach().numpy()}
    for k, v in ours.items():
        np.testing.assert_allclose(model.params[k], v, rtol=0, atol=1e-10)


class Kill(nm.Callback):
    """Ends the run at the start of an epoch, after the checkpoint of the one before."""

    def __init__(self, at):
        self.at = at

    def on_epoch_start(self, loop):
        if loop.epoch == self.at:
            raise RuntimeError("killed")


def _same(a, b):
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


def _no_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize("engine", ["tensor", "processes"])
def test_killed_and_resumed_run_with_plateau_equals_an_uninterrupted_one(engine, tmp_path):
    X, Y = _data()
    epochs = 8 if engine == "tensor" else 6
    whole = _fit(X, Y, epochs, dtype="float64", engine=engine)
    plateau = nm.ReduceLROnPlateau(monitor="loss", **KW)
    with pytest.raises(nm.CallbackError, match="killed"):
        _fit(X, Y, epochs, dtype="float64", engine=engine, checkpoint=tmp_path, callbacks=[plateau, Kill(5)])
    assert plateau.scale < 1  # the rate was cut before the kill: the resumed run must restore it
    resumed = _fit(X, Y, epochs, dtype="float64", engine=engine, checkpoint=tmp_path,
                   callbacks=[nm.ReduceLROnPlateau(monitor="loss", **KW)])
    _same(whole.params, resumed.params)
    assert _no_seconds(whole.history) == _no_seconds(resumed.history)
    # and a model continued by nm.fit(model, ...) carries the plateau on
    first = _fit(X, Y, 5, dtype="float64", engine=engine)
    assert first.loop_state["plateau"]["scale"] < 1
    more = nm.fit(first, X, Y, epochs=epochs - 5, batch_size=8, seed=2, verbose=False, engine=engine,
                  callbacks=[nm.ReduceLROnPlateau(monitor="loss", **KW)])
    _same(whole.params, more.params)
    assert _no_seconds(whole.history) == _no_seconds(more.history)


def test_plateau_rules():
    X, Y = _data()
    with pytest.raises(nm.InvalidInputError, match="no validation data"):
        _fit(X, Y, 1, callbacks=[nm.ReduceLROnPlateau()])
    with pytest.raises(nm.InvalidInputError, match="give one ReduceLROnPlateau"):
        _fit(X, Y, 1, callbacks=[nm.ReduceLROnPlateau(monitor="loss"), nm.ReduceLROnPlateau(monitor="loss")])
    with pytest.raises(nm.NomagicError, match="monitors 'val_accuracy'"):
        _fit(X, Y, 1, callbacks=[nm.ReduceLROnPlateau(monitor="val_accuracy")], validation_split=0.2)
    opt = nm.adam(0.05)
    m = nm.fit(_net(), X, Y, optimizer=opt, epochs=4, validation_split=0.2, verbose=False,
               callbacks=[nm.PlateauHandler(nm.ReduceLROnPlateau(patience=0, threshold=0.5))])
    assert m.history[-1]["lr"] < 0.05 and opt.lr_scale == 1.0  # the optimizer object is left as it was
