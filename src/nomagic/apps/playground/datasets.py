"""The playground's data sets: points ``(x1, x2)`` with a label, seeded and reproducible.

Classification (labels +1 / -1, or class indices 0..k-1 for ``blobs``): ``circle``, ``xor``,
``gauss``, ``spiral``, ``blobs`` (k Gaussian clusters, 3..6 classes) and ``planner`` (the training
planner's shipped data: a day's maximum temperature and precipitation (as log(1 + mm)), and
whether the athlete trained or rested). Regression (a real-valued label): ``plane`` and ``multigauss``. ``csv``: an
uploaded file ``x1,x2,label``.

The built-in sets live on the square [-6, 6]² as in TensorFlow Playground; ``noise`` is in percent
(0..50). The planner's and an uploaded set's points are in their own units: ``Data.domain`` gives
the plotted square, and the session maps it linearly onto [-6, 6]² for the network.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ...errors import InvalidInputError

CLASSIFICATION = ("circle", "xor", "gauss", "spiral", "blobs", "planner")
REGRESSION = ("plane", "multigauss")
DATASETS = CLASSIFICATION + REGRESSION + ("csv",)
RADIUS = 6.0  # the built-in sets' square: [-6, 6]²
MAX_UPLOAD_BYTES = 1_000_000
MAX_UPLOAD_ROWS = 5_000
MAX_CLASSES = 8


@dataclass
class Data:
    """Points ``X`` (n, 2) in data units, labels ``y`` (n,): ±1 for two classes, 0..k-1 for more,
    a real number for regression. ``domain`` = (x1 min, x1 max, x2 min, x2 max) of the plot."""

    X: np.ndarray
    y: np.ndarray
    problem: str  # "classification" or "regression"
    n_classes: int  # 2 for ±1 labels, k for class indices, 0 for regression
    domain: tuple[float, float, float, float] = (-RADIUS, RADIUS, -RADIUS, RADIUS)
    axes: tuple[str, str] = ("x₁", "x₂")
    class_names: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # the planner's day indices, say

    def __len__(self) -> int:
        return len(self.y)


# -- the built-in sets -------------------------------------------------------------------------


def _circle(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Half the points in a disc of radius 2.5 (+1), half in a ring 3.5..5 around it (-1)."""
    r_in, r_lo, r_hi = 2.5, 3.5, 5.0
    half = n // 2
    radius = np.concatenate([rng.uniform(0, r_in, half), rng.uniform(r_lo, r_hi, n - half)])
    angle = rng.uniform(0, 2 * math.pi, n)
    X = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    X += rng.uniform(-5, 5, X.shape) * noise
    y = np.where(np.hypot(X[:, 0], X[:, 1]) < (r_in + r_lo) / 2, 1.0, -1.0)
    return X, y


def _xor(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points, kept a little off the axes; the label is the sign of x1·x2."""
    X = rng.uniform(-5, 5, (n, 2))
    X += np.where(X > 0, 0.3, -0.3)
    y = np.where(X[:, 0] * X[:, 1] >= 0, 1.0, -1.0)
    X += rng.uniform(-5, 5, X.shape) * noise
    return X, y


def _gauss(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian clusters around (2, 2) (+1) and (-2, -2) (-1), wider with more noise."""
    sd = 0.5 + 3.5 * noise
    half = n // 2
    X = np.concatenate([rng.normal(2, sd, (half, 2)), rng.normal(-2, sd, (n - half, 2))])
    y = np.concatenate([np.ones(half), -np.ones(n - half)])
    return X, y


def _spiral(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals, each 1.75 turns out to radius 5."""
    half = n // 2
    parts = []
    for k, count in enumerate((half, n - half)):
        t = np.arange(count) / max(count, 1)
        r = 5 * t
        a = 1.75 * 2 * math.pi * t + k * math.pi
        P = np.stack([r * np.sin(a), r * np.cos(a)], axis=1) + rng.uniform(-1, 1, (count, 2)) * noise * 5
        parts.append(P)
    y = np.concatenate([np.ones(half), -np.ones(n - half)])
    return np.concatenate(parts), y


def _blobs(n: int, noise: float, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k Gaussian clusters on a circle of radius 3.5: class j around angle 2πj/k."""
    y = np.arange(n) % k
    angle = 2 * math.pi * y / k + math.pi / 4
    centre = 3.5 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    X = centre + rng.normal(0, 0.6 + 2.5 * noise, (n, 2))
    return X, y.astype(np.float64)


def _plane(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A tilted plane: label (x1 + x2) / 10 on uniform points, the inputs jittered by the noise."""
    X = rng.uniform(-RADIUS, RADIUS, (n, 2))
    y = (X[:, 0] + X[:, 1]) / 10
    X += rng.uniform(-RADIUS, RADIUS, X.shape) * noise
    return X, y


_BUMPS = np.array([[-4, 2.5, 1], [0, 2.5, -1], [4, 2.5, 1], [-4, -2.5, -1], [0, -2.5, 1], [4, -2.5, -1]])


def _multigauss(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Six Gaussian bumps of alternating sign: the label is the signed height of the nearest."""
    X = rng.uniform(-RADIUS, RADIUS, (n, 2))
    d2 = ((X[:, None, :] - _BUMPS[None, :, :2]) ** 2).sum(-1)
    near = d2.argmin(axis=1)
    y = _BUMPS[near, 2] * np.exp(-d2[np.arange(n), near] / 2) * 0.9
    X += rng.uniform(-RADIUS, RADIUS, X.shape) * noise
    return X, y


@lru_cache(maxsize=1)
def planner_days() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shipped athlete's days that have weather: (indices into the planner data, X = maximum
    temperature °C and log(1 + precipitation mm), whether the athlete trained). Built once."""
    d = planner_data()
    ok = np.flatnonzero(~np.isnan(d.weather.temp_max) & ~np.isnan(d.weather.precipitation))
    X = np.stack([d.weather.temp_max[ok], np.log1p(d.weather.precipitation[ok])], axis=1)  # rain is skewed
    y = np.where(d.classes[ok] == 0, -1.0, 1.0)  # class 0 is "rest"
    return ok, X, y


@lru_cache(maxsize=1)
def planner_data():
    """The planner's data from the shipped log and Seattle's weather (``planner.dataset.build``)."""
    from ..planner.dataset import build
    from ..planner.shipped import seattle_weather, shipped_log

    return build(shipped_log(), seattle_weather())


def _planner(n: int, noise: float, rng: np.random.Generator) -> Data:
    idx, X, y = planner_days()
    take = rng.permutation(len(y))[:n] if n < len(y) else rng.permutation(len(y))
    X = X[take].copy()
    X += rng.normal(0, 1, X.shape) * noise * np.array([5.0, 0.5])
    X[:, 1] = np.maximum(X[:, 1], 0.0)
    return Data(X, y[take].copy(), "classification", 2, domain=(-5.0, 40.0, -0.3, 4.3),
                axes=("max temperature °C", "log(1 + precipitation mm)"), class_names=["rest", "train"],
                extra={"days": idx[take]})


def generate(name: str, n: int, noise: float, seed: int, classes: int = 3) -> Data:
    """``n`` points of the built-in set ``name`` with ``noise`` percent noise, from ``seed``."""
    rng = np.random.default_rng(seed)
    z = noise / 100.0
    if name == "planner":
        return _planner(n, z, rng)
    if name == "blobs":
        X, y = _blobs(n, z, rng, classes)
        return Data(X, y, "classification", classes, class_names=[f"class {k}" for k in range(classes)])
    makers = {"circle": _circle, "xor": _xor, "gauss": _gauss, "spiral": _spiral, "plane": _plane,
              "multigauss": _multigauss}
    if name not in makers:
        raise InvalidInputError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    X, y = makers[name](n, z, rng)
    if name in REGRESSION:
        return Data(X, y, "regression", 0)
    return Data(X, y, "classification", 2, class_names=["-1", "+1"])


def split(n: int, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and the test points: ``ratio`` percent train, shuffled by ``seed``."""
    order = np.random.default_rng(seed + 1).permutation(n)
    k = min(max(int(round(n * ratio / 100.0)), 1), max(n - 1, 1))
    return np.sort(order[:k]), np.sort(order[k:])


# -- an uploaded CSV ------------------------------------------------------------------------------


def parse_csv(text: str) -> Data:
    """An uploaded ``x1,x2,label`` file (a header line is allowed). Labels that are whole numbers
    with at most 8 distinct values are classes (two of them: ±1), others a regression target.
    Raises ``InvalidInputError`` naming the line that is wrong, or the limit that is passed."""
    if not isinstance(text, str):
        raise InvalidInputError("upload: 'csv' must be the file's text")
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_UPLOAD_BYTES:
        raise InvalidInputError(f"upload: the file is {size:,} bytes; the limit is {MAX_UPLOAD_BYTES:,} bytes (1 MB)")
    rows: list[tuple[float, float, float]] = []
    reader = csv.reader(io.StringIO(text))
    for line_no, row in enumerate(reader, 1):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 3:
            raise InvalidInputError(f"upload: line {line_no} has {len(row)} fields; each line must be x1,x2,label")
        try:
            values = tuple(float(c) for c in row)
        except ValueError:
            if not rows and line_no == 1:  # a header
                continue
            raise InvalidInputError(f"upload: line {line_no} is not three numbers: {','.join(row)[:60]!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise InvalidInputError(f"upload: line {line_no} has a value that is not a finite number")
        rows.append(values)  # type: ignore[arg-type]
        if len(rows) > MAX_UPLOAD_ROWS:
            raise InvalidInputError(f"upload: more than {MAX_UPLOAD_ROWS:,} rows; the limit is {MAX_UPLOAD_ROWS:,}")
    if len(rows) < 4:
        raise InvalidInputError(f"upload: {len(rows)} data rows; give at least 4 lines x1,x2,label")
    A = np.array(rows, dtype=np.float64)
    X, labels = A[:, :2], A[:, 2]
    distinct = np.unique(labels)
    whole = np.all(labels == np.round(labels))
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = np.maximum((hi - lo) * 0.05, 1e-3)
    domain = (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))
    if whole and 2 <= len(distinct) <= MAX_CLASSES:
        if len(distinct) == 2:
            y = np.where(labels == distinct[1], 1.0, -1.0)
            names = [f"{distinct[0]:g}", f"{distinct[1]:g}"]
            return Data(X, y, "classification", 2, domain=domain, class_names=names)
        y = np.searchsorted(distinct, labels).astype(np.float64)
        return Data(X, y, "classification", len(distinct), domain=domain, class_names=[f"{v:g}" for v in distinct])
    if len(distinct) < 2:
        raise InvalidInputError("upload: every label is the same; give at least two classes or varying targets")
    return Data(X, labels, "regression", 0, domain=domain)


# -- input features -------------------------------------------------------------------------------

FEATURES = {
    "x1": lambda a, b: a,
    "x2": lambda a, b: b,
    "x1sq": lambda a, b: a * a,
    "x2sq": lambda a, b: b * b,
    "x1x2": lambda a, b: a * b,
    "sinx1": lambda a, b: np.sin(a),
    "sinx2": lambda a, b: np.sin(b),
}
FEATURE_LABELS = {"x1": "x₁", "x2": "x₂", "x1sq": "x₁²", "x2sq": "x₂²", "x1x2": "x₁x₂", "sinx1": "sin(x₁)",
                  "sinx2": "sin(x₂)"}


def features(P: np.ndarray, names: list[str]) -> np.ndarray:
    """The chosen input features of points ``P`` (n, 2), already on the [-6, 6] square: (n, k)."""
    a, b = P[:, 0], P[:, 1]
    return np.stack([FEATURES[f](a, b) for f in names], axis=1)
