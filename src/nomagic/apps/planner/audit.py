"""The bias audit: because data is always biased, the planner says where its data is thin or lopsided.

``audit(train_weather, train_classes, ...)`` looks at the days a model learned from (their weather
and the class of each day) and, when given, at the model's hold-out predictions, at the weather the
user asks about, at the length of the user's history and at the day(s) being planned. It returns an
``AuditReport``: plain numbers in tables, and ``warnings``, plain sentences with numbers.
``render_text(report)`` writes it as aligned text, ``to_json(report)`` as a JSON-ready dict. Pure
functions: no printing, no files.

Groups (each day falls in exactly one group of each table):

- **condition** — the weather word of the day: ``CONDITIONS`` (sun, rain, drizzle, snow, fog, unknown).
- **temperature** — the band of the day's maximum ``temp_max`` in °C, half-open ``[lo, hi)``:
  ``< 0``, ``0–5``, ``5–10``, ``10–15``, ``15–20``, ``20–25``, ``25–30``, ``≥ 30`` (edges
  ``TEMP_EDGES``); a missing maximum is ``unknown`` (that row is shown only where such days exist).
- **season** — by calendar month. Northern hemisphere (the default, ``hemisphere="north"``):
  winter December–February, spring March–May, summer June–August, autumn September–November;
  ``hemisphere="south"`` shifts them by six months (winter June–August, and so on).
- **weekday** — Monday .. Sunday of the date.

What counts as a warning (the constants below):

- **thin group** — a group that has days in the training data but fewer than ``MIN_GROUP_DAYS``
  (30) of them or less than ``MIN_GROUP_SHARE`` (3 %) of all training days: recommendations for
  such days rest on few examples. A group with no training days is not warned about by itself
  (Seattle has no days below −2 °C, and that is no news), only where the user's weather or the
  planned day falls in it.
- **lopsided classes** — a class with less than ``MIN_CLASS_SHARE`` (10 %) of the training days
  (the model rarely recommends it), none at all, or more than ``MAX_CLASS_SHARE`` (60 %)
  (the model leans towards it).
- **short history** — fewer than ``MIN_HISTORY_DAYS`` (42, the fitness time constant of
  ``load.LoadSettings.ctl_days``) days of history: fitness (CTL) has not built up yet.
- **hold-out accuracy** — per model, a group (condition, temperature band, season) with at least
  ``MIN_HOLDOUT_GROUP_DAYS`` (5) hold-out days whose accuracy is more than ``ACCURACY_GAP`` (0.15)
  below the model's overall hold-out accuracy.
- **shift** — per feature (temp_max, temp_min, precipitation, wind) between the user's weather and
  the training weather: at least ``OUTSIDE_SHARE`` (5 %) of the user's days above the training
  maximum (or below the training minimum) says "hotter (colder, wetter, windier, ...) than anything
  the model learned from"; otherwise a standardized mean difference of at least ``SHIFT_SMD`` (0.5)
  in size says "hotter (...) than the training weather on average". Precipitation also says
  "drier"/"wetter" when the share of wet days (≥ ``WET_MM`` = 0.1 mm) differs by at least
  ``WET_SHARE_GAP`` (0.25). The standardized mean difference is
  ``(user mean − training mean) / sqrt((s_train² + s_user²) / 2)`` with sample standard deviations
  (0 for a single day); ±inf where both spreads are 0 and the means differ. Missing values (NaN)
  are left out of every statistic. A user group that is thin or absent in the training data and
  holds at least ``OUTSIDE_SHARE`` of the user's days is warned about too; so is a wind of another
  kind (daily maximum against daily mean).
- **planned day** — the query days whose condition, temperature band, season or weekday is a thin
  or empty group of the training data, or whose maximum lies outside the training range (the days
  of one group, or one side of the range, share one warning that names them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from nomagic.errors import EmptyDataError, InvalidInputError, LabelError

from .records import DailyWeather
from .sessions import CLASSES, class_index
from .weather import CONDITIONS

#: Band edges (°C) of the day's maximum temperature; the bands are [lo, hi).
TEMP_EDGES = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)
TEMP_BANDS = ("< 0", "0–5", "5–10", "10–15", "15–20", "20–25", "25–30", "≥ 30")
SEASONS = ("winter", "spring", "summer", "autumn")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
HEMISPHERES = ("north", "south")
#: The tables of ``AuditReport.coverage``, in order; hold-out accuracy uses the first three.
TABLES = ("condition", "temperature", "season", "weekday")
HOLDOUT_TABLES = ("condition", "temperature", "season")
#: The weather features compared between the user's and the training weather, with their units.
FEATURES = (("temp_max", "°C"), ("temp_min", "°C"), ("precipitation", "mm"), ("wind", "m/s"))

#: A training group with fewer days than this is thin.
MIN_GROUP_DAYS = 30
#: A training group with less than this share of the training days is thin.
MIN_GROUP_SHARE = 0.03
#: A class with less than this share of the training days is rare.
MIN_CLASS_SHARE = 0.10
#: A class with more than this share of the training days dominates.
MAX_CLASS_SHARE = 0.60
#: Days of history before fitness (CTL, 42-day time constant) means something.
MIN_HISTORY_DAYS = 42
#: Hold-out groups smaller than this are not compared with the overall accuracy.
MIN_HOLDOUT_GROUP_DAYS = 5
#: A hold-out group this far (or more) below the overall accuracy is warned about.
ACCURACY_GAP = 0.15
#: Share of the user's days outside the training range (one side) that is warned about.
OUTSIDE_SHARE = 0.05
#: Size of the standardized mean difference that is warned about.
SHIFT_SMD = 0.5
#: Precipitation from which a day is wet (mm).
WET_MM = 0.1
#: Difference in the share of wet days that is warned about.
WET_SHARE_GAP = 0.25

_MONTH_SEASON = {"north": (0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0),  # Jan..Dec -> index into SEASONS
                 "south": (2, 2, 3, 3, 3, 0, 0, 0, 1, 1, 1, 2)}


# --- records ------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Holdout:
    """A model's predictions on the hold-out days: ``weather`` of those days, the true class index
    per day ``y_true``, and the predicted ``y_pred`` (class indices, or probabilities of shape
    (days, classes), read by their largest entry)."""

    weather: DailyWeather
    y_true: np.ndarray
    y_pred: np.ndarray


@dataclass(frozen=True)
class ClassRow:
    """One class of the training data: its name, number of days and share of all days."""

    name: str
    days: int
    share: float


@dataclass(frozen=True)
class CoverageRow:
    """One group of a coverage table: its training days, their share, the days of each class
    (in ``CLASSES`` order), and the user's days in the group (``None`` without user weather)."""

    group: str
    days: int
    share: float
    class_days: tuple[int, ...]
    user_days: int | None = None

    @property
    def classes_seen(self) -> tuple[str, ...]:
        return tuple(c for c, n in zip(CLASSES, self.class_days) if n > 0)

    @property
    def thin(self) -> bool:
        """Has training days, but too few (``MIN_GROUP_DAYS``, ``MIN_GROUP_SHARE``)."""
        return 0 < self.days and (self.days < MIN_GROUP_DAYS or self.share < MIN_GROUP_SHARE)


@dataclass(frozen=True)
class AccuracyRow:
    """Hold-out accuracy on one group; ``accuracy`` is ``None`` when the group has no hold-out days."""

    group: str
    days: int
    accuracy: float | None


@dataclass(frozen=True)
class HoldoutAccuracy:
    """One model's hold-out accuracy: overall, and per group of each of ``HOLDOUT_TABLES``."""

    days: int
    accuracy: float
    groups: Mapping[str, tuple[AccuracyRow, ...]]


@dataclass(frozen=True)
class ShiftRow:
    """One weather feature, training weather against the user's (NaN-free statistics; ``None``
    where a side has no values). ``smd`` is the standardized mean difference (module docstring);
    ``share_below``/``share_above`` the share of the user's days below the training minimum /
    above the training maximum, ``share_outside`` their sum."""

    feature: str
    unit: str
    train_days: int
    train_mean: float | None
    train_std: float | None
    train_min: float | None
    train_max: float | None
    user_days: int
    user_mean: float | None
    user_std: float | None
    user_min: float | None
    user_max: float | None
    smd: float | None
    share_below: float | None
    share_above: float | None
    share_outside: float | None


@dataclass(frozen=True)
class AuditReport:
    """What ``audit`` found. ``coverage`` maps each of ``TABLES`` to its rows; ``per_condition``
    maps a model name to its ``HoldoutAccuracy`` (empty without a hold-out); ``shift`` is empty
    without user weather; ``warnings`` are the plain sentences, most basic first (classes, history,
    thin groups, hold-out, shift, planned days)."""

    train_days: int
    train_start: str
    train_end: str
    hemisphere: str
    class_balance: tuple[ClassRow, ...]
    coverage: Mapping[str, tuple[CoverageRow, ...]]
    per_condition: Mapping[str, HoldoutAccuracy] = field(default_factory=dict)
    user_days: int | None = None
    shift: tuple[ShiftRow, ...] = ()
    history_days: int | None = None
    query_days: int = 0
    warnings: list[str] = field(default_factory=list)
    #: per warning, what it is about: "class", "history", "thin", "holdout", "shift" or "planned"
    warning_kinds: list[str] = field(default_factory=list)


# --- grouping -----------------------------------------------------------------------------------

def temperature_band(temp_max: np.ndarray) -> np.ndarray:
    """The band name (``TEMP_BANDS``, or ``"unknown"`` for NaN) of each day's maximum."""
    t = np.asarray(temp_max, dtype=np.float64)
    idx = np.searchsorted(np.asarray(TEMP_EDGES), t, side="right")  # [lo, hi): 5.0 -> "5–10"
    names = np.array(TEMP_BANDS + ("unknown",), dtype=object)
    idx = np.where(np.isnan(t), len(TEMP_BANDS), idx)
    return names[idx]


def season(dates: np.ndarray, hemisphere: str = "north") -> np.ndarray:
    """The season (``SEASONS``) of each date, by month, for ``hemisphere`` "north" or "south"."""
    if hemisphere not in HEMISPHERES:
        raise InvalidInputError(f"hemisphere {hemisphere!r} is not one of {', '.join(HEMISPHERES)}")
    months = np.asarray(dates, dtype="datetime64[M]").astype(np.int64) % 12  # 0 = January
    return np.array(SEASONS, dtype=object)[np.asarray(_MONTH_SEASON[hemisphere])[months]]


def weekday(dates: np.ndarray) -> np.ndarray:
    """The weekday name (``WEEKDAYS``, Monday first) of each date."""
    days = np.asarray(dates, dtype="datetime64[D]").astype(np.int64)
    return np.array(WEEKDAYS, dtype=object)[(days + 3) % 7]  # 1970-01-01 was a Thursday


def _groups(weather: DailyWeather, hemisphere: str) -> dict[str, np.ndarray]:
    return {"condition": np.asarray(weather.condition, dtype=object),
            "temperature": temperature_band(weather.temp_max),
            "season": season(weather.dates, hemisphere),
            "weekday": weekday(weather.dates)}


def _group_names(table: str, present: set[str]) -> tuple[str, ...]:
    if table == "condition":
        return CONDITIONS
    if table == "temperature":
        return TEMP_BANDS + (("unknown",) if "unknown" in present else ())
    return SEASONS if table == "season" else WEEKDAYS


# --- validation ---------------------------------------------------------------------------------

def _check_weather(weather, what: str) -> DailyWeather:
    if not isinstance(weather, DailyWeather):
        raise InvalidInputError(f"{what} must be a DailyWeather; got {type(weather).__name__}")
    n = len(weather)
    if n == 0:
        raise EmptyDataError(f"{what} has no days")
    for name in ("temp_max", "temp_min", "precipitation", "wind", "condition"):
        if np.shape(getattr(weather, name)) != (n,):
            raise InvalidInputError(f"{what}.{name} has shape {np.shape(getattr(weather, name))}; "
                                    f"expected ({n},), one value per date")
    try:
        dates = np.asarray(weather.dates, dtype="datetime64[D]")
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what}.dates are not dates (expected datetime64[D])") from None
    if np.isnat(dates).any():
        raise InvalidInputError(f"{what}.dates hold a missing date (NaT) at day {int(np.argmax(np.isnat(dates)))}")
    bad = sorted(set(np.asarray(weather.condition, dtype=str).tolist()) - set(CONDITIONS))
    if bad:
        raise InvalidInputError(f"{what}.condition holds {', '.join(map(repr, bad))}; "
                                f"expected one of {', '.join(CONDITIONS)}")
    return weather


def _check_classes(y, n: int, what: str, allow_proba: bool = False) -> np.ndarray:
    a = np.asarray(y)
    if allow_proba and a.ndim == 2:
        if a.shape != (n, len(CLASSES)):
            raise InvalidInputError(f"{what} has shape {a.shape}; expected ({n}, {len(CLASSES)}) probabilities "
                                    f"or ({n},) class indices")
        if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
            raise InvalidInputError(f"{what} probabilities must be finite numbers")
        return a.argmax(axis=1).astype(np.int64)
    if a.ndim != 1:
        raise InvalidInputError(f"{what} must be one class per day (1-D); got shape {a.shape}")
    if len(a) != n:
        raise InvalidInputError(f"{what} has {len(a)} entries but the weather has {n} days; they must be aligned")
    if n and (a.dtype.kind in "US" or a.dtype == object and all(isinstance(v, str) for v in a)):
        return np.array([class_index(str(v)) for v in a], dtype=np.int64)
    if a.dtype.kind == "b" or not (np.issubdtype(a.dtype, np.integer) or a.dtype.kind == "f"):
        raise LabelError(f"{what} must be class indices 0..{len(CLASSES) - 1} (or class names); got dtype {a.dtype}")
    if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise LabelError(f"{what} must be whole class indices; got non-integer values")
    a = a.astype(np.int64)
    out = (a < 0) | (a >= len(CLASSES))
    if out.any():
        i = int(np.argmax(out))
        raise LabelError(f"{what}[{i}] is {a[i]}: class indices run 0..{len(CLASSES) - 1} "
                         f"({', '.join(CLASSES)})")
    return a


# --- the audit ----------------------------------------------------------------------------------

def audit(train_weather: DailyWeather, train_classes, *, holdout: Holdout | Mapping[str, Holdout] | None = None,
          user_weather: DailyWeather | None = None, history_days: int | None = None,
          query: DailyWeather | None = None, hemisphere: str = "north") -> AuditReport:
    """Audit the training data (``train_weather`` and the class of each of its days,
    ``train_classes``: indices into ``CLASSES`` or class names, aligned with the weather).

    ``holdout`` — a ``Holdout`` or a mapping of model name to ``Holdout``: per-group accuracy;
    ``user_weather`` — the weather the user asks about: shift against the training weather;
    ``history_days`` — days of history in the user's log; ``query`` — the day(s) being planned;
    ``hemisphere`` — "north" (default) or "south", for the seasons. Bad input raises
    ``InvalidInputError`` (``EmptyDataError``, ``LabelError``) saying what is wrong.
    """
    if hemisphere not in HEMISPHERES:
        raise InvalidInputError(f"hemisphere {hemisphere!r} is not one of {', '.join(HEMISPHERES)}")
    _check_weather(train_weather, "train_weather")
    n = len(train_weather)
    y = _check_classes(train_classes, n, "train_classes")
    if history_days is not None and (isinstance(history_days, bool) or not isinstance(history_days, (int, np.integer))
                                     or history_days < 0):
        raise InvalidInputError(f"history_days must be a whole number of days ≥ 0; got {history_days!r}")
    if user_weather is not None:
        _check_weather(user_weather, "user_weather")
    if query is not None:
        _check_weather(query, "query")
    models: dict[str, Holdout] = {}
    if isinstance(holdout, Holdout):
        models = {"model": holdout}
    elif holdout is not None:
        if not isinstance(holdout, Mapping) or not all(isinstance(h, Holdout) for h in holdout.values()):
            raise InvalidInputError("holdout must be a Holdout or a mapping of model name to Holdout")
        models = {str(k): v for k, v in holdout.items()}

    warnings: list[str] = []
    kinds: list[str] = []

    def add(kind: str, items: list[str]) -> None:
        warnings.extend(items)
        kinds.extend([kind] * len(items))

    balance = _class_balance(y)
    add("class", _class_warnings(balance))
    if history_days is not None and history_days < MIN_HISTORY_DAYS:
        add("history", [f"less than {MIN_HISTORY_DAYS} days of history ({int(history_days)}): "
                        "fitness (CTL) is not yet meaningful"])

    train_groups = _groups(train_weather, hemisphere)
    user_groups = _groups(user_weather, hemisphere) if user_weather is not None else None
    coverage = {}
    for table in TABLES:
        present = set(train_groups[table]) | (set(user_groups[table]) if user_groups else set())
        rows = []
        for g in _group_names(table, present):
            inside = train_groups[table] == g
            days = int(inside.sum())
            rows.append(CoverageRow(group=g, days=days, share=days / n,
                                    class_days=tuple(int(np.sum(y[inside] == k)) for k in range(len(CLASSES))),
                                    user_days=None if user_groups is None else int(np.sum(user_groups[table] == g))))
        coverage[table] = tuple(rows)
        add("thin", [f"only {_noun(table, r.group, r.days)} in the training data ({_pct(r.share)}): "
                     f"recommendations for {_noun(table, r.group)} are unreliable" for r in rows if r.thin])

    per_condition = {}
    for name, h in models.items():
        per_condition[name] = _holdout_accuracy(h, name, hemisphere)
        add("holdout", _holdout_warnings(name, per_condition[name], len(models) > 1))

    shift: tuple[ShiftRow, ...] = ()
    if user_weather is not None:
        shift = tuple(_shift_row(train_weather, user_weather, f, u) for f, u in FEATURES)
        add("shift", _shift_warnings(shift, train_weather, user_weather))
        add("shift", _user_group_warnings(coverage, len(user_weather)))

    if query is not None:
        add("planned", _query_warnings(query, coverage, train_weather, hemisphere))

    dates = np.asarray(train_weather.dates, dtype="datetime64[D]")
    return AuditReport(train_days=n, train_start=str(dates.min()), train_end=str(dates.max()), hemisphere=hemisphere,
                       class_balance=balance, coverage=coverage, per_condition=per_condition,
                       user_days=None if user_weather is None else len(user_weather), shift=shift,
                       history_days=None if history_days is None else int(history_days),
                       query_days=0 if query is None else len(query), warnings=warnings,
                       warning_kinds=kinds)


def _class_balance(y: np.ndarray) -> tuple[ClassRow, ...]:
    counts = np.bincount(y, minlength=len(CLASSES))
    return tuple(ClassRow(c, int(k), int(k) / len(y)) for c, k in zip(CLASSES, counts))


def _class_warnings(balance: tuple[ClassRow, ...]) -> list[str]:
    out = []
    for r in balance:
        session = "rest days" if r.name == "rest" else f"{r.name} sessions"
        if r.days == 0:
            out.append(f"no training day is a {r.name} day: the model cannot learn to recommend {session}")
        elif r.share < MIN_CLASS_SHARE:
            out.append(f"only {_pct(r.share)} of training days ({r.days}) are {session}: "
                       "the model rarely recommends them")
        elif r.share > MAX_CLASS_SHARE:
            out.append(f"{_pct(r.share)} of training days ({r.days}) are {session}: "
                       "the model leans towards recommending them")
    return out


def _holdout_accuracy(h: Holdout, name: str, hemisphere: str) -> HoldoutAccuracy:
    what = f"holdout {name!r}"
    _check_weather(h.weather, f"{what}.weather")
    m = len(h.weather)
    y_true = _check_classes(h.y_true, m, f"{what}.y_true")
    y_pred = _check_classes(h.y_pred, m, f"{what}.y_pred", allow_proba=True)
    right = y_true == y_pred
    groups = _groups(h.weather, hemisphere)
    tables = {}
    for table in HOLDOUT_TABLES:
        rows = []
        for g in _group_names(table, set(groups[table])):
            inside = groups[table] == g
            k = int(inside.sum())
            rows.append(AccuracyRow(g, k, float(right[inside].mean()) if k else None))
        tables[table] = tuple(rows)
    return HoldoutAccuracy(days=m, accuracy=float(right.mean()), groups=tables)


def _holdout_warnings(name: str, acc: HoldoutAccuracy, named: bool) -> list[str]:
    out = []
    prefix = f"{name}: " if named else ""
    for table, rows in acc.groups.items():
        for r in rows:
            if r.days >= MIN_HOLDOUT_GROUP_DAYS and r.accuracy is not None and acc.accuracy - r.accuracy > ACCURACY_GAP:
                out.append(f"{prefix}on {_noun(table, r.group)} the hold-out accuracy is {r.accuracy:.2f} "
                           f"against {acc.accuracy:.2f} overall ({r.days} hold-out days)")
    return out


def _finite(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v[np.isfinite(v)]


def _shift_row(train: DailyWeather, user: DailyWeather, feature: str, unit: str) -> ShiftRow:
    t, u = _finite(getattr(train, feature)), _finite(getattr(user, feature))

    def stats(v):
        if not len(v):
            return None, None, None, None
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, float(v.min()), float(v.max())

    tm, ts, tlo, thi = stats(t)
    um, us, ulo, uhi = stats(u)
    smd = below = above = outside = None
    if len(t) and len(u):
        pooled = math.sqrt((ts ** 2 + us ** 2) / 2.0)
        diff = um - tm
        smd = diff / pooled if pooled > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
        below, above = float(np.mean(u < tlo)), float(np.mean(u > thi))
        outside = below + above
    return ShiftRow(feature, unit, len(t), tm, ts, tlo, thi, len(u), um, us, ulo, uhi, smd, below, above, outside)


# feature -> (word above, word below, what "a day has ...", extreme above, extreme below, mean label)
_SHIFT_WORDS = {
    "temp_max": ("hotter", "colder", "a maximum", "the highest", "the lowest", "mean daily maximum"),
    "temp_min": ("warmer at night", "colder at night", "a minimum", "the highest", "the lowest", "mean daily minimum"),
    "precipitation": ("wetter", "drier", "precipitation", "the most", "the least", "mean daily precipitation"),
    "wind": ("windier", "calmer", "a wind", "the highest", "the lowest", "mean wind"),
}


def _shift_warnings(rows: tuple[ShiftRow, ...], train: DailyWeather, user: DailyWeather) -> list[str]:
    out = []
    lead = "the weather you ask about is"
    for r in rows:
        if r.smd is None:
            continue
        up, down, has, most, least, label = _SHIFT_WORDS[r.feature]
        said = set()
        for side, share, edge, word, extreme, rel in (("up", r.share_above, r.train_max, up, most, "above"),
                                                      ("down", r.share_below, r.train_min, down, least, "below")):
            if share >= OUTSIDE_SHARE:
                amount = (f"more than {_num(edge)} mm of precipitation" if r.feature == "precipitation"
                          else f"{has} {rel} {_num(edge)} {r.unit}")
                out.append(f"{lead} {word} than anything the model learned from: {_pct(share)} of your days have "
                           f"{amount}, {extreme} in the training data")
                said.add(side)
        extra = ""
        wet_gap = 0.0
        if r.feature == "precipitation":
            tw, uw = _wet_share(train.precipitation), _wet_share(user.precipitation)
            wet_gap = uw - tw
            extra = f"; {_pct(uw)} of your days are wet (≥ {WET_MM:g} mm) against {_pct(tw)} of the training days"
        if "up" not in said and (r.smd >= SHIFT_SMD or wet_gap >= WET_SHARE_GAP):
            out.append(f"{lead} {up} than the training weather on average: {label} {_num(r.user_mean)} {r.unit} "
                       f"against {_num(r.train_mean)} {r.unit} (standardized difference {_smd(r.smd)}){extra}")
        elif "down" not in said and (r.smd <= -SHIFT_SMD or wet_gap <= -WET_SHARE_GAP):
            out.append(f"{lead} {down} than the training weather on average: {label} {_num(r.user_mean)} {r.unit} "
                       f"against {_num(r.train_mean)} {r.unit} (standardized difference {_smd(r.smd)}){extra}")
    if user.wind_kind != train.wind_kind:
        out.append(f"your weather gives the daily {user.wind_kind} wind, the training data the daily "
                   f"{train.wind_kind}: wind is not comparable and weighs wrongly in the recommendations")
    return out


def _wet_share(precipitation: np.ndarray) -> float:
    p = _finite(precipitation)
    return float(np.mean(p >= WET_MM)) if len(p) else 0.0


def _user_group_warnings(coverage: Mapping[str, tuple[CoverageRow, ...]], user_n: int) -> list[str]:
    out = []
    for table, rows in coverage.items():
        for r in rows:
            share = (r.user_days or 0) / user_n
            if share >= OUTSIDE_SHARE and (r.days == 0 or r.thin):
                has = "none" if r.days == 0 else f"only {r.days}"
                out.append(f"{_pct(share)} of your days ({r.user_days}) are {_noun(table, r.group)}; "
                           f"the training data has {has}")
    return out


def _query_warnings(query: DailyWeather, coverage: Mapping[str, tuple[CoverageRow, ...]], train: DailyWeather,
                    hemisphere: str) -> list[str]:
    """One warning per thin or empty group the planned days fall in (days of one group together),
    and one for the days whose maximum lies outside the training range (each side)."""
    groups = _groups(query, hemisphere)
    dates = np.asarray(query.dates, dtype="datetime64[D]")
    labels = [f"{WEEKDAYS[int((d.astype(np.int64) + 3) % 7)][:3]} {d}" for d in dates]
    hits: dict[tuple[str, str], list[int]] = {}
    for i in range(len(query)):
        for table in TABLES:
            g = groups[table][i]
            if g == "unknown":  # nothing is forecast to warn about
                continue
            row = next((r for r in coverage[table] if r.group == g), None)
            if row is None or row.days == 0 or row.thin:
                hits.setdefault((table, g), []).append(i)
    out = []
    for (table, g), idx in hits.items():
        row = next((r for r in coverage[table] if r.group == g), None)
        days = 0 if row is None else row.days
        one = len(idx) == 1
        if table == "condition":
            what = f"forecast {g}"
        elif table == "temperature":
            what = (f"forecast a maximum of {_num(query.temp_max[idx[0]])} °C" if one
                    else "forecast " + _noun(table, g).replace("days with ", ""))
        elif table == "season":
            what = f"in {g}"
        else:
            what = f"a {g}" if one else f"{g}s"
        has = f"only {_noun(table, g, days)}" if days else f"no {_noun(table, g)}"
        out.append(f"{_planned(labels, idx)} {what}: {has} in the training data; "
                   f"the recommendation{'' if one else 's'} {'is' if one else 'are'} unreliable")
    t = _finite(train.temp_max)
    if len(t):
        tmax = np.asarray(query.temp_max, dtype=np.float64)
        for rel, edge, extreme, outside in (("above", t.max(), "highest", tmax > t.max()),
                                            ("below", t.min(), "lowest", tmax < t.min())):
            idx = [int(i) for i in np.flatnonzero(outside)]
            if idx:
                value = (f"a maximum of {_num(tmax[idx[0]])} °C, {rel} {_num(edge)} °C" if len(idx) == 1
                         else f"a maximum {rel} {_num(edge)} °C")
                out.append(f"{_planned(labels, idx)} forecast {value}, the {extreme} in the training data")
    return out


def _planned(labels: list[str], idx: list[int]) -> str:
    """``"the day you plan, Tue 2016-01-05, is"`` or ``"the days you plan on A, B and C are"``."""
    if len(idx) == 1:
        return f"the day you plan, {labels[idx[0]]}, is"
    named = [labels[i] for i in idx]
    return f"the days you plan on {', '.join(named[:-1])} and {named[-1]} are"


# --- words and numbers --------------------------------------------------------------------------

def _noun(table: str, group: str, n: int | None = None) -> str:
    """``"12 snow days"`` (with ``n``) or ``"snow days"``, in the words of each table."""
    one = n == 1
    days = "day" if one else "days"
    if table == "condition":
        text = f"{days} of unknown weather" if group == "unknown" else f"{group} {days}"
    elif table == "temperature":
        if group == "unknown":
            text = f"{days} with no recorded maximum"
        elif group.startswith("<"):
            text = f"{days} with a maximum below {group[2:]} °C"
        elif group.startswith("≥"):
            text = f"{days} with a maximum of {group[2:]} °C or more"
        else:
            text = f"{days} with a maximum of {group} °C"
    elif table == "season":
        text = f"{group} {days}"
    else:
        text = group if one else f"{group}s"
    return text if n is None else f"{n} {text}"


def _pct(share: float) -> str:
    """``"64%"``; one decimal under 10 % (``"1.6%"``) so that small shares do not read as 0."""
    pct = 100.0 * share
    return f"{pct:.1f}%" if 0 < pct < 9.95 else f"{pct:.0f}%"


def _num(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _smd(x: float) -> str:
    return f"{x:+.2f}" if math.isfinite(x) else ("+inf" if x > 0 else "-inf")


# --- text and JSON ------------------------------------------------------------------------------

def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells):
        return "  " + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                                for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(headers)] + [line(r) for r in rows]


def render_text(report: AuditReport) -> str:
    """The report as plain text: aligned tables (classes, coverage, hold-out accuracy, shift), then the
    warnings (or "no warnings")."""
    out = [f"Bias audit of the training data: {report.train_days} days, {report.train_start} to {report.train_end}"
           f" (seasons: {report.hemisphere}ern hemisphere)", "", "Classes"]
    out += _table(["class", "days", "share"], [[r.name, str(r.days), _pct(r.share)] for r in report.class_balance],
                  {1, 2})
    with_user = report.user_days is not None
    for table, rows in report.coverage.items():
        note = " (the day's maximum, °C)" if table == "temperature" else ""
        out += ["", f"Coverage by {table}{note}"]
        headers = ["group", "days", "share", "classes seen"] + (["your days"] if with_user else [])
        body = []
        for r in rows:
            cells = [r.group + (" *" if r.thin else ""), str(r.days), _pct(r.share), " ".join(r.classes_seen) or "–"]
            body.append(cells + ([str(r.user_days)] if with_user else []))
        out += _table(headers, body, {1, 2, 4})
    if any(r.thin for rows in report.coverage.values() for r in rows):
        out.append(f"  * thin: fewer than {MIN_GROUP_DAYS} days or less than {_pct(MIN_GROUP_SHARE)} of the days")
    for name, acc in report.per_condition.items():
        out += ["", f"Hold-out accuracy of {name}: {acc.accuracy:.2f} over {acc.days} days"]
        for table, rows in acc.groups.items():
            out += _table([table, "days", "accuracy"],
                          [[r.group, str(r.days), "–" if r.accuracy is None else f"{r.accuracy:.2f}"] for r in rows],
                          {1, 2})
    if report.shift:
        out += ["", f"Your weather ({report.user_days} days) against the training weather"]
        body = [[r.feature, r.unit, _num(r.train_mean), _num(r.train_std),
                 f"{_num(r.train_min)} to {_num(r.train_max)}", _num(r.user_mean),
                 f"{_num(r.user_min)} to {_num(r.user_max)}",
                 "–" if r.smd is None else _smd(r.smd), "–" if r.share_outside is None else _pct(r.share_outside)]
                for r in report.shift]
        out += _table(["feature", "unit", "train mean", "train std", "train range", "your mean", "your range", "SMD",
                       "outside"], body, {2, 3, 4, 5, 6, 7, 8})
    if report.history_days is not None:
        out += ["", f"History: {report.history_days} days"]
    out += ["", "Warnings" if report.warnings else "No warnings"]
    out += [f"  - {w}" for w in report.warnings]
    return "\n".join(out) + "\n"


def _j(x):
    """A float for JSON: ``None`` for NaN and ±inf (JSON has neither)."""
    return None if x is None or not math.isfinite(x) else float(x)


def to_json(report: AuditReport) -> dict:
    """The report as plain JSON-ready data (``json.dumps`` works; NaN and ±inf become ``null``)::

        {"train_days": int, "train_start": "YYYY-MM-DD", "train_end": "YYYY-MM-DD", "hemisphere": str,
         "classes": [str, ...],                               # CLASSES, the order of every class_days list
         "class_balance": [{"class", "days", "share"}, ...],
         "coverage": {"condition" | "temperature" | "season" | "weekday":
                      [{"group", "days", "share", "class_days": [int per class], "classes_seen": [str],
                        "thin": bool, "user_days": int | null}, ...]},
         "per_condition": {model: {"days", "accuracy",
                                   "groups": {"condition" | "temperature" | "season":
                                              [{"group", "days", "accuracy": float | null}, ...]}}},
         "user_days": int | null,
         "shift": [{"feature", "unit", "train_days", "train_mean", "train_std", "train_min", "train_max",
                    "user_days", "user_mean", "user_std", "user_min", "user_max", "smd",
                    "share_below", "share_above", "share_outside"}, ...],   # empty without user weather
         "history_days": int | null, "query_days": int,
         "warnings": [str, ...], "warning_kinds": [str, ...]}  (kinds: class, history, thin, holdout, shift, planned)

    Shares are fractions 0..1, temperatures °C, precipitation mm, wind m/s.
    """
    return {
        "train_days": report.train_days, "train_start": report.train_start, "train_end": report.train_end,
        "hemisphere": report.hemisphere, "classes": list(CLASSES),
        "class_balance": [{"class": r.name, "days": r.days, "share": _j(r.share)} for r in report.class_balance],
        "coverage": {table: [{"group": r.group, "days": r.days, "share": _j(r.share), "class_days": list(r.class_days),
                              "classes_seen": list(r.classes_seen), "thin": r.thin, "user_days": r.user_days}
                             for r in rows] for table, rows in report.coverage.items()},
        "per_condition": {name: {"days": a.days, "accuracy": _j(a.accuracy),
                                 "groups": {t: [{"group": r.group, "days": r.days, "accuracy": _j(r.accuracy)}
                                                for r in rows] for t, rows in a.groups.items()}}
                          for name, a in report.per_condition.items()},
        "user_days": report.user_days,
        "shift": [{"feature": r.feature, "unit": r.unit, "train_days": r.train_days, "train_mean": _j(r.train_mean),
                   "train_std": _j(r.train_std), "train_min": _j(r.train_min), "train_max": _j(r.train_max),
                   "user_days": r.user_days, "user_mean": _j(r.user_mean), "user_std": _j(r.user_std),
                   "user_min": _j(r.user_min), "user_max": _j(r.user_max), "smd": _j(r.smd),
                   "share_below": _j(r.share_below), "share_above": _j(r.share_above),
                   "share_outside": _j(r.share_outside)} for r in report.shift],
        "history_days": report.history_days, "query_days": report.query_days,
        "warnings": list(report.warnings),
        "warning_kinds": list(report.warning_kinds),
    }
