"""The two kinds of record the planner reads: activities from a training log, and daily weather.

Every importer (Strava export, plain CSV, activity files; Seattle, Meteostat and Open-Meteo
weather) produces these, so that the load, the models and the audit never see a file format.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

#: The sports the planner tells apart; anything else is kept as "other" with its original name.
SPORTS = ("run", "ride", "swim", "walk", "hike", "strength", "other")


@dataclass(frozen=True)
class Activity:
    """One training session.

    ``start`` is timezone-aware UTC where the source says the time, else midnight UTC of the
    date; ``date`` is the calendar day it counts for. ``sport`` is one of ``SPORTS``; ``kind``
    keeps the source's own type word ("Run", "VirtualRide", "Weight Training", ...).
    Durations in seconds, distance in metres, heart rates in beats per minute, ``rpe`` 0–10;
    ``None`` where unknown. ``source`` says where it came from ("activities.csv:17").
    """

    date: dt.date
    sport: str
    duration_s: float
    start: dt.datetime | None = None
    kind: str = ""
    name: str = ""
    moving_s: float | None = None
    distance_m: float | None = None
    avg_hr: float | None = None
    max_hr: float | None = None
    rpe: float | None = None
    source: str = ""


@dataclass(frozen=True)
class Skipped:
    """A row or file an importer could not use, with why: reported, never silently dropped."""

    source: str  # "activities.csv:17" or "activities/123.fit.gz"
    reason: str


@dataclass(frozen=True)
class TrainingLog:
    """What an importer returns: the activities in time order, and what it had to skip."""

    activities: tuple[Activity, ...]
    skipped: tuple[Skipped, ...] = ()
    source: str = ""

    def __len__(self) -> int:
        return len(self.activities)


@dataclass(frozen=True, eq=False)
class DailyWeather:
    """Daily weather, one row per day in date order, in the units the planner uses.

    ``dates`` is ``datetime64[D]``; ``temp_max``, ``temp_min`` °C; ``precipitation`` mm;
    ``snow`` mm of snowfall or snow depth (NaN when the source does not say); ``wind`` m/s
    (daily mean or, where only that is known, the daily maximum: ``wind_kind`` says which);
    ``condition`` a word per day: "sun", "rain", "drizzle", "snow", "fog" or "unknown".
    Missing numbers are NaN. Arrays are read-only.
    """

    dates: np.ndarray
    temp_max: np.ndarray
    temp_min: np.ndarray
    precipitation: np.ndarray
    wind: np.ndarray
    condition: np.ndarray
    snow: np.ndarray = field(default=None)  # type: ignore[assignment]
    source: str = ""
    wind_kind: str = "mean"

    def __post_init__(self) -> None:
        if self.snow is None:
            object.__setattr__(self, "snow", np.full(len(self.dates), np.nan))
        for name in ("dates", "temp_max", "temp_min", "precipitation", "wind", "condition", "snow"):
            getattr(self, name).setflags(write=False)

    def __len__(self) -> int:
        return len(self.dates)
