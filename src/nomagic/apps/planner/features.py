"""What the models see when they plan day ``i``: only what is known the evening before.

Day features (the perceptron, the multi-layer network and the scikit-learn baselines):

* the calendar of day ``i``: its weekday (one-hot, 7) and the season (sin and cos of the day of
  the year, so that 31 December sits next to 1 January);
* the weather of day ``i`` (forecast, when planning): maximum and minimum temperature (°C),
  precipitation as log(1 + mm), wind (m/s), and whether it snows (condition "snow");
* the load picture going into day ``i``: fitness CTL and fatigue ATL at the end of day ``i−1``,
  form TSB of day ``i`` (CTL − ATL of day ``i−1``), the acute:chronic ratio and monotony of
  day ``i−1`` (1 and 0 while undefined).

Sequence features (the recurrent network): the ``WINDOW`` days before day ``i`` and day ``i``
itself, one step each: the calendar and weather of that day, its session class (one-hot) and
load, its CTL, ATL and acute:chronic ratio, and a flag on the last step, whose class and load
are not known yet (zeros). The network reads the history itself — which days were hard, when
the last long run was — where the day features only summarise it in the load numbers.

Every feature is standardised with the mean and standard deviation of the training days; a
missing value (no weather that day) becomes 0, the training average.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from nomagic.errors import InvalidInputError

from .dataset import PlannerData
from .sessions import CLASSES

WINDOW = 21
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_CALENDAR = [f"weekday: {d}" for d in WEEKDAYS] + ["season (sin)", "season (cos)"]
_WEATHER = ["max temperature", "min temperature", "precipitation", "wind", "snow"]
DAY_FEATURES: tuple[str, ...] = tuple(_CALENDAR + _WEATHER + [
    "fitness (CTL)", "fatigue (ATL)", "form (TSB)", "acute:chronic ratio", "monotony"])
STEP_FEATURES: tuple[str, ...] = tuple(_CALENDAR + _WEATHER + [f"past days: {c}" for c in CLASSES] + [
    "past days: load", "past days: fitness (CTL)", "past days: fatigue (ATL)", "past days: acute:chronic ratio",
    "the day being planned"])


def _calendar(dates: np.ndarray) -> np.ndarray:
    days = dates.astype("datetime64[D]").astype(np.int64)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    out = np.zeros((len(dates), 9))
    out[np.arange(len(dates)), weekday] = 1.0
    year_start = dates.astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    angle = 2 * np.pi * (days - year_start) / 365.25
    out[:, 7], out[:, 8] = np.sin(angle), np.cos(angle)
    return out


def _weather(data: PlannerData, idx: np.ndarray) -> np.ndarray:
    w = data.weather
    snow = np.where(w.condition[idx] == "unknown", np.nan, (w.condition[idx] == "snow").astype(float))
    return np.column_stack([w.temp_max[idx], w.temp_min[idx], np.log1p(w.precipitation[idx]), w.wind[idx], snow])


def _before(a: np.ndarray, idx: np.ndarray, fill: float) -> np.ndarray:
    """``a[i − 1]`` for each i (``fill`` where i = 0 or the value is undefined)."""
    out = np.where(idx > 0, a[np.maximum(idx - 1, 0)], fill)
    return np.where(np.isnan(out), fill, out)


def day_matrix(data: PlannerData, idx) -> np.ndarray:
    """Raw day features (samples, len(DAY_FEATURES)) for the days at ``idx``."""
    idx = np.asarray(idx, dtype=np.int64)
    t = data.table
    load = np.column_stack([_before(t.ctl, idx, 0.0), _before(t.atl, idx, 0.0),
                            np.where(np.isnan(t.tsb[idx]), 0.0, t.tsb[idx]),
                            _before(t.acwr, idx, 1.0), _before(t.monotony, idx, 0.0)])
    return np.hstack([_calendar(data.dates[idx]), _weather(data, idx), load])


def sequence_tensor(data: PlannerData, idx) -> np.ndarray:
    """Raw sequence features (samples, WINDOW + 1, len(STEP_FEATURES)); days before the log
    count as rest days with no load and unknown weather."""
    idx = np.asarray(idx, dtype=np.int64)
    n, L = len(data), WINDOW + 1
    steps = idx[:, None] + np.arange(-WINDOW, 1)[None, :]  # (samples, L)
    flat = steps.ravel()
    inside = flat >= 0
    safe = np.maximum(flat, 0)
    if np.any(flat >= n):
        raise InvalidInputError("a sequence reaches past the last day of the data")
    t = data.table
    rows = np.zeros((len(flat), len(STEP_FEATURES)))
    rows[:, :9] = _calendar(data.dates[0] + flat.astype("timedelta64[D]"))
    rows[:, 9:14] = np.where(inside[:, None], _weather(data, safe), np.nan)
    cls = data.classes[safe]
    onehot = np.zeros((len(flat), len(CLASSES)))
    known = inside & (cls >= 0)
    onehot[known, cls[known]] = 1.0
    onehot[~inside, 0] = 1.0  # before the log: rest
    rows[:, 14:18] = onehot
    rows[:, 18] = np.where(inside, t.load[safe], 0.0)
    rows[:, 19] = np.where(inside, t.ctl[safe], 0.0)
    rows[:, 20] = np.where(inside, t.atl[safe], 0.0)
    rows[:, 21] = np.where(inside, np.nan_to_num(t.acwr[safe], nan=1.0), 1.0)
    seq = rows.reshape(len(idx), L, -1)
    seq[:, -1, 14:22] = 0.0  # the day being planned: class, load and its own end-of-day state unknown
    seq[:, -1, 19:22] = seq[:, -2, 19:22]  # ... but the state going into it is known
    seq[:, -1, 22] = 1.0
    return seq


@dataclass(frozen=True)
class Scaler:
    """Standardisation learned on the training samples: ``(x − mean) / std``, NaN → 0."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Scaler:
        flat = X.reshape(-1, X.shape[-1])
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column with no value at all: mean 0, std 1
            mean, std = np.nanmean(flat, axis=0), np.nanstd(flat, axis=0)
        mean = np.nan_to_num(mean)
        std = np.where(np.isnan(std) | (std < 1e-9), 1.0, std)
        return cls(mean, std)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.nan_to_num((X - self.mean) / self.std, nan=0.0)

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> Scaler:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


def sample_days(data: PlannerData) -> np.ndarray:
    """The days a model can learn from: a full window of history before them, and weather."""
    idx = np.arange(WINDOW, len(data))
    return idx[data.has_weather[idx]]
