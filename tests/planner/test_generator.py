"""The generated athlete log: deterministic, equal to the shipped CSV, and true to its rules
(checked from the weather and the classes, not by re-running the generator's logic)."""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from nomagic.apps.planner.generator import HISTORY_RULES, RULES, generate, to_csv
from nomagic.apps.planner.load import load_table
from nomagic.apps.planner.records import Activity
from nomagic.apps.planner.sessions import day_class
from nomagic.apps.planner.shipped import ATHLETE_LOG_SEED, athlete_log_path, log_weather, seattle_weather


@pytest.fixture(scope="module")
def weather():
    return seattle_weather()


@pytest.fixture(scope="module")
def log(weather):
    return generate(weather, 7)


def parse_plain_csv(text: str) -> list[tuple]:
    """A minimal private reader of the plain format: (date, type, minutes, km, avg_hr, rpe)."""
    rows = list(csv.DictReader(io.StringIO(text)))

    def num(s):
        return float(s) if s != "" else None

    return [(dt.date.fromisoformat(r["date"]), r["type"], float(r["duration_min"]), num(r["distance_km"]),
             num(r["avg_hr"]), num(r["rpe"])) for r in rows]


def test_seattle_weather(weather):
    assert len(weather) == 1461
    assert weather.dates[0] == np.datetime64("2012-01-01") and weather.dates[-1] == np.datetime64("2015-12-31")
    assert weather.precipitation[1] == 10.9 and weather.temp_max[0] == 12.8 and weather.condition[0] == "drizzle"


def test_shipped_csv_is_the_generators_output(log, weather):
    with open(athlete_log_path(), encoding="utf-8", newline="") as f:
        shipped = f.read()
    assert ATHLETE_LOG_SEED == 7
    days = log_weather()
    assert len(days) == len(weather) - 1 and days.dates[-1] == weather.dates[-2]  # the last day is "tomorrow"
    assert shipped == to_csv(generate(days, 7).activities)
    # the generator looks only backwards: the log over one day fewer is the same log, less that day
    assert to_csv([a for a in log.activities if a.date < weather.dates[-1].astype(object)]) == shipped
    assert shipped.splitlines()[0] == "date,type,duration_min,distance_km,avg_hr,rpe"
    assert "name" not in shipped.splitlines()[0]


def test_shipped_csv_holds_the_activities(log, weather):
    with open(athlete_log_path(), encoding="utf-8", newline="") as f:
        rows = parse_plain_csv(f.read())
    logged = [a for a in log.activities if a.date < weather.dates[-1].astype(object)]
    assert len(rows) == len(logged)
    for row, a in zip(rows, logged):
        date, kind, minutes, km, hr, rpe = row
        assert (date, kind, hr, rpe) == (a.date, a.kind, a.avg_hr, a.rpe)
        assert minutes * 60 == a.duration_s
        assert (km is None) == (a.distance_m is None)
        if km is not None:
            assert km * 1000 == pytest.approx(a.distance_m, abs=1e-6)
        assert a.name == ""


def test_deterministic_for_a_seed(weather, log):
    again = generate(weather, 7)
    assert again.activities == log.activities and again.decided_by == log.decided_by
    other = generate(weather, 8)
    assert other.activities != log.activities


def test_command_line_writes_the_shipped_file(tmp_path):
    out = tmp_path / "log.csv"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-m", "nomagic.apps.planner.generator", "--seed", "7", "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    with open(athlete_log_path(), "rb") as f:
        assert out.read_bytes() == f.read()


def test_every_day_has_a_class_and_a_rule(weather, log):
    assert len(log.classes) == len(log.decided_by) == len(weather)
    assert set(log.classes) <= {"rest", "easy", "long", "hard"}
    assert set(log.decided_by) <= set(RULES)
    assert set(HISTORY_RULES) <= set(RULES) and log.history_rules == HISTORY_RULES
    counts = collections.Counter(log.decided_by)
    for rule in RULES:
        assert counts[rule] > 0, rule
    history = sum(counts[r] for r in HISTORY_RULES) / len(weather)
    assert 0.05 < history < 0.3


@pytest.mark.parametrize("seed", [7, 1, 2])
def test_class_mix_is_realistic(weather, seed):
    classes = generate(weather, seed).classes
    share = {c: classes.count(c) / len(classes) for c in ("rest", "easy", "long", "hard")}
    assert 0.24 <= share["rest"] <= 0.32, share
    assert 0.35 <= share["easy"] <= 0.45, share
    assert 0.10 <= share["long"] <= 0.16, share
    assert 0.17 <= share["hard"] <= 0.23, share


def test_classes_read_back_from_the_sessions(log):
    hr_max = max(a.avg_hr for a in log.activities if a.avg_hr is not None)
    by_day = collections.defaultdict(list)
    for a in log.activities:
        by_day[a.date].append(a)
    for day, cls in zip(log.dates, log.classes):
        assert day_class(by_day.get(day.astype(dt.date), []), hr_max) == cls, day


def test_rules_hold_on_the_weather(weather, log):
    c = log.classes
    for i, cls in enumerate(c):
        day = weather.dates[i].astype(dt.date)
        rain, wind, tmax = weather.precipitation[i], weather.wind[i], weather.temp_max[i]
        if i >= 2 and c[i - 1] == c[i - 2] == "hard":
            assert cls == "rest" and log.decided_by[i] == "two_hard_rest", day
        if cls == "hard":
            assert rain <= 8 and wind <= 7, day
        if cls == "long":
            assert day.weekday() in (5, 6) and rain <= 3 and wind <= 7, day
        if tmax < 3:
            assert cls in ("rest", "easy"), day
        if log.decided_by[i] == "long_moved":
            week = c[i - day.weekday():i]
            assert day.weekday() == 6 and "long" not in week


def test_two_sessions_and_missing_values(log):
    per_day = collections.Counter(a.date for a in log.activities)
    assert sum(1 for n in per_day.values() if n == 2) > 100
    kinds = collections.Counter(a.kind for a in log.activities)
    assert kinds["Run"] > kinds["Weight Training"] > 0 and kinds["Ride"] > 0
    n = len(log.activities)
    no_hr = sum(a.avg_hr is None for a in log.activities) / n
    no_rpe = sum(a.rpe is None for a in log.activities) / n
    neither = sum(a.avg_hr is None and a.rpe is None for a in log.activities) / n
    assert 0.05 < no_hr < 0.3 and 0.05 < no_rpe < 0.2 and 0 < neither < 0.05
    assert all(isinstance(a, Activity) and a.duration_s > 0 for a in log.activities)


def test_load_stays_mostly_in_the_acwr_band(log):
    table = load_table(log.activities)
    acwr = table.acwr[60:]
    assert np.mean((acwr >= 0.8) & (acwr <= 1.3)) > 0.8
    assert not any(math.isnan(x) for x in table.ctl)


def test_empty_weather_is_refused(weather):
    from nomagic.apps.planner.records import DailyWeather
    from nomagic.errors import InvalidInputError

    empty = DailyWeather(*(np.array(getattr(weather, f)[:0]) for f in
                           ("dates", "temp_max", "temp_min", "precipitation", "wind", "condition")))
    with pytest.raises(InvalidInputError):
        generate(empty, 7)
