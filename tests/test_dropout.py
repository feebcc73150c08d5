"""``nm.dropout``: inverted dropout as a layer, with masks decided by (seed, epoch, batch, neuron,
sample) so that every engine draws the same ones without sharing any state.

What the issue promises: the tensor engine (fused and generic) and the processes engine train to
the same params (float64, 1e-8) with dropout, for dense nets and a recurrent one; at predict a
dropout layer changes nothing; the masks drop about ``rate`` of the values, differ between
batches, epochs, neurons and samples, are equal for equal arguments, and keep the expected
activation; the gradient matches finite differences with a fixed mask; bad rates and keys are
clear errors; two epochs then two more equal four at once; torch and ONNX see the identity.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import numeric_grad

import nomagic as nm
from nomagic.engines.tensor.fused import DropoutOp, chain_for
from nomagic.errors import GraphError, InvalidInputError
from nomagic.model.chains import _stage
from nomagic.model.dropout import keep, mask, neuron_ids

TOL = 1e-8
FIT = {"optimizer": "adam", "batch_size": 5, "seed": 3, "dtype": "float64", "verbose": False}


def max_diff(a, b) -> float:
    assert set(a) == set(b)
    return max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a)


def dense_net(rate=0.4):
    return (nm.inputs(4) | nm.dense(6, "tanh") | nm.dropout(rate) | nm.dense(5, "relu") | nm.dropout(0.5)
            | nm.dense(3, "softmax"))


def dense_data():
    r = np.random.default_rng(1)
    return r.normal(size=(17, 4)), r.integers(0, 3, 17)


def recurrent_net():
    return (nm.inputs(2) | nm.lstm(3, return_sequences=True) | nm.dropout(0.4) | nm.recurrent(3, "tanh")
            | nm.dropout(0.3) | nm.dense(2))


def recurrent_data():
    r = np.random.default_rng(2)
    return r.normal(size=(9, 4, 2)), r.normal(size=(9, 2))


# -- the layer --------------------------------------------------------------------------------------


def test_layer_is_an_identity_population_fed_one_to_one():
    net = dense_net()
    pop = net.population("dropout_0")
    assert (pop.size, pop.activation, pop.bias, pop.dropout) == (6, "linear", None, 0.4)
    (block,) = net.incoming("dropout_0")
    assert (block.source, block.kind, block.scale, block.recurrent) == ("dense_0", "one_to_one", 1.0, False)
    assert net.layers[2].kind == "dropout" and net.layers[2].config == {"rate": 0.4}
    assert set(net.init()) == set((nm.inputs(4) | nm.dense(6, "tanh") | nm.dense(5, "relu") | nm.dense(3)).init())
    assert nm.Network.from_dict(net.to_dict()) == net
    assert "dropout" not in str((nm.inputs(2) | nm.dense(1)).to_dict())  # other networks' files unchanged
    assert chain_for(net) is not None and isinstance(chain_for(net).ops[1], DropoutOp)  # the fused path
    named = nm.inputs(2) | nm.dropout(0.1, name="drop") | nm.dense(1)
    assert named.population("drop").dropout == 0.1
    assert "dropout" in named.summary()


@pytest.mark.parametrize("rate", [1.0, 1.5, -0.1, float("nan"), float("inf"), "0.5", None, True, [0.5]])
def test_bad_rate_is_a_clear_error(rate):
    with pytest.raises(InvalidInputError, match=r"dropout rate must be a number in \[0, 1\)"):
        nm.dropout(rate)


@pytest.mark.parametrize("key", [(1, 2), (1, 2, 3, 4, 5), (1, -2, 3), (1.0, 2, 3), "123", 7, (True, 1, 2)])
def test_bad_dropout_key_is_a_clear_error(key):
    net = dense_net()
    P = net.init(dtype="float64")
    X, y = dense_data()
    with pytest.raises(InvalidInputError, match="dropout_key"):
        net.loss_and_grad(P, X, y, loss="cross_entropy", dropout_key=key)
    with pytest.raises(InvalidInputError, match="dropout_key"):
        net.loss_and_grad(P, X, y, loss="cross_entropy", engine="processes", dropout_key=key)


def test_dropout_never_on_a_recurrent_connection():
    net = nm.inputs(2) | nm.dense(3) | nm.dropout(0.5)
    pops, blocks = list(net.populations), list(net.blocks)
    looped = nm.Block("dropout_0", "dense_0", "dense", weight="loop", recurrent=True)
    with pytest.raises(GraphError, match="recurrent"):
        nm.Network(pops, blocks + [looped], net.layers)
    with pytest.raises(GraphError, match="linear"):
        nm.Network([pops[0], nm.Population("h", 3, "tanh", dropout=0.5)], [nm.Block("inputs", "h", weight="w")])


# -- the masks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_fraction_dropped_is_the_rate(rate):
    kept = keep(7, 3, 11, np.arange(200, dtype=np.uint64)[None, :], np.arange(1000, dtype=np.uint64)[:, None], rate)
    n = kept.size
    sigma = np.sqrt(rate * (1 - rate) / n)
    assert abs((1 - kept.mean()) - rate) < 5 * sigma  # 200,000 draws: within 5 standard deviations
    # no neuron and no sample is far off either (1000 and 200 draws each)
    assert np.abs((1 - kept.mean(axis=0)) - rate).max() < 6 * np.sqrt(rate * (1 - rate) / 1000)
    assert np.abs((1 - kept.mean(axis=1)) - rate).max() < 6 * np.sqrt(rate * (1 - rate) / 200)


def test_masks_are_a_pure_function_of_their_arguments():
    neurons, samples = np.arange(50, dtype=np.uint64)[None, :], np.arange(64, dtype=np.uint64)[:, None]
    base = keep(1, 2, 3, neurons, samples, 0.5)
    assert np.array_equal(base, keep(1, 2, 3, neurons, samples, 0.5))  # equal for equal arguments
    assert base[5, 7] == keep(1, 2, 3, 7, 5, 0.5)  # one at a time, as a neuron process computes it
    for other in (keep(2, 2, 3, neurons, samples, 0.5), keep(1, 3, 3, neurons, samples, 0.5),
                  keep(1, 2, 4, neurons, samples, 0.5)):  # another seed, epoch, batch
        assert 0.35 < np.mean(other != base) < 0.65  # as different as two independent masks
    assert 0.35 < np.mean(base[:, :-1] != base[:, 1:]) < 0.65  # neighbouring neurons
    assert 0.35 < np.mean(base[:-1] != base[1:]) < 0.65  # neighbouring samples
    assert keep(1, 2, 3, neurons, samples, 0.0).all()
    # two dropout layers of one size draw different masks: the neuron index is global
    net = nm.inputs(3) | nm.dropout(0.5) | nm.dense(3) | nm.dropout(0.5)
    a, b = neuron_ids(net, "dropout_0"), neuron_ids(net, "dropout_1")
    assert list(a) == [3, 4, 5] and list(b) == [9, 10, 11]
    assert not np.array_equal(mask(0.5, (0, 0, 0), a, 32, "float64"), mask(0.5, (0, 0, 0), b, 32, "float64"))


def test_inverted_scaling_keeps_the_expected_activation():
    rate = 0.3
    m = mask(rate, (5, 0, 0), np.arange(4), 1, "float64")
    assert set(np.unique(m)) <= {0.0, 1 / (1 - rate)}
    net = nm.inputs(4) | nm.dropout(rate)
    X = np.random.default_rng(0).normal(size=(1, 4))
    P = net.init(dtype="float64")
    outs = np.stack([net.predict(P, X, dropout_key=(5, e, b)) for e in range(50) for b in range(40)])
    assert np.abs(outs.mean(axis=0) - X).max() < 0.1 * np.abs(X).max()  # 2000 masks
    assert np.isclose(np.mean(outs == 0), rate, atol=0.03)


# -- the engines agree ----------------------------------------------------------------------------------


def test_dropout_is_applied_in_training_only_with_a_key():
    net = dense_net()
    P = net.init(seed=0, dtype="float64")
    X, y = dense_data()
    plain = net.loss_and_grad(P, X, y, loss="cross_entropy")
    masked = net.loss_and_grad(P, X, y, loss="cross_entropy", dropout_key=(0, 0, 0))
    assert abs(plain[0] - masked[0]) > 1e-3
    again = net.loss_and_grad(P, X, y, loss="cross_entropy", dropout_key=(0, 0, 0))
    assert again[0] == masked[0] and max_diff(again[1], masked[1]) == 0.0


@pytest.mark.parametrize("make", [dense_net, recurrent_net])
def test_predict_is_the_identity(make):
    net = make()
    bare = nm.inputs(net.n_inputs)  # the same layers, without the dropout ones
    for layer in net.layers[1:]:
        if layer.kind != "dropout":
            bare = bare | _stage(layer)
    P = net.init(seed=4, dtype="float64")
    X = (dense_data if make is dense_net else recurrent_data)()[0]
    ref = bare.predict(P, X)
    assert np.array_equal(net.predict(P, X), ref)
    assert np.abs(net.predict(P, X, fused=False) - ref).max() <= 1e-12
    assert np.abs(net.predict(P, X, engine="processes") - ref).max() <= 1e-12
    Y, loss = (dense_data()[1], "cross_entropy") if make is dense_net else (recurrent_data()[1], "mse")
    model = nm.fit(net, X, Y, loss=loss, epochs=1, **FIT)
    assert np.array_equal(model.predict(X), bare.predict(model.params, X))


def test_gradient_matches_finite_differences_with_a_fixed_mask():
    net = nm.inputs(3) | nm.dense(5, "tanh") | nm.dropout(0.5) | nm.dense(4, "sigmoid") | nm.dropout(0.3) | nm.dense(2)
    rng = np.random.default_rng(9)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    P = net.init(seed=2, dtype="float64")
    key = (11, 2, 5)
    numeric = numeric_grad(lambda p: net.loss_and_grad(p, X, Y, dropout_key=key)[0], P, eps=1e-6)
    for opts in ({}, {"fused": False}, {"engine": "processes"}):
        _, grads = net.loss_and_grad(P, X, Y, dropout_key=key, **opts)
        assert max_diff(grads, numeric) < 1e-7, opts
    # a recurrent net: the same mask at every step
    rnet = nm.inputs(2) | nm.recurrent(3, "tanh", return_sequences=True) | nm.dropout(0.5) | nm.recurrent(2)
    Xs, Ys = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 2))
    Pr = rnet.init(seed=2, dtype="float64")
    numeric = numeric_grad(lambda p: rnet.loss_and_grad(p, Xs, Ys, dropout_key=key)[0], Pr, eps=1e-6)
    for opts in ({}, {"fused": False}):
        _, grads = rnet.loss_and_grad(Pr, Xs, Ys, dropout_key=key, **opts)
        assert max_diff(grads, numeric) < 1e-7, opts


def _fit_on_every_engine(net, X, Y, kw: dict):
    """nm.fit on the tensor engine (fused and generic) and on processes: all the same params.
    Returns the fused tensor run and the processes run."""
    ref = nm.fit(net, X, Y, **kw)
    generic = nm.fit(net, X, Y, fused=False, **kw)
    procs = nm.fit(net, X, Y, engine="processes", **kw)
    assert max_diff(generic.params, ref.params) <= TOL
    assert max_diff(procs.params, ref.params) <= TOL
    return ref, procs


def test_engines_train_dense_nets_to_the_same_params():
    net = dense_net()
    X, y = dense_data()
    kw = {**FIT, "epochs": 3, "loss": "cross_entropy"}
    ref, procs = _fit_on_every_engine(net, X, y, kw)
    for a, b in zip(procs.history, ref.history):
        assert abs(a["loss"] - b["loss"]) <= TOL and a["accuracy"] == b["accuracy"]
    # dropout changed the training: not the params of the same net without it, nor of another seed
    bare = nm.inputs(4) | nm.dense(6, "tanh") | nm.dense(5, "relu") | nm.dense(3, "softmax")
    assert max_diff(nm.fit(bare, X, y, **kw).params, ref.params) > 1e-4
    assert max_diff(nm.fit(net, X, y, **{**kw, "seed": 4}, params=net.init(seed=3, dtype="float64")).params,
                    ref.params) > 1e-4


def test_engines_train_a_recurrent_net_to_the_same_params():
    net = recurrent_net()
    X, Y = recurrent_data()
    kw = {**FIT, "epochs": 2, "loss": "mse"}
    ref, _ = _fit_on_every_engine(net, X, Y, kw)
    assert max_diff(ref.params, net.init(seed=3, dtype="float64")) > 1e-4  # it trained


def test_a_crashed_dropout_neuron_restarts_with_the_same_masks():
    from nomagic.engines.processes import Fault

    net = dense_net()
    X, y = dense_data()
    kw = {**FIT, "epochs": 2, "loss": "cross_entropy"}
    ref = nm.fit(net, X, y, **kw)
    faults = [Fault("dropout_0[2]", "forward", batch=1), Fault("dropout_1[0]", "backward", batch=3),
              Fault("cortex", "backward", batch=5)]
    crashed = nm.fit(net, X, y, engine="processes", faults=faults, **kw)
    assert max_diff(crashed.params, ref.params) <= TOL


def test_two_epochs_then_two_more_equal_four():
    net = dense_net()
    X, y = dense_data()
    kw = {**FIT, "loss": "cross_entropy"}
    four = nm.fit(net, X, y, epochs=4, **kw)
    two = nm.fit(net, X, y, epochs=2, **kw)
    more = nm.fit(two, X, y, epochs=2, **{k: v for k, v in kw.items() if k not in ("dtype",)})
    assert max_diff(more.params, four.params) == 0.0
    assert [h["loss"] for h in more.history] == [h["loss"] for h in four.history]


def test_checkpointed_run_resumes_with_the_same_masks(tmp_path):
    net = dense_net()
    X, y = dense_data()
    kw = {**FIT, "loss": "cross_entropy"}
    ref = nm.fit(net, X, y, epochs=3, **kw)

    class StopAfterTwo(nm.Callback):
        def on_epoch_end(self, loop):
            if loop.epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nm.fit(net, X, y, epochs=3, checkpoint=tmp_path, callbacks=[StopAfterTwo()], **kw)
    resumed = nm.fit(net, X, y, epochs=3, checkpoint=tmp_path, **kw)
    assert max_diff(resumed.params, ref.params) == 0.0


def test_model_file_keeps_the_layer(tmp_path):
    net = dense_net()
    X, y = dense_data()
    model = nm.fit(net, X, y, loss="cross_entropy", epochs=1, **FIT)
    model.save(tmp_path / "m.nomagic")
    loaded = nm.load(tmp_path / "m.nomagic")
    assert loaded.net == net and loaded.net.population("dropout_1").dropout == 0.5
    assert np.array_equal(loaded.predict(X), model.predict(X))


# -- torch and ONNX: the identity at inference ----------------------------------------------------------


def test_torch_maps_dropout_to_nn_dropout():
    torch = pytest.importorskip("torch")
    net = dense_net()
    P = net.init(seed=5, dtype="float64")
    X = dense_data()[0]
    module = nm.torch_module(net, P)
    assert isinstance(module["dropout_0"], torch.nn.Dropout) and module["dropout_0"].p == 0.4
    module.eval()
    with torch.no_grad():
        out = module(torch.from_numpy(X)).numpy()
    assert np.abs(out - net.predict(P, X)).max() <= 1e-12
    state = nm.to_torch_state_dict(net, P)
    assert not any(k.startswith("dropout") for k in state)
    assert max_diff(nm.from_torch_state_dict(net, state), P) == 0.0
    rnet = recurrent_net()
    Pr = rnet.init(seed=5, dtype="float64")
    rmod = nm.torch_module(rnet, Pr).eval()
    Xs = recurrent_data()[0]
    with torch.no_grad():
        assert np.abs(rmod(torch.from_numpy(Xs)).numpy() - rnet.predict(Pr, Xs)).max() <= 1e-12


def test_onnx_exports_dropout_as_the_identity(tmp_path):
    onnx = pytest.importorskip("onnx")
    net = dense_net()
    P = net.init(seed=5, dtype="float64")
    path = tmp_path / "m.onnx"
    nm.export_onnx(net, path, params=P)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Dropout" not in ops and "Identity" in ops
    ort = pytest.importorskip("onnxruntime")
    X = dense_data()[0]
    session = ort.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: X})[0]
    assert np.abs(got - net.predict(P, X)).max() <= 1e-12


# -- Ray: the neuron state machine on actors, and data-parallel shares -----------------------------------


def test_ray_trains_to_the_same_params():
    ray = pytest.importorskip("ray")
    net = nm.inputs(3) | nm.dense(4, "tanh") | nm.dropout(0.5) | nm.dense(2)
    r = np.random.default_rng(3)
    X, Y = r.normal(size=(10, 3)), r.normal(size=(10, 2))
    kw = {**FIT, "epochs": 2, "batch_size": 4, "loss": "mse"}
    ref = nm.fit(net, X, Y, **kw)
    started = not ray.is_initialized()
    if started:  # one tiny local Ray, stopped at the end
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:  # data: 3 shares of a batch of 4 rows, each with the positions of its rows in the batch
        for opts in ({"strategy": "model", "workers": 2}, {"strategy": "data", "workers": 3}):
            ours = nm.fit(net, X, Y, engine="ray", **opts, **kw)
            assert max_diff(ours.params, ref.params) <= TOL, opts
    finally:
        if started:
            ray.shutdown()
