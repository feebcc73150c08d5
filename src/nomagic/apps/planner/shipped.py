"""The data shipped with nomagic for the planner: Seattle's weather and a generated athlete log.

Both live in ``nomagic/data`` so the planner runs out of the box with no network access.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

import nomagic

from .records import DailyWeather, TrainingLog

#: The file name of the shipped athlete log inside ``nomagic/data``.
ATHLETE_LOG_FILE = "athlete-log.csv"
#: The seed the shipped athlete log was generated with (``generator --seed 7``).
ATHLETE_LOG_SEED = 7


def seattle_weather() -> DailyWeather:
    """Seattle's daily weather 2012–2015 (``nomagic.load_weather()``) as the planner's ``DailyWeather``.

    The source gives the daily mean wind and no snow amounts (snow stays NaN).
    """
    w = nomagic.load_weather()
    return DailyWeather(
        dates=np.array(w.dates, dtype="datetime64[D]"),
        temp_max=np.array(w.temp_max, dtype=np.float64),
        temp_min=np.array(w.temp_min, dtype=np.float64),
        precipitation=np.array(w.precipitation, dtype=np.float64),
        wind=np.array(w.wind, dtype=np.float64),
        condition=np.array(w.condition, dtype=str),
        source="seattle-weather.csv",
        wind_kind="mean",
    )


def log_weather() -> DailyWeather:
    """The days the shipped log was generated over: every Seattle day but the last, 2015-12-31,
    which is left as "tomorrow" — the day ``nomagic plan`` plans, with its weather known."""
    from .dataset import subset

    w = seattle_weather()
    return subset(w, slice(0, len(w) - 1))


def athlete_log_path() -> str:
    """Where the shipped generated athlete log lives inside the installed package."""
    return str(resources.files("nomagic").joinpath("data", ATHLETE_LOG_FILE))


def shipped_log() -> TrainingLog:
    """The shipped generated athlete log (``nomagic/data/athlete-log.csv``) as a ``TrainingLog``."""
    from .logcsv import read_log_csv

    return read_log_csv(athlete_log_path())
