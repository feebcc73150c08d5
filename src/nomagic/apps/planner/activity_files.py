"""Summarise one activity file (GPX, TCX or FIT, each optionally ``.gz``): start, duration, distance, HR.

The Strava importer opens these only for rows whose CSV line lacks duration, distance or heart
rate, so the summary is all that is read. Libraries, and why:

* FIT: ``fitdecode`` (MIT; maintained; reads chained FIT files and checks header and file CRCs,
  so a corrupt file is an error, not silent garbage). Session messages give the totals; a file
  without them is summarised from its records.
* GPX: ``gpxpy`` (Apache-2.0; the de-facto GPX parser; handles GPX 1.0/1.1 and gives distance and
  moving time). Heart rate is read from the Garmin TrackPointExtension (``gpxtpx:hr``).
* TCX: the standard library's ``xml.etree.ElementTree`` — TCX is a small, fixed schema (laps with
  TotalTimeSeconds, DistanceMeters, Average/MaximumHeartRateBpm), so a dependency buys nothing.
  Strava's TCX files begin with whitespace before ``<?xml``, which XML parsers reject: it is
  stripped first. Python's bundled expat (>= 2.4.1) refuses entity-expansion bombs.

All errors are ``DataFileError`` naming the file. ``gpxpy`` and ``fitdecode`` are imported only
when such a file is read (``pip install 'nomagic[planner]'``).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from nomagic.errors import DataFileError, require

from .textfile import MAX_FILE_BYTES, gunzip_bytes


@dataclass(frozen=True)
class FileSummary:
    """What an activity file says about the session; ``None`` where it does not say."""

    start: dt.datetime | None = None
    duration_s: float | None = None
    moving_s: float | None = None
    distance_m: float | None = None
    avg_hr: float | None = None
    max_hr: float | None = None


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def _parse_time(s: str | None) -> dt.datetime | None:
    if not s:
        return None
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        return _utc(dt.datetime.fromisoformat(s))
    except ValueError:
        return None


def file_kind(name: str) -> str:
    """"fit", "gpx" or "tcx" from a file name (``.gz`` ignored); "" if none of them."""
    n = name.lower()
    if n.endswith(".gz"):
        n = n[:-3]
    for kind in ("fit", "gpx", "tcx"):
        if n.endswith("." + kind):
            return kind
    return ""


def summarise(data: bytes, name: str) -> FileSummary:
    """Summarise the activity file whose bytes are ``data``; ``name`` decides the format and names it in errors."""
    kind = file_kind(name)
    label = name
    if not kind:
        raise DataFileError(f"{label}: not an activity file this reader knows (expected .fit, .gpx or .tcx, maybe .gz)")
    if data[:2] == b"\x1f\x8b":
        data = gunzip_bytes(data, label)
    if not data.strip():
        raise DataFileError(f"{label}: is empty")
    if kind == "fit":
        return _fit(data, label)
    if kind == "gpx":
        return _gpx(data, label)
    return _tcx(data, label)


def read_activity_file(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES) -> FileSummary:
    """Read and summarise the activity file at ``path``."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise DataFileError(f"{p.name}: cannot be read ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise DataFileError(f"{p.name}: is larger than {max_bytes // (1024 * 1024)} MB; refusing to read it")
    return summarise(data, p.name)


# --- FIT ---------------------------------------------------------------------------------------

def _fit(data: bytes, label: str) -> FileSummary:
    fitdecode = require("fitdecode", "planner")
    sessions: list[dict] = []
    first_t = last_t = None
    max_dist = None
    hr_sum = hr_n = 0
    hr_max = None
    try:
        with fitdecode.FitReader(io.BytesIO(data), check_crc=fitdecode.CrcCheck.ENABLED,
                                 error_handling=fitdecode.ErrorHandling.RAISE) as reader:
            for frame in reader:
                if frame.frame_type != fitdecode.FIT_FRAME_DATA:
                    continue
                if frame.name == "session":
                    sessions.append({f: frame.get_value(f, fallback=None) for f in (
                        "start_time", "total_elapsed_time", "total_timer_time", "total_distance",
                        "avg_heart_rate", "max_heart_rate")})
                elif frame.name == "record":
                    t = frame.get_value("timestamp", fallback=None)
                    if isinstance(t, dt.datetime):
                        first_t = first_t or t
                        last_t = t
                    d = frame.get_value("distance", fallback=None)
                    if isinstance(d, (int, float)):
                        max_dist = d if max_dist is None else max(max_dist, d)
                    h = frame.get_value("heart_rate", fallback=None)
                    if isinstance(h, (int, float)) and h > 0:
                        hr_sum += h
                        hr_n += 1
                        hr_max = h if hr_max is None else max(hr_max, h)
    except DataFileError:
        raise
    except Exception as exc:  # fitdecode raises FitError subclasses, and struct/ValueErrors on garbage
        raise DataFileError(f"{label}: not a valid FIT file ({type(exc).__name__}: {exc})") from exc
    if sessions:
        def total(key: str) -> float | None:
            vals = [s[key] for s in sessions if isinstance(s[key], (int, float))]
            return float(sum(vals)) if vals else None
        timed = [(s["total_timer_time"] or 0, s["avg_heart_rate"]) for s in sessions
                 if isinstance(s["avg_heart_rate"], (int, float))]
        weight = sum(w for w, _ in timed)
        avg_hr = (sum(w * h for w, h in timed) / weight if weight else
                  (sum(h for _, h in timed) / len(timed) if timed else None))
        maxes = [s["max_heart_rate"] for s in sessions if isinstance(s["max_heart_rate"], (int, float))]
        starts = [s["start_time"] for s in sessions if isinstance(s["start_time"], dt.datetime)]
        return FileSummary(start=_utc(min(starts)) if starts else _utc(first_t),
                           duration_s=total("total_elapsed_time"), moving_s=total("total_timer_time"),
                           distance_m=total("total_distance"), avg_hr=avg_hr,
                           max_hr=float(max(maxes)) if maxes else None)
    if first_t is None:
        raise DataFileError(f"{label}: FIT file has neither session nor timed record messages")
    return FileSummary(start=_utc(first_t), duration_s=(last_t - first_t).total_seconds(),
                       distance_m=float(max_dist) if max_dist is not None else None,
                       avg_hr=hr_sum / hr_n if hr_n else None, max_hr=float(hr_max) if hr_max else None)


# --- GPX ---------------------------------------------------------------------------------------

def _gpx(data: bytes, label: str) -> FileSummary:
    gpxpy = require("gpxpy", "planner")
    try:
        gpx = gpxpy.parse(data.lstrip().decode("utf-8-sig", errors="replace"))
    except Exception as exc:  # gpxpy raises GPXXMLSyntaxException / GPXException (and others on odd input)
        raise DataFileError(f"{label}: not a valid GPX file ({exc})") from exc
    points = [p for trk in gpx.tracks for seg in trk.segments for p in seg.points]
    if not points:
        raise DataFileError(f"{label}: GPX file has no track points")
    times = [p.time for p in points if p.time is not None]
    hrs = []
    for p in points:
        for ext in p.extensions:
            for el in ext.iter():
                if el.tag.rsplit("}", 1)[-1].lower() in ("hr", "heartrate") and el.text:
                    try:
                        hrs.append(float(el.text))
                    except ValueError:
                        pass
    moving = gpx.get_moving_data() if times else None
    return FileSummary(start=_utc(min(times)) if times else None,
                       duration_s=(max(times) - min(times)).total_seconds() if times else None,
                       moving_s=float(moving.moving_time) if moving and moving.moving_time else None,
                       distance_m=float(gpx.length_2d()), avg_hr=sum(hrs) / len(hrs) if hrs else None,
                       max_hr=max(hrs) if hrs else None)


# --- TCX ---------------------------------------------------------------------------------------

def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el: ET.Element, name: str) -> ET.Element | None:
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _num(el: ET.Element | None, *path: str) -> float | None:
    for name in path:
        if el is None:
            return None
        el = _child(el, name)
    if el is None or not (el.text or "").strip():
        return None
    try:
        return float(el.text)
    except ValueError:
        return None


def _tcx(data: bytes, label: str) -> FileSummary:
    try:
        root = ET.fromstring(data.lstrip())
    except ET.ParseError as exc:
        raise DataFileError(f"{label}: not a valid TCX file ({exc})") from exc
    if _local(root.tag) != "TrainingCenterDatabase":
        raise DataFileError(f"{label}: not a TCX file (root element is <{_local(root.tag)}>)")
    laps = [el for el in root.iter() if _local(el.tag) == "Lap"]
    if not laps:
        raise DataFileError(f"{label}: TCX file has no laps")
    start = _parse_time(laps[0].get("StartTime"))
    times = [_num(lap, "TotalTimeSeconds") for lap in laps]
    dists = [_num(lap, "DistanceMeters") for lap in laps]
    avgs = [(t or 0.0, _num(lap, "AverageHeartRateBpm", "Value")) for t, lap in zip(times, laps)]
    avgs = [(t, h) for t, h in avgs if h is not None]
    maxes = [h for h in (_num(lap, "MaximumHeartRateBpm", "Value") for lap in laps) if h is not None]
    duration = sum(t for t in times if t is not None) if any(t is not None for t in times) else None
    if duration is None or start is None:  # fall back on the track points' times
        stamps = [_parse_time(el.text) for el in root.iter() if _local(el.tag) == "Time"]
        stamps = [s for s in stamps if s is not None]
        if stamps:
            start = start or min(stamps)
            duration = duration if duration is not None else (max(stamps) - min(stamps)).total_seconds()
    weight = sum(t for t, _ in avgs)
    avg_hr = (sum(t * h for t, h in avgs) / weight if weight else
              (sum(h for _, h in avgs) / len(avgs) if avgs else None))
    return FileSummary(start=start, duration_s=duration, moving_s=duration,
                       distance_m=sum(d for d in dists if d is not None) if any(d is not None for d in dists) else None,
                       avg_hr=avg_hr, max_hr=max(maxes) if maxes else None)
