"""Bad input of every kind raises the right ``NomagicError`` subclass, says what is wrong and how
to fix it, and changes nothing: params, the caller's arrays and the disk stay as they were."""

from __future__ import annotations

import os

import numpy as np
import pytest

import nomagic as nm

NET = nm.inputs(3) | nm.dense(4, activation="tanh") | nm.dense(2, activation="softmax")
REG = nm.inputs(3) | nm.dense(4, activation="tanh") | nm.dense(2)
BIN = nm.inputs(3) | nm.dense(4, activation="tanh") | nm.dense(2, activation="sigmoid")
X = np.arange(15, dtype=float).reshape(5, 3) / 10
LABELS = np.array([0, 1, 0, 1, 1])


@pytest.fixture
def params():
    return NET.init(seed=0, dtype="float64")


def _snapshot(params):
    return {k: np.array(v, copy=True) for k, v in params.items()}


def _assert_unchanged(params, snapshot):
    assert set(params) == set(snapshot)
    for k in params:
        np.testing.assert_array_equal(params[k], snapshot[k])


# -- inputs X ---------------------------------------------------------------------------------------

X_CASES = [
    ("one sample as 1-D", np.ones(3), nm.ShapeError, r"2-D \(batch, 3\).*X\[None, :\]"),
    ("1-D of another length", np.ones(7), nm.ShapeError, r"must be 2-D"),
    ("3-D to a dense net", np.ones((2, 4, 3)), nm.ShapeError, r"2-D.*no recurrent layer"),
    ("0-D", np.float64(1.0), nm.ShapeError, r"must be 2-D"),
    ("wrong feature count", np.ones((5, 4)), nm.ShapeError, r"3 inputs.*4 features"),
    ("NaN", np.array([[0.0, np.nan, 1.0]]), nm.NonFiniteError, r"NaN or infinity"),
    ("inf", np.array([[0.0, -np.inf, 1.0]]), nm.NonFiniteError, r"NaN or infinity"),
    ("no samples", np.ones((0, 3)), nm.EmptyDataError, r"batch size 0"),
    ("ragged list", [[1.0, 2.0, 3.0], [1.0, 2.0]], nm.ShapeError, r"could not be read|ragged"),
    ("strings", [["a", "b", "c"]], nm.InvalidInputError, r"must be (real )?numbers"),
    ("complex numbers", np.ones((2, 3), dtype=complex), nm.InvalidInputError, r"real numbers"),
]


@pytest.mark.parametrize("label,bad,error,match", X_CASES, ids=[c[0] for c in X_CASES])
def test_bad_inputs_to_predict(label, bad, error, match, params):
    snap = _snapshot(params)
    with pytest.raises(error, match=match):
        NET.predict(params, bad)
    _assert_unchanged(params, snap)


@pytest.mark.parametrize("label,bad,error,match", X_CASES, ids=[c[0] for c in X_CASES])
def test_bad_inputs_to_loss_and_grad_and_fit(label, bad, error, match, params):
    # the inputs are checked before the targets: their error is the one reported
    with pytest.raises(error, match=match):
        NET.loss_and_grad(params, bad, LABELS, loss="cross_entropy")
    snap = _snapshot(params)
    with pytest.raises(error, match=match):
        nm.fit(NET, bad, LABELS, loss="cross_entropy", params=params, epochs=1, verbose=False)
    _assert_unchanged(params, snap)


def test_errors_are_nomagic_errors_and_value_errors():
    # one base class for callers (and the CLI), and the Python convention for bad values
    for cls in (nm.ShapeError, nm.NonFiniteError, nm.LabelError, nm.EmptyDataError):
        assert issubclass(cls, nm.InvalidInputError) and issubclass(cls, ValueError)
        assert issubclass(cls, nm.NomagicError)
    assert issubclass(nm.UnknownNameError, KeyError) and issubclass(nm.UnknownNameError, nm.NomagicError)


def test_callers_arrays_are_not_changed(params):
    bad = np.array([[0.0, np.nan, 1.0], [1.0, 2.0, 3.0]])
    before = bad.copy()
    with pytest.raises(nm.NonFiniteError):
        NET.predict(params, bad)
    np.testing.assert_array_equal(bad, before)
    Y = np.array([[0.0, 1.0], [0.5, 0.5]])
    y_before = Y.copy()
    NET.loss_and_grad(params, X[:2], Y, loss="cross_entropy")  # fine data: still untouched
    np.testing.assert_array_equal(Y, y_before)


def test_sequences_to_a_recurrent_net_must_be_3d():
    net = nm.inputs(3) | nm.recurrent(4) | nm.dense(1)
    p = net.init(seed=0, dtype="float64")
    with pytest.raises(nm.ShapeError, match=r"3-D \(batch, time, features\).*sequences"):
        net.predict(p, np.ones((5, 3)))
    with pytest.raises(nm.EmptyDataError, match="length 0"):
        net.predict(p, np.ones((5, 0, 3)))
    with pytest.raises(nm.ShapeError, match="ragged|could not be read"):
        net.predict(p, [[[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]])


# -- targets Y ----------------------------------------------------------------------------------------

Y_CASES = [
    # (label, net, loss, targets, error, match)
    ("too few labels", NET, "cross_entropy", LABELS[:3], nm.ShapeError, r"5 input samples.*one target per sample"),
    ("too many rows", REG, "mse", np.ones((6, 2)), nm.ShapeError, r"5 input samples"),
    ("wrong width", REG, "mse", np.ones((5, 3)), nm.ShapeError, r"dimension of 2"),
    ("3-D targets", REG, "mse", np.ones((5, 2, 1)), nm.ShapeError, r"dimension of 2"),
    ("scalar target", REG, "mse", 1.0, nm.ShapeError, r"one target per sample"),
    ("NaN targets", REG, "mse", np.full((5, 2), np.nan), nm.NonFiniteError, r"NaN or infinity"),
    ("inf targets", REG, "mse", np.full((5, 2), np.inf), nm.NonFiniteError, r"NaN or infinity"),
    ("NaN label", NET, "cross_entropy", np.array([0, 1, np.nan, 0, 1]), nm.NonFiniteError, r"NaN"),
    ("label too large", NET, "cross_entropy", np.array([0, 1, 2, 0, 1]), nm.LabelError, r"\[0, 1\].*2 outputs"),
    ("negative label", NET, "cross_entropy", np.array([0, -1, 0, 0, 1]), nm.LabelError, r"\[0, 1\].*from -1"),
    ("fractional label", NET, "cross_entropy", np.array([0, 0.5, 1, 0, 1]), nm.LabelError, r"class indices \(integers\)"),
    ("labels as 2-D column", NET, "cross_entropy", LABELS[:, None], nm.ShapeError, r"class indices of shape \(5,\)"),
    ("one-hot rows not summing to 1", NET, "cross_entropy", np.ones((5, 2)), nm.LabelError, r"sum to 1"),
    ("negative probabilities", NET, "cross_entropy", np.tile([1.5, -0.5], (5, 1)), nm.LabelError, r"non-negative"),
    ("BCE target above 1", BIN, "binary_cross_entropy", np.full((5, 2), 1.5), nm.LabelError, r"\[0, 1\]"),
    ("BCE target below 0", BIN, "binary_cross_entropy", np.full((5, 2), -0.1), nm.LabelError, r"\[0, 1\]"),
    ("no targets", REG, "mse", np.ones((0, 2)), nm.EmptyDataError, r"batch size 0"),
    ("ragged targets", REG, "mse", [[1.0, 2.0], [1.0]] * 2 + [[1.0, 2.0]], nm.ShapeError, r"could not be read|ragged"),
    ("string labels", NET, "cross_entropy", np.array(["a"] * 5), nm.InvalidInputError, r"numbers"),
]


@pytest.mark.parametrize("label,net,loss,Y,error,match", Y_CASES, ids=[c[0] for c in Y_CASES])
def test_bad_targets(label, net, loss, Y, error, match, tmp_path):
    params = net.init(seed=0, dtype="float64")
    snap = _snapshot(params)
    with pytest.raises(error, match=match):
        net.loss_and_grad(params, X, Y, loss=loss)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(error, match=match):
        nm.fit(net, X, Y, loss=loss, params=params, epochs=1, checkpoint=ckpt, verbose=False)
    assert not ckpt.exists()  # nothing written
    _assert_unchanged(params, snap)
    model = nm.Model(net, params, loss=loss)
    with pytest.raises(error, match=match):
        model.evaluate(X, Y)


def test_good_targets_of_every_form_are_accepted(params):
    for Y in (LABELS, LABELS.astype(float), LABELS.astype(np.int8), np.eye(2)[LABELS], LABELS.tolist()):
        value, _ = NET.loss_and_grad(params, X, Y, loss="cross_entropy")
        assert np.isfinite(value)
    value, _ = REG.loss_and_grad(REG.init(seed=0), X, np.zeros((5, 2)).tolist(), loss="mse")
    assert np.isfinite(value)


# -- names -------------------------------------------------------------------------------------------


def test_unknown_names(params):
    with pytest.raises(nm.UnknownNameError, match=r"unknown activation 'gelu'; choose one of: linear"):
        nm.dense(3, activation="gelu")
    with pytest.raises(nm.UnknownNameError, match=r"unknown loss 'hinge'; choose one of: mse"):
        NET.loss_and_grad(params, X, LABELS, loss="hinge")
    with pytest.raises(nm.UnknownNameError, match=r"unknown loss"):
        nm.fit(NET, X, LABELS, loss="hinge", verbose=False)
    with pytest.raises(nm.UnknownNameError, match=r"unknown optimizer 'adagrad'.*sgd, adam, adamw, rmsprop"):
        nm.fit(NET, X, LABELS, loss="cross_entropy", optimizer="adagrad", verbose=False)
    with pytest.raises(nm.UnknownNameError, match=r"unknown engine 'gpu'; choose one of: tensor"):
        NET.predict(params, X, engine="gpu")
    with pytest.raises(nm.UnknownNameError, match=r"unknown engine 'gpu'"):
        NET.loss_and_grad(params, X, LABELS, loss="cross_entropy", engine="gpu")
    with pytest.raises(nm.UnknownNameError, match=r"unknown engine 'gpu'"):
        nm.fit(NET, X, LABELS, loss="cross_entropy", engine="gpu", verbose=False)
    with pytest.raises(nm.UnknownNameError, match=r"unknown aggregation 'max'; choose one of: sum, product"):
        nm.GraphBuilder(2).neuron([], aggregation="max")
    with pytest.raises(nm.UnknownNameError, match=r"unknown activation"):
        nm.GraphBuilder(2).neuron([], activation="swish")
    with pytest.raises(nm.UnknownNameError, match=r"unknown activation"):
        nm.Neuron([1.0], activation="swish")
    with pytest.raises(nm.InvalidInputError, match="no options"):
        NET.predict(params, X, workers=2)


def test_unknown_name_message_is_not_quoted_like_a_key_error():
    try:
        nm.get_loss("hinge")
    except nm.UnknownNameError as exc:
        assert str(exc).startswith("unknown loss 'hinge'")


# -- fit's hyperparameters --------------------------------------------------------------------------

FIT_CASES = [
    ({"epochs": 0}, r"epochs must be an integer >= 1; got 0"),
    ({"epochs": 2.5}, r"epochs must be an integer"),
    ({"batch_size": -1}, r"batch_size must be an integer >= 1; got -1"),
    ({"batch_size": 0}, r"batch_size"),
    ({"l2": -0.1}, r"l2 must be a number >= 0"),
    ({"l1": float("nan")}, r"l1 must be a number >= 0"),
    ({"clip_norm": -1.0}, r"clip_norm"),
    ({"clip_norm": 0.0}, r"clip_norm must be positive"),
    ({"seed": -1}, r"seed"),
    ({"validation_split": 1.5}, r"validation_split must lie in \(0, 1\)"),
    ({"validation_split": -0.2}, r"validation_split must lie in \(0, 1\)"),
    ({"validation_split": 1}, r"validation_split must lie in \(0, 1\)"),
    ({"validation_split": 0.01}, r"leaves no data"),
    ({"validation_split": 0.2, "validation_data": (X, LABELS)}, r"not both"),
    ({"validation_data": X}, r"pair \(X_val, Y_val\)"),
    ({"early_stopping": True}, r"early_stopping must be a patience"),
    ({"early_stopping": 0}, r"early_stopping must be an integer >= 1"),
    ({"early_stopping": nm.EarlyStopping(monitor="val_loss")}, r"cannot monitor 'val_loss'"),
    ({"dtype": "float16"}, r"dtype must be 'float32' or 'float64'"),
    ({"truncate": 0}, r"truncate"),
]


@pytest.mark.parametrize("kwargs,match", FIT_CASES, ids=[next(iter(c[0])) + "=" + repr(next(iter(c[0].values())))[:12]
                                                        for c in FIT_CASES])
def test_bad_fit_hyperparameters(kwargs, match, params, tmp_path):
    snap = _snapshot(params)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(nm.InvalidInputError, match=match):
        nm.fit(NET, X, LABELS, loss="cross_entropy", params=params, checkpoint=ckpt, verbose=False, **kwargs)
    assert not ckpt.exists()
    _assert_unchanged(params, snap)


def test_fit_needs_a_network():
    with pytest.raises(nm.InvalidInputError, match="needs a Network"):
        nm.fit("net", X, LABELS)


def test_bad_optimizer_settings():
    with pytest.raises(nm.InvalidInputError, match="learning rate must be a positive number"):
        nm.adam(-1e-3)
    with pytest.raises(nm.InvalidInputError, match="learning rate"):
        nm.sgd(0.0)
    with pytest.raises(nm.InvalidInputError, match=r"momentum must lie in \[0, 1\)"):
        nm.sgd(0.1, momentum=1.0)
    with pytest.raises(nm.InvalidInputError, match="beta1"):
        nm.adam(1e-3, beta1=1.0)


def test_optimizer_step_rejects_mismatched_grads(params):
    opt = nm.sgd(0.1)
    state = opt.init(params)
    with pytest.raises(nm.ParamsError, match="exactly the keys"):
        opt.step(state, params, {"dense_0.weight": np.zeros((3, 4))})
    bad = {k: np.zeros(v.shape + (1,)) for k, v in params.items()}
    with pytest.raises(nm.ParamsError, match="has shape"):
        opt.step(state, params, bad)


# -- params ----------------------------------------------------------------------------------------------


def _bad_params(params, kind):
    p = dict(params)
    if kind == "missing":
        del p["dense_0.bias"]
    elif kind == "extra":
        p["dense_9.weight"] = np.zeros((2, 2))
    elif kind == "misshapen":
        p["dense_0.weight"] = np.zeros((4, 3))
    elif kind == "mixed dtypes":
        p["dense_0.bias"] = p["dense_0.bias"].astype(np.float32)
    elif kind == "integer dtype":
        p["dense_0.bias"] = np.zeros(4, dtype=np.int64)
    elif kind == "NaN":
        p["dense_1.bias"] = np.array([0.0, np.nan])
    elif kind == "not a mapping":
        p = list(params.values())
    return p


PARAM_CASES = [
    ("missing", r"missing \['dense_0.bias'\]"),
    ("extra", r"unexpected \['dense_9.weight'\]"),
    ("misshapen", r"'dense_0.weight' has shape \(4, 3\); the network needs \(3, 4\)"),
    ("mixed dtypes", r"mix float32 and float64.*astype"),
    ("integer dtype", r"dtype int64; use float32 or float64"),
    ("NaN", r"'dense_1.bias' holds NaN"),
    ("not a mapping", r"must be a mapping"),
]


@pytest.mark.parametrize("kind,match", PARAM_CASES, ids=[c[0] for c in PARAM_CASES])
def test_bad_params(kind, match, params, tmp_path):
    bad = _bad_params(params, kind)
    snap = _snapshot(params)
    with pytest.raises(nm.ParamsError, match=match):
        NET.predict(bad, X)
    with pytest.raises(nm.ParamsError, match=match):
        NET.loss_and_grad(bad, X, LABELS, loss="cross_entropy")
    ckpt = tmp_path / "ckpt"
    with pytest.raises(nm.ParamsError, match=match):
        nm.fit(NET, X, LABELS, loss="cross_entropy", params=bad, checkpoint=ckpt, verbose=False)
    assert not ckpt.exists()
    _assert_unchanged(params, snap)


# -- building ---------------------------------------------------------------------------------------------


def test_bad_layer_settings():
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(nm.InvalidInputError, match="units must be a positive integer"):
            nm.dense(bad)
    with pytest.raises(nm.InvalidInputError, match="number of inputs must be a positive integer"):
        nm.inputs(0)
    with pytest.raises(nm.ShapeError, match="non-empty 1-D"):
        nm.Neuron([[1.0, 2.0]])


# -- files -------------------------------------------------------------------------------------------------


def test_save_into_a_missing_directory_writes_nothing(params, tmp_path):
    model = nm.Model(NET, params, loss="cross_entropy")
    target = tmp_path / "missing" / "model.nomagic"
    with pytest.raises(nm.NomagicError, match="does not exist"):
        model.save(target)
    assert not target.parent.exists()
    assert os.listdir(tmp_path) == []


def test_load_of_a_non_model_file(tmp_path):
    path = tmp_path / "junk.nomagic"
    path.write_bytes(b"this is not a model")
    with pytest.raises(nm.ModelFileError):
        nm.load(path)
    assert path.read_bytes() == b"this is not a model"


def test_unknown_engine_options_write_no_checkpoint(params, tmp_path):
    ckpt = tmp_path / "ckpt"
    with pytest.raises(nm.InvalidInputError, match="no options"):
        nm.fit(NET, X, LABELS, loss="cross_entropy", params=params, checkpoint=ckpt, workers=2, verbose=False)
    assert not ckpt.exists()


def test_checkpoint_directory_is_created_when_training_starts(params, tmp_path):
    ckpt = tmp_path / "deep" / "ckpt"
    nm.fit(NET, X, LABELS, loss="cross_entropy", params=params, checkpoint=ckpt, epochs=1, verbose=False)
    assert (ckpt / "checkpoint.safetensors").is_file()
