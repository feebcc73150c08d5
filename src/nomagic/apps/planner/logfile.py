"""Read whatever training log the athlete gives, by looking at it: ``read_log(path) -> TrainingLog``.

* a folder: an unpacked Strava export (it must hold ``activities.csv``);
* a zip archive (by its first bytes, or a ``.zip`` name): a Strava export;
* a text file: the header decides. Strava's ``activities.csv`` names ``Activity Date`` /
  ``Elapsed Time`` (or, in the oldest exports, ``id``, ``date`` and ``elapsed_time``); the plain log
  names ``date,type,duration_min,distance_km[,avg_hr][,rpe]``. A header that is neither is refused
  with a message naming both.
* ``None``: the log shipped with nomagic (``nomagic/data/athlete-log.csv``).

The text is read once (``textfile.read_text``: UTF-8, UTF-16 with a BOM, latin-1, gzip; binary
files, huge files and huge lines refused) and handed to the matching parser; a CSV export's
activity files are looked up beside it. Every problem is a ``DataFileError`` naming the file.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from nomagic.errors import DataFileError

from .logcsv import REQUIRED, parse_log_csv
from .records import TrainingLog
from .safezip import is_zip
from .strava import _folder_opener, clean_column_name, parse_activities_csv, read_strava
from .textfile import read_text

#: What ``detect`` can say.
KINDS = ("shipped", "strava-folder", "strava-zip", "strava-csv", "log-csv")
_STRAVA_MARKS = {"activity date", "elapsed time", "activity id"}


def header_kind(text: str, label: str) -> str:
    """``"strava-csv"`` or ``"log-csv"`` from the first CSV record of ``text`` (``DataFileError`` if neither)."""
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:
        raise DataFileError(f"{label} line 1: header is not valid CSV ({exc})") from exc
    names = {clean_column_name(h) for h in header}
    if names & _STRAVA_MARKS or {"id", "date", "elapsed time"} <= names:
        return "strava-csv"
    plain = {h.strip().lstrip("\ufeff").lower() for h in header}
    if plain & set(REQUIRED):
        return "log-csv"  # the plain log's reader names any missing column
    shown = ",".join(h.strip() for h in header[:4])[:80]
    raise DataFileError(f"{label} line 1: not a training log: the header ({shown!r}) names neither "
                        f"{','.join(REQUIRED)}[,avg_hr][,rpe] (the plain log) nor 'Activity Date' and "
                        "'Elapsed Time' (a Strava activities.csv)")


def _missing(path: Path) -> DataFileError:
    return DataFileError(f"{path}: file not found")


def detect(path: str | os.PathLike | None) -> str:
    """Which of ``KINDS`` the file at ``path`` is (reads a text file's header only)."""
    if path is None:
        return "shipped"
    p = Path(path)
    if p.is_dir():
        return "strava-folder"
    if not p.exists():
        raise _missing(p)
    if is_zip(p) or p.suffix.lower() == ".zip":
        return "strava-zip"
    return header_kind(read_text(p).text, p.name)


def read_log(path: str | os.PathLike | None = None) -> TrainingLog:
    """The training log at ``path`` (a Strava export in any of its forms, or the plain CSV); the shipped
    log when ``path`` is None. See the module docstring."""
    if path is None:
        from .shipped import shipped_log

        return shipped_log()
    p = Path(path)
    if p.is_dir():
        return read_strava(p)
    if not p.exists():
        raise _missing(p)
    if is_zip(p) or p.suffix.lower() == ".zip":
        return read_strava(p)
    text = read_text(p).text
    if header_kind(text, p.name) == "strava-csv":
        return parse_activities_csv(text, p.name, _folder_opener(p.parent))
    return parse_log_csv(text, p.name)
