"""The digits example: a 64-128-128-10 network learns scikit-learn's 8×8 handwritten digits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import require


@dataclass(frozen=True)
class Split:
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def load_digits_split(seed: int = 0) -> Split:
    """scikit-learn's digits (pixels scaled to [0, 1]), split 75/25, stratified."""
    datasets = require("sklearn.datasets", "examples")
    selection = require("sklearn.model_selection", "examples")
    digits = datasets.load_digits()
    X = digits.data / 16.0
    Xtr, Xte, ytr, yte = selection.train_test_split(
        X, digits.target, test_size=0.25, random_state=seed, stratify=digits.target)
    return Split(Xtr, Xte, ytr, yte)


def digits_network():
    """The network of the benchmarks and the quick start."""
    from ..model.layers import dense, inputs

    return (inputs(64) | dense(128, activation="relu") | dense(128, activation="relu")
            | dense(10, activation="softmax"))
