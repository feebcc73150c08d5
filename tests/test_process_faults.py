"""Every role — sensor, neuron, actuator, cortex — can crash in each phase it works in and is
restarted exactly from its snapshot; restarts past the limit within the period end the run."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

import nomagic as nm
from nomagic.engines.processes import Fault, ProcessNetwork
from nomagic.errors import EngineError, InvalidInputError
from nomagic.model.losses import get_loss

FIT = {"loss": "cross_entropy", "optimizer": nm.adam(2e-2), "epochs": 2, "batch_size": 5, "seed": 0,
       "dtype": "float64", "verbose": False, "l2": 1e-3, "clip_norm": 1.0}


def _data():
    rng = np.random.default_rng(5)
    return rng.normal(size=(15, 3)), rng.integers(0, 3, 15)


NET = nm.inputs(3) | nm.dense(4, activation="tanh") | nm.dense(3, activation="softmax")
CASES = [("inputs[0]", "forward"), ("sensor inputs[2]", "forward"),
         ("dense_0[1]", "forward"), ("dense_0[1]", "backward"), ("dense_1[2]", "commit"),
         ("actuator 0", "forward"), ("actuator 0", "backward"),
         ("cortex", "forward"), ("cortex", "backward"), ("cortex", "commit")]


@pytest.fixture(scope="module")
def clean():
    X, y = _data()
    return nm.fit(NET, X, y, engine="processes", **FIT)


@pytest.mark.parametrize("target,phase", CASES)
def test_a_crash_anywhere_loses_nothing(target, phase, clean):
    X, y = _data()
    faults = [Fault(target, phase, batch=1), Fault(target, phase, batch=4, times=2)]
    crashed = nm.fit(NET, X, y, engine="processes", faults=faults, **FIT)
    assert [f.times for f in faults] == [0, 0]  # every fault fired
    for k in clean.params:
        assert crashed.params[k].dtype == np.float64
        assert np.array_equal(crashed.params[k], clean.params[k]), k
    assert [h["loss"] for h in crashed.history] == [h["loss"] for h in clean.history]


def test_crashes_everywhere_at_once_in_predict_and_gradient():
    rng = np.random.default_rng(2)
    net = nm.inputs(2) | nm.gru(3, return_sequences=True) | nm.dense(1)
    P = net.init(seed=0, dtype="float64")
    X, Y = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 3, 1))
    fwd = [Fault("inputs[1]", "forward"), Fault("actuator 0", "forward", times=2), Fault("cortex", "forward")]
    assert np.array_equal(net.predict(P, X, engine="processes", faults=fwd), net.predict(P, X, engine="processes"))
    assert all(f.times == 0 for f in fwd)
    both = [Fault("inputs[0]", "forward"), Fault("actuator 0", "backward"), Fault("cortex", "backward", times=2),
            Fault("gru_0.n[1]", "backward")]
    v1, g1 = net.loss_and_grad(P, X, Y, engine="processes", faults=both)
    v0, g0 = net.loss_and_grad(P, X, Y, engine="processes")
    assert all(f.times == 0 for f in both)
    assert v1 == v0 and all(np.array_equal(g1[k], g0[k]) for k in g0)


def test_restarts_past_the_limit_name_the_process():
    X, y = _data()
    for target, phase, name in (("dense_0[2]", "backward", "neuron dense_0[2]"),
                                ("inputs[1]", "forward", "sensor inputs[1]"),
                                ("actuator 0", "backward", "actuator 0"), ("cortex", "commit", "cortex")):
        with pytest.raises(EngineError, match=re.escape(name) + r" crashed 3 times within 5 s") as err:
            nm.fit(NET, X, y, engine="processes", faults=[Fault(target, phase, batch=1, times=10)],
                   max_restarts=2, **FIT)
        assert "max_restarts=2" in str(err.value) and "InjectedCrash" in str(err.value)


def test_the_restart_limit_counts_within_the_period():
    """max_restarts within restart_period, as OTP's intensity and period: crashes spread over
    time are forgiven; the same crashes with no period (count for ever) end the run."""
    X, y = _data()
    Y = np.eye(3)[y]

    def run(period):
        faults = [Fault("dense_0[0]", "forward", batch=b, times=2) for b in range(3)]
        pn = ProcessNetwork(NET, NET.init(seed=0, dtype="float64"), faults=faults, max_restarts=2,
                            restart_period=period)
        try:
            for _ in range(3):
                pn.train_batch(X, Y, get_loss("cross_entropy"))
                time.sleep(0.12)
            return pn.params()
        finally:
            pn.close()

    run(0.1)  # 6 crashes, never more than 2 within 0.1 s
    with pytest.raises(EngineError, match=re.escape("neuron dense_0[0] crashed 3 times") + r" \(max_restarts=2\)"):
        run(None)


def test_fault_specs_are_checked():
    P = NET.init(seed=0)
    X = np.zeros((2, 3))
    bad = [(Fault("inputs[0]", "backward"), "a sensor works only"),
           (Fault("actuator 0", "commit"), "an actuator|a actuator|phases"),
           (Fault("cortex", "forward", kind="hang"), "only a neuron can hang"),
           (Fault("actuator 3"), "no process named 'actuator 3'"),
           (Fault("sensor dense_0[0]"), "no process named")]
    for f, msg in bad:
        with pytest.raises(InvalidInputError, match=msg):
            NET.predict(P, X, engine="processes", faults=[f])
    with pytest.raises(InvalidInputError, match="target"):
        Fault(3)
    with pytest.raises(InvalidInputError, match="restart_period"):
        NET.predict(P, X, engine="processes", restart_period=0)
    assert Fault("dense_0[0]").neuron == "dense_0[0]"


def test_a_crash_armed_while_the_network_runs():
    X, y = _data()
    P = NET.init(seed=0, dtype="float64")
    loss = get_loss("cross_entropy")
    Y = np.eye(3)[y]
    calm, hit = ProcessNetwork(NET, P, optimizer=nm.sgd(0.1)), ProcessNetwork(NET, P, optimizer=nm.sgd(0.1))
    try:
        for pn in (calm, hit):
            pn.train_batch(X, Y, loss)
        assert hit.pending_faults == 0 and hit.restarts("dense_0[1]") == 0
        hit.inject(Fault("dense_0[1]", "backward", batch=1))
        assert hit.pending_faults == 1
        with pytest.raises(InvalidInputError):
            hit.inject(Fault("dense_9[0]"))  # checked against the network: a typo would never fire
        for pn in (calm, hit):
            pn.train_batch(X, Y, loss)
        assert hit.pending_faults == 0 and hit.restarts("dense_0[1]") == 1
        for k, v in calm.params().items():
            assert np.array_equal(hit.params()[k], v), k
        with pytest.raises(InvalidInputError, match="no process"):
            hit.restarts("nobody")
    finally:
        calm.close()
        hit.close()
