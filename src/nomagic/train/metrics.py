"""Metrics: accuracy for classification losses, mean absolute error for mse, and your own.

A metric is a function ``fn(y_true, y_pred) -> float``: ``y_true`` are the targets as the loss
sees them (one-hot rows for ``cross_entropy``), ``y_pred`` the network's outputs (probabilities
after a softmax or sigmoid output). ``nm.fit(..., metrics=[fn, ...])`` names each by its
``__name__``; ``metrics={"name": fn}`` names them yourself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, NomagicError

RESERVED = frozenset({"epoch", "loss", "seconds"})


@dataclass(frozen=True)
class Metric:
    """A named metric. ``kind`` is "accuracy" (argmax for cross-entropy), "binary_accuracy"
    (threshold 0.5), "mae" or "user" (``fn`` is then the user's function)."""

    name: str
    kind: str
    fn: Callable | None = None


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The fraction of rows whose largest output is the target class."""
    return float(np.mean(y_pred.argmax(axis=-1) == y_true.argmax(axis=-1)))


def binary_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The fraction of outputs on the target's side of 0.5."""
    return float(np.mean((y_pred >= 0.5) == (y_true >= 0.5)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error over every output."""
    return float(np.mean(np.abs(y_pred - y_true)))


_BUILTIN = {"accuracy": accuracy, "binary_accuracy": binary_accuracy, "mae": mae}


def builtin_metrics(loss_name: str) -> list[Metric]:
    """The metrics every fit reports for a loss: accuracy for classification, mae for mse."""
    if loss_name == "cross_entropy":
        return [Metric("accuracy", "accuracy")]
    if loss_name == "binary_cross_entropy":
        return [Metric("accuracy", "binary_accuracy")]
    if loss_name == "mse":
        return [Metric("mae", "mae")]
    return []


def resolve_metrics(loss_name: str, metrics) -> list[Metric]:
    """The built-in metrics for the loss, then the user's: a list of functions (or the names
    "accuracy" and "mae"), or a dict name -> function. Raises a clear error for a bad one."""
    out = builtin_metrics(loss_name)
    if metrics is None:
        return out
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
    elif isinstance(metrics, (list, tuple)):
        items = [(None, m) for m in metrics]
    else:
        raise InvalidInputError(f"metrics must be a list of functions or a dict name -> function; "
                                f"got {type(metrics).__name__}")
    for name, fn in items:
        if isinstance(fn, str) and name is None:
            if fn in ("accuracy", "mae"):
                if any(m.name == fn for m in out):
                    continue
                if fn == "accuracy" and loss_name not in ("cross_entropy", "binary_cross_entropy"):
                    raise InvalidInputError(f"metric 'accuracy' needs a classification loss; the loss is {loss_name}")
                out.append(Metric(fn, fn))
                continue
            raise InvalidInputError(f"unknown metric {fn!r}: give a function fn(y_true, y_pred) -> float, "
                                    "or 'accuracy' or 'mae'")
        if not callable(fn):
            label = repr(name) if name is not None else repr(fn)
            raise InvalidInputError(f"metric {label} is not callable: a metric is a function "
                                    "fn(y_true, y_pred) -> float")
        if name is None:
            name = getattr(fn, "__name__", None)
            if not isinstance(name, str) or name == "<lambda>":
                raise InvalidInputError(f"metric {fn!r} has no usable name; give metrics as a dict "
                                        "{name: fn}")
        if not isinstance(name, str) or not name or name in RESERVED or name.startswith("val_"):
            raise InvalidInputError(f"metric name {name!r} is not allowed (empty, reserved, or "
                                    "starting with 'val_')")
        if any(m.name == name for m in out):
            raise InvalidInputError(f"two metrics are named {name!r}")
        out.append(Metric(name, "user", fn))
    return out


def check_value(metric: Metric, value) -> float:
    """A user metric's result as a float; a clear error naming it when it is not a finite number."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok and isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iuf":
        ok = True
    if not ok:
        raise NomagicError(f"metric {metric.name!r} returned {type(value).__name__} {value!r:.60}; "
                           "a metric must return a finite number")
    value = float(value)
    if not math.isfinite(value):
        raise NomagicError(f"metric {metric.name!r} returned {value}; a metric must return a finite number")
    return value


def call_user(metric: Metric, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    try:
        value = metric.fn(y_true, y_pred)
    except NomagicError:
        raise
    except Exception as exc:
        raise NomagicError(f"metric {metric.name!r} raised {type(exc).__name__}: {exc}") from exc
    return check_value(metric, value)


def compute(metric: Metric, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The metric on whole arrays (validation data, ``Model.evaluate``)."""
    if metric.kind == "user":
        return call_user(metric, y_true, y_pred)
    return _BUILTIN[metric.kind](y_true, y_pred)
