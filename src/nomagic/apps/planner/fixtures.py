"""Synthetic but realistic Strava exports, for the tests and for ``nomagic bench`` (importing ten years).

Real exports cannot ship (they are people's lives), so this writes one with the quirks that matter:
the current 99-column header with its repeated names (``Elapsed Time`` at 5 and 15, ``Distance`` 6
and 17, ``Max Heart Rate`` 7 and 30, ``Relative Effort`` 8 and 37, ``Commute`` 9 and 50), the
2021-era 87-column header with untranslated-HTML names, or the oldest 10-column lower-case one;
US or UK dates; names with commas and doubled quotes; activity files as ``.gpx``, ``.tcx.gz``
(starting with whitespace, as Strava's do) and ``.fit.gz``; and every ``missing_every``-th row
with a file left without elapsed time, distance and heart rate, so the importer must read the file.

FIT files are written here byte by byte (header, definition and data messages, CRC-16 as the FIT
SDK specifies) so that neither the package nor the benchmark needs a FIT-writing dependency.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .records import Activity
from .sports import sport_of

_CURRENT = (
    "Activity ID, Activity Date, Activity Name, Activity Type, Activity Description, Elapsed Time, Distance, "
    "Max Heart Rate, Relative Effort, Commute, Activity Private Note, Activity Gear, Filename, Athlete Weight, "
    "Bike Weight, Elapsed Time, Moving Time, Distance, Max Speed, Average Speed, Elevation Gain, Elevation Loss, "
    "Elevation Low, Elevation High, Max Grade, Average Grade, Average Positive Grade, Average Negative Grade, "
    "Max Cadence, Average Cadence, Max Heart Rate, Average Heart Rate, Max Watts, Average Watts, Calories, "
    "Max Temperature, Average Temperature, Relative Effort, Total Work, Number of Runs, Uphill Time, Downhill Time, "
    "Other Time, Perceived Exertion, Type, Start Time, Weighted Average Power, Power Count, "
    "Prefer Perceived Exertion, Perceived Relative Effort, Commute, Total Weight Lifted, From Upload, "
    "Grade Adjusted Distance, Weather Observation Time, Weather Condition, Weather Temperature, "
    "Apparent Temperature, Dewpoint, Humidity, Weather Pressure, Wind Speed, Wind Gust, Wind Bearing, "
    "Precipitation Intensity, Sunrise Time, Sunset Time, Moon Phase, Bike, Gear, Precipitation Probability, "
    "Precipitation Type, Cloud Cover, Weather Visibility, UV Index, Weather Ozone, Jump Count, Total Grit, "
    "Average Flow, Flagged, Average Elapsed Speed, Dirt Distance, Newly Explored Distance, "
    "Newly Explored Dirt Distance, Activity Count, Total Steps, Carbon Saved, Pool Length, Training Load, "
    "Intensity, Average Grade Adjusted Pace, Timer Time, Total Cycles, Media, Recovery, With Pet, Competition, "
    "Long Run, For a Cause").split(", ")
_OLD = ["id", "date", "name", "type", "description", "elapsed_time", "distance", "commute", "gear", "filename"]
_HTML = ('<span class="translation_missing" title="translation missing: '
         'en-US.lib.export.portability_exporter.activities.horton_values.{key}">{text}</span>')
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def strava_header(variant: str = "current") -> list[str]:
    """The header of a ``"current"`` (99 columns), ``"2021"`` (87, some HTML) or ``"old"`` (10) export."""
    if variant == "current":
        return list(_CURRENT)
    if variant == "2021":
        h = list(_CURRENT[:87])
        h[3] = _HTML.format(key="activity_type", text="Activity Type")
        h[31] = _HTML.format(key="average_heart_rate", text="Average Heart Rate")
        h[43] = _HTML.format(key="perceived_exertion", text="")
        return h
    if variant == "old":
        return list(_OLD)
    raise ValueError(f"unknown export variant {variant!r}")


def us_date(t: dt.datetime) -> str:
    """``Feb 22, 2021, 10:30:06 AM``"""
    h12 = t.hour % 12 or 12
    ampm = "AM" if t.hour < 12 else "PM"
    return f"{MONTHS[t.month - 1]} {t.day}, {t.year}, {h12}:{t.minute:02d}:{t.second:02d} {ampm}"


def uk_date(t: dt.datetime) -> str:
    """``24 Dec 2020, 08:13:59``"""
    return f"{t.day} {MONTHS[t.month - 1]} {t.year}, {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


# --- FIT writing -------------------------------------------------------------------------------

def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()
FIT_EPOCH = dt.datetime(1989, 12, 31, tzinfo=dt.timezone.utc)


def fit_crc(data: bytes, crc: int = 0) -> int:
    """The FIT SDK's CRC-16 (CRC-16/ARC, polynomial 0x8005 reflected)."""
    for b in data:
        crc = (crc >> 8) ^ _CRC[(crc ^ b) & 0xFF]
    return crc


_FMT = {0x00: "B", 0x02: "B", 0x84: "H", 0x85: "i", 0x86: "I", 0x8C: "I"}


def _definition(local: int, global_num: int, fields: list[tuple[int, int]]) -> bytes:
    out = struct.pack("<BBBHB", 0x40 | local, 0, 0, global_num, len(fields))
    for num, base in fields:
        out += struct.pack("<BBB", num, struct.calcsize("<" + _FMT[base]), base)
    return out


def _data(local: int, fields: list[tuple[int, int]], values: list[int]) -> bytes:
    return struct.pack("<B" + "".join(_FMT[b] for _, b in fields), local, *values)


def fit_bytes(start: dt.datetime, duration_s: float, distance_m: float, avg_hr: int, max_hr: int,
              step_s: int = 30) -> bytes:
    """A small FIT activity: file_id, records every ``step_s`` seconds, and a session with the totals."""
    t0 = int((start - FIT_EPOCH).total_seconds())
    file_id = [(0, 0x00), (1, 0x84), (2, 0x84), (3, 0x8C), (4, 0x86)]
    record = [(253, 0x86), (5, 0x86), (3, 0x02)]
    session = [(253, 0x86), (2, 0x86), (7, 0x86), (8, 0x86), (9, 0x86), (5, 0x00), (16, 0x02), (17, 0x02)]
    body = [_definition(0, 0, file_id), _data(0, file_id, [4, 255, 0, 12345, t0]), _definition(1, 20, record)]
    n = max(1, int(duration_s // step_s))
    for i in range(n + 1):
        frac = i / n
        hr = int(avg_hr + (max_hr - avg_hr) * math.sin(math.pi * frac) ** 8)
        body.append(_data(1, record, [t0 + int(duration_s * frac), int(distance_m * frac * 100), hr]))
    body.append(_definition(2, 18, session))
    body.append(_data(2, session, [t0 + int(duration_s), t0, int(duration_s * 1000), int(duration_s * 1000),
                                   int(distance_m * 100), 1, avg_hr, max_hr]))
    data = b"".join(body)
    header = struct.pack("<BBHI4s", 14, 0x20, 2132, len(data), b".FIT")
    header += struct.pack("<H", fit_crc(header))
    return header + data + struct.pack("<H", fit_crc(header + data))


def _track(start: dt.datetime, duration_s: float, distance_m: float, step_s: int):
    n = max(1, int(duration_s // step_s))
    lat0, lon0 = 47.6, -122.3
    dlat = distance_m / 6_371_000 * 180 / math.pi  # due north, so the distance is all latitude
    for i in range(n + 1):
        frac = i / n
        yield start + dt.timedelta(seconds=duration_s * frac), lat0 + dlat * frac, lon0, frac


def gpx_text(start: dt.datetime, duration_s: float, distance_m: float, avg_hr: int, step_s: int = 30) -> str:
    """A GPX 1.1 track due north with Garmin heart-rate extensions (constant ``avg_hr``)."""
    pts = "".join(
        f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}"><ele>10.0</ele><time>{t:%Y-%m-%dT%H:%M:%SZ}</time>'
        f"<extensions><gpxtpx:TrackPointExtension><gpxtpx:hr>{avg_hr}</gpxtpx:hr></gpxtpx:TrackPointExtension>"
        "</extensions></trkpt>\n" for t, lat, lon, _ in _track(start, duration_s, distance_m, step_s))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<gpx creator="StravaGPX" version="1.1" '
            'xmlns="http://www.topografix.com/GPX/1/1" '
            'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">\n'
            f"<metadata><time>{start:%Y-%m-%dT%H:%M:%SZ}</time></metadata>\n<trk><name>x</name><trkseg>\n"
            f"{pts}</trkseg></trk></gpx>\n")


def tcx_text(start: dt.datetime, duration_s: float, distance_m: float, avg_hr: int, max_hr: int,
             step_s: int = 30) -> str:
    """A TCX activity with one lap, starting with whitespace the way Strava's TCX files do."""
    pts = "".join(f"<Trackpoint><Time>{t:%Y-%m-%dT%H:%M:%SZ}</Time><DistanceMeters>{distance_m * f:.1f}"
                  f"</DistanceMeters><HeartRateBpm><Value>{avg_hr}</Value></HeartRateBpm></Trackpoint>\n"
                  for t, _, _, f in _track(start, duration_s, distance_m, step_s))
    iso = f"{start:%Y-%m-%dT%H:%M:%SZ}"
    return ("          \n\n"
            '<?xml version="1.0" encoding="UTF-8"?>\n<TrainingCenterDatabase '
            'xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2">\n<Activities>'
            f'<Activity Sport="Running"><Id>{iso}</Id><Lap StartTime="{iso}">'
            f"<TotalTimeSeconds>{duration_s:.1f}</TotalTimeSeconds><DistanceMeters>{distance_m:.1f}</DistanceMeters>"
            f"<AverageHeartRateBpm><Value>{avg_hr}</Value></AverageHeartRateBpm>"
            f"<MaximumHeartRateBpm><Value>{max_hr}</Value></MaximumHeartRateBpm><Track>\n{pts}</Track></Lap>"
            "</Activity></Activities></TrainingCenterDatabase>\n")


# --- the export ---------------------------------------------------------------------------------

_KINDS = (("Run", 0.40), ("Ride", 0.18), ("Trail Run", 0.06), ("Virtual Ride", 0.06), ("Swim", 0.07),
          ("Walk", 0.06), ("Hike", 0.04), ("Weight Training", 0.07), ("Yoga", 0.03), ("E-Bike Ride", 0.03))
_SPEED = {"run": 3.0, "ride": 7.5, "swim": 0.8, "walk": 1.4, "hike": 1.1}
_NAMES = ("Morning {k}", "Lunch {k}", 'Evening {k}, "easy"', "{k} with Anna, Ben and Chris", 'Tempo "{k}", hills')


@dataclass(frozen=True)
class SyntheticExport:
    """Where the export was written, and the activities it holds (what an importer should read)."""

    path: Path
    activities: tuple[Activity, ...]


def make_strava_export(dest: str | os.PathLike, *, n: int = 3000, years: float = 10.0, variant: str = "current",
                       layout: str = "zip", dates: str = "us", miles: bool = False, missing_every: int = 25,
                       seed: int = 0, step_s: int = 30) -> SyntheticExport:
    """Write a synthetic Strava export under ``dest``: ``layout`` "zip" (``export.zip``) or "folder".

    ``variant`` "current" (99 columns), "2021" (87) or "old" (10). With ``miles`` the first
    ``Distance`` column is in miles (the importer must use the metres one). Every
    ``missing_every``-th activity that has a file has blank elapsed time, distance and heart rate.
    """
    rng = np.random.default_rng(seed)
    dest = Path(dest)
    header = strava_header(variant)
    col = {}
    for i, h in enumerate(_CURRENT if variant != "old" else _OLD):
        col.setdefault(h, []).append(i)
    kinds, probs = zip(*_KINDS)
    probs = np.array(probs) / sum(probs)
    t0 = dt.datetime(2015, 1, 1, 6, 0, tzinfo=dt.timezone.utc)
    gaps = rng.uniform(0.2, 2.0, n)
    offsets = np.cumsum(gaps) * (years * 365.25 * 86400 / gaps.sum())
    files: dict[str, bytes] = {}
    rows, truth = [], []
    fmt_date = us_date if dates == "us" else uk_date
    with_file = 0
    for i in range(n):
        kind = str(rng.choice(kinds, p=probs))
        sport = sport_of(kind)
        start = (t0 + dt.timedelta(seconds=float(offsets[i]))).replace(microsecond=0)
        duration = float(int(rng.uniform(20, 120) * 60))
        distance = round(duration * _SPEED[sport] * rng.uniform(0.8, 1.2), 1) if sport in _SPEED else 0.0
        avg_hr = int(rng.uniform(110, 160))
        max_hr = avg_hr + int(rng.uniform(10, 30))
        aid = 1_000_000 + 7 * i
        name = _NAMES[i % len(_NAMES)].format(k=kind.lower())
        fname = ""
        if sport in _SPEED and kind != "Virtual Ride":
            ext = ("gpx", "tcx.gz", "fit.gz")[(with_file + with_file // 3) % 3]  # not in step with the blanks
            fname = f"activities/{aid}.{ext}"
            if ext == "gpx":
                files[fname] = gpx_text(start, duration, distance, avg_hr, step_s).encode()
            elif ext == "tcx.gz":
                files[fname] = gzip.compress(tcx_text(start, duration, distance, avg_hr, max_hr, step_s).encode(),
                                             compresslevel=1, mtime=0)
            else:
                files[fname] = gzip.compress(fit_bytes(start, duration, distance, avg_hr, max_hr, step_s),
                                             compresslevel=1, mtime=0)
            with_file += 1
        blank = bool(fname) and with_file % missing_every == 0
        row = [""] * len(header)
        if variant == "old":
            row[:] = [str(aid), f"{start:%Y-%m-%d %H:%M:%S}", name, kind, "", "" if blank else str(int(duration)),
                      "" if blank else f"{distance:.1f}", "false", "", fname]
            avg_hr = max_hr = None if not blank else avg_hr
        else:
            def put(key: str, value: str, occ: int = 0, row: list[str] = row) -> None:
                if occ < len(col[key]) and col[key][occ] < len(row):
                    row[col[key][occ]] = value
            put("Activity ID", str(aid))
            put("Activity Date", fmt_date(start))
            put("Activity Name", name)
            put("Activity Type", kind)
            put("Filename", fname)
            put("Commute", "false")
            put("Commute", "0.0", 1)
            if not blank:
                shown = distance / (1609.344 if miles else 1000.0)
                put("Elapsed Time", str(int(duration)))
                put("Elapsed Time", f"{duration:.1f}", 1)
                put("Moving Time", f"{duration:.1f}")
                put("Distance", f"{shown:.2f}")
                put("Distance", f"{distance:.1f}", 1)
                put("Max Heart Rate", f"{max_hr:.1f}")
                put("Max Heart Rate", f"{max_hr:.1f}", 1)
                put("Average Heart Rate", f"{avg_hr:.1f}")
                if i % 4 == 0:
                    put("Perceived Exertion", str(int(rng.integers(2, 9))))
        truth.append(dict(start=start, kind=kind, sport=sport, name=name, duration=duration, distance=distance,
                          avg_hr=avg_hr, max_hr=max_hr, blank=blank, file=fname))
        rows.append(row)
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    csv_bytes = buf.getvalue().encode("utf-8")
    activities = tuple(Activity(date=t["start"].date(), sport=t["sport"], duration_s=t["duration"],
                                start=t["start"], kind=t["kind"], name=t["name"], distance_m=t["distance"],
                                avg_hr=t["avg_hr"], max_hr=t["max_hr"]) for t in truth)
    dest.mkdir(parents=True, exist_ok=True)
    if layout == "zip":
        path = dest / "export.zip"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr("activities.csv", csv_bytes)
            zf.writestr("profile.csv", "Athlete ID,Email Address\n1,someone@example.com\n")
            for name, data in files.items():
                zf.writestr(name, data)
        return SyntheticExport(path, activities)
    if layout != "folder":
        raise ValueError(f"unknown layout {layout!r}")
    path = dest / "export"
    (path / "activities").mkdir(parents=True, exist_ok=True)
    (path / "activities.csv").write_bytes(csv_bytes)
    for name, data in files.items():
        (path / name).write_bytes(data)
    return SyntheticExport(path, activities)
