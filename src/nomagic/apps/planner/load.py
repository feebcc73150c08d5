"""Training load as coaches compute it: a number per session, a number per day, and the
performance-management chart (fitness, fatigue, form) that the planner reasons with.

Per session (``session_load``):

- **TRIMP** (Banister): ``minutes × HRr × 0.64 × e^(k·HRr)`` with the heart-rate reserve
  ``HRr = (avg_hr − hr_rest) / (hr_max − hr_rest)`` clipped to [0, 1] and ``k`` = 1.92 for men,
  1.67 for women.
- **sRPE** (Foster's session RPE): ``RPE × minutes``.
- **duration**: ``minutes × DURATION_FACTORS[class]``, a TRIMP-equivalent per minute: the men's
  TRIMP of a session held at HRr 0.60 (easy: 0.384·e^1.152 ≈ 1.2), 0.65 (long: ≈ 1.4) and
  0.75 (hard, warm-up included: ≈ 2.0), so that sessions without heart rate land on the TRIMP scale.

Minutes are moving time where known, else elapsed duration. ``method="auto"`` takes TRIMP where
the session has an average heart rate, else sRPE where it has an RPE, else the duration estimate —
all on TRIMP's scale: sRPE runs larger (an easy 45 min at RPE 3 is 135 sRPE but ≈ 55 TRIMP), so
``load_table`` puts an RPE-only session on TRIMP's scale with the athlete's own ratio, the median
of TRIMP / sRPE over the log's sessions that have both (``srpe_scale``; at least
``MIN_CALIBRATION`` such sessions, else sRPE stays as it is). ``"trimp"`` and ``"srpe"`` refuse
sessions that lack what they need, and ``"srpe"`` is never rescaled.

Per day: the sum of the day's sessions, 0 on days without, over every date of the range.

The chart (``pmc``), with GoldenCheetah's exponential form, all starting from 0:

- ``CTL_t = CTL_{t−1}·e^(−1/ctl_days) + load_t·(1 − e^(−1/ctl_days))`` (fitness, 42 days);
  ATL the same with ``atl_days`` (fatigue, 7), and C28 the same with ``chronic_days`` (28);
- form going into day t: ``TSB_t = CTL_{t−1} − ATL_{t−1}`` (0 on the first day);
- acute:chronic workload ratio ``ACWR_t = ATL_t / C28_t`` (NaN while C28 is 0);
- Foster's monotony = mean / population std of the last 7 daily loads (rest days are 0; NaN for
  the first 6 days and when the std is 0), strain = 7-day sum × monotony;
- ramp = ``CTL_t − CTL_{t−7}`` (NaN for the first 7 days).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from nomagic.errors import InvalidInputError

from .records import Activity, TrainingLog
from .sessions import session_class, session_minutes

METHODS = ("auto", "trimp", "srpe", "duration")
USE_AUTO = "use the method 'auto' (the command line's --load auto)"
#: Banister's weighting exponent k by sex.
TRIMP_K = {"male": 1.92, "female": 1.67}
#: TRIMP-equivalent load per minute for sessions known only by duration (see the module docstring).
DURATION_FACTORS = {"easy": 1.2, "long": 1.4, "hard": 2.0}
#: Days in Foster's monotony and strain window.
WEEK = 7
#: sessions with both heart rate and RPE needed to put RPE-only sessions on TRIMP's scale
MIN_CALIBRATION = 5


@dataclass(frozen=True)
class LoadSettings:
    """How load is computed. ``hr_max=None`` takes the highest heart rate in the log."""

    method: str = "auto"
    hr_rest: float = 60.0
    hr_max: float | None = None
    sex: str = "male"
    ctl_days: float = 42.0
    atl_days: float = 7.0
    chronic_days: float = 28.0
    #: with ``method="auto"``: sRPE × this puts an RPE-only session on TRIMP's scale (None: 1)
    srpe_scale: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidInputError(f"load method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.sex not in TRIMP_K:
            raise InvalidInputError(f"sex {self.sex!r} is not one of {', '.join(TRIMP_K)}")
        for name in ("ctl_days", "atl_days", "chronic_days"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidInputError(f"{name} must be a positive number of days; got {value!r}")
        if self.hr_max is not None and not self.hr_max > self.hr_rest:
            raise InvalidInputError(f"hr_max {self.hr_max} must be above hr_rest {self.hr_rest}")
        if self.srpe_scale is not None and not (math.isfinite(self.srpe_scale) and self.srpe_scale > 0):
            raise InvalidInputError(f"srpe_scale must be a positive number; got {self.srpe_scale!r}")


def log_hr_max(activities: Iterable[Activity]) -> float | None:
    """The highest heart rate in a log: the largest ``max_hr``, else the largest ``avg_hr``; None if neither."""
    acts = list(activities)
    peaks = [a.max_hr for a in acts if a.max_hr is not None]
    if not peaks:
        peaks = [a.avg_hr for a in acts if a.avg_hr is not None]
    return float(max(peaks)) if peaks else None


def trimp(minutes: float, avg_hr: float, hr_rest: float, hr_max: float, sex: str = "male") -> float:
    """Banister's TRIMP of one session."""
    if sex not in TRIMP_K:
        raise InvalidInputError(f"sex {sex!r} is not one of {', '.join(TRIMP_K)}")
    if not hr_max > hr_rest:
        raise InvalidInputError(f"hr_max {hr_max} must be above hr_rest {hr_rest}")
    hrr = min(1.0, max(0.0, (avg_hr - hr_rest) / (hr_max - hr_rest)))
    return minutes * hrr * 0.64 * math.exp(TRIMP_K[sex] * hrr)


def srpe(minutes: float, rpe: float) -> float:
    """Foster's session RPE."""
    return rpe * minutes


def duration_load(minutes: float, session: str) -> float:
    """The TRIMP-equivalent estimate of a session known only by its duration and class."""
    return minutes * DURATION_FACTORS[session]


def session_load(activity: Activity, settings: LoadSettings, hr_max: float | None) -> tuple[float, str]:
    """The load of one session and the method that gave it ("trimp", "srpe" or "duration")."""
    minutes = session_minutes(activity)
    where = f"the session of {activity.date} ({activity.source or activity.kind or activity.sport})"
    method = settings.method
    if method == "auto":
        if activity.avg_hr is not None and hr_max is not None:
            method = "trimp"
        elif activity.rpe is not None:
            return srpe(minutes, activity.rpe) * (settings.srpe_scale or 1.0), "srpe"
        else:
            method = "duration"
    if method == "trimp":
        if activity.avg_hr is None or hr_max is None:
            raise InvalidInputError(f"method 'trimp' needs an average heart rate; {where} has none: {USE_AUTO}")
        return trimp(minutes, activity.avg_hr, settings.hr_rest, hr_max, settings.sex), "trimp"
    if method == "srpe":
        if activity.rpe is None:
            raise InvalidInputError(f"method 'srpe' needs an RPE; {where} has none: {USE_AUTO}")
        return srpe(minutes, activity.rpe), "srpe"
    return duration_load(minutes, session_class(activity, hr_max)), "duration"


def srpe_scale(activities: Iterable[Activity], settings: LoadSettings, hr_max: float | None) -> float | None:
    """The median TRIMP / sRPE over the sessions that have both (None with fewer than
    ``MIN_CALIBRATION`` of them, or no hr_max)."""
    if hr_max is None or not hr_max > settings.hr_rest:
        return None
    ratios = []
    for a in activities:
        if a.avg_hr is not None and a.rpe is not None and a.rpe > 0:
            minutes = session_minutes(a)
            if minutes > 0:
                ratios.append(trimp(minutes, a.avg_hr, settings.hr_rest, hr_max, settings.sex) / srpe(minutes, a.rpe))
    return float(np.median(ratios)) if len(ratios) >= MIN_CALIBRATION and np.median(ratios) > 0 else None


def _activities(log: TrainingLog | Iterable[Activity]) -> list[Activity]:
    return list(log.activities if isinstance(log, TrainingLog) else log)


def _day(value: dt.date | np.datetime64 | str, what: str) -> np.datetime64:
    try:
        return np.datetime64(value, "D")
    except (ValueError, TypeError):
        raise InvalidInputError(f"{what} {value!r} is not a date like 2015-12-31") from None


def daily_loads(log: TrainingLog | Iterable[Activity], settings: LoadSettings | None = None,
                end: dt.date | np.datetime64 | str | None = None,
                start: dt.date | np.datetime64 | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dates (``datetime64[D]``, every day from ``start`` (default: the first log day) to ``end``
    (default: the last)) and the summed load of each; sessions outside the range are left out."""
    settings = settings or LoadSettings()
    acts = _activities(log)
    if not acts and (start is None or end is None):
        raise InvalidInputError("the training log has no activities: nothing to compute load from")
    first = _day(start, "start") if start is not None else min(np.datetime64(a.date, "D") for a in acts)
    last = _day(end, "end") if end is not None else max(np.datetime64(a.date, "D") for a in acts)
    if last < first:
        raise InvalidInputError(f"end {last} lies before the start {first}")
    hr_max = settings.hr_max if settings.hr_max is not None else log_hr_max(acts)
    if hr_max is not None and not hr_max > settings.hr_rest:
        raise InvalidInputError(f"the log's highest heart rate {hr_max} is not above hr_rest {settings.hr_rest}")
    dates = np.arange(first, last + 1, dtype="datetime64[D]")
    loads = np.zeros(len(dates))
    for a in acts:
        i = int((np.datetime64(a.date, "D") - first).astype(int))
        if 0 <= i < len(dates):
            loads[i] += session_load(a, settings, hr_max)[0]
    return dates, loads


@dataclass(frozen=True, eq=False)
class LoadTable:
    """The chart, one row per day, as float64 columns. ``planned`` marks projected days."""

    dates: np.ndarray
    load: np.ndarray
    ctl: np.ndarray
    atl: np.ndarray
    tsb: np.ndarray
    acwr: np.ndarray
    monotony: np.ndarray
    strain: np.ndarray
    ramp: np.ndarray
    planned: np.ndarray
    settings: LoadSettings = field(default_factory=LoadSettings)

    COLUMNS = ("load", "ctl", "atl", "tsb", "acwr", "monotony", "strain", "ramp")

    def __len__(self) -> int:
        return len(self.dates)

    def rows(self) -> Iterator[dict]:
        """One dict per day: ``date`` as ISO text, then the columns, with None for NaN."""
        cols = [(c, getattr(self, c).tolist()) for c in self.COLUMNS]
        for i, day in enumerate(self.dates.astype(str).tolist()):
            row: dict = {"date": day}
            for c, values in cols:
                v = values[i]
                row[c] = None if math.isnan(v) else v
            yield row


def ewma_step(previous: float, load: float, days: float) -> float:
    """One day of the exponential average: ``x_t = x_{t−1}·e^(−1/days) + load_t·(1 − e^(−1/days))``."""
    decay = math.exp(-1.0 / days)
    return previous * decay + load * (1.0 - decay)


def _ewma(loads: np.ndarray, days: float) -> np.ndarray:
    """``ewma_step`` over every day, from x = 0."""
    out = np.empty(len(loads))
    x = 0.0
    for i, value in enumerate(loads.tolist()):
        x = ewma_step(x, value, days)
        out[i] = x
    return out


def pmc(dates: np.ndarray, loads: Sequence[float] | np.ndarray, settings: LoadSettings | None = None,
        planned: np.ndarray | None = None) -> LoadTable:
    """The performance-management chart of consecutive daily loads (formulas in the module docstring)."""
    settings = settings or LoadSettings()
    dates = np.asarray(dates, dtype="datetime64[D]")
    load = np.asarray(loads, dtype=np.float64)
    if load.ndim != 1 or load.shape != dates.shape:
        raise InvalidInputError(f"need one load per date; got {load.shape} loads for {dates.shape} dates")
    if len(dates) > 1 and np.any(np.diff(dates) != np.timedelta64(1, "D")):
        raise InvalidInputError("dates must be consecutive days")
    if not np.all(np.isfinite(load)) or np.any(load < 0):
        raise InvalidInputError("daily loads must be finite and not negative")
    n = len(load)
    ctl = _ewma(load, settings.ctl_days)
    atl = _ewma(load, settings.atl_days)
    chronic = _ewma(load, settings.chronic_days)
    tsb = np.zeros(n)
    tsb[1:] = ctl[:-1] - atl[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        acwr = np.where(chronic > 0, atl / np.where(chronic > 0, chronic, 1.0), np.nan)
    monotony = np.full(n, np.nan)
    strain = np.full(n, np.nan)
    if n >= WEEK:
        window = np.lib.stride_tricks.sliding_window_view(load, WEEK)
        mean = window.mean(axis=1)
        std = window.std(axis=1)
        flat = std <= 1e-12 * np.maximum(mean, 1.0)  # 0 up to rounding: monotony is undefined
        with np.errstate(divide="ignore", invalid="ignore"):
            mono = np.where(flat, np.nan, mean / np.where(flat, 1.0, std))
        monotony[WEEK - 1:] = mono
        strain[WEEK - 1:] = window.sum(axis=1) * mono
    ramp = np.full(n, np.nan)
    ramp[WEEK:] = ctl[WEEK:] - ctl[:-WEEK]
    planned = np.zeros(n, dtype=bool) if planned is None else np.asarray(planned, dtype=bool)
    return LoadTable(dates, load, ctl, atl, tsb, acwr, monotony, strain, ramp, planned, settings)


def load_table(log: TrainingLog | Iterable[Activity], settings: LoadSettings | None = None,
               end: dt.date | np.datetime64 | str | None = None) -> LoadTable:
    """Daily loads from the first log day to ``end`` (default: the last log day), and their chart."""
    settings = settings or LoadSettings()
    acts = _activities(log)
    if settings.hr_max is None:
        peak = log_hr_max(acts)
        if peak is not None and not peak > settings.hr_rest:
            raise InvalidInputError(f"the log's highest heart rate {peak} is not above hr_rest {settings.hr_rest}")
        settings = replace(settings, hr_max=peak)
    if settings.method == "auto" and settings.srpe_scale is None:
        settings = replace(settings, srpe_scale=srpe_scale(acts, settings, settings.hr_max))
    dates, loads = daily_loads(acts, settings, end=end)
    return pmc(dates, loads, settings)


def project(table: LoadTable, future_loads: Sequence[float] | np.ndarray) -> LoadTable:
    """The chart rolled forward over planned loads for the days after the table's last day.

    The recursions start from 0, so rolling forward is the same as recomputing over the joined
    loads; the new days are marked ``planned``.
    """
    future = np.asarray(future_loads, dtype=np.float64).reshape(-1)
    if not len(table):
        raise InvalidInputError("cannot project an empty load table")
    start = table.dates[-1] + 1
    dates = np.concatenate([table.dates, np.arange(start, start + len(future), dtype="datetime64[D]")])
    planned = np.concatenate([table.planned, np.ones(len(future), dtype=bool)])
    return pmc(dates, np.concatenate([table.load, future]), table.settings, planned)
