"""Read daily weather from the files athletes can get, detecting the format: ``read_weather(path)``.

Formats (a ``.gz`` of any of them is decompressed):

(a) the shipped Seattle file, ``date,precipitation,temp_max,temp_min,wind,weather``: dates
    ``2012/01/01``, precipitation mm, temperatures °C, wind m/s (daily mean), a condition word
    (drizzle, rain, sun, snow, fog) kept as it is. Snow: NaN (not given).
(b) Meteostat daily data, ``date,tavg,tmin,tmax,prcp,snow,wdir,wspd,wpgt,pres,tsun`` with that header
    (the JSON-API/Python-library CSV) or without it (the bulk station files, often ``.csv.gz``):
    °C, precipitation mm, ``snow`` = snow DEPTH in mm (stored as is in ``snow``), ``wspd`` = daily
    mean wind in km/h, converted to m/s by ÷ 3.6. Meteostat has no condition, so it is derived:
    precipitation unknown → "unknown"; below 0.1 mm → "sun"; 0.1–1 mm → "drizzle"; 1 mm or more →
    "rain"; either wet case becomes "snow" when ``tmax`` ≤ 1 °C (or, without ``tmax``, ``tavg`` ≤ 0 °C).
(c) Open-Meteo's CSV download: a location line pair (``latitude,longitude,...`` and its values), then
    blocks separated by blank lines, each with its own header, e.g. hourly ``time,temperature_2m
    (°C),precipitation (mm),wind_speed_10m (km/h),weather_code (wmo code)`` and daily ``time,
    temperature_2m_max (°C),temperature_2m_min (°C),precipitation_sum (mm),wind_speed_10m_max
    (km/h),weather_code (wmo code),snowfall_sum (cm)``. The daily block is used when present
    (wind: ``wind_speed_10m_mean`` if there, else the daily maximum with ``wind_kind="max"``);
    otherwise hourly rows are aggregated per local calendar day (the time column's date): max and
    min of temperature, sum of precipitation and snowfall, mean of wind, and the highest WMO code
    of the day (the codes grow with severity, so this is the day's worst weather).

Unit conversions, decided by the unit in parentheses: temperature °F → °C by (F − 32)·5/9;
precipitation inch → mm ×25.4; snowfall cm → mm ×10, inch → mm ×25.4; wind km/h → m/s ÷3.6,
mph → m/s ×0.44704, kn → m/s ×0.514444, m/s as is. An unknown unit is an error.

WMO weather codes to conditions: 0–3 "sun", 45/48 "fog", 51–57 "drizzle", 61–67 and 80–82 "rain",
71–77 and 85–86 "snow", 95–99 (thunderstorm) "rain", anything else "unknown".

Missing values are NaN. Rows are sorted by date; a date that appears twice is a ``DataFileError``
naming both lines (two sources pasted together, or hourly data mistaken for daily).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from pathlib import Path

import numpy as np

from nomagic.errors import DataFileError

from .records import DailyWeather
from .textfile import read_text

NAN = float("nan")
SEATTLE = ("date", "precipitation", "temp_max", "temp_min", "wind", "weather")
METEOSTAT = ("date", "tavg", "tmin", "tmax", "prcp", "snow", "wdir", "wspd", "wpgt", "pres", "tsun")
CONDITIONS = ("sun", "rain", "drizzle", "snow", "fog", "unknown")
_WIND = {"km/h": 1 / 3.6, "m/s": 1.0, "mph": 0.44704, "kn": 0.514444, "kt": 0.514444, "knots": 0.514444}
_PRECIP = {"mm": 1.0, "inch": 25.4, "in": 25.4}
_SNOW = {"cm": 10.0, "mm": 1.0, "inch": 25.4, "in": 25.4}


def wmo_condition(code: float) -> str:
    """The condition word for a WMO weather code (see the module docstring)."""
    if code is None or math.isnan(code):
        return "unknown"
    c = int(code)
    if 0 <= c <= 3:
        return "sun"
    if c in (45, 48):
        return "fog"
    if 51 <= c <= 57:
        return "drizzle"
    if 61 <= c <= 67 or 80 <= c <= 82 or 95 <= c <= 99:
        return "rain"
    if 71 <= c <= 77 or 85 <= c <= 86:
        return "snow"
    return "unknown"


def meteostat_condition(prcp: float, tmax: float, tavg: float) -> str:
    """The condition Meteostat does not give, from precipitation and temperature (module docstring)."""
    if math.isnan(prcp):
        return "unknown"
    if prcp < 0.1:
        return "sun"
    cold = tmax <= 1.0 if not math.isnan(tmax) else (not math.isnan(tavg) and tavg <= 0.0)
    if cold:
        return "snow"
    return "drizzle" if prcp < 1.0 else "rain"


class _Rows:
    """Day rows as they are read, with their line numbers, turned into a DailyWeather at the end."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.rows: list[tuple[dt.date, int, float, float, float, float, str, float]] = []

    def add(self, date: dt.date, line: int, tmax: float, tmin: float, prcp: float, wind: float, cond: str,
            snow: float = NAN) -> None:
        self.rows.append((date, line, tmax, tmin, prcp, wind, cond, snow))

    def weather(self, wind_kind: str = "mean") -> DailyWeather:
        if not self.rows:
            raise DataFileError(f"{self.label}: has a header but no days")
        rows = sorted(self.rows, key=lambda r: (r[0], r[1]))
        for a, b in zip(rows, rows[1:]):
            if a[0] == b[0]:
                raise DataFileError(f"{self.label} line {b[1]}: date {b[0].isoformat()} appears twice "
                                    f"(also on line {a[1]})")
        cols = list(zip(*rows))
        f = lambda i: np.array(cols[i], dtype=np.float64)  # noqa: E731
        return DailyWeather(dates=np.array(cols[0], dtype="datetime64[D]"), temp_max=f(2), temp_min=f(3),
                            precipitation=f(4), wind=f(5), condition=np.array(cols[6], dtype="<U7"), snow=f(7),
                            source=self.label, wind_kind=wind_kind)


def _float(s: str, label: str, line: int, what: str) -> float:
    s = s.strip()
    if not s or s.lower() in ("nan", "na", "n/a", "null", "-"):
        return NAN
    try:
        return float(s)
    except ValueError:
        raise DataFileError(f"{label} line {line}: {what} {s!r} is not a number") from None


def _date(s: str, label: str, line: int) -> dt.date:
    s = s.strip()
    try:
        return dt.date.fromisoformat(s.replace("/", "-")[:10]) if len(s) >= 10 else dt.date.fromisoformat(s)
    except ValueError:
        raise DataFileError(f"{label} line {line}: date {s!r} does not parse (expected e.g. '2012-01-01')") from None


def _split(line: str) -> list[str]:
    return [c.strip().strip('"') for c in line.split(",")]


def read_weather(path: str | os.PathLike) -> DailyWeather:
    """Read a daily-weather file in any of the formats of the module docstring."""
    p = Path(path)
    label = p.name
    lines = read_text(p).text.splitlines()
    first = [c.lower() for c in _split(lines[0])]
    if first[:2] == ["latitude", "longitude"]:
        return _open_meteo(lines, label)
    if tuple(first[:len(METEOSTAT)]) == METEOSTAT or ("tavg" in first and "prcp" in first):
        return _meteostat(lines[1:], label, first, start_line=2)
    if all(c in first for c in SEATTLE):
        return _seattle(lines, label, first)
    if len(first) == len(METEOSTAT) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", first[0]):
        return _meteostat(lines, label, list(METEOSTAT), start_line=1)
    raise DataFileError(f"{label} line 1: not a weather format this reader knows (expected the Seattle header "
                        f"{','.join(SEATTLE)}, Meteostat daily {','.join(METEOSTAT)}, with or without header, "
                        f"or an Open-Meteo CSV); it starts {lines[0][:60]!r}")


def _columns(header: list[str], want: tuple[str, ...], label: str) -> dict[str, int]:
    missing = [c for c in want if c not in header]
    if missing:
        raise DataFileError(f"{label} line 1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return {c: header.index(c) for c in want}


def _seattle(lines: list[str], label: str, header: list[str]) -> DailyWeather:
    at = _columns(header, SEATTLE, label)
    rows = _Rows(label)
    for n, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        r = _split(text)
        if len(r) < len(header):
            raise DataFileError(f"{label} line {n}: has {len(r)} fields, the header has {len(header)}")
        word = r[at["weather"]].lower()
        rows.add(_date(r[at["date"]], label, n), n, _float(r[at["temp_max"]], label, n, "temp_max"),
                 _float(r[at["temp_min"]], label, n, "temp_min"),
                 _float(r[at["precipitation"]], label, n, "precipitation"),
                 _float(r[at["wind"]], label, n, "wind"), word if word in CONDITIONS else "unknown")
    return rows.weather("mean")


def _meteostat(lines: list[str], label: str, header: list[str], start_line: int) -> DailyWeather:
    at = _columns(header, ("date", "tavg", "tmin", "tmax", "prcp", "snow", "wspd"), label)
    rows = _Rows(label)
    for n, text in enumerate(lines, start=start_line):
        if not text.strip():
            continue
        r = _split(text)
        if len(r) < len(header):
            raise DataFileError(f"{label} line {n}: has {len(r)} fields, expected {len(header)}")
        v = {c: _float(r[at[c]], label, n, c) for c in at if c != "date"}
        rows.add(_date(r[at["date"]], label, n), n, v["tmax"], v["tmin"], v["prcp"], v["wspd"] / 3.6,
                 meteostat_condition(v["prcp"], v["tmax"], v["tavg"]), v["snow"])
    return rows.weather("mean")


# --- Open-Meteo ---------------------------------------------------------------------------------

def _om_name_unit(cell: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([^()]*?)\s*(?:\(([^)]*)\))?\s*", cell)
    name, unit = (m.group(1), m.group(2) or "") if m else (cell, "")
    return name.replace("_", "").lower(), unit.strip()


def _factor(table: dict[str, float], unit: str, label: str, column: str) -> float:
    if unit.lower() not in table:
        raise DataFileError(f"{label}: column {column!r} has unit {unit!r}; expected one of {', '.join(table)}")
    return table[unit.lower()]


class _Block:
    def __init__(self, header_line: int, header: list[str], rows: list[tuple[int, list[str]]]) -> None:
        self.header_line = header_line
        self.cols = [_om_name_unit(h) for h in header]
        self.raw = header
        self.rows = rows

    def find(self, *names: str) -> int | None:
        for want in names:
            for i, (name, _) in enumerate(self.cols):
                if name == want:
                    return i
        return None


def _om_values(block: _Block, i: int | None, label: str, kind: str) -> list[float]:
    if i is None:
        return [NAN] * len(block.rows)
    unit = block.cols[i][1]
    if kind == "temp":
        if unit not in ("°C", "°F", "C", "F", "ºC", "ºF"):
            raise DataFileError(f"{label}: column {block.raw[i]!r} has unit {unit!r}; expected °C or °F")
        conv = (lambda x: (x - 32.0) * 5.0 / 9.0) if unit.endswith("F") else (lambda x: x)
    elif kind == "code":
        conv = lambda x: x  # noqa: E731
    else:
        k = _factor({"wind": _WIND, "precip": _PRECIP, "snow": _SNOW}[kind], unit, label, block.raw[i])
        conv = lambda x: x * k  # noqa: E731
    return [conv(_float(r[i] if i < len(r) else "", label, n, block.raw[i])) for n, r in block.rows]


def _open_meteo(lines: list[str], label: str) -> DailyWeather:
    blocks: list[_Block] = []
    n, total = 2, len(lines)  # lines[0:2] are the location header and its values
    while n < total:
        if not lines[n].strip():
            n += 1
            continue
        header_line, header = n + 1, _split(lines[n])
        rows = []
        n += 1
        while n < total and lines[n].strip():
            rows.append((n + 1, _split(lines[n])))
            n += 1
        blocks.append(_Block(header_line, header, rows))
    blocks = [b for b in blocks if b.cols and b.cols[0][0] == "time"]
    daily = next((b for b in blocks if b.rows and "T" not in b.rows[0][1][0]), None)
    hourly = next((b for b in blocks if b.rows and "T" in b.rows[0][1][0]), None)
    if daily is None and hourly is None:
        raise DataFileError(f"{label}: Open-Meteo file has no daily or hourly block with rows")
    rows = _Rows(label)
    if daily is not None:
        b = daily
        tmax = _om_values(b, b.find("temperature2mmax"), label, "temp")
        tmin = _om_values(b, b.find("temperature2mmin"), label, "temp")
        prcp = _om_values(b, b.find("precipitationsum"), label, "precip")
        mean_i = b.find("windspeed10mmean")
        wind_kind = "mean" if mean_i is not None else "max"
        wind = _om_values(b, mean_i if mean_i is not None else b.find("windspeed10mmax"), label, "wind")
        code = _om_values(b, b.find("weathercode"), label, "code")
        snow = _om_values(b, b.find("snowfallsum"), label, "snow")
        for k, (line, r) in enumerate(b.rows):
            rows.add(_date(r[0], label, line), line, tmax[k], tmin[k], prcp[k], wind[k], wmo_condition(code[k]),
                     snow[k])
        return rows.weather(wind_kind)
    b = hourly
    temp = _om_values(b, b.find("temperature2m"), label, "temp")
    prcp = _om_values(b, b.find("precipitation"), label, "precip")
    wind = _om_values(b, b.find("windspeed10m"), label, "wind")
    code = _om_values(b, b.find("weathercode"), label, "code")
    snow = _om_values(b, b.find("snowfall"), label, "snow")
    days: dict[str, list[int]] = {}
    for k, (_, r) in enumerate(b.rows):
        days.setdefault(r[0][:10], []).append(k)
    for day, ks in days.items():
        line = b.rows[ks[0]][0]

        def agg(values: list[float], how, ks: list[int] = ks) -> float:
            vals = [values[k] for k in ks if not math.isnan(values[k])]
            return float(how(vals)) if vals else NAN
        worst = agg(code, max)
        rows.add(_date(day, label, line), line, agg(temp, max), agg(temp, min), agg(prcp, sum),
                 agg(wind, lambda v: sum(v) / len(v)), wmo_condition(worst), agg(snow, sum))
    return rows.weather("mean")
