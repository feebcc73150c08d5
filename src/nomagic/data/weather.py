"""Data shipped with nomagic, and cutting time series into training windows.

``nm.load_weather()`` reads Seattle's daily weather 2012–2015 (public NOAA observations, as
distributed by the ``vega_datasets`` package; see ``nomagic/data/SOURCES.md``) from a copy inside
the package: no network access. ``nm.load_weather(path)`` reads your own file in the same format.

``nm.windows(series, length)`` turns one long series into the (X, Y) pairs a recurrent network
trains on: the last ``length`` days, and the value ``horizon`` days after them.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..errors import (
    EmptyDataError,
    InvalidInputError,
    NonFiniteError,
    ShapeError,
    UnknownNameError,
)

WEATHER_FILE = "seattle-weather.csv"
WEATHER_HEADER = ("date", "precipitation", "temp_max", "temp_min", "wind", "weather")
NUMERIC_COLUMNS = ("precipitation", "temp_max", "temp_min", "wind")


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Weather:
    """Daily weather: one entry per day, in date order. Arrays are read-only.

    ``dates`` is ``datetime64[D]``; ``precipitation`` (mm), ``temp_max`` and ``temp_min`` (°C) and
    ``wind`` (m/s) are float64; ``condition`` is a str array (``"sun"``, ``"rain"``, ...: the
    CSV's ``weather`` column).
    """

    dates: np.ndarray
    precipitation: np.ndarray
    temp_max: np.ndarray
    temp_min: np.ndarray
    wind: np.ndarray
    condition: np.ndarray

    COLUMNS = NUMERIC_COLUMNS

    def __len__(self) -> int:
        return len(self.dates)

    def __repr__(self) -> str:
        if not len(self):
            return "Weather(0 days)"
        return f"Weather({len(self)} days, {self.dates[0]} .. {self.dates[-1]})"

    def as_array(self, columns: Sequence[str] | str = NUMERIC_COLUMNS) -> np.ndarray:
        """The chosen numeric columns side by side: a new float64 array of shape (days, columns).

        ``columns`` names any of ``precipitation``, ``temp_max``, ``temp_min``, ``wind`` (in any
        order, repeats allowed); a single name gives one column, still 2-D.
        """
        if isinstance(columns, str):
            columns = (columns,)
        columns = tuple(columns)
        if not columns:
            raise InvalidInputError(f"as_array needs at least one column; choose from {', '.join(NUMERIC_COLUMNS)}")
        for c in columns:
            if c not in NUMERIC_COLUMNS:
                hint = " (it holds words: compare weather.condition == 'rain' instead)" if c in (
                    "condition", "weather") else ""
                raise UnknownNameError(f"unknown weather column {c!r}{hint}; choose from "
                                       f"{', '.join(NUMERIC_COLUMNS)}")
        return np.stack([getattr(self, c) for c in columns], axis=1).astype(np.float64)

    def between(self, start=None, end=None) -> Weather:
        """The days from ``start`` to ``end``, both included (``None``: open on that side).

        Dates are ``"YYYY-MM-DD"`` strings, ``datetime.date`` or ``numpy.datetime64`` values:
        ``weather.between("2012-01-01", "2014-12-31")`` is the first three years.
        """
        lo = _as_day(start, "start") if start is not None else None
        hi = _as_day(end, "end") if end is not None else None
        if lo is not None and hi is not None and hi < lo:
            raise InvalidInputError(f"between: end {hi} lies before start {lo}")
        keep = np.ones(len(self), dtype=bool)
        if lo is not None:
            keep &= self.dates >= lo
        if hi is not None:
            keep &= self.dates <= hi
        return Weather(*(_frozen(getattr(self, f)[keep].copy()) for f in _FIELDS))


_FIELDS = ("dates", "precipitation", "temp_max", "temp_min", "wind", "condition")


def _as_day(value, what: str) -> np.datetime64:
    if isinstance(value, str):
        try:
            return np.datetime64(_parse_date(value), "D")
        except ValueError:
            raise InvalidInputError(f"{what} date {value!r} is not a date like 2014-12-31") from None
    if isinstance(value, (_dt.date, np.datetime64)):
        try:
            return np.datetime64(value, "D")
        except (ValueError, TypeError):
            pass
    raise InvalidInputError(f"{what} must be a date such as '2014-12-31'; got {value!r}")


def _parse_date(text: str) -> _dt.date:
    """``YYYY-MM-DD`` or ``YYYY/MM/DD`` (the shipped file's spelling); ValueError otherwise."""
    text = text.strip()
    parts = text.replace("/", "-").split("-")
    if len(parts) != 3 or len(parts[0]) != 4 or not all(p.isdigit() and p for p in parts):
        raise ValueError(text)
    return _dt.date(int(parts[0]), int(parts[1]), int(parts[2]))


def weather_path() -> str:
    """Where the shipped weather file lives inside the installed package."""
    return str(resources.files("nomagic").joinpath("data", WEATHER_FILE))


def load_weather(path: str | os.PathLike | None = None) -> Weather:
    """Read daily weather from a CSV file (by default the Seattle 2012–2015 file shipped inside
    nomagic) into a ``Weather`` of NumPy arrays.

    The file needs a header with the columns ``date, precipitation, temp_max, temp_min, wind,
    weather`` (in any order; extra columns are ignored), one row per day, dates as YYYY-MM-DD or
    YYYY/MM/DD in strictly increasing order, and finite numbers. Anything else raises a
    ``NomagicError`` that names the file, the line and the problem.
    """
    if path is None:
        path = weather_path()
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"path must be a file name; got {type(path).__name__}")
    name = os.fspath(path)
    if not os.path.exists(name):
        raise InvalidInputError(f"weather file {name!r} does not exist")
    if os.path.isdir(name):
        raise InvalidInputError(f"weather file {name!r} is a directory, not a CSV file")
    try:
        with open(name, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise InvalidInputError(f"{name}: not a text (UTF-8) CSV file") from None
    except (OSError, csv.Error) as exc:
        raise InvalidInputError(f"{name}: could not be read as CSV: {exc}") from None
    rows = [(i + 1, r) for i, r in enumerate(rows) if any(cell.strip() for cell in r)]
    if not rows:
        raise EmptyDataError(f"{name} is empty: expected a header "
                             f"{','.join(WEATHER_HEADER)} and one row per day")
    _, header = rows[0]
    header = [h.strip() for h in header]
    missing = [c for c in WEATHER_HEADER if c not in header]
    if missing:
        raise InvalidInputError(f"{name}: missing column(s) {', '.join(missing)}; the header must "
                                f"name {','.join(WEATHER_HEADER)} (found {','.join(header)})")
    dupes = sorted({h for h in header if h in WEATHER_HEADER and header.count(h) > 1})
    if dupes:
        raise InvalidInputError(f"{name}: column(s) {', '.join(dupes)} appear more than once")
    col = {c: header.index(c) for c in WEATHER_HEADER}
    body = rows[1:]
    if not body:
        raise EmptyDataError(f"{name} has a header but no days")
    days: list[_dt.date] = []
    numbers = {c: [] for c in NUMERIC_COLUMNS}
    condition: list[str] = []
    for line, row in body:
        if len(row) != len(header):
            raise InvalidInputError(f"{name}, line {line}: {len(row)} fields, but the header has "
                                    f"{len(header)}")
        text = row[col["date"]]
        try:
            day = _parse_date(text)
        except ValueError:
            raise InvalidInputError(f"{name}, line {line}: date {text!r} is not a date like "
                                    "2012-01-31 or 2012/01/31") from None
        if days and day <= days[-1]:
            what = "repeats" if day == days[-1] else "comes before"
            raise InvalidInputError(f"{name}, line {line}: date {day} {what} the previous date "
                                    f"{days[-1]}; dates must be strictly increasing (sort the "
                                    "file and drop duplicate days)")
        days.append(day)
        for c in NUMERIC_COLUMNS:
            text = row[col[c]].strip()
            try:
                value = float(text)
            except ValueError:
                raise InvalidInputError(f"{name}, line {line}: {c} {text!r} is not a number") from None
            if not math.isfinite(value):
                raise NonFiniteError(f"{name}, line {line}: {c} is {text!r}; every value must be a "
                                     "finite number (fill in or drop missing days)")
            numbers[c].append(value)
        word = row[col["weather"]].strip()
        if not word:
            raise InvalidInputError(f"{name}, line {line}: the weather column is empty")
        condition.append(word)
    return Weather(
        _frozen(np.array(days, dtype="datetime64[D]")),
        *(_frozen(np.array(numbers[c], dtype=np.float64)) for c in NUMERIC_COLUMNS),
        _frozen(np.array(condition, dtype=str)),
    )


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{what} must be a positive integer; got {value!r}")
    return int(value)


def windows(series, length: int, horizon: int = 1, target=None) -> tuple[np.ndarray, np.ndarray]:
    """Cut a time series into training windows: ``(X, Y)`` for a recurrent network.

    ``series`` has shape (time,) or (time, features) (a 1-D series is one feature). With
    ``n = time - length - horizon + 1`` windows:

    - ``X[i] = series[i : i + length]``, shape (n, length, features): window ``i`` covers the
      steps ``t = i, ..., i + length - 1``;
    - ``Y[i] = series[i + length - 1 + horizon, target]``, shape (n, targets): the value
      ``horizon`` steps after the window's last step (``horizon=1``: the very next step).

    ``target`` picks the columns of Y: None for all of them, an int for one column (Y stays 2-D,
    shape (n, 1)) or a list of ints; negative indices count from the end. X and Y are new float
    arrays (float64 unless the series is float32). Raises a ``NomagicError`` for a series that
    is too short for even one window, a non-positive ``length`` or ``horizon``, an input that is
    not 1-D or 2-D, a target out of range, and NaN or infinity.
    """
    length = _positive_int(length, "length")
    horizon = _positive_int(horizon, "horizon")
    try:
        s = np.asarray(series)
    except Exception:  # ragged lists
        raise ShapeError("the series could not be read as an array: it is ragged (rows of different "
                         "lengths)") from None
    if s.dtype == object:
        raise ShapeError("the series is ragged (rows of different lengths)")
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == np.bool_) or np.iscomplexobj(s):
        raise InvalidInputError(f"the series must hold real numbers; got dtype {s.dtype}")
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2:
        raise ShapeError(f"the series must be 1-D (time,) or 2-D (time, features); got shape "
                         f"{np.shape(series)} — windows() makes the 3-D batches itself")
    T, F = s.shape
    if F == 0:
        raise ShapeError("the series has no features (shape (time, 0))")
    dt = s.dtype if s.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    s = s.astype(dt, copy=False)
    if not np.all(np.isfinite(s)):
        raise NonFiniteError("the series holds NaN or infinity; fill in or drop those steps first")
    if target is None:
        cols = list(range(F))
    else:
        items = [target] if isinstance(target, (int, np.integer)) and not isinstance(target, bool) \
            else target
        try:
            cols = list(items)
        except TypeError:
            raise InvalidInputError(f"target must be a column index or a list of them; got {target!r}") from None
        if not cols:
            raise InvalidInputError("target is an empty list: name at least one column")
        for c in cols:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not -F <= c < F:
                raise InvalidInputError(f"target column {c!r} is out of range for a series with {F} "
                                        f"feature(s); use 0..{F - 1}")
        cols = [int(c) % F for c in cols]
    n = T - length - horizon + 1
    if n < 1:
        raise ShapeError(f"a window of length {length} plus a horizon of {horizon} needs at least "
                         f"{length + horizon} steps; the series has {T}")
    X = np.lib.stride_tricks.sliding_window_view(s, length, axis=0)[:n]  # (n, F, length)
    X = np.ascontiguousarray(X.transpose(0, 2, 1))
    Y = np.ascontiguousarray(s[length - 1 + horizon:length - 1 + horizon + n][:, cols])
    return X, Y
