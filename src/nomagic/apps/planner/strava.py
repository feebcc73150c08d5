"""Read a Strava bulk export ("Download your data"): the zip, the unpacked folder, or ``activities.csv``.

Columns are found by NAME and by which OCCURRENCE of that name they are, never by position, because
the export's columns changed over the years:

* current exports: ~99 (some 103) columns, with repeated names: ``Elapsed Time`` (1st: integer
  seconds, 2nd: float seconds), ``Distance`` (1st: the athlete's display unit, km or miles with 2
  decimals; 2nd: metres), ``Max Heart Rate``, ``Relative Effort``, ``Commute``;
* 2021-era exports: 87 columns, some names left as untranslated HTML such as
  ``<span class="translation_missing" title="translation missing: en-US.lib...activity_type">Activity
  Type</span>``: tags are stripped and the text used, or, if the text is empty, the title's last
  dotted part with underscores as spaces;
* the oldest exports: ``id,date,name,type,description,elapsed_time,distance,commute,gear,filename``,
  ISO dates, distance in metres.

Units: duration is the 2nd ``Elapsed Time`` (or the 1st, or ``elapsed_time``) in seconds; distance
is the 2nd ``Distance`` in metres where present, otherwise the 1st, taken as KILOMETRES (the unit
the export does not state; an athlete with miles set should rely on the metres column, which
current exports always have), and in the old format metres. Heart rates from ``Average Heart
Rate`` and ``Max Heart Rate``; ``Perceived Exertion`` (1–10) as ``rpe``. Dates are UTC, in US
English ``Feb 22, 2021, 10:30:06 AM`` or UK English ``24 Dec 2020, 08:13:59`` (or ISO in old
exports); ``Activity.date`` is the UTC date. Sports are mapped by :func:`sports.sport_of`.

Activity files (``Filename``, e.g. ``activities/1234.fit.gz``) are opened only for rows whose CSV
values lack duration or distance, or heart rate when the export has heart rates at all (an athlete
without a strap would otherwise have every file opened for nothing) — a ten-year export imports in
well under the 3 s budget because most rows never touch their file.

Exports carry junk, so a bad row (wrong field count, unparsable date, negative or absurd values, an
activity without duration and no readable file) is skipped and reported as ``Skipped`` with its
line; an unreadable activity file is reported by its name. The whole import fails with
``DataFileError`` only when the file cannot be a Strava export (missing columns, a non-English
header), has no rows, or not one row could be used.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from collections.abc import Callable
from pathlib import Path

from nomagic.errors import DataFileError

from .activity_files import FileSummary, summarise
from .records import Activity, Skipped, TrainingLog
from .safezip import SafeZip, _unsafe_reason, is_zip
from .sports import sport_of
from .textfile import MAX_FILE_BYTES, decode_text, read_text

#: Rows with values beyond these are junk (skipped and reported).
MAX_DURATION_S = 72 * 3600
MAX_DISTANCE_M = 2_000_000
HR_RANGE = (25.0, 250.0)

_DATE_FORMATS = ("%b %d, %Y, %I:%M:%S %p", "%d %b %Y, %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
                 "%b %d, %Y %I:%M:%S %p", "%d %b %Y %H:%M:%S", "%Y-%m-%d")
DATE_HINT = "expected e.g. 'Mar 1, 2015, 5:32:25 PM' or '1 Mar 2015, 17:32:25'"
_GERMAN = ("aktivitäts-id", "aktivitätsdatum", "aktivitätsname", "aktivitätsart", "verstrichene zeit")


def clean_column_name(raw: str) -> str:
    """A header cell as a lower-case name: HTML tags stripped (title tail if no text), ``_`` as spaces."""
    s = raw.strip().lstrip("\ufeff")
    if "<" in s:
        text = re.sub(r"<[^>]*>", "", s).strip()
        if not text:
            m = re.search(r'title="([^"]*)"', s)
            text = m.group(1).rsplit(".", 1)[-1] if m else ""
        s = text
    return " ".join(s.replace("_", " ").split()).lower()


def parse_strava_date(text: str) -> dt.datetime | None:
    """A Strava export date as an aware UTC datetime, or None if it is in none of the known formats."""
    s = " ".join(text.replace("\u202f", " ").replace("\xa0", " ").split())
    if s.endswith("Z"):
        s = s[:-1]
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(s, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    return None


class _Columns:
    """Where each named column is, by (name, occurrence)."""

    def __init__(self, header: list[str], label: str) -> None:
        self.names = [clean_column_name(h) for h in header]
        self.at: dict[str, list[int]] = {}
        for i, n in enumerate(self.names):
            self.at.setdefault(n, []).append(i)
        if any(n in self.at for n in _GERMAN):
            raise DataFileError(f"{label}: the header is not English ({header[0]!r}, ...); request the Strava export "
                                "with the display language set to English, or use the old-format activities.csv")
        self.old = "activity date" not in self.at and "date" in self.at and "id" in self.at
        self.date = self.first("activity date", "date")
        if self.date is None:
            raise DataFileError(f"{label}: missing column 'Activity Date' (or 'date'); not a Strava activities.csv? "
                                f"header starts {', '.join(header[:4])!r}")
        if self.first("elapsed time") is None:
            raise DataFileError(f"{label}: missing column 'Elapsed Time' (or 'elapsed_time')")
        self.type = self.first("activity type", "type")
        self.name = self.first("activity name", "name")
        self.filename = self.first("filename")

    def first(self, *names: str) -> int | None:
        for n in names:
            if n in self.at:
                return self.at[n][0]
        return None

    def all(self, name: str) -> list[int]:
        return self.at.get(name, [])


def _num(row: list[str], idx: int | None) -> float | None:
    if idx is None:
        return None
    s = row[idx].strip()
    if not s:
        return None
    try:
        return float(s)
    except ValueError:
        return None


def _last_num(row: list[str], idxs: list[int]) -> float | None:
    """The value of the last occurrence that has one (later columns are the precise ones)."""
    for i in reversed(idxs):
        v = _num(row, i)
        if v is not None:
            return v
    return None


def _strava_values(row: list[str], cols: _Columns) -> tuple[float | None, float | None]:
    elapsed = cols.all("elapsed time")
    duration = _last_num(row, elapsed)
    dists = cols.all("distance")
    distance = None
    if cols.old:
        distance = _num(row, dists[0]) if dists else None
    elif len(dists) >= 2 and _num(row, dists[1]) is not None:
        distance = _num(row, dists[1])
    elif dists:
        km = _num(row, dists[0])
        distance = km * 1000.0 if km is not None else None
    return duration, distance


def parse_activities_csv(text: str, label: str,
                         open_file: Callable[[str], bytes] | None = None) -> TrainingLog:
    """Parse the text of a Strava ``activities.csv``; ``open_file(relative_name)`` reads activity files."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataFileError(f"{label}: is empty") from None
    except csv.Error as exc:
        raise DataFileError(f"{label} line 1: header is not valid CSV ({exc})") from exc
    cols = _Columns(header, label)
    ncols = len(header)
    avg_i, max_is = cols.first("average heart rate"), cols.all("max heart rate")
    rpe_i, moving_i = cols.first("perceived exertion"), cols.first("moving time")
    hr_cols = ([avg_i] if avg_i is not None else []) + max_is
    has_hr = _column_has_values(text, hr_cols)
    activities: list[Activity] = []
    skipped: list[Skipped] = []
    rows = 0
    while True:
        start_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            skipped.append(Skipped(f"{label}:{start_line}", f"not valid CSV ({exc})"))
            continue
        if not row or not any(c.strip() for c in row):
            continue
        rows += 1
        where = f"{label}:{start_line}"
        if len(row) != ncols:
            skipped.append(Skipped(where, f"has {len(row)} fields, the header has {ncols}"))
            continue
        start = parse_strava_date(row[cols.date])
        if start is None:
            skipped.append(Skipped(where, f"date {row[cols.date]!r} does not parse ({DATE_HINT})"))
            continue
        kind = row[cols.type].strip() if cols.type is not None else ""
        duration, distance = _strava_values(row, cols)
        avg_hr, max_hr = _num(row, avg_i), _last_num(row, max_is)
        moving = _num(row, moving_i)
        fname = row[cols.filename].strip() if cols.filename is not None else ""
        if fname and open_file and (duration is None or distance is None or (has_hr and avg_hr is None)):
            summary = _summary(fname, open_file, skipped)
            if summary is not None:
                duration = duration if duration is not None else summary.duration_s
                distance = distance if distance is not None else summary.distance_m
                moving = moving if moving is not None else summary.moving_s
                avg_hr = avg_hr if avg_hr is not None else summary.avg_hr
                max_hr = max_hr if max_hr is not None else summary.max_hr
        problem = _junk(duration, distance, avg_hr, max_hr)
        if problem:
            if duration is None and fname:
                problem += " (and no readable activity file)"
            skipped.append(Skipped(where, problem))
            continue
        rpe = _num(row, rpe_i)
        if rpe is not None and not 0 <= rpe <= 10:
            skipped.append(Skipped(where, f"perceived exertion {rpe:g} is outside 0–10"))
            continue
        activities.append(Activity(
            date=start.date(), sport=sport_of(kind), duration_s=duration, start=start, kind=kind,
            name=row[cols.name].strip() if cols.name is not None else "", moving_s=moving,
            distance_m=distance, avg_hr=avg_hr, max_hr=max_hr, rpe=rpe, source=where))
    if rows == 0:
        raise DataFileError(f"{label}: has a header but no activities")
    if not activities:
        first = skipped[0]
        where = (f"{label} line {first.source[len(label) + 1:]}" if first.source.startswith(label + ":")
                 else f"{label}: {first.source}")
        raise DataFileError(f"{where}: {first.reason}; not one activity in the file could be read")
    activities.sort(key=lambda a: (a.start, a.source))
    return TrainingLog(tuple(activities), tuple(skipped), source=label)


def _column_has_values(text: str, idxs: list[int]) -> bool:
    """Does any row have a value in any of these columns? (scans only until the first one that does)"""
    if not idxs:
        return False
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        next(reader, None)
        for row in reader:
            if any(i < len(row) and row[i].strip() for i in idxs):
                return True
    except csv.Error:
        pass
    return False


def _junk(duration: float | None, distance: float | None, avg_hr: float | None, max_hr: float | None) -> str:
    if duration is None:
        return "no elapsed time"
    if not 0 < duration <= MAX_DURATION_S:
        return f"elapsed time {duration:g} s is not between 0 and {MAX_DURATION_S // 3600} h"
    if distance is not None and not 0 <= distance <= MAX_DISTANCE_M:
        return f"distance {distance:g} m is not between 0 and {MAX_DISTANCE_M // 1000} km"
    for what, hr in (("average heart rate", avg_hr), ("max heart rate", max_hr)):
        if hr is not None and not HR_RANGE[0] <= hr <= HR_RANGE[1]:
            return f"{what} {hr:g} is outside {HR_RANGE[0]:g}–{HR_RANGE[1]:g}"
    return ""


def _summary(fname: str, open_file: Callable[[str], bytes], skipped: list[Skipped]) -> FileSummary | None:
    try:
        return summarise(open_file(fname), fname)
    except DataFileError as exc:
        reason = str(exc)
        skipped.append(Skipped(fname, reason[len(fname) + 2:] if reason.startswith(fname + ": ") else reason))
        return None


def _folder_opener(base: Path) -> Callable[[str], bytes]:
    root = base.resolve()

    def open_file(rel: str) -> bytes:
        bad = _unsafe_reason(rel)
        if bad:
            raise DataFileError(f"{rel}: {bad}; not opened")
        p = (root / rel).resolve()
        if root not in p.parents:
            raise DataFileError(f"{rel}: lies outside the export folder; not opened")
        try:
            with open(p, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise DataFileError(f"{rel}: file not found") from None
        except OSError as exc:
            raise DataFileError(f"{rel}: cannot be read ({exc.strerror or exc})") from exc
        if len(data) > MAX_FILE_BYTES:
            raise DataFileError(f"{rel}: is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
        return data

    return open_file


def read_strava(path: str | os.PathLike, *, read_files: bool = True) -> TrainingLog:
    """Read a Strava export: the ``.zip``, its unpacked folder, or its ``activities.csv``.

    ``read_files=False`` never opens activity files (rows lacking duration are then skipped).
    """
    p = Path(path)
    if p.is_dir():
        csv_path = p / "activities.csv"
        if not csv_path.is_file():
            raise DataFileError(f"{p.name}: folder has no activities.csv; is it an unpacked Strava export?")
        text = read_text(csv_path, label="activities.csv").text
        return parse_activities_csv(text, "activities.csv", _folder_opener(p) if read_files else None)
    if not p.exists():
        raise DataFileError(f"{p.name}: file not found")
    if is_zip(p) or p.suffix.lower() == ".zip":
        with SafeZip(p) as zf:
            member = zf.find("activities.csv")
            if member is None:
                raise DataFileError(f"{p.name}: the zip has no activities.csv; is it a Strava export?")
            prefix = member[: -len("activities.csv")]
            label = "activities.csv"
            text = decode_text(zf.read(member), label).text

            def open_file(rel: str) -> bytes:
                name = prefix + rel.replace("\\", "/")
                if name not in zf:
                    raise DataFileError(f"{rel}: not in the zip")
                return zf.read(name)

            return parse_activities_csv(text, label, open_file if read_files else None)
    text = read_text(p).text
    return parse_activities_csv(text, p.name, _folder_opener(p.parent) if read_files else None)
