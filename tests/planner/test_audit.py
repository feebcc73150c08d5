"""The bias audit: counts against hand-made data computed here from the definitions, warnings that
appear and disappear at their thresholds, a Seattle-trained model asked about a hot dry climate,
and bad input refused with InvalidInputError."""

from __future__ import annotations

import collections
import datetime as dt
import json

import numpy as np
import pytest

from nomagic.apps.planner import audit as A
from nomagic.apps.planner.audit import Holdout, audit, render_text, to_json
from nomagic.apps.planner.generator import generate
from nomagic.apps.planner.records import DailyWeather
from nomagic.apps.planner.sessions import CLASSES, class_index
from nomagic.apps.planner.shipped import seattle_weather
from nomagic.errors import InvalidInputError


def wx(n=None, *, start="2015-01-01", dates=None, tmax=None, tmin=None, prcp=None, wind=None, cond=None,
       wind_kind="mean") -> DailyWeather:
    """A DailyWeather with defaults: consecutive days, 12 °C, dry, 3 m/s, sun."""
    if dates is None:
        dates = np.datetime64(start) + np.arange(n)
    dates = np.asarray(dates, dtype="datetime64[D]")
    n = len(dates)

    def col(v, default):
        return np.full(n, default, dtype=np.float64) if v is None else np.asarray(v, dtype=np.float64)
    return DailyWeather(dates=dates, temp_max=col(tmax, 12.0), temp_min=col(tmin, 5.0), precipitation=col(prcp, 0.0),
                        wind=col(wind, 3.0), condition=np.array(["sun"] * n if cond is None else cond, dtype="<U7"),
                        wind_kind=wind_kind)


def balanced(n: int) -> np.ndarray:
    return np.arange(n) % 4  # 25 % each: no class warnings


def rows(report, table):
    return {r.group: r for r in report.coverage[table]}


# --- class balance ------------------------------------------------------------------------------

def test_class_balance_counts_and_shares():
    y = np.array([0, 1, 1, 3, 3, 3, 1, 0, 3, 3])
    r = audit(wx(10), y)
    assert [(c.name, c.days) for c in r.class_balance] == [("rest", 2), ("easy", 3), ("long", 0), ("hard", 5)]
    assert [c.share for c in r.class_balance] == pytest.approx([0.2, 0.3, 0.0, 0.5])
    assert "no training day is a long day: the model cannot learn to recommend long sessions" in r.warnings


def test_class_names_are_accepted_like_indices():
    names = ["rest", "easy", "easy", "hard"]
    assert audit(wx(4), names).class_balance == audit(wx(4), [class_index(c) for c in names]).class_balance


def test_rare_and_dominant_class_warnings():
    y = np.array([1] * 70 + [0] * 15 + [3] * 11 + [2] * 4)  # long 4 %, easy 70 %
    w = audit(wx(100), y).warnings
    assert "only 4.0% of training days (4) are long sessions: the model rarely recommends them" in w
    assert "70% of training days (70) are easy sessions: the model leans towards recommending them" in w
    assert not any("rest days" in s or "hard sessions" in s for s in w)


# --- coverage -----------------------------------------------------------------------------------

def expected_band(t: float) -> str:
    if np.isnan(t):
        return "unknown"
    if t < 0:
        return "< 0"
    if t >= 30:
        return "≥ 30"
    lo = int(t // 5) * 5
    return f"{lo}–{lo + 5}"


def expected_season(d: dt.date, south=False) -> str:
    m = d.month if not south else (d.month + 5) % 12 + 1
    return {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
            6: "summer", 7: "summer", 8: "summer"}.get(m, "autumn")


HAND_DATES = ["2015-12-31", "2016-01-01", "2016-02-29", "2016-03-01", "2016-05-31", "2016-06-01", "2016-08-31",
              "2016-09-01", "2016-11-30", "2016-12-01", "2016-07-04", "2016-07-05"]
HAND_TMAX = [-0.1, 0.0, 4.99, 5.0, 9.9, 10.0, 19.5, 24.0, 25.0, 29.99, 30.0, np.nan]
HAND_COND = ["snow", "snow", "rain", "sun", "sun", "fog", "drizzle", "sun", "rain", "unknown", "sun", "sun"]
HAND_Y = [0, 1, 1, 2, 3, 3, 0, 1, 2, 3, 3, 1]


@pytest.mark.parametrize("hemisphere", ["north", "south"])
def test_coverage_tables_by_hand(hemisphere):
    w = wx(dates=HAND_DATES, tmax=HAND_TMAX, cond=HAND_COND)
    r = audit(w, HAND_Y, hemisphere=hemisphere)
    days = [dt.date.fromisoformat(d) for d in HAND_DATES]
    keys = {"condition": HAND_COND, "temperature": [expected_band(t) for t in HAND_TMAX],
            "season": [expected_season(d, hemisphere == "south") for d in days],
            "weekday": [d.strftime("%A") for d in days]}
    for table, key in keys.items():
        got = rows(r, table)
        count = collections.Counter(key)
        for group, row in got.items():
            assert row.days == count.get(group, 0), (table, group)
            assert row.share == pytest.approx(count.get(group, 0) / 12)
            per_class = collections.Counter(HAND_Y[i] for i, k in enumerate(key) if k == group)
            assert row.class_days == tuple(per_class.get(k, 0) for k in range(4)), (table, group)
            assert row.classes_seen == tuple(CLASSES[k] for k in range(4) if per_class.get(k))
            assert row.user_days is None
        assert set(count) <= set(got)  # every day lands in a listed group
    assert list(rows(r, "condition")) == list(A.CONDITIONS)
    assert list(rows(r, "temperature")) == list(A.TEMP_BANDS) + ["unknown"]  # a NaN maximum adds the row
    assert list(rows(r, "weekday"))[0] == "Monday"
    assert rows(r, "temperature")["5–10"].days == 2  # 5.0 opens the 5–10 band
    # north: Jun 1, Aug 31, Jul 4, Jul 5 are summer; south: Dec 31, Jan 1, Feb 29, Dec 1 are
    assert rows(r, "season")["summer"].days == 4
    assert rows(r, "season")["winter"].class_days == ((1, 2, 0, 1) if hemisphere == "north" else (1, 1, 0, 2))


def test_unknown_temperature_row_only_when_present():
    assert "unknown" not in rows(audit(wx(8), balanced(8)), "temperature")


def test_user_days_per_group_and_unseen_group_warning():
    train = wx(400, cond=["sun"] * 400)
    user = wx(20, cond=["snow"] * 3 + ["sun"] * 17)
    r = audit(train, balanced(400), user_weather=user)
    assert rows(r, "condition")["snow"].user_days == 3 and rows(r, "condition")["sun"].user_days == 17
    assert "15% of your days (3) are snow days; the training data has none" in r.warnings


# --- thin groups --------------------------------------------------------------------------------

def test_snow_warning_appears_with_its_count_and_goes_when_there_are_enough():
    few = wx(1000, cond=["snow"] * 12 + ["sun"] * 988)
    w = audit(few, balanced(1000)).warnings
    assert "only 12 snow days in the training data (1.2%): recommendations for snow days are unreliable" in w
    enough = wx(1000, cond=["snow"] * 40 + ["sun"] * 960)  # 40 days and 4 %
    assert not any("snow" in s for s in audit(enough, balanced(1000)).warnings)
    # 35 days are enough by count but not by share (35 / 2000 = 1.75 % < 3 %)
    by_share = wx(2000, cond=["snow"] * 35 + ["sun"] * 1965)
    assert "only 35 snow days in the training data (1.8%): recommendations for snow days are unreliable" \
        in audit(by_share, balanced(2000)).warnings


def test_no_warning_for_groups_without_training_days():
    w = audit(wx(400), balanced(400)).warnings  # all sun, all 10–15 °C
    assert not any("snow" in s or "fog" in s or "°C" in s for s in w)


def test_short_history_warning():
    assert "less than 42 days of history (31): fitness (CTL) is not yet meaningful" in \
        audit(wx(400), balanced(400), history_days=31).warnings
    assert not any("history" in s for s in audit(wx(400), balanced(400), history_days=42).warnings)
    assert audit(wx(400), balanced(400), history_days=0).history_days == 0


# --- hold-out accuracy --------------------------------------------------------------------------

def test_per_condition_holdout_accuracy_by_hand():
    cond = ["sun"] * 10 + ["rain"] * 6 + ["snow"] * 4
    y_true = np.array([1] * 20)
    right = [True] * 10 + [True] * 3 + [False] * 3 + [True] + [False] * 3
    y_pred = np.where(right, 1, 3)
    hold = wx(20, start="2016-01-01", cond=cond)
    r = audit(wx(400), balanced(400), holdout=Holdout(hold, y_true, y_pred))
    acc = r.per_condition["model"]
    assert acc.days == 20 and acc.accuracy == pytest.approx(14 / 20)
    got = {row.group: (row.days, row.accuracy) for row in acc.groups["condition"]}
    assert got["sun"] == (10, pytest.approx(1.0))
    assert got["rain"] == (6, pytest.approx(0.5))
    assert got["snow"] == (4, pytest.approx(0.25))
    assert got["fog"] == (0, None)
    # rain: 6 days, 0.50 is 0.20 below 0.70: warned; snow is worse but has fewer than 5 hold-out days
    assert "on rain days the hold-out accuracy is 0.50 against 0.70 overall (6 hold-out days)" in r.warnings
    assert not any("on snow days" in s for s in r.warnings)
    assert [row.days for row in acc.groups["season"]] == [20, 0, 0, 0]


def test_holdout_per_model_name_and_probabilities():
    hold = wx(10, cond=["sun"] * 5 + ["rain"] * 5)
    y = np.array([0, 1, 2, 3, 0, 0, 1, 2, 3, 0])
    proba = np.eye(4)[[0, 1, 2, 3, 0, 3, 3, 3, 3, 3]] * 0.7 + 0.075  # rain: one right of five
    r = audit(wx(400), balanced(400), holdout={"mlp": Holdout(hold, y, proba), "rnn": Holdout(hold, y, y)})
    assert r.per_condition["mlp"].accuracy == pytest.approx(6 / 10)
    assert r.per_condition["rnn"].accuracy == 1.0
    assert "mlp: on sun days the hold-out accuracy is 1.00" not in " ".join(r.warnings)
    assert any(s.startswith("mlp: on rain days the hold-out accuracy is 0.20 against 0.60 overall") for s in r.warnings)
    assert not any(s.startswith("rnn:") for s in r.warnings)


# --- shift --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seattle():
    return seattle_weather()


@pytest.fixture(scope="module")
def seattle_classes(seattle):
    return np.array([class_index(c) for c in generate(seattle, 7).classes])


def hot_dry(n=200):
    return wx(n, start="2016-01-01", tmax=np.linspace(30.0, 40.0, n), tmin=np.linspace(18.0, 26.0, n),
              prcp=np.zeros(n), wind=np.full(n, 3.0))


def test_seattle_model_asked_about_a_hot_dry_climate(seattle, seattle_classes):
    user = hot_dry()
    r = audit(seattle, seattle_classes, user_weather=user)
    shift = {s.feature: s for s in r.shift}
    hottest, warmest_night = float(seattle.temp_max.max()), float(seattle.temp_min.max())
    above = float(np.mean(user.temp_max > hottest))
    assert 0.3 < above < 0.6
    assert shift["temp_max"].share_above == pytest.approx(above)
    assert shift["temp_max"].share_below == 0.0
    assert shift["temp_max"].train_max == hottest and shift["temp_max"].user_max == 40.0
    assert shift["temp_max"].train_mean == pytest.approx(seattle.temp_max.mean())
    pooled = np.sqrt((seattle.temp_max.var(ddof=1) + user.temp_max.var(ddof=1)) / 2)
    assert shift["temp_max"].smd == pytest.approx((user.temp_max.mean() - seattle.temp_max.mean()) / pooled)
    assert (f"the weather you ask about is hotter than anything the model learned from: {100 * above:.0f}% of your "
            f"days have a maximum above {hottest:.1f} °C, the highest in the training data") in r.warnings
    night = float(np.mean(user.temp_min > warmest_night))
    assert shift["temp_min"].share_above == pytest.approx(night)
    assert any(s.startswith("the weather you ask about is warmer at night than anything") and f"{100 * night:.0f}%"
               in s for s in r.warnings)
    wet = float(np.mean(seattle.precipitation >= 0.1))
    drier = [s for s in r.warnings if "is drier" in s]
    assert len(drier) == 1
    assert f"0% of your days are wet (≥ 0.1 mm) against {100 * wet:.0f}% of the training days" in drier[0]
    assert shift["precipitation"].user_mean == 0.0 and shift["precipitation"].share_outside == 0.0
    assert not any("wetter" in s or "colder" in s for s in r.warnings)


def test_seattle_against_seattle_has_no_shift(seattle, seattle_classes):
    r = audit(seattle, seattle_classes, user_weather=seattle)
    assert all(s.smd == 0.0 and s.share_outside == 0.0 for s in r.shift)
    assert not any("you ask about" in s or "your days" in s or "your weather" in s for s in r.warnings)


def test_wind_of_another_kind_is_warned_about():
    r = audit(wx(400), balanced(400), user_weather=wx(10, wind_kind="max"))
    assert any(s.startswith("your weather gives the daily max wind, the training data the daily mean") for s in r.warnings)


# --- the planned day ----------------------------------------------------------------------------

def test_query_day_in_a_thin_group():
    train = wx(1000, cond=["snow"] * 12 + ["sun"] * 988)
    snowy = wx(dates=["2016-01-05"], cond=["snow"])
    w = audit(train, balanced(1000), query=snowy).warnings
    assert ("the day you plan, Tue 2016-01-05, is forecast snow: only 12 snow days in the training data; "
            "the recommendation is unreliable") in w
    sunny = audit(train, balanced(1000), query=wx(dates=["2016-01-05"])).warnings
    assert not any("the day you plan" in s for s in sunny)
    never = audit(wx(400), balanced(400), query=wx(dates=["2016-01-05"], cond=["fog"])).warnings
    assert any("is forecast fog: no fog days in the training data" in s for s in never)


def test_query_day_hotter_than_training(seattle, seattle_classes):
    q = wx(dates=["2016-07-01"], tmax=[38.0])
    w = audit(seattle, seattle_classes, query=q).warnings
    assert (f"the day you plan, Fri 2016-07-01, is forecast a maximum of 38.0 °C, above "
            f"{seattle.temp_max.max():.1f} °C, the highest in the training data") in w


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: audit(wx(5), [0, 1, 2, 3]), "4 entries but the weather has 5 days"),
    (lambda: audit(wx(0), []), "train_weather has no days"),
    (lambda: audit(wx(3), [0, 4, 1]), "train_classes[1] is 4: class indices run 0..3"),
    (lambda: audit(wx(3), [0, -1, 1]), "train_classes[1] is -1"),
    (lambda: audit(wx(3), [0.5, 1, 1]), "whole class indices"),
    (lambda: audit(wx(3), ["rest", "tempo", "easy"]), "unknown session class 'tempo'"),
    (lambda: audit(wx(3), [[0, 1, 2]]), "1-D"),
    (lambda: audit(wx(3), [0, 1, 2], user_weather=wx(0)), "user_weather has no days"),
    (lambda: audit(wx(3), [0, 1, 2], query=wx(0)), "query has no days"),
    (lambda: audit(wx(3), [0, 1, 2], holdout=Holdout(wx(3), [0, 1], [0, 1, 1])), "holdout 'model'.y_true has 2"),
    (lambda: audit(wx(3), [0, 1, 2], holdout=Holdout(wx(3), [0, 1, 1], [0, 1, 9])), "y_pred[2] is 9"),
    (lambda: audit(wx(3), [0, 1, 2], holdout=[1, 2]), "mapping of model name to Holdout"),
    (lambda: audit(wx(3, cond=["sun", "Sunny", "rain"]), [0, 1, 2]), "'Sunny'"),
    (lambda: audit(wx(3), [0, 1, 2], history_days=-1), "history_days"),
    (lambda: audit(wx(3), [0, 1, 2], hemisphere="east"), "hemisphere 'east'"),
    (lambda: audit("weather", [0]), "must be a DailyWeather"),
])
def test_bad_input_is_refused_clearly(call, message):
    with pytest.raises(InvalidInputError) as info:
        call()
    assert message in str(info.value)


# --- text and JSON ------------------------------------------------------------------------------

def test_to_json_round_trips_and_render_text(seattle, seattle_classes):
    q = wx(dates=["2016-01-05"], tmax=[-0.5], cond=["snow"])
    hold = Holdout(seattle, seattle_classes, np.where(seattle.condition == "snow", 0, seattle_classes))
    r = audit(seattle, seattle_classes, holdout=hold, user_weather=hot_dry(), history_days=31, query=q)
    data = to_json(r)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert set(data) == {"train_days", "train_start", "train_end", "hemisphere", "classes", "class_balance",
                         "coverage", "per_condition", "user_days", "shift", "history_days", "query_days", "warnings",
                         "warning_kinds"}
    assert data["warnings"] == r.warnings and data["train_start"] == "2012-01-01"
    assert data["coverage"]["condition"][3]["group"] == "snow" and data["coverage"]["condition"][3]["thin"] is True
    text = render_text(r)
    for s in r.warnings:
        assert f"  - {s}" in text
    for title in ("Classes", "Coverage by condition", "Coverage by season", "Hold-out accuracy of model",
                  "Your weather (200 days) against the training weather", "Warnings"):
        assert title in text
    header = next(line for line in text.splitlines() if line.lstrip().startswith("feature"))
    body = [line for line in text.splitlines() if line.lstrip().startswith(("temp_max", "temp_min", "precipitation"))]
    assert len({len(line) for line in body}) == 1 and len(body[0]) == len(header.rstrip())  # right-aligned last column


def test_infinite_smd_becomes_null_in_json():
    r = audit(wx(50, wind=np.full(50, 2.0)), balanced(50), user_weather=wx(5, wind=np.full(5, 4.0)))
    wind = next(s for s in r.shift if s.feature == "wind")
    assert wind.smd == float("inf") and wind.share_above == 1.0
    assert next(s for s in to_json(r)["shift"] if s["feature"] == "wind")["smd"] is None
    json.dumps(to_json(r), allow_nan=False)
    assert "No warnings" not in render_text(r)


# --- the shipped data ---------------------------------------------------------------------------

def test_shipped_seattle_and_log(seattle, seattle_classes):
    r = audit(seattle, seattle_classes)
    counts = collections.Counter(generate(seattle, 7).classes)
    assert {c.name: c.days for c in r.class_balance} == dict(counts)
    snow = int(np.sum(seattle.condition == "snow"))
    assert 0 < snow < A.MIN_GROUP_DAYS  # Seattle has few snow days (23)
    assert (f"only {snow} snow days in the training data ({100 * snow / len(seattle):.1f}%): "
            "recommendations for snow days are unreliable") in r.warnings
    assert rows(r, "condition")["snow"].days == snow
    assert sum(row.days for row in r.coverage["season"]) == len(seattle)
    assert not any("sessions" in s or "rest days" in s for s in r.warnings)  # the log's classes are not lopsided
    assert not any("sun days" in s or "rain days" in s for s in r.warnings)


def test_query_days_of_one_thin_group_share_one_warning(seattle, seattle_classes):
    q = wx(dates=["2016-01-05", "2016-01-06", "2016-01-07"], tmax=[-3.0, -2.5, 8.0], cond=["snow", "snow", "rain"])
    w = [s for s in audit(seattle, seattle_classes, query=q).warnings if "you plan" in s]
    snow = int(np.sum(seattle.condition == "snow"))
    assert w[0] == (f"the days you plan on Tue 2016-01-05 and Wed 2016-01-06 are forecast snow: only {snow} snow days "
                    "in the training data; the recommendations are unreliable")
    cold = int(np.sum(seattle.temp_max < 0))
    assert w[1] == (f"the days you plan on Tue 2016-01-05 and Wed 2016-01-06 are forecast a maximum below 0 °C: only "
                    f"{cold} days with a maximum below 0 °C in the training data; the recommendations are unreliable")
    assert w[2] == (f"the days you plan on Tue 2016-01-05 and Wed 2016-01-06 are forecast a maximum below "
                    f"{seattle.temp_max.min():.1f} °C, the lowest in the training data")
    assert len(w) == 3  # the rainy 8 °C day is well covered
