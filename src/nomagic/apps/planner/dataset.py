"""The planner's view of an athlete: every day from the first logged day to the last, with its
session class, its training load and fitness picture, and that day's weather.

Built from a ``TrainingLog`` and a ``DailyWeather`` (whatever files they came from), so the
models, the evaluation and the audit never see a file format.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import numpy as np

from nomagic.errors import DataFileError, InvalidInputError

from .load import LoadSettings, LoadTable, load_table, log_hr_max
from .records import DailyWeather, TrainingLog
from .sessions import CLASSES, class_index, day_class

WEATHER_COLUMNS = ("temp_max", "temp_min", "precipitation", "wind")


@dataclass(frozen=True, eq=False)
class PlannerData:
    """Days ``dates`` (``datetime64[D]``, continuous) with ``classes`` (index into ``CLASSES``),
    the load ``table`` over the same days, and the weather of each day (``weather`` rows aligned
    with ``dates``; NaN and condition "unknown" where the weather file has no such day)."""

    log: TrainingLog
    dates: np.ndarray
    classes: np.ndarray
    table: LoadTable
    weather: DailyWeather
    settings: LoadSettings
    weather_days: int  # days of the log that the weather file covers

    def __len__(self) -> int:
        return len(self.dates)

    @property
    def has_weather(self) -> np.ndarray:
        return ~np.isnan(self.weather.temp_max)


def align_weather(weather: DailyWeather, dates: np.ndarray) -> DailyWeather:
    """``weather`` on exactly ``dates``: NaN (condition "unknown") for days it lacks."""
    pos = np.searchsorted(weather.dates, dates)
    pos = np.clip(pos, 0, max(len(weather.dates) - 1, 0))
    hit = (weather.dates[pos] == dates) if len(weather.dates) else np.zeros(len(dates), bool)

    def take(a: np.ndarray, fill):
        out = np.full(len(dates), fill, dtype=a.dtype if a.dtype.kind != "U" else object)
        out[hit] = a[pos[hit]]
        return out

    return DailyWeather(dates=dates.copy(), temp_max=take(weather.temp_max, np.nan),
                        temp_min=take(weather.temp_min, np.nan),
                        precipitation=take(weather.precipitation, np.nan), wind=take(weather.wind, np.nan),
                        condition=take(weather.condition, "unknown").astype(str), snow=take(weather.snow, np.nan),
                        source=weather.source, wind_kind=weather.wind_kind)


def subset(weather: DailyWeather, idx) -> DailyWeather:
    """The days of ``weather`` at ``idx`` (indices, a slice or a boolean mask)."""
    return DailyWeather(dates=weather.dates[idx], temp_max=weather.temp_max[idx], temp_min=weather.temp_min[idx],
                        precipitation=weather.precipitation[idx], wind=weather.wind[idx],
                        condition=weather.condition[idx], snow=weather.snow[idx], source=weather.source,
                        wind_kind=weather.wind_kind)


def build(log: TrainingLog, weather: DailyWeather, settings: LoadSettings | None = None,
          end: dt.date | np.datetime64 | None = None) -> PlannerData:
    """The planner's data from a log and weather; refuses a log with no day in the weather."""
    if not len(log):
        raise DataFileError(f"{log.source or 'the training log'}: no activities to learn from")
    settings = settings or LoadSettings()
    if settings.hr_max is None:
        peak = log_hr_max(log.activities)
        settings = replace(settings, hr_max=peak)
    table = load_table(log, settings, end=end)
    settings = table.settings  # with the sRPE scale load_table found for method "auto"
    dates = table.dates
    by_day: dict[np.datetime64, list] = {}
    for a in log.activities:
        by_day.setdefault(np.datetime64(a.date, "D"), []).append(a)
    classes = np.array([class_index(day_class(by_day.get(d, ()), settings.hr_max)) for d in dates], dtype=np.int64)
    aligned = align_weather(weather, dates)
    covered = int((~np.isnan(aligned.temp_max)).sum())
    if covered == 0:
        w0, w1 = (weather.dates[0], weather.dates[-1]) if len(weather) else ("-", "-")
        raise DataFileError(
            f"{weather.source or 'the weather file'}: no overlap between the log's dates ({dates[0]} .. {dates[-1]}) "
            f"and the weather's dates ({w0} .. {w1}); give weather for the days of the log")
    return PlannerData(log, dates, classes, table, aligned, settings, covered)


def class_names(indices) -> list[str]:
    """Class indices as names."""
    try:
        return [CLASSES[int(i)] for i in indices]
    except (IndexError, TypeError, ValueError):
        raise InvalidInputError(f"class indices must be 0..{len(CLASSES) - 1}") from None
