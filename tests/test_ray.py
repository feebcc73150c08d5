"""The ray engine against the tensor engine, on a real local Ray (one cluster for the module).

What the issue promises: the same numbers as the tensor engine (forward within 1e-9, params after
training within 1e-8) for both strategies — neurons spread over workers ("model") and the batch
spread over them ("data") — for a dense net, a GraphBuilder graph and a GRU, with 1, 2 and 3
workers; a worker killed in the middle of training is replaced and the run ends with the params of
an undisturbed one; a worker that keeps dying ends the run with an EngineError naming it; without
Ray, engine="ray" says how to install it. Skipped when Ray is not installed (but for that last).
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from test_processes import random_dag

import nomagic as nm
from nomagic.engines import get_engine
from nomagic.engines.processes import wiring_for
from nomagic.engines.ray import auto_partition, cut_synapses, explicit_partition
from nomagic.errors import EngineError, InvalidInputError, MissingDependencyError

try:
    import ray
except ImportError:  # pragma: no cover - the extra is not installed
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed (pip install 'nomagic[ray]')")

FWD_TOL = 1e-9
FIT_TOL = 1e-8


def max_diff(a, b) -> float:
    if hasattr(a, "keys"):
        assert set(a) == set(b)
        return max(max_diff(a[k], b[k]) for k in a)
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max()) if a.size else 0.0


def nets():
    """(name, net, X, Y, loss) for the three kinds of network, tiny."""
    r = np.random.default_rng(7)
    dense = nm.inputs(3) | nm.dense(4, activation="tanh") | nm.dense(3, activation="relu") | \
        nm.dense(2, activation="softmax")
    graph = random_dag(3, n_in=3, n_hidden=5)
    gru = nm.inputs(2) | nm.gru(3) | nm.dense(1)
    return {
        "dense": (dense, r.normal(size=(10, 3)), r.integers(0, 2, 10), "cross_entropy"),
        "graph": (graph, r.normal(size=(10, 3)), r.normal(size=(10, 2)), "mse"),
        "gru": (gru, r.normal(size=(10, 4, 2)), r.normal(size=(10, 1)), "mse"),
    }


NETS = nets()
FIT = {"optimizer": "adam", "batch_size": 4, "epochs": 2, "seed": 0, "dtype": "float64", "verbose": False}


# -- without Ray --------------------------------------------------------------------------------------


def test_without_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    net, X, Y, loss = NETS["dense"]
    P = net.init(seed=0, dtype="float64")
    get_engine("ray")  # the engine module itself imports without Ray
    for call in (lambda: net.predict(P, X, engine="ray"),
                 lambda: net.loss_and_grad(P, X, Y, loss=loss, engine="ray", strategy="data"),
                 lambda: nm.fit(net, X, Y, loss=loss, engine="ray", **FIT)):
        with pytest.raises(MissingDependencyError, match=r"pip install 'nomagic\[ray\]'"):
            call()


def test_partition_keeps_populations_together_and_cuts_few_synapses():
    net = nm.inputs(5) | nm.dense(6) | nm.dense(4) | nm.dense(3) | nm.dense(2)
    w = wiring_for(net)
    owner = auto_partition(w, 2)
    pops = [(w.start[p.name] - w.n_sensors, p.size) for p in w.pops]
    for lo, size in pops:  # each population on one worker, workers in the network's order
        assert len(set(owner[lo:lo + size].tolist())) == 1
    assert list(owner) == sorted(owner) and set(owner.tolist()) == {0, 1}
    # contiguous runs cut one layer's synapses: the cheapest cut that balances the work
    assert cut_synapses(w, owner) in (6 * 4, 4 * 3)
    # three workers, two populations: one must be split
    small = nm.inputs(2) | nm.dense(4) | nm.dense(1)
    owner = auto_partition(wiring_for(small), 3)
    assert sorted(set(owner.tolist())) == [0, 1, 2]
    with pytest.raises(InvalidInputError, match="only 5 neurons"):
        auto_partition(wiring_for(small), 6)


def test_explicit_partition_by_population_and_neuron():
    net = nm.inputs(2) | nm.dense(3, name="h") | nm.dense(2, name="out")
    w = wiring_for(net)
    owner, workers = explicit_partition(w, None, {"h": 0, "out": 1, "h[2]": 1})
    assert workers == 2 and owner.tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(InvalidInputError, match="without a worker"):
        explicit_partition(w, None, {"h": 0})
    with pytest.raises(InvalidInputError, match="no population or neuron"):
        explicit_partition(w, None, {"h": 0, "out": 1, "nope[0]": 0})
    with pytest.raises(InvalidInputError, match="gives worker 1 no neuron"):
        explicit_partition(w, 3, {"h": 0, "out": 2})
    with pytest.raises(InvalidInputError, match="worker index"):
        explicit_partition(w, 2, {"h": 0, "out": 2})


# -- Ray started by the engine --------------------------------------------------------------------------


@needs_ray
def test_engine_starts_a_quiet_local_ray_and_stops_it():
    """Runs before the module's cluster exists: address=None starts Ray and shuts it down after."""
    assert not ray.is_initialized()
    net, X, _, _ = NETS["dense"]
    P = net.init(seed=0, dtype="float64")
    out = net.predict(P, X, engine="ray", workers=1)
    assert max_diff(out, net.predict(P, X)) <= FWD_TOL
    assert not ray.is_initialized()


# -- on one local Ray, shared ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    if ray is None:
        pytest.skip("ray is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@needs_ray
@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("strategy", ["model", "data"])
@pytest.mark.parametrize("kind", list(NETS))
def test_same_numbers_as_the_tensor_engine(cluster, kind, strategy, workers):
    net, X, Y, loss = NETS[kind]
    P = net.init(seed=1, dtype="float64")
    opts = {"engine": "ray", "workers": workers, "strategy": strategy}
    assert max_diff(net.predict(P, X, **opts), net.predict(P, X)) <= FWD_TOL
    value, grads = net.loss_and_grad(P, X, Y, loss=loss, **opts)
    ref_value, ref_grads = net.loss_and_grad(P, X, Y, loss=loss)
    assert abs(value - ref_value) <= FWD_TOL * max(1.0, abs(ref_value))
    assert max_diff(grads, ref_grads) <= FWD_TOL
    ref = nm.fit(net, X, Y, loss=loss, **FIT)
    ours = nm.fit(net, X, Y, loss=loss, **opts, **FIT)
    assert max_diff(ref.params, net.init(seed=0, dtype="float64")) > 1e-6  # it trained
    assert max_diff(ours.params, ref.params) <= FIT_TOL
    for a, b in zip(ours.history, ref.history):
        assert abs(a["loss"] - b["loss"]) <= FWD_TOL
    assert ray.is_initialized()  # the caller's Ray is left running


@needs_ray
def test_explicit_partition_and_regularised_training(cluster):
    net, X, Y, loss = NETS["dense"]
    part = {"dense_0": 0, "dense_1": 1, "dense_2": 1, "dense_0[3]": 1}
    kw = {**FIT, "l1": 1e-3, "l2": 1e-2, "clip_norm": 0.5, "optimizer": nm.sgd(0.1, momentum=0.9)}
    ref = nm.fit(net, X, Y, loss=loss, **kw)
    for opts in ({"partition": part}, {"strategy": "data", "workers": 3}):
        ours = nm.fit(net, X, Y, loss=loss, engine="ray", **opts, **kw)
        assert max_diff(ours.params, ref.params) <= FIT_TOL


@needs_ray
@pytest.mark.parametrize("strategy", ["model", "data"])
def test_killed_worker_is_replaced_and_training_ends_the_same(cluster, strategy):
    net, X, Y, loss = NETS["gru"] if strategy == "model" else NETS["dense"]
    opts = {"engine": "ray", "workers": 2, "strategy": strategy}
    undisturbed = nm.fit(net, X, Y, loss=loss, **opts, **FIT)
    killed = []

    def kill_mid_step(info):  # in the third step, after its first round (model: mid-forward)
        if info.batch == 2 and info.round == (1 if strategy == "model" else 0) and not killed:
            killed.append(info.workers[1])
            ray.kill(info.workers[1])

    ours = nm.fit(net, X, Y, loss=loss, on_round=kill_mid_step, **opts, **FIT)
    assert killed
    for k in ours.params:
        assert np.array_equal(ours.params[k], undisturbed.params[k]), k
    assert max_diff(ours.params, nm.fit(net, X, Y, loss=loss, **FIT).params) <= FIT_TOL


@needs_ray
@pytest.mark.parametrize("strategy", ["model", "data"])
def test_worker_that_keeps_dying_ends_the_run_naming_it(cluster, strategy):
    net, X, Y, loss = NETS["dense"]

    def kill_always(info):
        if info.batch >= 1:
            ray.kill(info.workers[1])

    with pytest.raises(EngineError, match=r"ray worker 1 .*died 3 times.*max_restarts=2") as err:
        nm.fit(net, X, Y, loss=loss, engine="ray", workers=2, strategy=strategy, on_round=kill_always,
               max_restarts=2, **FIT)
    assert ("dense_" in str(err.value)) == (strategy == "model")  # the model worker names its neurons


@needs_ray
def test_every_wait_is_bounded(cluster):
    net, X, _, _ = NETS["graph"]
    P = net.init(seed=0, dtype="float64")
    with pytest.raises(EngineError, match=r"did not (answer|start) within timeout=1e-06s"):
        net.predict(P, X, engine="ray", workers=2, timeout=1e-6)
    with pytest.raises(InvalidInputError, match="timeout"):
        net.predict(P, X, engine="ray", timeout=None)


@needs_ray
def test_bad_options(cluster):
    net, X, Y, loss = NETS["dense"]
    P = net.init(seed=0, dtype="float64")
    with pytest.raises(InvalidInputError, match="takes no options"):
        net.predict(P, X, engine="ray", wrokers=2)
    with pytest.raises(InvalidInputError, match="strategy"):
        net.predict(P, X, engine="ray", strategy="pipeline")
    with pytest.raises(InvalidInputError, match="partition"):
        net.predict(P, X, engine="ray", strategy="data", partition={"dense_0": 0})
    with pytest.raises(InvalidInputError, match="workers"):
        net.predict(P, X, engine="ray", workers=0)


def test_something_else_named_ray_is_said(monkeypatch):
    """A folder called "ray" on the path (Ray's own /tmp/ray, say) is not Ray: one clear error."""
    import types

    impostor = types.ModuleType("ray")
    impostor.__path__ = ["/tmp/ray"]
    monkeypatch.setitem(sys.modules, "ray", impostor)
    net = nm.inputs(2) | nm.dense(1)
    with pytest.raises(MissingDependencyError, match=r"found /tmp/ray instead: pip install 'nomagic\[ray\]'"):
        net.predict(net.init(), np.zeros((3, 2)), engine="ray")
