"""``nomagic bench --only planner``: the training planner's import and its ``nomagic plan`` command.

* importing a ten-year Strava export of about 3,000 activities with their activity files (GPX,
  TCX.gz, FIT.gz; written by ``planner.fixtures.make_strava_export`` into a temporary folder,
  outside the clock), as the zip and as the unpacked folder, through ``planner.logfile.read_log``:
  median, min and max over the repeats (goal: <= 3 s);
* ``nomagic plan`` as a whole subprocess (``python -m nomagic plan``, wall time including the
  interpreter's start): cold, with ``NOMAGIC_CACHE_DIR`` set to a fresh empty folder (goal: <= 20 s),
  and warm, run again on the cache the cold run left (goal: <= 1 s). Where the ``plan`` command does
  not exist (yet), or fails, its rows have no value and say why.

Rows as the other scripts give them (name, value, unit, n, note; goal, goal_op, met).
``python -m nomagic.apps.bench.planner [--quick]`` prints them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT_GOAL_S = 3.0
PLAN_COLD_GOAL_S = 20.0
PLAN_WARM_GOAL_S = 1.0
ACTIVITIES = 3000
YEARS = 10.0
_PLAN_TIMEOUT_S = 600.0
PLAN_COUNTS = "wall time of the whole command `python -m nomagic plan`, interpreter start included"


def _row(name: str, times: list[float], n: int, note: str, goal: float, counts: str) -> dict:
    """A row for the suite: the median of ``times`` with min, max and the number of repeats."""
    value = statistics.median(times) if times else None
    met = None if value is None else value <= goal
    row = {"name": name, "value": value, "unit": "s", "n": n, "note": note, "goal": goal, "goal_op": "<=",
           "met": met, "counts": counts, "repeats": len(times)}
    if times:
        row.update(min=min(times), max=max(times))
    return row


def _spread(times: list[float]) -> str:
    return f"min {min(times):.2f} s, max {max(times):.2f} s over {len(times)} run{'s' if len(times) != 1 else ''}"


def import_rows(repeats: int, n: int = ACTIVITIES, years: float = YEARS) -> list[dict]:
    """Time ``read_log`` on a synthetic export, as a zip and as a folder."""
    from nomagic.apps.planner import fixtures
    from nomagic.apps.planner.logfile import read_log

    rows = []
    with tempfile.TemporaryDirectory(prefix="nomagic-bench-planner-") as tmp:
        for layout in ("zip", "folder"):
            export = fixtures.make_strava_export(Path(tmp) / layout, n=n, years=years, layout=layout)
            expected = len(export.activities)
            times = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                log = read_log(export.path)
                times.append(time.perf_counter() - t0)
            check = "" if len(log) == expected and not log.skipped else \
                f"; read {len(log)} of {expected} activities, {len(log.skipped)} skipped"
            rows.append(_row(f"planner: import a {years:g}-year Strava export ({layout})", times, n,
                             f"median; {_spread(times)}; {n:,} activities with their GPX/TCX/FIT files{check}",
                             IMPORT_GOAL_S, "wall time of read_log on the export, files written beforehand"))
    return rows


def _env(cache: str) -> dict:
    import nomagic

    src = str(Path(nomagic.__file__).resolve().parents[1])  # the same nomagic in the child
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, NOMAGIC_CACHE_DIR=cache, PYTHONPATH=src + (os.pathsep + path if path else ""))


def _plan(cache: str, timeout: float, *extra: str) -> tuple[float, subprocess.CompletedProcess | None]:
    """Wall seconds of ``python -m nomagic plan`` with ``cache`` as its cache folder, and its result."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "nomagic", "plan", *extra], capture_output=True, text=True,
                              timeout=timeout, env=_env(cache), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, None
    return time.perf_counter() - t0, done


def _why(done: subprocess.CompletedProcess | None, timeout: float) -> str:
    if done is None:
        return f"ran past {timeout:g} s"
    lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    return f"failed with exit status {done.returncode}: {lines[-1][:160] if lines else 'no output'}"


def plan_exists(timeout: float = 120.0) -> tuple[bool, str]:
    """Whether ``nomagic plan`` is a command here (its ``--help`` exits 0), and why not."""
    with tempfile.TemporaryDirectory(prefix="nomagic-bench-cache-") as cache:
        _, done = _plan(cache, timeout, "--help")
    if done is not None and done.returncode == 0:
        return True, ""
    if done is not None and "invalid choice" in done.stderr:
        return False, "the plan subcommand does not exist yet"
    return False, _why(done, timeout)


def plan_rows(cold_repeats: int, warm_repeats: int, timeout: float = _PLAN_TIMEOUT_S) -> list[dict]:
    """Time ``nomagic plan`` cold (fresh cache folder each time) and warm (on the cache a cold run left)."""
    cold_name, warm_name = "planner: nomagic plan, cold (empty cache)", "planner: nomagic plan, warm (second run)"
    whole = "whole subprocess, interpreter start included"
    exists, why = plan_exists()
    if not exists:
        return [_row(cold_name, [], 0, why, PLAN_COLD_GOAL_S, PLAN_COUNTS),
                _row(warm_name, [], 0, why, PLAN_WARM_GOAL_S, PLAN_COUNTS)]
    cold: list[float] = []
    warm: list[float] = []
    cold_fail = warm_fail = ""
    with tempfile.TemporaryDirectory(prefix="nomagic-bench-cache-") as tmp:
        for i in range(cold_repeats):
            cache = os.path.join(tmp, f"cache{i}")
            os.mkdir(cache)
            seconds, done = _plan(cache, timeout)
            if done is None or done.returncode != 0:
                cold_fail = _why(done, timeout)
                break
            cold.append(seconds)
            if i == 0:
                for _ in range(warm_repeats):
                    seconds, done = _plan(cache, timeout)
                    if done is None or done.returncode != 0:
                        warm_fail = _why(done, timeout)
                        break
                    warm.append(seconds)
    rows = []
    for name, times, fail, goal in ((cold_name, cold, cold_fail, PLAN_COLD_GOAL_S),
                                    (warm_name, warm, warm_fail or (cold_fail and "no cold run to warm up on"),
                                     PLAN_WARM_GOAL_S)):
        if fail or not times:
            rows.append(_row(name, [], len(times), fail or "not run", goal, PLAN_COUNTS))
        else:
            rows.append(_row(name, times, len(times), f"median; {_spread(times)}; {whole}", goal, PLAN_COUNTS))
    return rows


def run(quick: bool = False) -> list[dict]:
    """Run the planner benchmarks; one dict per result."""
    rows = import_rows(repeats=3 if quick else 7)
    rows += plan_rows(cold_repeats=1 if quick else 3, warm_repeats=3 if quick else 5)
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    for r in run(quick="--quick" in argv):
        value = "-" if r["value"] is None else f"{r['value']:.3g}"
        met = "" if r["met"] is None else ("met" if r["met"] else "NOT met")
        print(f"{r['name']:<56} {value:>7} {r['unit']:<2} goal {r['goal_op']} {r['goal']:g} {met:<8} {r['note']}")


if __name__ == "__main__":
    main()
