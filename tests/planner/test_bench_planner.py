"""The ``planner`` suite of ``nomagic bench``: its rows, on a small export and a stand-in for ``nomagic plan``."""

from __future__ import annotations

import subprocess

from nomagic.apps.bench import planner as bench_planner
from nomagic.apps.bench.suite import BENCHMARKS, RUNNERS, _script_rows, format_table

KEYS = {"name", "value", "unit", "n", "note", "goal", "goal_op", "met", "counts", "repeats"}


def test_registered():
    assert "planner" in BENCHMARKS and "planner" in RUNNERS


def test_import_rows_on_a_small_export():
    rows = bench_planner.import_rows(repeats=2, n=120, years=1.0)
    assert [r["name"] for r in rows] == ["planner: import a 1-year Strava export (zip)",
                                         "planner: import a 1-year Strava export (folder)"]
    for r in rows:
        assert set(r) - {"min", "max"} == KEYS and r["min"] <= r["value"] <= r["max"] and r["repeats"] == 2
        assert r["value"] > 0 and r["unit"] == "s" and r["goal"] == 3.0 and r["goal_op"] == "<="
        assert r["met"] == (r["value"] <= 3.0)
        assert "min " in r["note"] and "max " in r["note"] and "over 2 runs" in r["note"]
        assert "skipped" not in r["note"]  # every activity was read
    lines = _script_rows("planner", rows)
    assert all(line["goal_text"] == "≤ 3 s" and line["ours"]["n"] == 2 for line in lines)
    assert "import a 1-year Strava export (zip)" in format_table(lines)


def _fake_plan(monkeypatch, exists: bool, returncode: int = 0, seconds: float = 0.5):
    calls = []

    def fake(cache, timeout, *extra):
        calls.append((cache, extra))
        if extra == ("--help",):
            rc = 0 if exists else 2
            err = "" if exists else "nomagic: error: argument COMMAND: invalid choice: 'plan'"
            return 0.1, subprocess.CompletedProcess([], rc, "", err)
        return seconds, subprocess.CompletedProcess([], returncode, "", "nomagic: error: boom" if returncode else "")

    monkeypatch.setattr(bench_planner, "_plan", fake)
    return calls


def test_plan_missing_is_a_row_not_a_failure(monkeypatch):
    _fake_plan(monkeypatch, exists=False)
    rows = bench_planner.plan_rows(cold_repeats=1, warm_repeats=2)
    assert [r["value"] for r in rows] == [None, None]
    assert all("does not exist yet" in r["note"] and r["met"] is None for r in rows)
    format_table(_script_rows("planner", rows))


def test_plan_cold_and_warm(monkeypatch):
    calls = _fake_plan(monkeypatch, exists=True, seconds=0.5)
    rows = bench_planner.plan_rows(cold_repeats=2, warm_repeats=3)
    cold, warm = rows
    assert cold["value"] == 0.5 and cold["n"] == 2 and cold["met"] is True and cold["goal"] == 20.0
    assert warm["value"] == 0.5 and warm["n"] == 3 and warm["met"] is True and warm["goal"] == 1.0
    runs = [c for c in calls if c[1] == ()]
    assert len({c[0] for c in runs}) == 2  # each cold run on its own fresh cache folder
    assert [c[0] for c in runs].count(runs[0][0]) == 4  # the warm runs reuse the first cold run's cache


def test_plan_failure_says_why(monkeypatch):
    _fake_plan(monkeypatch, exists=True, returncode=2)
    cold, warm = bench_planner.plan_rows(cold_repeats=1, warm_repeats=1)
    assert cold["value"] is None and "exit status 2: nomagic: error: boom" in cold["note"]
    assert warm["value"] is None and warm["met"] is None


def test_plan_exists_asks_the_real_command():
    exists, why = bench_planner.plan_exists()
    assert exists or why  # either the command is there or the row will say why
