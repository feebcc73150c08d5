"""The recommendation: what to do on the day after the log (or on ``date``), and on the days
after it when planning several.

For each planned day the model reads what is known the evening before (see ``features``): the
log up to that day, the load picture, and the weather of the day from the weather file or a
forecast file (else it is unknown, and the model reads the training average — said in a
warning). The session is the most probable class. With several days, each recommended session
is added to the history with the median load of that class in the athlete's own log, so that
the fitness, fatigue and form of the next day roll forward with the plan.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from nomagic.errors import InvalidInputError

from .dataset import PlannerData, align_weather, subset
from .load import project
from .models import PlannerModel
from .records import DailyWeather
from .sessions import CLASSES

N_REASONS = 4


@dataclass(frozen=True)
class Recommendation:
    """One planned day: the session, each class's probability, the weather and the load picture
    going into the day, the inputs that pushed hardest, and warnings."""

    date: str
    session: str
    probabilities: dict
    model: str
    weather: dict | None
    load: dict
    reasons: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    planned_load: float = 0.0

    def to_json(self) -> dict:
        return {"date": self.date, "session": self.session, "probabilities": self.probabilities,
                "model": self.model, "weather": self.weather, "load": self.load, "reasons": self.reasons,
                "warnings": self.warnings, "planned_load": self.planned_load}


def typical_loads(data: PlannerData) -> dict[str, float]:
    """The median daily load of each class in the athlete's log (0 for rest)."""
    out = {}
    for k, name in enumerate(CLASSES):
        loads = data.table.load[data.classes == k]
        out[name] = float(np.median(loads)) if len(loads) and k else 0.0
    return out


def _upto(data: PlannerData, k: int) -> PlannerData:
    """The data of the first ``k`` days (the load picture is causal, so slicing it is exact)."""
    t = data.table
    table = type(t)(**{f: getattr(t, f)[:k] for f in ("dates", "load", "ctl", "atl", "tsb", "acwr", "monotony",
                                                       "strain", "ramp", "planned")}, settings=t.settings)
    weather = subset(data.weather, slice(0, k))
    return PlannerData(data.log, data.dates[:k], data.classes[:k], table, weather, data.settings,
                       int((~np.isnan(weather.temp_max)).sum()))


def _extended(base: PlannerData, classes: list[int], loads: list[float], weather: DailyWeather) -> PlannerData:
    """``base`` followed by planned days with the given classes and loads (the last one being the
    day to plan: class −1, load 0), and their weather."""
    table = project(base.table, loads)
    dates = table.dates
    return PlannerData(base.log, dates, np.concatenate([base.classes, np.asarray(classes, np.int64)]), table,
                       align_weather(weather, dates), base.settings, base.weather_days)


def _merge_weather(sources: list[DailyWeather]) -> DailyWeather:
    """The days of every source; where two have the same day, the first source wins."""
    sources = [s for s in sources if s is not None and len(s)]
    if not sources:
        empty = np.array([], dtype="datetime64[D]")
        return DailyWeather(empty, np.array([]), np.array([]), np.array([]), np.array([]), np.array([], dtype=str))
    dates = np.unique(np.concatenate([s.dates for s in sources]))
    parts = [align_weather(s, dates) for s in sources]
    merged = {}
    for name in ("temp_max", "temp_min", "precipitation", "wind", "snow"):
        col = parts[-1].__getattribute__(name).astype(np.float64).copy()
        for p in reversed(parts[:-1]):
            v = getattr(p, name)
            col = np.where(np.isnan(v), col, v)
        merged[name] = col
    cond = parts[-1].condition.astype(object).copy()
    for p in reversed(parts[:-1]):
        cond = np.where(p.condition == "unknown", cond, p.condition)
    return DailyWeather(dates=dates, condition=cond.astype(str), source=sources[0].source,
                        wind_kind=sources[0].wind_kind, **merged)


def _weather_json(w: DailyWeather, i: int, source: str) -> dict | None:
    if np.isnan(w.temp_max[i]) and w.condition[i] == "unknown":
        return None

    def num(x):
        return None if np.isnan(x) else round(float(x), 1)

    return {"condition": str(w.condition[i]), "temp_max": num(w.temp_max[i]), "temp_min": num(w.temp_min[i]),
            "precipitation": num(w.precipitation[i]), "wind": num(w.wind[i]), "source": source}


def _reason(r: dict, session: str) -> dict:
    return {**r, "direction": f"towards {session}" if r["push"] > 0 else f"away from {session}"}


def plan(data: PlannerData, model: PlannerModel, *, date: dt.date | np.datetime64 | None = None, days: int = 1,
         weather: DailyWeather | None = None, forecast: DailyWeather | None = None,
         engine: str = "tensor") -> list[Recommendation]:
    """Recommendations for ``days`` days from ``date`` (default: the day after the last logged
    day). ``weather`` is the whole weather file (it may reach past the log), ``forecast`` a
    forecast file; the days they do not cover have unknown weather."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 28:
        raise InvalidInputError(f"days must be a whole number from 1 to 28; got {days!r}")
    first = data.dates[-1] + 1 if date is None else np.datetime64(date, "D")
    if first <= data.dates[0]:
        raise InvalidInputError(f"the date {first} is not after the first logged day {data.dates[0]}: "
                                "there is no history to plan from")
    notes: list[str] = []
    if first <= data.dates[-1]:
        base = _upto(data, int((first - data.dates[0]).astype(int)))
        notes.append(f"planning {first} from the log up to {first - 1} (later sessions are left out)")
    else:
        base = data
    gap = int((first - base.dates[-1]).astype(int)) - 1
    classes: list[int] = [0] * gap  # days between the log and the planned day: taken as rest
    loads: list[float] = [0.0] * gap
    if gap:
        notes.append(f"nothing is logged from {base.dates[-1] + 1} to {first - 1}: those {gap} days count as rest")
    sources = _merge_weather([weather if weather is not None else data.weather, forecast])
    typical = typical_loads(data)
    out = []
    unknown: list[str] = []
    for step in range(days):
        ext = _extended(base, classes + [-1], loads + [0.0], sources)
        i = len(ext) - 1
        day = ext.dates[i]
        warnings = list(notes) if step == 0 else []
        main = weather if weather is not None else data.weather
        source = "weather file" if np.any(main.dates == day) else "forecast"
        if np.isnan(ext.weather.temp_max[i]):
            unknown.append(str(day))
        P = model.predict_proba(ext, [i], engine=engine)[0]
        c = int(P.argmax())
        session = model.classes[c]
        pushes = model.explain(ext, i, c, engine=engine)[:N_REASONS]
        t = ext.table
        load = {"ctl": round(float(t.ctl[i - 1]), 2), "atl": round(float(t.atl[i - 1]), 2),
                "tsb": round(float(t.tsb[i]), 2),
                "acwr": None if np.isnan(t.acwr[i - 1]) else round(float(t.acwr[i - 1]), 3),
                "monotony": None if np.isnan(t.monotony[i - 1]) else round(float(t.monotony[i - 1]), 3)}
        planned = typical.get(session, typical["easy"]) if session != "rest" else 0.0
        out.append(Recommendation(
            date=str(day), session=session,
            probabilities={name: round(float(p), 4) for name, p in zip(model.classes, P)},
            model=model.kind, weather=_weather_json(ext.weather, i, source), load=load,
            reasons=[_reason(r, session) for r in pushes], warnings=warnings, planned_load=round(planned, 1)))
        if model.kind == "perceptron":  # it only says "train": roll forward an easy day
            c = CLASSES.index("easy") if session == "train" else 0
        classes.append(c)
        loads.append(planned)
    if unknown:
        span = unknown[0] if len(unknown) == 1 else f"{unknown[0]} .. {unknown[-1]} ({len(unknown)} days)"
        out[0].warnings.append(f"the weather of {span} is unknown (no weather or forecast file covers it): "
                               "the model reads an average day there")
    return out
