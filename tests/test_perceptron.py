"""Rosenblatt's perceptron rule, checked against the rule written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

import nomagic as nm


def test_one_epoch_by_hand():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([0.0, 1.0, 1.0])
    params = nm.Params({"neuron.weight": np.zeros((2, 1)), "neuron.bias": np.zeros(1)})
    new, mistakes = nm.perceptron_epoch(params, X, y, lr=0.5)
    # sample 1: w·x+b = 0 → ŷ = 1, y = 0: w = (−0.5, 0), b = −0.5
    # sample 2: w·x+b = −0.5 → ŷ = 0, y = 1: w = (−0.5, 0.5), b = 0
    # sample 3: w·x+b = 0 → ŷ = 1 = y: no change
    np.testing.assert_allclose(new["neuron.weight"][:, 0], [-0.5, 0.5])
    np.testing.assert_allclose(new["neuron.bias"], [0.0])
    assert mistakes == 2
    np.testing.assert_array_equal(params["neuron.weight"], np.zeros((2, 1)))  # pure: unchanged


def test_learns_and_but_not_xor():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    model = nm.fit_perceptron(X, [0, 0, 0, 1], epochs=50)
    assert model.history[-1]["mistakes"] == 0
    for engine in ("tensor", "processes"):
        np.testing.assert_array_equal(model.predict(X, engine=engine)[:, 0], [0, 0, 0, 1])
    xor = nm.fit_perceptron(X, [0, 1, 1, 0], epochs=50)
    assert len(xor.history) == 50 and min(h["loss"] for h in xor.history) >= 0.25  # no line separates xor


def test_pocket_keeps_the_best_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + 0.8 * rng.normal(size=200) > 0).astype(float)  # noisy: not separable
    pocket = nm.fit_perceptron(X, y, epochs=30, pocket=True)
    error = np.mean(pocket.predict(X)[:, 0] != y)
    assert error == pytest.approx(min(h["loss"] for h in pocket.history))


@pytest.mark.parametrize("X, y, kwargs, match", [
    (np.zeros((3, 2)), [0, 1, 2], {}, "0 or 1"),
    (np.zeros((3, 2)), [0, 1], {}, "3 values"),
    (np.zeros(3), [0, 1, 1], {}, "samples, features"),
    (np.zeros((3, 2)), [0, 1, 1], {"epochs": 0}, "epochs"),
    (np.zeros((3, 2)), [0, 1, 1], {"lr": -1.0}, "lr"),
    (np.full((3, 2), np.nan), [0, 1, 1], {}, "NaN"),
])
def test_bad_input(X, y, kwargs, match):
    with pytest.raises(nm.NomagicError, match=match):
        nm.fit_perceptron(X, y, **kwargs)
