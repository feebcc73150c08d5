"""Read the planner's plain training-log CSV: ``date,type,duration_min,distance_km[,avg_hr][,rpe]``.

This is a file the athlete keeps by hand, so unlike a Strava export it is held to its word: a
header is required (columns found by name, in any order), dates are ISO (``2015-03-01``),
several sessions per day are fine, ``distance_km``, ``avg_hr`` and ``rpe`` may be blank. A value
that cannot be right — a date that does not parse, a duration below 0 or above 24 h, a distance
below 0 or above 1000 km, a heart rate outside 25–250, an RPE outside 0–10 — is a
``DataFileError`` naming the line, not a silent skip: the athlete can fix their own file, and a
skipped session would quietly distort the training load. Only blank lines are ignored.
``type`` is mapped by :func:`sports.sport_of` and kept as ``kind``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from pathlib import Path

from nomagic.errors import DataFileError

from .records import Activity, TrainingLog
from .sports import sport_of
from .textfile import read_text

REQUIRED = ("date", "type", "duration_min", "distance_km")
OPTIONAL = ("avg_hr", "rpe")
_BOUNDS = {"duration_min": (0.0, 24 * 60.0, "min"), "distance_km": (0.0, 1000.0, "km"),
           "avg_hr": (25.0, 250.0, "bpm"), "rpe": (0.0, 10.0, "")}


def parse_log_csv(text: str, label: str) -> TrainingLog:
    """Parse the text of a plain training-log CSV named ``label`` (see the module docstring)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lstrip("\ufeff").lower() for h in next(reader)]
    except StopIteration:
        raise DataFileError(f"{label}: is empty") from None
    except csv.Error as exc:
        raise DataFileError(f"{label} line 1: header is not valid CSV ({exc})") from exc
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataFileError(f"{label} line 1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                            f"(the header must name {','.join(REQUIRED)}[,avg_hr][,rpe])")
    at = {c: header.index(c) for c in REQUIRED + OPTIONAL if c in header}
    activities = []
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataFileError(f"{label} line {line}: not valid CSV ({exc})") from exc
        if not row or not any(c.strip() for c in row):
            continue
        where = f"{label} line {line}"
        if len(row) < len(header):
            row = row + [""] * (len(header) - len(row))
        raw_date = row[at["date"]].strip()
        try:
            date = dt.date.fromisoformat(raw_date)
        except ValueError:
            raise DataFileError(f"{where}: date {raw_date!r} does not parse (expected e.g. '2015-03-01')") from None
        vals: dict[str, float | None] = {}
        for c in ("duration_min", "distance_km", "avg_hr", "rpe"):
            s = row[at[c]].strip() if c in at else ""
            if not s:
                if c == "duration_min":
                    raise DataFileError(f"{where}: duration_min is empty")
                vals[c] = None
                continue
            try:
                v = float(s)
            except ValueError:
                raise DataFileError(f"{where}: {c} {s!r} is not a number") from None
            lo, hi, unit = _BOUNDS[c]
            if not lo <= v <= hi:
                raise DataFileError(f"{where}: {c} {s} is outside {lo:g}–{hi:g}{' ' + unit if unit else ''}")
            vals[c] = v
        kind = row[at["type"]].strip()
        activities.append(Activity(
            date=date, sport=sport_of(kind), duration_s=vals["duration_min"] * 60.0,
            start=dt.datetime(date.year, date.month, date.day, tzinfo=dt.timezone.utc), kind=kind,
            distance_m=vals["distance_km"] * 1000.0 if vals["distance_km"] is not None else None,
            avg_hr=vals["avg_hr"], rpe=vals["rpe"], source=f"{label}:{line}"))
    if not activities:
        raise DataFileError(f"{label}: has a header but no sessions")
    activities.sort(key=lambda a: a.date)  # stable: sessions of one day keep the file's order
    return TrainingLog(tuple(activities), (), source=label)


def read_log_csv(path: str | os.PathLike) -> TrainingLog:
    """Read a plain training-log CSV file (see the module docstring)."""
    p = Path(path)
    return parse_log_csv(read_text(p).text, p.name)
