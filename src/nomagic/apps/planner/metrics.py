"""How good is a recommendation model? The scores the planner's evaluation table reports.

``y`` holds class indices 0..k−1, ``P`` the predicted probability of each class per sample.

* accuracy: the share of samples whose most probable class is the true one;
* macro-F1: the F1 score ``2·precision·recall / (precision + recall)`` of each class, averaged
  over classes with equal weight (a rare class counts as much as a common one; a class never
  predicted and never true is left out; one with no true positives scores 0);
* log loss: ``−mean log P[i, y_i]``, probabilities clipped to [1e−15, 1];
* Brier score: ``mean_i Σ_k (P[i, k] − [y_i = k])²`` (multi-class form, 0 is perfect, 2 worst);
* expected calibration error: samples binned by their top probability into 10 equal bins;
  the bin-size-weighted mean of |accuracy − mean confidence| per bin.
"""

from __future__ import annotations

import numpy as np


def accuracy(y: np.ndarray, P: np.ndarray) -> float:
    return float(np.mean(P.argmax(axis=1) == y))


def macro_f1(y: np.ndarray, P: np.ndarray) -> float:
    pred = P.argmax(axis=1)
    scores = []
    for k in range(P.shape[1]):
        tp = np.sum((pred == k) & (y == k))
        fp = np.sum((pred == k) & (y != k))
        fn = np.sum((pred != k) & (y == k))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def log_loss(y: np.ndarray, P: np.ndarray) -> float:
    p = np.clip(P[np.arange(len(y)), y], 1e-15, 1.0)
    return float(-np.mean(np.log(p)))


def brier(y: np.ndarray, P: np.ndarray) -> float:
    onehot = np.eye(P.shape[1])[y]
    return float(np.mean(np.sum((P - onehot) ** 2, axis=1)))


def calibration_error(y: np.ndarray, P: np.ndarray, bins: int = 10) -> float:
    conf = P.max(axis=1)
    right = P.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(right[inside].mean() - conf[inside].mean())
    return float(total / len(y))


def scores(y, P) -> dict[str, float]:
    """Every score above for class indices ``y`` and probabilities ``P`` (samples, classes)."""
    y = np.asarray(y, dtype=np.int64)
    P = np.asarray(P, dtype=np.float64)
    return {"accuracy": accuracy(y, P), "macro_f1": macro_f1(y, P), "log_loss": log_loss(y, P),
            "brier": brier(y, P), "ece": calibration_error(y, P)}
