"""The processes engine (every neuron a process) against the tensor engine, in float64.

What DESIGN.md promises for it: the same numbers as the tensor engine (forward within 1e-9,
params after training within 1e-8) for every network the library can build; a crash injected
into a neuron (forward, backward or commit) loses nothing, bit for bit; a neuron that crashes
past its restart limit, or never answers, ends the run with an EngineError naming it, quickly;
every message can be traced; and a network of very many neuron processes runs.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from conftest import random_params

import nomagic as nm
from nomagic.engines.processes import Fault, ProcessNetwork
from nomagic.errors import EngineError, NomagicError

FWD_TOL = 1e-9  # outputs, loss and gradients
FIT_TOL = 1e-8  # params after training


# -- helpers -------------------------------------------------------------------------------------


def max_diff(a, b) -> float:
    """The largest absolute difference between two arrays or two param mappings."""
    if hasattr(a, "keys"):
        assert set(a) == set(b)
        return max((max_diff(a[k], b[k]) for k in a), default=0.0)
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max()) if a.size else 0.0


def check_forward_and_grad(net, X, Y, loss: str, params=None, truncate=None, zero_grad_ok=False) -> None:
    """predict and loss_and_grad agree between the engines (and the gradient is not all zero,
    unless ``zero_grad_ok``: the comparison must not be vacuous)."""
    P = random_params(net) if params is None else params
    ours = net.predict(P, X, engine="processes")
    ref = net.predict(P, X)
    assert ours.dtype == ref.dtype == np.float64
    assert max_diff(ours, ref) <= FWD_TOL
    kw = {} if truncate is None else {"truncate": truncate}
    value, grads = net.loss_and_grad(P, X, Y, loss=loss, engine="processes", **kw)
    ref_value, ref_grads = net.loss_and_grad(P, X, Y, loss=loss, **kw)
    assert abs(value - ref_value) <= FWD_TOL * max(1.0, abs(ref_value))
    assert max_diff(grads, ref_grads) <= FWD_TOL
    for k in grads:
        assert grads[k].shape == P[k].shape and grads[k].dtype == np.float64
    assert zero_grad_ok or max(float(np.abs(g).max()) for g in ref_grads.values()) > 1e-6


def check_fit(net, X, Y, *, epochs: int = 3, **kw):
    """nm.fit on both engines from the same params: params and history agree."""
    args = {"loss": "mse", "optimizer": nm.adam(1e-2), "batch_size": 5, "seed": 0, "dtype": "float64",
            "verbose": False, **kw}
    ref = nm.fit(net, X, Y, epochs=epochs, **args)
    ours = nm.fit(net, X, Y, epochs=epochs, engine="processes", **args)
    assert ours.info["engine"] == "processes"
    assert len(ours.history) == len(ref.history) >= 1
    for a, b in zip(ours.history, ref.history):
        assert set(a) == set(b)
        for k in a:
            if k not in ("epoch", "seconds"):
                assert abs(a[k] - b[k]) <= FWD_TOL, (k, a[k], b[k])
    start = args.get("params") or net.init(seed=0, dtype="float64")
    assert max_diff(ref.params, start) > 1e-6  # it trained
    assert max_diff(ours.params, ref.params) <= FIT_TOL
    return ours


def random_dag(seed: int, recurrent: bool = False, n_in: int = 3, n_hidden: int = 7):
    """A random graph of neurons with, whatever the seed: skip connections from sensors,
    a product neuron, a neuron without bias, a dead-end neuron that feeds nothing, two outputs;
    with ``recurrent`` also recurrent synapses (a self-loop and a loop back to an earlier neuron)."""
    r = np.random.default_rng(seed)
    g = nm.GraphBuilder(n_in)
    x = g.inputs
    nodes = list(x)
    hidden = []
    for i in range(n_hidden):
        k = int(r.integers(1, min(4, len(nodes)) + 1))
        sources = [nodes[j] for j in sorted(r.choice(len(nodes), size=k, replace=False))]
        product = i > 0 and r.random() < 0.2
        n = g.neuron(sources, activation=str(r.choice(["tanh", "sigmoid", "relu", "linear"])),
                     aggregation="product" if product else "sum", bias=bool(r.random() < 0.8))
        nodes.append(n)
        hidden.append(n)
    prod = g.neuron([hidden[-1], x[0]], activation="tanh", aggregation="product", name="prod")
    g.neuron([hidden[0], x[1]], activation="relu", name="dead_end")
    nobias = g.neuron([hidden[1], hidden[-2]], activation="tanh", bias=False, name="nobias")
    out1 = g.neuron([prod, nobias, x[n_in - 1]], activation="sigmoid", name="out1")
    out2 = g.neuron([hidden[2], prod, x[0]], activation="linear", name="out2")
    if recurrent:
        g.connect(prod, prod, recurrent=True)
        g.connect(out1, hidden[0], recurrent=True)
        g.connect(out2, nobias, recurrent=True)
        for _ in range(3):
            a, b = r.choice(len(hidden), size=2)
            try:
                g.connect(hidden[a], hidden[b], recurrent=True)
            except NomagicError:
                pass  # that synapse exists already
    return g.build(outputs=[out1, out2])


def mlp(n_in: int, hidden: list[tuple[int, str]], n_out: int, out_act: str):
    net = nm.inputs(n_in)
    for units, act in hidden:
        net = net | nm.dense(units, activation=act)
    return net | nm.dense(n_out, activation=out_act)


def neuron_names(net) -> list[str]:
    return [n.name for n in net.neurons()]


# -- MLPs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("act", ["linear", "step", "sigmoid", "tanh", "relu", "softmax"])
def test_mlp_every_output_activation(act, rng):
    net = mlp(4, [(5, "tanh"), (4, "relu")], 3, act)
    X = rng.normal(size=(9, 4))
    if act == "softmax":  # the fused softmax + cross-entropy, and the softmax's own backward
        check_forward_and_grad(net, X, rng.integers(0, 3, 9), "cross_entropy")
        check_forward_and_grad(net, X, rng.random((9, 3)), "mse")
    elif act == "sigmoid":
        check_forward_and_grad(net, X, (rng.random((9, 3)) > 0.5).astype(float), "binary_cross_entropy")
        check_forward_and_grad(net, X, rng.random((9, 3)), "mse")
    else:  # behind a step output every gradient is zero
        check_forward_and_grad(net, X, rng.normal(size=(9, 3)), "mse", zero_grad_ok=act == "step")


@pytest.mark.parametrize("hidden_act", ["linear", "step", "sigmoid", "tanh", "relu", "softmax"])
def test_mlp_every_hidden_activation(hidden_act, rng):
    net = mlp(3, [(4, hidden_act), (3, "tanh")], 2, "linear")
    X = rng.normal(size=(6, 3))
    check_forward_and_grad(net, X, rng.normal(size=(6, 2)), "mse")


def test_mlp_without_bias_and_single_neuron(rng):
    net = nm.inputs(3) | nm.dense(4, activation="tanh", bias=False) | nm.dense(1, activation="sigmoid")
    X = rng.normal(size=(7, 3))
    check_forward_and_grad(net, X, (rng.random((7, 1)) > 0.5).astype(float), "binary_cross_entropy")
    lone, lone_params = nm.Neuron([0.5, -1.0], 0.25, "sigmoid").as_network()
    lone_params = {k: np.asarray(v, dtype=np.float64) for k, v in lone_params.items()}
    check_forward_and_grad(lone, rng.normal(size=(5, 2)), rng.random((5, 1)), "mse", params=lone_params)


@pytest.mark.parametrize("case", ["adam", "sgd_momentum", "penalties_clip", "softmax_ce", "softmax_mse",
                                  "validation", "sgd_plain_odd_batch"])
def test_fit_mlp_matches_tensor_engine(case, rng):
    X = rng.normal(size=(23, 4))
    if case in ("softmax_ce", "softmax_mse"):
        net = mlp(4, [(6, "relu"), (5, "tanh")], 3, "softmax")
        Y = rng.integers(0, 3, 23)
        if case == "softmax_mse":
            Y = np.eye(3)[Y]
        check_fit(net, X, Y, loss="cross_entropy" if case == "softmax_ce" else "mse", optimizer=nm.adam(3e-2))
        return
    net = mlp(4, [(6, "tanh"), (5, "sigmoid")], 2, "linear")
    Y = rng.normal(size=(23, 2))
    if case == "adam":
        check_fit(net, X, Y, optimizer=nm.adam(1e-2), epochs=4)
    elif case == "sgd_momentum":
        check_fit(net, X, Y, optimizer=nm.sgd(0.05, momentum=0.9))
    elif case == "penalties_clip":
        check_fit(net, X, Y, optimizer=nm.adam(2e-2), l1=1e-3, l2=1e-2, clip_norm=0.1)
    elif case == "validation":
        Xv, Yv = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
        m = check_fit(net, X, Y, optimizer=nm.sgd(0.05, momentum=0.5), validation_data=(Xv, Yv), l2=1e-3)
        assert "val_loss" in m.history[-1]
        check_fit(net, X, Y, validation_split=0.25, early_stopping=2, epochs=5)
    else:
        check_fit(net, X, Y, optimizer=nm.sgd(0.1), batch_size=7, shuffle=False)


def test_fit_digits_network_float64():
    """The 64-128-128-10 network of the benchmarks, on a slice of the digits (a real workload)."""
    pytest.importorskip("sklearn")
    from nomagic.data.digits import digits_network, load_digits_split

    split = load_digits_split(0)
    X, y = split.X_train[:96], split.y_train[:96]
    check_fit(digits_network(), X, y, loss="cross_entropy", optimizer=nm.adam(1e-3), batch_size=32, epochs=3)


# -- graphs of neurons ---------------------------------------------------------------------------------


def test_random_dag_has_the_promised_features():
    net = random_dag(0)
    neurons = net.neurons()
    fed = {s.source for n in neurons for s in n.inputs}
    outputs = {net.population(p).neuron_name(i) for p, ix in net.outputs for i in ix}
    assert any(n.aggregation == "product" for n in neurons)
    assert any(n.bias is None for n in neurons)
    assert "dead_end" in [n.name for n in neurons if n.name not in fed and n.name not in outputs]
    assert len(outputs) == 2
    sensors = {f"x{i}" for i in range(3)}
    assert any(s.source in sensors for n in neurons if n.name in outputs for s in n.inputs)  # skips
    rec = random_dag(0, recurrent=True)
    assert any(s.recurrent for n in rec.neurons() for s in n.inputs)


@pytest.mark.parametrize("seed", range(5))
def test_random_dag(seed):
    r = np.random.default_rng(100 + seed)
    net = random_dag(seed)
    X = r.normal(size=(10, 3))
    Y = r.normal(size=(10, 2))
    check_forward_and_grad(net, X, Y, "mse")
    check_fit(net, X, Y, optimizer=nm.adam(2e-2), params=random_params(net, seed, scale=0.5), l2=1e-3)


@pytest.mark.parametrize("seed", range(4))
def test_random_recurrent_graph(seed):
    r = np.random.default_rng(200 + seed)
    net = random_dag(seed, recurrent=True)
    X = r.normal(size=(8, 5, 3))
    Y = r.normal(size=(8, 5, 2))
    P = random_params(net, seed, scale=0.5)
    check_forward_and_grad(net, X, Y, "mse", params=P)
    check_forward_and_grad(net, X, Y, "mse", params=P, truncate=2)
    check_fit(net, X, Y, optimizer=nm.adam(2e-2), params=P, batch_size=3, clip_norm=1.0)


def test_recurrent_graph_last_step_only(rng):
    g = nm.GraphBuilder(2)
    x = g.inputs
    h = g.neuron([x[0], x[1]], activation="tanh", name="h")
    a = g.neuron([h, x[1]], activation="tanh", name="a")
    b = g.neuron([h], activation="tanh", name="b")
    g.connect(a, h, recurrent=True)
    g.connect(b, b, recurrent=True)
    g.neuron([], activation="tanh", name="bias_only")  # a neuron with no inputs at all
    net = g.build(outputs=[a, b], return_sequences=False)
    X = rng.normal(size=(7, 4, 2))
    Y = rng.random((7, 2))
    check_forward_and_grad(net, X, Y, "mse")
    check_forward_and_grad(net, X, (Y > 0.5).astype(float), "mse", truncate=1)
    check_fit(net, X, Y, optimizer=nm.sgd(0.1, momentum=0.9), l1=1e-3)


# -- recurrent layers ----------------------------------------------------------------------------------

LAYERS = {"elman": nm.recurrent, "lstm": nm.lstm, "gru": nm.gru}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_recurrent_layer_single(kind, rng):
    layer = LAYERS[kind]
    net = nm.inputs(3) | layer(4) | nm.dense(2)
    X = rng.normal(size=(6, 5, 3))
    Y = rng.normal(size=(6, 2))
    check_forward_and_grad(net, X, Y, "mse")
    check_forward_and_grad(net, X, Y, "mse", truncate=2)
    check_fit(net, X, Y, optimizer=nm.adam(2e-2), batch_size=4)
    bare = nm.inputs(3) | layer(3)  # the recurrent layer's last step is the output
    check_forward_and_grad(bare, X, rng.normal(size=(6, 3)), "mse")


@pytest.mark.parametrize("kind", list(LAYERS))
def test_recurrent_layer_stacked_sequences(kind, rng):
    """Dense before and after, two stacked layers, an output at every step (per-step targets)."""
    layer = LAYERS[kind]
    net = (nm.inputs(3) | nm.dense(4, activation="relu") | layer(4, return_sequences=True)
           | layer(3, return_sequences=True) | nm.dense(2, activation="tanh"))
    X = rng.normal(size=(5, 4, 3))
    Y = rng.normal(size=(5, 4, 2))
    check_forward_and_grad(net, X, Y, "mse")
    check_forward_and_grad(net, X, Y, "mse", truncate=1)
    check_fit(net, X, Y, optimizer=nm.adam(2e-2), batch_size=3, truncate=2, l2=1e-3, clip_norm=0.5)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_recurrent_sequence_classifier(kind, rng):
    """Softmax at every step: class targets per step with cross-entropy (fused), and mse."""
    layer = LAYERS[kind]
    net = nm.inputs(2) | layer(3, return_sequences=True) | nm.dense(3, activation="softmax")
    X = rng.normal(size=(6, 4, 2))
    labels = rng.integers(0, 3, (6, 4))
    check_forward_and_grad(net, X, labels, "cross_entropy")
    check_forward_and_grad(net, X, np.eye(3)[labels], "mse")
    check_fit(net, X, labels, loss="cross_entropy", optimizer=nm.sgd(0.2, momentum=0.9), batch_size=4)


def test_truncate_changes_the_gradient(rng):
    """truncate= really limits BPTT on both engines (the equality tests above are not vacuous)."""
    net = nm.inputs(2) | nm.recurrent(3) | nm.dense(1)
    P = random_params(net)
    X, Y = rng.normal(size=(4, 6, 2)), rng.normal(size=(4, 1))
    full = net.loss_and_grad(P, X, Y, engine="processes")[1]
    cut = net.loss_and_grad(P, X, Y, engine="processes", truncate=1)[1]
    assert max_diff(full, cut) > 1e-6


def test_process_network_reused_between_calls(rng):
    """One ProcessNetwork: predict, train, predict, params by message, set_params."""
    net = mlp(3, [(4, "tanh")], 2, "softmax")
    P = random_params(net)
    pn = ProcessNetwork(net, P, optimizer=nm.adam(1e-2))
    try:
        X = rng.normal(size=(5, 3))
        assert max_diff(pn.predict(X), net.predict(P, X)) <= FWD_TOL
        from nomagic.model.losses import get_loss

        loss = get_loss("cross_entropy")
        pn.train_batch(X, np.eye(2)[rng.integers(0, 2, 5)], loss)  # checked targets: one-hot
        P2 = pn.params()
        assert max_diff(P2, P) > 0
        assert max_diff(pn.predict(X), net.predict(P2, X)) <= FWD_TOL
        pn.set_params(P)
        assert max_diff(pn.params(), P) == 0.0
        assert pn.n_processes >= 3 + 6 + 1
    finally:
        pn.close()


def test_model_predict_on_processes(rng):
    net = mlp(3, [(4, "relu")], 2, "sigmoid")
    X, Y = rng.normal(size=(12, 3)), rng.random((12, 2))
    model = nm.fit(net, X, Y, epochs=2, dtype="float64", verbose=False)
    assert max_diff(model.predict(X, engine="processes"), model.predict(X)) <= FWD_TOL


# -- crashes and hangs ------------------------------------------------------------------------------


def _fit_with_faults(net, X, Y, faults, **kw):
    return nm.fit(net, X, Y, engine="processes", faults=faults, **kw)


FIT_MLP = {"loss": "cross_entropy", "optimizer": nm.adam(2e-2), "epochs": 3, "batch_size": 6, "seed": 0,
           "dtype": "float64", "verbose": False, "l2": 1e-3, "clip_norm": 1.0}


@pytest.mark.parametrize("phase", ["forward", "backward", "commit"])
def test_crash_in_mlp_loses_nothing(phase, rng):
    net = mlp(4, [(5, "tanh"), (4, "relu")], 3, "softmax")
    X, y = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    clean = nm.fit(net, X, y, engine="processes", **FIT_MLP)
    names = neuron_names(net)
    faults = [Fault(names[0], phase=phase, batch=0), Fault(names[6], phase=phase, batch=4, times=2),
              Fault(names[-1], phase=phase, batch=7, times=3)]  # the output layer (softmax): 3 restarts
    crashed = _fit_with_faults(net, X, y, faults, **FIT_MLP)
    assert [f.times for f in faults] == [0, 0, 0]  # every fault fired
    for k in clean.params:
        assert np.array_equal(crashed.params[k], clean.params[k]), k
    assert [h["loss"] for h in crashed.history] == [h["loss"] for h in clean.history]
    ref = nm.fit(net, X, y, **FIT_MLP)
    assert max_diff(crashed.params, ref.params) <= FIT_TOL


def test_crashes_in_every_phase_at_once(rng):
    net = mlp(3, [(4, "sigmoid")], 2, "linear")
    X, Y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    kw = {**FIT_MLP, "loss": "mse", "optimizer": nm.sgd(0.1, momentum=0.9)}
    clean = nm.fit(net, X, Y, engine="processes", **kw)
    names = neuron_names(net)
    faults = [Fault(n, phase=ph, batch=b) for n in names for ph, b in
              (("forward", 1), ("backward", 1), ("commit", 1), ("backward", 3))]
    crashed = _fit_with_faults(net, X, Y, faults, max_restarts=4, **kw)  # 4 crashes per neuron
    assert all(f.times == 0 for f in faults)
    for k in clean.params:
        assert np.array_equal(crashed.params[k], clean.params[k]), k


@pytest.mark.parametrize("phase", ["forward", "backward", "commit"])
def test_crash_in_lstm_loses_nothing(phase, rng):
    net = nm.inputs(2) | nm.lstm(3) | nm.dense(2)
    X, Y = rng.normal(size=(10, 5, 2)), rng.normal(size=(10, 2))
    kw = {**FIT_MLP, "loss": "mse", "batch_size": 4, "truncate": 3}
    clean = nm.fit(net, X, Y, engine="processes", **kw)
    # a sigmoid gate, a product (h = o·tanh c), the sum c, the static last step, the dense output
    targets = ["lstm_0.f[1]", "lstm_0.h[0]", "lstm_0.c[2]", "lstm_0.last[1]", "dense_0[0]"]
    assert set(targets) <= set(neuron_names(net))
    faults = [Fault(n, phase=phase, batch=k % 3, times=1 + k % 2) for k, n in enumerate(targets)]
    crashed = _fit_with_faults(net, X, Y, faults, **kw)
    assert all(f.times == 0 for f in faults)
    for k in clean.params:
        assert np.array_equal(crashed.params[k], clean.params[k]), k
    assert max_diff(crashed.params, nm.fit(net, X, Y, **kw).params) <= FIT_TOL


def test_crash_during_predict_and_loss_and_grad(rng):
    net = nm.inputs(2) | nm.gru(3, return_sequences=True) | nm.dense(1)
    P = random_params(net)
    X, Y = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 3, 1))
    faults = [Fault("gru_0.n[1]", "forward", 0), Fault("gru_0.zd[0]", "forward", 0, times=3)]
    assert np.array_equal(net.predict(P, X, engine="processes", faults=faults),
                          net.predict(P, X, engine="processes"))
    faults = [Fault("gru_0.rhn[2]", "backward", 0, times=2), Fault("dense_0[0]", "forward", 0)]
    v1, g1 = net.loss_and_grad(P, X, Y, engine="processes", faults=faults)
    v0, g0 = net.loss_and_grad(P, X, Y, engine="processes")
    assert v1 == v0 and all(np.array_equal(g1[k], g0[k]) for k in g0)


def test_crash_between_batches_loses_nothing(rng):
    """A neuron that crashed during a batch and is then killed while idle, after the batch's
    commit, restarts from the updated params (not from the batch's start, whose p the first
    restart went on to update in place: replaying the commit onto it would update twice)."""
    from nomagic.engines.processes import InjectedCrash
    from nomagic.model.losses import get_loss

    net = mlp(3, [(4, "tanh")], 2, "linear")
    P = random_params(net)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    results = []
    for crash in (False, True):
        faults = [Fault(n, "forward", b) for n in neuron_names(net) for b in range(3)] if crash else []
        pn = ProcessNetwork(net, P, optimizer=nm.adam(1e-2), faults=faults, max_restarts=6)
        try:
            for _ in range(3):
                pn.train_batch(X, Y, get_loss("mse"))
                if crash:
                    for pid in pn.ctx.pids[3:]:  # every neuron, between two batches
                        pn.rt._kill(pid, InjectedCrash("killed while idle"))
            results.append(pn.params())
            if crash:
                assert all(pn.supervisor.restarts(pid) == 6 for pid in pn.ctx.pids[3:])
        finally:
            pn.close()
    clean, crashed = results
    assert all(np.array_equal(clean[k], crashed[k]) for k in clean)


def test_supervised_journal_replays_messages_taken_before_the_first_wait():
    """A supervised child's journal is made at its first message (a million waiting neurons
    keep no list); a message it takes in its very first run is still replayed after a crash."""
    from nomagic.runtime import ANY, Child, Runtime, Supervisor

    seen, crashed = [], []

    def child(me, state):
        while True:
            msg = yield ANY
            seen.append(msg)
            if msg == "boom" and not crashed:
                crashed.append(1)
                raise RuntimeError("crash")

    rt = Runtime()
    sup = Supervisor(rt, [Child(child)])
    rt.send(sup.children[0], "a")  # waiting before the child first runs: taken in that run
    rt.send(sup.children[0], "boom")
    rt.run_until_idle()
    assert seen == ["a", "boom", "a", "boom"] and sup.restarts(sup.children[0]) == 1


def test_restart_limit_ends_the_run_naming_the_neuron(rng):
    net = mlp(3, [(4, "tanh")], 2, "linear")
    X, Y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    t0 = time.perf_counter()
    with pytest.raises(EngineError, match=re.escape("dense_0[2]")) as err:
        _fit_with_faults(net, X, Y, [Fault("dense_0[2]", "backward", batch=1, times=10)],
                         **{**FIT_MLP, "loss": "mse", "max_restarts": 2})
    assert time.perf_counter() - t0 < 10
    assert "3 times" in str(err.value) and "max_restarts=2" in str(err.value)
    # the limit is per neuron: as many crashes as allowed still train
    clean = nm.fit(net, X, Y, engine="processes", **{**FIT_MLP, "loss": "mse"})
    ok = _fit_with_faults(net, X, Y, [Fault("dense_0[2]", "backward", batch=1, times=2)],
                          **{**FIT_MLP, "loss": "mse", "max_restarts": 2})
    assert all(np.array_equal(ok.params[k], clean.params[k]) for k in clean.params)
    with pytest.raises(EngineError, match=re.escape("dense_1[0]")):
        net.predict(random_params(net), X, engine="processes", max_restarts=0,
                    faults=[Fault("dense_1[0]", "forward", 0)])


@pytest.mark.parametrize("phase", ["forward", "backward"])
def test_hung_neuron_is_named_quickly(phase, rng):
    net = mlp(3, [(4, "tanh"), (3, "relu")], 2, "softmax")
    X, y = rng.normal(size=(12, 3)), rng.integers(0, 2, 12)
    t0 = time.perf_counter()
    with pytest.raises(EngineError, match=re.escape("dense_1[1]") + ".*never answered"):
        _fit_with_faults(net, X, y, [Fault("dense_1[1]", phase, batch=1, kind="hang")],
                         **{**FIT_MLP, "timeout": 5.0})
    assert time.perf_counter() - t0 < 5.0


def test_hung_neuron_in_predict_and_recurrent(rng):
    net = nm.inputs(2) | nm.lstm(2) | nm.dense(1)
    t0 = time.perf_counter()
    with pytest.raises(EngineError, match=re.escape("lstm_0.tc[1]") + ".*never answered"):
        net.predict(random_params(net), rng.normal(size=(3, 4, 2)), engine="processes", timeout=5,
                    faults=[Fault("lstm_0.tc[1]", "forward", 0, kind="hang")])
    assert time.perf_counter() - t0 < 5.0


def test_too_small_timeout_says_so(rng):
    net = nm.inputs(2) | nm.dense(3000, activation="tanh")
    with pytest.raises(EngineError, match=r"did not finish within timeout=1e-06s.*<neuron dense_0\["):
        net.predict(random_params(net), rng.normal(size=(2, 2)), engine="processes", timeout=1e-6)


# -- the message trace --------------------------------------------------------------------------------


def test_trace_covers_every_synapse(rng):
    net = mlp(3, [(4, "tanh")], 2, "sigmoid")
    P = random_params(net)
    pn = ProcessNetwork(net, P, trace=True)
    try:
        X = rng.normal(size=(5, 3))
        assert max_diff(pn.predict(X), net.predict(P, X)) <= FWD_TOL
        events = pn.trace_events
    finally:
        pn.close()
    synapses = [(s.source, s.target) for n in net.neurons() for s in n.inputs]
    assert len(synapses) == 3 * 4 + 4 * 2
    forward = [e for e in events if e.kind == "f"]
    assert len(forward) == len(synapses)  # one message per synapse, the whole batch in it

    assert [e.seq for e in events] == sorted(e.seq for e in events)
    records = json.loads(pn.trace_json())  # names still known after close()

    def bare(pid_name: str) -> str:  # "sensor inputs[0]" -> "inputs[0]"
        return pid_name.split(" ", 1)[1]

    sent = sorted((bare(r["sender"]), bare(r["receiver"])) for r in records if r["kind"] == "f")
    assert sent == sorted(synapses)
    lines = pn.trace_lines()
    assert len(lines) == len(events)
    pattern = re.compile(r"^sensor inputs\[\d\] -> neuron dense_0\[\d\]: forward ")
    assert sum(bool(pattern.match(line)) for line in lines) == 12
    assert any(re.match(r"^neuron dense_0\[\d\] -> neuron dense_1\[\d\]: forward ", line) for line in lines)
    assert any(re.match(r"^neuron dense_1\[\d\] -> actuator 0: output ", line) for line in lines)
    assert pn.trace_lines(limit=3) == lines[:3]
    assert len(records) == len(events)
    assert [r["seq"] for r in records] == list(range(records[0]["seq"], records[0]["seq"] + len(records)))
    for r in records:
        assert {"seq", "sender", "receiver", "kind", "summary"} <= set(r)
        assert all(isinstance(r[k], str) for k in ("sender", "receiver", "kind", "summary"))
    assert [r["kind"] for r in records].count("f") == len(synapses)
    times = [r["time"] for r in records]
    assert times == sorted(times)


def test_trace_of_training_has_deltas(rng):
    net = mlp(2, [(3, "tanh")], 1, "linear")
    P = random_params(net)
    from nomagic.model.losses import get_loss

    pn = ProcessNetwork(net, P, trace=True)
    try:
        pn.train_batch(rng.normal(size=(4, 2)), rng.normal(size=(4, 1)), get_loss("mse"))
        kinds = [e.kind for e in pn.trace_events]
    finally:
        pn.close()
    assert kinds.count("f") == 2 * 3 + 3 * 1
    # deltas: along each synapse between neurons, plus the loss gradient into the output neuron
    assert kinds.count("d") == 3 * 1 + 1
    assert kinds.count("commit") == 3 + 1
    assert kinds.count("ready") == 3 + 1


def test_trace_is_off_by_default(rng):
    net = mlp(2, [(3, "tanh")], 1, "linear")
    pn = ProcessNetwork(net, random_params(net))
    try:
        pn.predict(rng.normal(size=(2, 2)))
        assert pn.trace_events == [] and pn.trace_lines() == [] and json.loads(pn.trace_json()) == []
    finally:
        pn.close()


# -- bad input --------------------------------------------------------------------------------------


def test_bad_options_and_inputs(rng):
    net = mlp(3, [(4, "tanh")], 2, "linear")
    P = random_params(net)
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    with pytest.raises(NomagicError, match="bogus"):
        net.predict(P, X, engine="processes", bogus=1)
    with pytest.raises(NomagicError, match="bogus"):
        net.loss_and_grad(P, X, Y, engine="processes", bogus=1)
    with pytest.raises(NomagicError, match="bogus"):
        nm.fit(net, X, Y, engine="processes", epochs=1, verbose=False, bogus=1)
    for bad in (0, -1.0, "soon", True, float("nan")):
        with pytest.raises(NomagicError, match="timeout"):
            net.predict(P, X, engine="processes", timeout=bad)
    with pytest.raises(NomagicError):
        net.predict(P, X, engine="processes", max_restarts=-1)
    with pytest.raises(NomagicError):
        net.predict(P, rng.normal(size=(5, 4)), engine="processes")  # one feature too many
    with pytest.raises(NomagicError):
        net.predict(P, rng.normal(size=(5, 2, 3)), engine="processes")  # a sequence for an MLP
    with pytest.raises(NomagicError):
        net.predict(P, np.full((2, 3), np.nan), engine="processes")
    with pytest.raises(NomagicError):
        net.loss_and_grad(P, X, rng.normal(size=(4, 2)), engine="processes")  # Y of other length
    with pytest.raises(NomagicError):
        net.predict({"dense_0.weight": P["dense_0.weight"]}, X, engine="processes")  # params missing
    with pytest.raises(NomagicError):
        ProcessNetwork("not a network", P)
    with pytest.raises(NomagicError, match="nobody"):
        net.predict(P, X, engine="processes", faults=[Fault("nobody", "forward", 0)])
    with pytest.raises(NomagicError, match="phase"):
        net.predict(P, X, engine="processes", faults=[Fault("dense_0[0]", "sideways", 0)])
    with pytest.raises(NomagicError, match="kind"):
        net.predict(P, X, engine="processes", faults=[Fault("dense_0[0]", "forward", 0, kind="explode")])
    with pytest.raises(NomagicError, match="faults"):
        net.predict(P, X, engine="processes", faults=["dense_0[0]"])


# -- many neurons ------------------------------------------------------------------------------------


def test_large_network_forward():
    """Two hundred thousand neuron processes in one layer (the benchmark runs a million)."""
    n = 200_000
    net = nm.inputs(1) | nm.dense(n, activation="tanh")
    P = net.init(seed=0, dtype="float64")
    X = np.array([[0.5], [-1.0], [2.0]])
    pn = ProcessNetwork(net, P)
    try:
        assert pn.n_processes >= n + 1
        out = pn.predict(X)
    finally:
        pn.close()
    assert out.shape == (3, n)
    assert max_diff(out, net.predict(P, X)) <= FWD_TOL


def test_predict_async_runs_inside_an_event_loop():
    import asyncio

    net = nm.inputs(3) | nm.dense(4, activation="tanh") | nm.dense(2, activation="sigmoid")
    params = net.init(seed=3, dtype="float64")
    X = np.random.default_rng(3).normal(size=(5, 3))
    ticks = []

    async def main():
        pn = nm.ProcessNetwork(net, params, trace=True)

        async def ticker():
            for _ in range(3):
                ticks.append(len(pn.trace_events))
                await asyncio.sleep(0)

        out, _ = await asyncio.gather(pn.predict_async(X), ticker())
        pn.close()
        return out

    out = asyncio.run(main())
    np.testing.assert_allclose(out, net.predict(params, X), rtol=0, atol=1e-12)
    assert len(ticks) == 3
