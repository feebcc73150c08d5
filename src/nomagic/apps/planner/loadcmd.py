"""``nomagic load``: the training-load table of a log, as text or JSON, and the chart as a picture.

:func:`run_load` does the work and returns what to print, so the command line (``nomagic.cli``)
only parses arguments and prints. One row per day, columns ``COLUMNS``:

* text: a header of ``#`` lines (the load method and the constants used: hr_rest, hr_max and where
  it came from, sex, CTL/ATL days; then the source and the days shown), then an aligned table;
  loads, CTL, ATL, TSB and strain to 1 decimal, ACWR and monotony to 2; ``-`` where undefined;
* JSON: a list of objects with exactly the keys ``COLUMNS`` (``date`` as ``YYYY-MM-DD``), loads to
  2 decimals and ratios to 3, ``null`` where undefined — and nothing else.

The chart is always computed over the whole log (CTL needs the history); ``start``/``end`` only
choose the days shown (an ``end`` after the log's last day adds rest days). Rows or activity
files the importer had to skip come back in ``notes`` (a count and the first few, with lines), as
does a note when the file was not UTF-8. A chart file's folder and extension are checked before
anything is read, and it is written atomically, so a failure leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from nomagic.errors import DataFileError, InvalidInputError, require

from ..figures import check_figure_path
from .load import LoadSettings, LoadTable, load_table, session_load
from .logfile import read_log
from .records import Skipped, TrainingLog
from .textfile import DataFileNote

COLUMNS = ("date", "load", "ctl", "atl", "tsb", "acwr", "monotony", "strain")
#: Decimals in the text table and in the JSON.
TEXT_DIGITS = {"load": 1, "ctl": 1, "atl": 1, "tsb": 1, "acwr": 2, "monotony": 2, "strain": 1}
JSON_DIGITS = {"load": 2, "ctl": 2, "atl": 2, "tsb": 2, "acwr": 3, "monotony": 3, "strain": 2}
#: How many skipped rows are listed one by one.
SKIPPED_SHOWN = 5
#: Heart rates the command accepts for --hr-rest / --hr-max.
HR_BOUNDS = (25.0, 250.0)
DEFAULTS = LoadSettings()
_METHOD_WORDS = {"auto": "auto (TRIMP where a session has heart rate, else sRPE where it has an RPE, else duration)",
                 "trimp": "TRIMP (Banister)", "srpe": "sRPE (RPE x minutes)",
                 "duration": "duration (minutes x a factor per session class)"}


@dataclass(frozen=True)
class LoadResult:
    """What ``nomagic load`` prints: ``output`` on stdout, each of ``notes`` on stderr; the ``table``
    of the days shown, and the chart file written (or None)."""

    output: str
    notes: tuple[str, ...]
    table: LoadTable
    log: TrainingLog
    plot: str | None = None


def check_plot_target(path: str | os.PathLike) -> str:
    """The chart file name, if it can be written (``.png``/``.svg`` in a folder that exists); else ``DataFileError``."""
    name = os.fspath(path)
    try:
        check_figure_path(name, "chart")
    except DataFileError:
        raise
    except InvalidInputError as exc:
        raise DataFileError(f"{name}: {exc}") from None
    return name


def _day(value: dt.date | str | None, what: str) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInputError(f"{what} {value!r} is not a date like 2015-12-31") from None


def _round(value: float, digits: int) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(float(value), digits) + 0.0  # + 0.0: no "-0.0"


def table_rows(table: LoadTable, digits: dict[str, int] = JSON_DIGITS) -> list[dict]:
    """One dict per day with exactly the keys ``COLUMNS``, rounded, None for undefined."""
    cols = {c: getattr(table, c).tolist() for c in COLUMNS[1:]}
    return [{"date": day, **{c: _round(cols[c][i], digits[c]) for c in COLUMNS[1:]}}
            for i, day in enumerate(table.dates.astype(str).tolist())]


def format_json(table: LoadTable) -> str:
    """The JSON list (one object per line), with a final newline."""
    rows = table_rows(table, JSON_DIGITS)
    return "[\n" + ",\n".join(json.dumps(r, allow_nan=False) for r in rows) + "\n]\n"


def format_text(table: LoadTable, header: list[str]) -> str:
    """The ``#`` header lines and the aligned table, with a final newline."""
    rows = table_rows(table, TEXT_DIGITS)
    cells = [list(COLUMNS)]
    for r in rows:
        cells.append([r["date"]] + ["-" if r[c] is None else f"{r[c]:.{TEXT_DIGITS[c]}f}" for c in COLUMNS[1:]])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [f"# {h}" for h in header]
    for line in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
    return "\n".join(lines) + "\n"


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _where(source: str) -> str:
    m = re.fullmatch(r"(.*):(\d+)", source)
    return f"{m.group(1)} line {m.group(2)}" if m else source


def skipped_note(log: TrainingLog, shown: int = SKIPPED_SHOWN) -> str | None:
    """"skipped N ...: " and the first ``shown`` skipped rows or files, one per line; None if none."""
    skipped: tuple[Skipped, ...] = log.skipped
    if not skipped:
        return None
    n = len(skipped)
    lines = [f"skipped {_n(n, 'row')} or {'file' if n == 1 else 'files'} of {log.source or 'the log'} "
             f"(not counted in the load; {_n(len(log), 'session')} read)" + (":" if shown else "")]
    lines += [f"  {_where(s.source)}: {s.reason}" for s in skipped[:shown]]
    if n > shown:
        lines.append(f"  ... and {n - shown} more")
    return "\n".join(lines)


def _method_counts(log: TrainingLog, settings: LoadSettings) -> str:
    counts = Counter(session_load(a, settings, settings.hr_max)[1] for a in log.activities)
    used = [f"{counts[m]} {name}" for m, name in (("trimp", "TRIMP"), ("srpe", "sRPE"), ("duration", "duration"))
            if counts[m]]
    return ", ".join(used) + (" session" if sum(counts.values()) == 1 else " sessions")


def header_lines(log: TrainingLog, table: LoadTable, given: dict, shown: LoadTable) -> list[str]:
    """The ``#`` lines above the text table: method and constants, then the source and days."""
    s = table.settings
    if given.get("hr_max") is not None:
        hr_max = f"hr_max {s.hr_max:g} bpm (given)"
    elif s.hr_max is not None:
        hr_max = f"hr_max {s.hr_max:g} bpm (the log's highest heart rate)"
    else:
        hr_max = "hr_max none (no heart rate in the log)"
    hr_rest = f"hr_rest {s.hr_rest:g} bpm ({'given' if given.get('hr_rest') is not None else 'default'})"
    first = (f"load {_METHOD_WORDS[s.method]}: {_method_counts(log, s)}; {hr_rest}, {hr_max}, "
             f"sex {s.sex}, CTL {s.ctl_days:g} days, ATL {s.atl_days:g} days")
    days = len(shown)
    second = (f"{log.source or 'log'}: {_n(len(log), 'session')} from {table.dates[0]} to {table.dates[-1]}; "
              f"showing {shown.dates[0]} to {shown.dates[-1]} ({_n(days, 'day')})")
    return [first, second]


def _slice(table: LoadTable, start: dt.date | None, end: dt.date | None, label: str) -> LoadTable:
    keep = np.ones(len(table), dtype=bool)
    if start is not None:
        keep &= table.dates >= np.datetime64(start, "D")
    if end is not None:
        keep &= table.dates <= np.datetime64(end, "D")
    if not keep.any():
        raise InvalidInputError(f"no days to show from {start or 'the start'} to {end or 'the end'}: "
                                f"{label} runs from {table.dates[0]} to {table.dates[-1]}")
    if keep.all():
        return table
    arrays = {c: getattr(table, c)[keep] for c in ("dates", "planned") + LoadTable.COLUMNS}
    return replace(table, **arrays)


def _hr(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    lo, hi = HR_BOUNDS
    if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
        raise InvalidInputError(f"{what} {value!r} is not a heart rate between {lo:g} and {hi:g} bpm")
    return float(value)


def run_load(path: str | os.PathLike | None = None, *, as_json: bool = False, plot: str | os.PathLike | None = None,
             method: str = DEFAULTS.method, hr_rest: float | None = None, hr_max: float | None = None,
             sex: str = DEFAULTS.sex, ctl_days: float = DEFAULTS.ctl_days, atl_days: float = DEFAULTS.atl_days,
             start: dt.date | str | None = None, end: dt.date | str | None = None) -> LoadResult:
    """Read the log at ``path`` (None: the shipped one), compute its load table and, with ``plot``,
    draw the chart. Raises ``NomagicError`` (``DataFileError`` naming the file) on bad input."""
    plot_name = check_plot_target(plot) if plot is not None else None
    if plot_name is not None:
        require("matplotlib", "plot")
    start, end = _day(start, "--from"), _day(end, "--to")
    if start is not None and end is not None and end < start:
        raise InvalidInputError(f"--to {end} lies before --from {start}")
    given = {"hr_rest": _hr(hr_rest, "--hr-rest"), "hr_max": _hr(hr_max, "--hr-max")}
    settings = LoadSettings(method=method, hr_rest=given["hr_rest"] if hr_rest is not None else DEFAULTS.hr_rest,
                            hr_max=given["hr_max"], sex=sex, ctl_days=float(ctl_days), atl_days=float(atl_days))
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataFileNote)
        log = read_log(path)
    notes += [str(w.message) for w in caught if issubclass(w.category, DataFileNote)]
    label = log.source or (os.fspath(path) if path is not None else "the log")
    last = log.activities[-1].date if log.activities else None
    table = load_table(log, settings, end=end if end is not None and last is not None and end > last else None)
    shown = _slice(table, start, end, label)
    skipped = skipped_note(log)
    if skipped:
        notes.append(skipped)
    if as_json:
        output = format_json(shown)
    else:
        output = format_text(shown, header_lines(log, table, given, shown))
    if plot_name is not None:
        from .chart import performance_chart

        try:
            performance_chart(shown, plot_name, title=f"{label}: training load ({settings.method})")
        except OSError as exc:
            raise DataFileError(f"{plot_name}: cannot be written ({exc.strerror or exc})") from exc
        notes.append(f"drew the performance-management chart to {plot_name}")
    return LoadResult(output, tuple(notes), shown, log, plot_name)
