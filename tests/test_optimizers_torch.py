"""Optimizers and learning-rate schedules against PyTorch (float64): AdamW, SGD with Nesterov and
weight decay, RMSprop (plain, momentum, centered), Adam with weight decay; StepLR, ExponentialLR,
cosine with warm-up (LambdaLR, SequentialLR), ReduceLROnPlateau.

The gradients are given (random, seeded), not computed, so that only the update rule is tested;
then the same rules through ``nm.fit`` (the engines' in-place path) against a PyTorch loop."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import random_params, torch_mlp_from_params

import nomagic as nm
from nomagic.train.optimizers import Optimizer, get_optimizer
from nomagic.train.schedules import CosineDecay, get_schedule

torch = pytest.importorskip("torch")
F = torch.nn.functional
sched = torch.optim.lr_scheduler

STEPS = 100
TOL = 1e-10

SHAPES = {"a.weight": (5, 4), "a.bias": (4,), "b.weight": (4, 3), "b.bias": (3,)}


def _params(seed: int = 0) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    return {k: r.normal(size=s) for k, s in SHAPES.items()}


def _grads(seed: int = 1, steps: int = STEPS) -> list[dict[str, np.ndarray]]:
    r = np.random.default_rng(seed)
    return [{k: r.normal(size=s) for k, s in SHAPES.items()} for _ in range(steps)]


@pytest.fixture(params=["compiled", "numpy"])
def updates(request, use_compiled):
    """Run the test with the optimizers' compiled loops (engines/compiled.py, when numba is
    installed) and with the NumPy passes."""
    if request.param == "compiled":
        pytest.importorskip("numba")
    use_compiled(request.param == "compiled")
    return request.param


def cosine_lambda(lr: float, total: int, warmup: int, min_lr: float):
    """The factor of ``nm.cosine_decay`` after ``e`` scheduler steps, for ``LambdaLR``."""
    def f(e: int) -> float:
        if e < warmup:
            return (e + 1) / (warmup + 1)
        k = min(e - warmup, total - warmup)
        return (min_lr + (lr - min_lr) * (1 + math.cos(math.pi * k / (total - warmup))) / 2) / lr
    return f


# (ours, theirs: torch optimizer from params, torch scheduler from optimizer or None)
OPTIMIZERS = {
    "adamw": (lambda: nm.adamw(1e-2), lambda p: torch.optim.AdamW(p, lr=1e-2), None),
    "adamw-custom": (lambda: nm.adamw(3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
                     lambda p: torch.optim.AdamW(p, lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), None),
    "adam-wd": (lambda: nm.adam(1e-2, weight_decay=0.05),
                lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.05), None),
    "sgd-nesterov": (lambda: nm.sgd(0.05, momentum=0.9, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True), None),
    "sgd-wd": (lambda: nm.sgd(0.05, weight_decay=0.01),
               lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.01), None),
    "sgd-momentum-wd": (lambda: nm.sgd(0.05, momentum=0.8, weight_decay=0.01),
                        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, weight_decay=0.01), None),
    "sgd-nesterov-wd": (lambda: nm.sgd(0.02, momentum=0.9, nesterov=True, weight_decay=1e-3),
                        lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.9, nesterov=True, weight_decay=1e-3),
                        None),
    "rmsprop": (lambda: nm.rmsprop(1e-2), lambda p: torch.optim.RMSprop(p, lr=1e-2), None),
    "rmsprop-momentum": (lambda: nm.rmsprop(1e-3, momentum=0.9),
                         lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9), None),
    "rmsprop-centered": (lambda: nm.rmsprop(1e-3, alpha=0.9, eps=1e-6, centered=True),
                         lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.9, eps=1e-6, centered=True), None),
    "rmsprop-all": (lambda: nm.rmsprop(1e-3, momentum=0.5, centered=True, weight_decay=0.1),
                    lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True, weight_decay=0.1),
                    None),
    # with schedules
    "sgd-step": (lambda: nm.sgd(nm.step_decay(0.1, step_size=15, gamma=0.5), momentum=0.9),
                 lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                 lambda o: sched.StepLR(o, step_size=15, gamma=0.5)),
    "rmsprop-exponential": (lambda: nm.rmsprop(nm.exponential_decay(1e-2, 0.97), centered=True),
                            lambda p: torch.optim.RMSprop(p, lr=1e-2, centered=True),
                            lambda o: sched.ExponentialLR(o, gamma=0.97)),
    "adamw-cosine": (lambda: nm.adamw(nm.cosine_decay(1e-2, total_steps=STEPS, warmup_steps=10, min_lr=1e-4)),
                     lambda p: torch.optim.AdamW(p, lr=1e-2),
                     lambda o: sched.LambdaLR(o, cosine_lambda(1e-2, STEPS, 10, 1e-4))),
    "adam-cosine-sequential": (
        lambda: nm.adam(nm.cosine_decay(1e-2, total_steps=STEPS, warmup_steps=5)),
        lambda p: torch.optim.Adam(p, lr=1e-2),
        lambda o: sched.SequentialLR(o, [sched.LinearLR(o, start_factor=1 / 6, end_factor=1.0, total_iters=5),
                                         sched.CosineAnnealingLR(o, T_max=STEPS - 5)], milestones=[5])),
    "sgd-constant": (lambda: nm.sgd(nm.constant(0.1), nesterov=True, momentum=0.5),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, nesterov=True), None),
}


def _torch_run(make_opt, make_sched, params, grads):
    tensors = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = make_opt(list(tensors.values()))
    scheduler = make_sched(opt) if make_sched else None
    out = []
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.from_numpy(g[k].copy())
        opt.step()
        if scheduler is not None:
            scheduler.step()
        out.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return out


@pytest.mark.parametrize("case", list(OPTIMIZERS))
def test_pure_step_equals_torch_over_100_steps(case, updates):
    ours, theirs, their_sched = OPTIMIZERS[case]
    params, grads = _params(), _grads()
    want = _torch_run(theirs, their_sched, params, grads)
    opt = ours()
    state, p = opt.init(params), params
    for i, g in enumerate(grads):
        if i % 25 == 0:  # pure: what it is given stays as it was
            p_before = {k: v.copy() for k, v in p.items()}
            slots_before = {s: {k: v.copy() for k, v in a.items()} for s, a in state.slots.items()}
        new_state, new_p = opt.step(state, p, g)
        if i % 25 == 0:
            for k in p:
                np.testing.assert_array_equal(p[k], p_before[k])
                for s in slots_before:
                    np.testing.assert_array_equal(state.slots[s][k], slots_before[s][k])
        state, p = new_state, new_p
        for k in p:
            np.testing.assert_allclose(p[k], want[i][k], rtol=0, atol=TOL, err_msg=f"{k} at step {i + 1}")
    assert state.step == STEPS
    assert max(np.abs(p[k] - params[k]).max() for k in p) > 1e-3  # it moved


@pytest.mark.parametrize("case", list(OPTIMIZERS))
def test_apply_in_pieces_equals_whole_and_torch(monkeypatch, case, updates):
    """``apply_`` in place, on one flat vector, whole or piece by piece (as the engines run it on
    long vectors): the same numbers bit for bit, and PyTorch's."""
    ours, theirs, their_sched = OPTIMIZERS[case]
    params, grads = _params(2), _grads(3, steps=30)
    want = _torch_run(theirs, their_sched, params, grads)[-1]
    flat0 = np.concatenate([params[k].ravel() for k in SHAPES])
    results = []
    for chunk, chunk_min in ((1 << 15, 1 << 18), (7, 10)):
        opt = ours()
        monkeypatch.setattr(Optimizer, "CHUNK", chunk)
        monkeypatch.setattr(Optimizer, "CHUNK_MIN", chunk_min)
        w, slots = flat0.copy(), {s: np.zeros_like(flat0) for s in opt.slot_names}
        for t, g in enumerate(grads, start=1):
            flat_g = np.concatenate([g[k].ravel() for k in SHAPES])
            before = flat_g.copy()
            opt.apply_(t, w, flat_g, slots, np.empty_like(w))
            np.testing.assert_array_equal(flat_g, before)  # the gradient buffer is left alone
        results.append((w, slots))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for s in results[0][1]:
        np.testing.assert_array_equal(results[0][1][s], results[1][1][s])
    np.testing.assert_allclose(results[0][0], np.concatenate([want[k].ravel() for k in SHAPES]), rtol=0, atol=TOL)


# -- schedules ------------------------------------------------------------------------------------


SCHEDULES = {
    "constant": (lambda: nm.constant(0.3), None),
    "step": (lambda: nm.step_decay(0.1, step_size=7, gamma=0.5), lambda o: sched.StepLR(o, step_size=7, gamma=0.5)),
    "step-default": (lambda: nm.step_decay(0.1, 30), lambda o: sched.StepLR(o, 30)),
    "exponential": (lambda: nm.exponential_decay(0.1, 0.95), lambda o: sched.ExponentialLR(o, gamma=0.95)),
    "cosine": (lambda: nm.cosine_decay(0.1, STEPS), lambda o: sched.CosineAnnealingLR(o, T_max=STEPS)),
    "cosine-min": (lambda: nm.cosine_decay(0.1, STEPS, min_lr=1e-3),
                   lambda o: sched.CosineAnnealingLR(o, T_max=STEPS, eta_min=1e-3)),
    "cosine-warmup-lambda": (lambda: nm.cosine_decay(0.1, 60, warmup_steps=8, min_lr=1e-3),
                             lambda o: sched.LambdaLR(o, cosine_lambda(0.1, 60, 8, 1e-3))),
    "cosine-warmup-sequential": (
        lambda: nm.cosine_decay(0.1, STEPS, warmup_steps=9, min_lr=1e-3),
        lambda o: sched.SequentialLR(o, [sched.LinearLR(o, start_factor=1 / 10, end_factor=1.0, total_iters=9),
                                         sched.CosineAnnealingLR(o, T_max=STEPS - 9, eta_min=1e-3)],
                                     milestones=[9])),
}


@pytest.mark.parametrize("case", list(SCHEDULES))
def test_schedule_equals_torch_scheduler(case):
    ours, theirs = SCHEDULES[case]
    s = ours()
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=s.lr)
    scheduler = theirs(opt) if theirs else None
    n = s.total_steps if isinstance(s, CosineDecay) else STEPS  # torch's cosine rises after
    for t in range(1, n + 1):
        np.testing.assert_allclose(s(t), opt.param_groups[0]["lr"], rtol=1e-12, atol=0, err_msg=f"step {t}")
        opt.step()
        if scheduler is not None:
            scheduler.step()


def test_cosine_decay_shape():
    s = nm.cosine_decay(1.0, total_steps=10, warmup_steps=3, min_lr=0.1)
    assert [s(t) for t in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, 1.0]  # warm-up from lr/(W+1); W+1 is the peak
    values = [s(t) for t in range(4, 12)]
    assert all(a > b for a, b in zip(values, values[1:-1]))  # decreasing to min_lr ...
    assert s(11) == s(12) == s(1000) == pytest.approx(0.1)  # ... reached after total_steps, and kept
    assert nm.cosine_decay(1.0, 4)(1) == 1.0


@pytest.mark.parametrize("case", list(SCHEDULES))
def test_schedule_json_round_trip(case):
    s = SCHEDULES[case][0]()
    text = s.to_json()
    assert json.loads(text)["name"] == s.name
    for back in (nm.schedule_from_json(text), nm.Schedule.from_json(json.loads(text)), get_schedule(s.config())):
        assert back == s and type(back) is type(s)
        assert [back(t) for t in range(1, 50)] == [s(t) for t in range(1, 50)]
    assert repr(s).startswith(f"nm.{s.name}(")


def test_optimizer_with_schedule_config_round_trip():
    opt = nm.adamw(nm.cosine_decay(1e-2, 50, warmup_steps=5), weight_decay=0.1)
    cfg = json.loads(json.dumps(opt.config()))
    assert cfg["lr"] == {"name": "cosine_decay", "lr": 1e-2, "total_steps": 50, "warmup_steps": 5, "min_lr": 0.0}
    back = get_optimizer(cfg)
    assert back.config() == opt.config() and isinstance(back, nm.AdamW)
    params, grads = _params(), _grads(steps=10)
    s1, s2, p1, p2 = opt.init(params), back.init(params), params, params
    for g in grads:
        (s1, p1), (s2, p2) = opt.step(s1, p1, g), back.step(s2, p2, g)
    for k in params:
        np.testing.assert_array_equal(p1[k], p2[k])
    for name in ("sgd", "adam", "adamw", "rmsprop"):  # names give the defaults, configs round-trip
        o = get_optimizer(name)
        assert get_optimizer(json.loads(json.dumps(o.config()))).config() == o.config()
    assert nm.sgd(0.1).config() == {"name": "sgd", "lr": 0.1, "momentum": 0.0}  # as before the new options
    assert nm.adam(0.1).config() == {"name": "adam", "lr": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    assert "cosine_decay" in repr(opt)


# -- the learning-rate scale and ReduceLROnPlateau ---------------------------------------------------


def _metrics(n: int, seed: int) -> list[float]:
    """A noisy decreasing curve with plateaus and repeats, to exercise every rule."""
    r = np.random.default_rng(seed)
    out, v = [], 1.0
    for i in range(n):
        if i % 20 < 6:
            v *= float(r.uniform(0.9, 1.0))
            out.append(v)
        else:  # a plateau: equal, slightly worse or barely better values
            out.append(v * float(r.choice([1.0, 1.00001, 0.99999, 1.01])))
    return out


PLATEAUS = {
    "default": {},
    "patience2-cooldown": dict(factor=0.5, patience=2, cooldown=2, min_lr=1e-3),
    "patience0": dict(factor=0.5, patience=0, min_lr=0.02),
    "max-abs": dict(mode="max", threshold_mode="abs", threshold=0.01, patience=1, factor=0.3),
    "max-rel": dict(mode="max", threshold=1e-3, patience=3, cooldown=1, factor=0.2),
    "min-abs-eps": dict(threshold_mode="abs", threshold=1e-3, patience=1, factor=0.9, eps=1e-3),
}


@pytest.mark.parametrize("case", list(PLATEAUS))
def test_reduce_on_plateau_equals_torch(case):
    kw = PLATEAUS[case]
    values = _metrics(80, seed=len(case))
    if kw.get("mode") == "max":
        values = [2.0 - v for v in values]
    lr = 0.1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    theirs = sched.ReduceLROnPlateau(opt, **kw)
    ours = nm.ReduceLROnPlateau(**kw)
    for i, v in enumerate(values):
        scale = ours.update(v, lr=lr)
        theirs.step(v)
        np.testing.assert_allclose(lr * scale, opt.param_groups[0]["lr"], rtol=1e-12, atol=0, err_msg=f"epoch {i}")
        assert (ours.best, ours.num_bad_epochs, ours.cooldown_counter) == \
            (theirs.best, theirs.num_bad_epochs, theirs.cooldown_counter), i
        if i == 40:  # a checkpoint half-way: the state round-trips through JSON
            ours = nm.ReduceLROnPlateau.from_json(ours.to_json())
    assert ours.scale < 1.0  # the sequence did cut the learning rate


def test_reduce_on_plateau_without_lr_scales_the_scale():
    p = nm.ReduceLROnPlateau(factor=0.5, patience=0, min_lr=0.2)
    assert [p.update(v) for v in (3.0, 3.0, 3.0, 3.0, 2.0)] == [1.0, 0.5, 0.25, 0.2, 0.2]
    p.reset()
    assert p.scale == 1.0 and p.state()["best"] is None


def test_lr_scale_from_plateau_equals_torch_with_exponential_lr():
    """A loop that cuts the learning rate by ReduceLROnPlateau, on top of a schedule, through
    ``optimizer.lr_scale``: PyTorch's ExponentialLR + ReduceLROnPlateau (both act on the lr)."""
    params, grads = _params(), _grads()
    values = _metrics(STEPS // 5, seed=7)
    kw = dict(factor=0.5, patience=1, min_lr=2e-3, cooldown=1)
    tensors = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    topt = torch.optim.Adam(list(tensors.values()), lr=1e-2)
    texp, tplat = sched.ExponentialLR(topt, gamma=0.99), sched.ReduceLROnPlateau(topt, **kw)
    opt, plateau = nm.adam(nm.exponential_decay(1e-2, 0.99)), nm.ReduceLROnPlateau(**kw)
    state, p = opt.init(params), params
    for t, g in enumerate(grads, start=1):
        state, p = opt.step(state, p, g)
        for k, tt in tensors.items():
            tt.grad = torch.from_numpy(g[k].copy())
        topt.step()
        texp.step()
        if t % 5 == 0:  # an epoch of 5 steps ends: the lr of the next step is what is cut
            opt.lr_scale = plateau.update(values[t // 5 - 1], lr=opt.schedule(t + 1))
            tplat.step(values[t // 5 - 1])
            np.testing.assert_allclose(opt.lr_at(t + 1), topt.param_groups[0]["lr"], rtol=1e-12)
        for k in p:
            np.testing.assert_allclose(p[k], tensors[k].detach().numpy(), rtol=0, atol=TOL, err_msg=f"{k} step {t}")
    assert opt.lr_scale < 0.5


def test_scale_lr():
    opt = nm.sgd(nm.step_decay(0.1, 10))
    assert opt.lr_at(1) == 0.1 and opt.lr_scale == 1.0
    assert opt.scale_lr(0.5) == 0.5 and opt.scale_lr(0.5) == 0.25
    assert opt.lr_at(11) == pytest.approx(0.1 * 0.1 * 0.25)
    assert opt.schedule(11) == pytest.approx(0.01)  # the schedule itself is unchanged
    assert "lr_scale" not in opt.config()
    opt.lr_scale = 1.0
    with pytest.raises(nm.InvalidInputError, match="lr_scale must be a positive number"):
        opt.lr_scale = 0.0
    with pytest.raises(nm.InvalidInputError, match="factor must be a positive number"):
        opt.scale_lr(-1)


# -- through nm.fit: the engines' in-place path ------------------------------------------------------


def _net():
    return nm.inputs(3) | nm.dense(4, activation="tanh") | nm.dense(2)


def _torch_fit(net, params, X, Y, make_opt, make_sched, epochs, batch_size):
    model, tparams = torch_mlp_from_params(net, params)
    opt = make_opt(list(model.parameters()))
    scheduler = make_sched(opt) if make_sched else None
    tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
    for _ in range(epochs):
        for start in range(0, len(X), batch_size):
            opt.zero_grad()
            F.mse_loss(model(tX[start:start + batch_size]), tY[start:start + batch_size]).backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
    values = {k: t.detach().numpy() for k, t in tparams.items()}
    return {k: v.T if k.endswith(".weight") else v for k, v in values.items()}


FIT_CASES = ["adamw-custom", "adam-wd", "sgd-nesterov-wd", "rmsprop-all", "rmsprop-momentum", "sgd-step",
             "rmsprop-exponential", "adamw-cosine"]


@pytest.mark.parametrize("case", FIT_CASES)
def test_fit_equals_torch_loop(case, rng, updates):
    """nm.fit (the tensor engine's in-place ``apply_`` on its flat buffers) against a PyTorch loop
    on the same batches, torch computing the gradients of the same MSE model: 100 steps."""
    ours, theirs, their_sched = OPTIMIZERS[case]
    net = _net()
    params = random_params(net, seed=5, scale=0.5)
    X, Y = rng.normal(size=(24, 3)), rng.normal(size=(24, 2))
    epochs, batch = 25, 6
    model = nm.fit(net, X, Y, loss="mse", optimizer=ours(), epochs=epochs, batch_size=batch, shuffle=False,
                   params=params, verbose=False)
    want = _torch_fit(net, params, X, Y, theirs, their_sched, epochs, batch)
    for k, v in want.items():
        np.testing.assert_allclose(model.params[k], v, rtol=0, atol=TOL, err_msg=k)
        assert not np.allclose(model.params[k], params[k])
    assert model.info["optimizer"] == ours().config()


def test_fit_team_pieces_with_schedule(monkeypatch, rng, updates):
    """The tensor engine's optimizer update shared among its threads, in pieces, with a schedule
    and weight decay: the numbers of the one-thread update (every piece gets the same t)."""
    from nomagic.engines.tensor import blas as _blas
    from nomagic.engines.tensor.engine import Trainer

    net = nm.inputs(32) | nm.dense(64, activation="relu") | nm.dense(64, activation="tanh") | nm.dense(3)
    X, Y = rng.standard_normal((96, 32)), rng.standard_normal((96, 3))
    monkeypatch.setattr(_blas, "SMALL_GEMM", 1)
    monkeypatch.setattr(_blas, "blas_threads", lambda: 2)
    kw = dict(loss="mse", epochs=3, batch_size=32, seed=0, dtype="float64", verbose=False)

    def opt():
        return nm.adamw(nm.cosine_decay(1e-2, 9, warmup_steps=2), weight_decay=0.1)

    monkeypatch.setattr(Trainer, "TEAM_MAX", 1)
    one = nm.fit(net, X, Y, optimizer=opt(), **kw)
    monkeypatch.setattr(Trainer, "TEAM_MAX", 4)
    monkeypatch.setattr(Trainer, "PARALLEL_MIN", 1000)
    monkeypatch.setattr(Trainer, "CHUNK", 700)
    shared = []
    real = _blas.Team.share

    def spy(self, work, items):
        shared.append(len(items))
        return real(self, work, items)

    monkeypatch.setattr(_blas.Team, "share", spy)
    team = nm.fit(net, X, Y, optimizer=opt(), **kw)
    assert shared and max(shared) > 1  # the update did run in pieces on the team
    for k in one.params:
        np.testing.assert_allclose(team.params[k], one.params[k], rtol=0, atol=1e-12, err_msg=k)


def test_processes_engine_gets_the_step_count(rng):
    """Each neuron process applies the optimizer to its own slice with the step count t: with a
    schedule and weight decay it trains as the tensor engine does."""
    net = _net()
    X, Y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    kw = dict(loss="mse", epochs=4, batch_size=4, seed=0, dtype="float64", verbose=False)
    for make in (lambda: nm.rmsprop(nm.step_decay(1e-2, 3, 0.5), momentum=0.5, centered=True, weight_decay=0.1),
                 lambda: nm.adamw(nm.cosine_decay(1e-2, 12, warmup_steps=3), weight_decay=0.2)):
        a = nm.fit(net, X, Y, optimizer=make(), **kw)
        b = nm.fit(net, X, Y, optimizer=make(), engine="processes", **kw)
        for k in a.params:
            np.testing.assert_allclose(b.params[k], a.params[k], rtol=0, atol=1e-12, err_msg=k)


def test_fit_checkpoint_resumes_the_schedule(tmp_path, rng):
    """The schedule depends only on the step count, which the checkpoint keeps: a run stopped
    after 2 epochs and resumed to 4 ends bit for bit where an uninterrupted run does."""
    net = _net()
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    kw = dict(loss="mse", batch_size=5, seed=0, dtype="float64", verbose=False,
              optimizer=nm.rmsprop(nm.cosine_decay(1e-2, 16, warmup_steps=3), momentum=0.9))
    whole = nm.fit(net, X, Y, epochs=4, **kw)
    nm.fit(net, X, Y, epochs=2, checkpoint=tmp_path / "ck", **kw)
    resumed = nm.fit(net, X, Y, epochs=4, checkpoint=tmp_path / "ck", **kw)
    for k in whole.params:
        np.testing.assert_array_equal(resumed.params[k], whole.params[k])


def test_model_file_keeps_the_schedule(tmp_path, rng):
    net = _net()
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    model = nm.fit(net, X, Y, optimizer=nm.sgd(nm.exponential_decay(0.05, 0.9), momentum=0.9, nesterov=True),
                   epochs=1, batch_size=5, verbose=False)
    model.save(tmp_path / "m.nomagic")
    cfg = nm.load(tmp_path / "m.nomagic").info["optimizer"]
    assert cfg == {"name": "sgd", "lr": {"name": "exponential_decay", "lr": 0.05, "gamma": 0.9},
                   "momentum": 0.9, "nesterov": True}
    assert get_optimizer(cfg).config() == cfg


@pytest.mark.parametrize("name", ["adamw", "rmsprop", "sgd", "adam"])
def test_names_give_the_defaults(name, rng):
    opt = get_optimizer(name)
    defaults = {"adamw": (nm.AdamW, dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)),
                "rmsprop": (nm.RMSprop, dict(lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0, centered=False,
                                             weight_decay=0.0)),
                "sgd": (nm.SGD, dict(lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0)),
                "adam": (nm.Adam, dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0))}[name]
    assert type(opt) is defaults[0]
    for k, v in defaults[1].items():
        assert getattr(opt, k) == v, k
    model = nm.fit(_net(), rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), optimizer=name, epochs=1,
                   verbose=False)
    assert model.info["optimizer"]["name"] == name


# -- bad hyperparameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("make,match", [
    (lambda: nm.adamw(0.0), "learning rate must be a positive number"),
    (lambda: nm.adamw(1e-3, betas=(0.9,)), r"betas must be a pair"),
    (lambda: nm.adamw(1e-3, betas=0.9), r"betas must be a pair"),
    (lambda: nm.adamw(1e-3, betas=(0.9, 1.0)), r"beta2 must lie in \[0, 1\)"),
    (lambda: nm.adamw(1e-3, eps=0), "eps must be a positive number"),
    (lambda: nm.adamw(1e-3, weight_decay=-0.1), "weight_decay must be a number >= 0"),
    (lambda: nm.adam(1e-3, weight_decay=float("nan")), "weight_decay must be a number >= 0"),
    (lambda: nm.sgd(0.1, nesterov=True), "nesterov=True needs a momentum > 0"),
    (lambda: nm.sgd(0.1, momentum=0.9, nesterov="yes"), "nesterov must be True or False"),
    (lambda: nm.sgd(0.1, weight_decay="0.1"), "weight_decay must be a number >= 0"),
    (lambda: nm.sgd(float("inf")), "learning rate must be a positive number"),
    (lambda: nm.sgd("0.1"), "learning rate must be a positive number"),
    (lambda: nm.rmsprop(0.01, alpha=1.0), r"alpha must lie in \[0, 1\)"),
    (lambda: nm.rmsprop(0.01, alpha=-0.1), r"alpha must lie in \[0, 1\)"),
    (lambda: nm.rmsprop(0.01, eps=-1e-8), "eps must be a positive number"),
    (lambda: nm.rmsprop(0.01, momentum=1.5), r"momentum must lie in \[0, 1\)"),
    (lambda: nm.rmsprop(0.01, centered=1), "centered must be True or False"),
    (lambda: nm.rmsprop(0.01, weight_decay=-1), "weight_decay must be a number >= 0"),
    (lambda: nm.step_decay(0.1, 0), "step_size must be an integer >= 1"),
    (lambda: nm.step_decay(0.1, 2.5), "step_size must be an integer >= 1"),
    (lambda: nm.step_decay(0.1, 10, gamma=0.0), r"gamma must lie in \(0, 1\]"),
    (lambda: nm.step_decay(-0.1, 10), "learning rate must be a positive number"),
    (lambda: nm.exponential_decay(0.1, 1.5), r"gamma must lie in \(0, 1\]"),
    (lambda: nm.cosine_decay(0.1, 0), "total_steps must be an integer >= 1"),
    (lambda: nm.cosine_decay(0.1, 10, warmup_steps=10), r"warmup_steps \(10\) must be less than total_steps"),
    (lambda: nm.cosine_decay(0.1, 10, warmup_steps=-1), "warmup_steps must be an integer >= 0"),
    (lambda: nm.cosine_decay(0.1, 10, min_lr=0.2), r"min_lr \(0.2\) must not exceed the learning rate"),
    (lambda: nm.constant(0), "learning rate must be a positive number"),
    (lambda: nm.ReduceLROnPlateau(factor=1.0), r"factor must lie in \(0, 1\)"),
    (lambda: nm.ReduceLROnPlateau(patience=-1), "patience must be an integer >= 0"),
    (lambda: nm.ReduceLROnPlateau(mode="up"), "mode must be 'min' or 'max'"),
    (lambda: nm.ReduceLROnPlateau(threshold_mode="pct"), "threshold_mode must be 'rel' or 'abs'"),
    (lambda: nm.ReduceLROnPlateau(min_lr=-1.0), "min_lr must be a number >= 0"),
    (lambda: nm.ReduceLROnPlateau(cooldown=0.5), "cooldown must be an integer >= 0"),
    (lambda: nm.ReduceLROnPlateau(monitor=""), "monitor must be a metric name"),
    (lambda: nm.ReduceLROnPlateau().update("low"), "val_loss must be a number"),
    (lambda: nm.ReduceLROnPlateau().update(1.0, lr=0), "lr must be a positive number"),
    (lambda: nm.ReduceLROnPlateau.from_json("{}"), "not a ReduceLROnPlateau's JSON"),
    (lambda: nm.schedule_from_json('{"name": "cosine_decay", "lr": 0.1}'), "bad arguments for schedule"),
    (lambda: nm.schedule_from_json("cosine"), "not a schedule's JSON"),
    (lambda: nm.adam({"name": "cosine_decay", "lr": 0.1, "total_steps": 0}), "total_steps must be an integer"),
    (lambda: get_optimizer({"name": "adamw", "momentum": 0.9}), "bad settings for optimizer 'adamw'"),
])
def test_bad_hyperparameters_are_clear_errors(make, match):
    with pytest.raises(nm.InvalidInputError, match=match):
        make()


def test_unknown_names():
    with pytest.raises(nm.UnknownNameError, match="unknown schedule 'linear'; choose one of: constant"):
        nm.schedule_from_json({"name": "linear", "lr": 0.1})
    with pytest.raises(nm.UnknownNameError, match="unknown optimizer 'adagrad'.*adamw, rmsprop"):
        get_optimizer("adagrad")
