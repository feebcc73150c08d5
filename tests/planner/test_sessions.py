"""Session classes: each branch of the rule, and the day's class as the hardest session."""

from __future__ import annotations

import datetime as dt

import pytest

from nomagic.apps.planner.records import Activity
from nomagic.apps.planner.sessions import CLASSES, class_index, day_class, session_class
from nomagic.errors import InvalidInputError

DAY = dt.date(2014, 3, 4)


def act(sport="run", minutes=45.0, **kw) -> Activity:
    return Activity(date=DAY, sport=sport, duration_s=minutes * 60.0, **kw)


def test_classes_order():
    assert CLASSES == ("rest", "easy", "long", "hard")
    assert [class_index(c) for c in CLASSES] == [0, 1, 2, 3]
    with pytest.raises(InvalidInputError):
        class_index("medium")


@pytest.mark.parametrize("name", ["Tuesday intervals", "INTERVAL session", "tempo run", "Park race", "Racing 10k",
                                  "threshold", "fartlek fun", "hill repeats", "6 repeats", "track night",
                                  "VO2max", "vo2 session", "6x400", "5 x 1km", "3×10min", "10 X 200"])
def test_hard_by_name(name):
    assert session_class(act(name=name, rpe=2.0)) == "hard"


@pytest.mark.parametrize("name", ["Morning run", "Trackless trail", "Tempest walk", "Easy 45", "Run x"])
def test_plain_names_are_not_hard(name):
    assert session_class(act(name=name)) == "easy"


def test_hard_by_rpe():
    assert session_class(act(rpe=7.0)) == "hard"
    assert session_class(act(rpe=6.9)) == "easy"


def test_hard_by_heart_rate_needs_hr_max():
    assert session_class(act(avg_hr=170.0), hr_max=200.0) == "hard"  # exactly 85 %
    assert session_class(act(avg_hr=169.9), hr_max=200.0) == "easy"
    assert session_class(act(avg_hr=190.0)) == "easy"  # no hr_max: heart rate cannot say


def test_hard_beats_long():
    assert session_class(act(minutes=120.0, rpe=8.0)) == "hard"
    assert session_class(act(minutes=30.0, name="long run with tempo finish")) == "hard"


def test_long_by_name_duration_distance_per_sport():
    assert session_class(act(minutes=40.0, name="Sunday Long Run")) == "long"
    assert session_class(act(minutes=90.0)) == "long"
    assert session_class(act(minutes=89.9)) == "easy"
    assert session_class(act(minutes=80.0, distance_m=20_000.0)) == "long"
    assert session_class(act(sport="ride", minutes=120.0)) == "easy"
    assert session_class(act(sport="ride", minutes=150.0)) == "long"
    assert session_class(act(sport="ride", minutes=100.0, distance_m=70_000.0)) == "long"
    assert session_class(act(sport="strength", minutes=200.0)) == "easy"


def test_moving_time_is_used_where_known():
    a = Activity(date=DAY, sport="run", duration_s=100 * 60.0, moving_s=80 * 60.0)
    assert session_class(a) == "easy"
    b = Activity(date=DAY, sport="run", duration_s=80 * 60.0)
    assert session_class(b) == "easy"
    c = Activity(date=DAY, sport="run", duration_s=95 * 60.0)
    assert session_class(c) == "long"


def test_day_class_is_the_hardest():
    easy, long_, hard = act(), act(minutes=100.0), act(rpe=8.0)
    assert day_class([]) == "rest"
    assert day_class([easy]) == "easy"
    assert day_class([easy, long_]) == "long"
    assert day_class([long_, hard, easy]) == "hard"
    assert day_class([act(avg_hr=180.0), easy], hr_max=200.0) == "hard"
