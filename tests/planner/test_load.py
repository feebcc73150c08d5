"""Training load: per-session formulas against hand-computed numbers, and the whole chart against
an independent loop written from the definitions."""

from __future__ import annotations

import datetime as dt
import math
import statistics

import numpy as np
import pytest

from nomagic.apps.planner.load import LoadSettings, daily_loads, load_table, pmc, project, session_load, srpe, trimp
from nomagic.apps.planner.records import Activity, TrainingLog
from nomagic.errors import InvalidInputError

D0 = dt.date(2015, 1, 1)


def act(day: int, minutes: float, **kw) -> Activity:
    return Activity(date=D0 + dt.timedelta(days=day), sport=kw.pop("sport", "run"), duration_s=minutes * 60.0, **kw)


# --- per session ----------------------------------------------------------------------------

def test_trimp_men_and_women_by_hand():
    # 60 min at 150 bpm, rest 60, max 190: HRr = 90/130.
    hrr = 90 / 130
    assert trimp(60, 150, 60, 190, "male") == pytest.approx(60 * hrr * 0.64 * math.exp(1.92 * hrr), rel=1e-12)
    assert trimp(60, 150, 60, 190, "female") == pytest.approx(60 * hrr * 0.64 * math.exp(1.67 * hrr), rel=1e-12)
    # HRr 0.5 exactly: 60 × 0.5 × 0.64 × e^0.96 = 19.2·e^0.96 (bc -l: 50.1445722897), women 19.2·e^0.835
    assert trimp(60, 125, 60, 190) == pytest.approx(50.1445722897, rel=1e-8)
    assert trimp(60, 125, 60, 190, "female") == pytest.approx(44.2524297271, rel=1e-10)


def test_trimp_clips_heart_rate_reserve():
    assert trimp(30, 50, 60, 190) == 0.0
    assert trimp(30, 200, 60, 190) == pytest.approx(30 * 0.64 * math.exp(1.92), rel=1e-12)
    with pytest.raises(InvalidInputError):
        trimp(30, 150, 60, 60)
    with pytest.raises(InvalidInputError):
        trimp(30, 150, 60, 190, "other")


def test_srpe_and_moving_time():
    assert srpe(45, 6) == 270
    a = Activity(date=D0, sport="run", duration_s=3600.0, moving_s=3000.0, rpe=5.0)
    assert session_load(a, LoadSettings(method="srpe"), None) == (250.0, "srpe")


def test_auto_method_choice():
    s = LoadSettings()
    with_hr = act(0, 60, avg_hr=125.0, rpe=5.0)
    only_rpe = act(0, 60, rpe=5.0)
    nothing = act(0, 60)
    assert session_load(with_hr, s, 190.0) == (pytest.approx(50.1445722897, rel=1e-8), "trimp")
    assert session_load(only_rpe, s, 190.0) == (300.0, "srpe")
    load, method = session_load(nothing, s, 190.0)
    assert method == "duration" and load == pytest.approx(60 * 1.2)
    hard = act(0, 50, name="intervals")
    assert session_load(hard, s, None) == (pytest.approx(50 * 2.0), "duration")
    long_ = act(0, 100)
    assert session_load(long_, s, None) == (pytest.approx(100 * 1.4), "duration")


def test_auto_puts_rpe_only_sessions_on_the_trimp_scale():
    both = [act(d, 40 + 5 * d, avg_hr=130.0 + 4 * d, rpe=3.0 + 0.5 * d) for d in range(6)]
    only_rpe = act(7, 60, rpe=5.0)
    ratios = []
    for a in both:  # the reference, from the definitions
        minutes = a.duration_s / 60
        hrr = (a.avg_hr - 60.0) / (190.0 - 60.0)
        ratios.append(minutes * hrr * 0.64 * math.exp(1.92 * hrr) / (a.rpe * minutes))
    scale = sorted(ratios)[2:4]
    expected_scale = (scale[0] + scale[1]) / 2  # the median of six
    table = load_table(both + [only_rpe], LoadSettings(hr_max=190.0))
    assert table.settings.srpe_scale == pytest.approx(expected_scale, rel=1e-12)
    assert table.load[-1] == pytest.approx(5.0 * 60 * expected_scale, rel=1e-12)
    # too few sessions with both: sRPE stays as it is; method "srpe" is never rescaled
    few = load_table(both[:4] + [only_rpe], LoadSettings(hr_max=190.0))
    assert few.settings.srpe_scale is None and few.load[-1] == pytest.approx(300.0)
    raw = load_table([act(d, 40, rpe=4.0) for d in range(3)] + [only_rpe], LoadSettings(method="srpe"))
    assert raw.load[-1] == pytest.approx(300.0)


def test_explicit_methods_refuse_missing_data():
    with pytest.raises(InvalidInputError, match="heart rate"):
        session_load(act(0, 60, rpe=4.0), LoadSettings(method="trimp"), 190.0)
    with pytest.raises(InvalidInputError, match="RPE"):
        session_load(act(0, 60, avg_hr=140.0), LoadSettings(method="srpe"), 190.0)
    a = act(0, 60, avg_hr=140.0, rpe=4.0)
    assert session_load(a, LoadSettings(method="duration"), 190.0) == (pytest.approx(72.0), "duration")


def test_settings_validation():
    for bad in ({"method": "magic"}, {"sex": "x"}, {"ctl_days": 0}, {"hr_max": 50.0}):
        with pytest.raises(InvalidInputError):
            LoadSettings(**bad)


def test_default_hr_max_is_the_logs_highest():
    log = [act(0, 60, avg_hr=150.0, max_hr=180.0), act(1, 60, avg_hr=160.0)]
    dates, loads = daily_loads(log)
    hrr1, hrr2 = 90 / 120, 100 / 120
    assert loads[0] == pytest.approx(60 * hrr1 * 0.64 * math.exp(1.92 * hrr1), rel=1e-12)
    assert loads[1] == pytest.approx(60 * hrr2 * 0.64 * math.exp(1.92 * hrr2), rel=1e-12)
    only_avg = [act(0, 60, avg_hr=150.0), act(1, 60, avg_hr=170.0)]
    _, loads = daily_loads(only_avg)
    assert loads[1] == pytest.approx(60 * 1.0 * 0.64 * math.exp(1.92), rel=1e-12)


def test_daily_loads_sum_and_fill_rest_days():
    log = TrainingLog((act(0, 30, rpe=4.0), act(0, 20, rpe=6.0), act(3, 10, rpe=2.0)))
    dates, loads = daily_loads(log, end="2015-01-06")
    assert dates.dtype == np.dtype("datetime64[D]")
    assert dates[0] == np.datetime64("2015-01-01") and dates[-1] == np.datetime64("2015-01-06")
    assert loads.tolist() == [240.0, 0.0, 0.0, 20.0, 0.0, 0.0]
    with pytest.raises(InvalidInputError):
        daily_loads(log, end="2014-12-01")
    with pytest.raises(InvalidInputError):
        daily_loads([])


# --- the chart ------------------------------------------------------------------------------

def reference_chart(loads, ctl_days=42.0, atl_days=7.0, chronic_days=28.0):
    """The definitions, written out as a plain loop with math.exp and statistics."""
    rows = []
    ctl = atl = c28 = 0.0
    ctls = []
    for t, x in enumerate(loads):
        tsb = ctl - atl  # yesterday's values: form going into day t
        ctl = ctl * math.exp(-1 / ctl_days) + x * (1 - math.exp(-1 / ctl_days))
        atl = atl * math.exp(-1 / atl_days) + x * (1 - math.exp(-1 / atl_days))
        c28 = c28 * math.exp(-1 / chronic_days) + x * (1 - math.exp(-1 / chronic_days))
        ctls.append(ctl)
        acwr = atl / c28 if c28 != 0 else math.nan
        if t >= 6:
            week = loads[t - 6:t + 1]
            sd = statistics.pstdev(week)
            mono = statistics.mean(week) / sd if sd > 0 else math.nan
            strain = sum(week) * mono
        else:
            mono = strain = math.nan
        ramp = ctl - ctls[t - 7] if t >= 7 else math.nan
        rows.append((x, ctl, atl, tsb, acwr, mono, strain, ramp))
    return rows


def assert_matches(table, reference):
    assert len(table) == len(reference)
    for name, col in zip(("load", "ctl", "atl", "tsb", "acwr", "monotony", "strain", "ramp"), zip(*reference)):
        got = getattr(table, name)
        assert got.dtype == np.float64
        want = np.array(col, dtype=float)
        assert np.array_equal(np.isnan(got), np.isnan(want)), name
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=1e-9, err_msg=name)


def hand_log():
    return [act(0, 60, avg_hr=140.0), act(1, 45, rpe=4.0), act(1, 30, sport="strength", rpe=5.0),
            act(4, 100, avg_hr=150.0), act(5, 50, avg_hr=172.0, max_hr=185.0), act(9, 40),
            act(12, 95, rpe=5.0), act(13, 30, name="6 x 400"), act(20, 120, avg_hr=145.0)]


def test_load_table_equals_independent_computation():
    log = hand_log()
    hr_rest, hr_max = 60.0, 185.0

    def tr(m, hr):
        h = (hr - hr_rest) / (hr_max - hr_rest)
        return m * h * 0.64 * math.exp(1.92 * h)

    loads = [0.0] * 26
    loads[0] = tr(60, 140)
    loads[1] = 4 * 45 + 5 * 30
    loads[4] = tr(100, 150)
    loads[5] = tr(50, 172)
    loads[9] = 40 * 1.2
    loads[12] = 5 * 95
    loads[13] = 30 * 2.0
    loads[20] = tr(120, 145)
    table = load_table(log, end="2015-01-26")
    assert table.dates[0] == np.datetime64("2015-01-01") and len(table) == 26
    assert_matches(table, reference_chart(loads))
    other = load_table(log, LoadSettings(ctl_days=30, atl_days=5, chronic_days=21), end="2015-01-26")
    assert_matches(other, reference_chart(loads, 30, 5, 21))


def test_random_loads_match_reference(rng):
    loads = np.where(rng.random(200) < 0.3, 0.0, rng.gamma(2.0, 40.0, 200))
    dates = np.arange(np.datetime64("2013-01-01"), np.datetime64("2013-01-01") + 200)
    assert_matches(pmc(dates, loads), reference_chart(loads.tolist()))


def test_single_load_by_hand():
    dates = np.arange(np.datetime64("2015-01-01"), np.datetime64("2015-01-11"))
    table = pmc(dates, [100.0] + [0.0] * 9)
    assert table.ctl[0] == pytest.approx(100 * (1 - math.exp(-1 / 42)), abs=1e-12)  # bc -l: 2.35283133477
    assert table.ctl[0] == pytest.approx(2.3528313348, abs=1e-9)
    assert table.atl[0] == pytest.approx(100 * (1 - math.exp(-1 / 7)), abs=1e-12)  # bc -l: 13.3122100250
    assert table.atl[0] == pytest.approx(13.3122100250, abs=1e-9)
    assert table.tsb[0] == 0.0
    assert table.tsb[1] == pytest.approx(table.ctl[0] - table.atl[0], abs=1e-12)
    assert table.acwr[0] == pytest.approx((1 - math.exp(-1 / 7)) / (1 - math.exp(-1 / 28)), abs=1e-12)
    assert table.ctl[3] == pytest.approx(100 * (1 - math.exp(-1 / 42)) * math.exp(-3 / 42), abs=1e-12)
    assert np.isnan(table.ramp[:7]).all() and table.ramp[7] == pytest.approx(table.ctl[7] - table.ctl[0])
    # one 100 and six 0s: mean 100/7, population std sqrt(6)·100/7, monotony 1/sqrt(6)
    assert table.monotony[6] == pytest.approx(1 / math.sqrt(6), abs=1e-12)
    assert table.strain[6] == pytest.approx(100 / math.sqrt(6), abs=1e-12)
    assert np.isnan(table.monotony[:6]).all()


def test_acwr_undefined_while_chronic_is_zero():
    dates = np.arange(np.datetime64("2015-01-01"), np.datetime64("2015-01-06"))
    table = pmc(dates, [0.0, 0.0, 50.0, 0.0, 0.0])
    assert np.isnan(table.acwr[:2]).all()
    assert np.isfinite(table.acwr[2:]).all()
    rows = list(table.rows())
    assert rows[0]["acwr"] is None and rows[2]["acwr"] == pytest.approx(table.acwr[2])


def test_monotony_undefined_when_constant():
    dates = np.arange(np.datetime64("2015-01-01"), np.datetime64("2015-01-15"))
    constant = pmc(dates, [0.1] * 14)
    assert np.isnan(constant.monotony).all() and np.isnan(constant.strain).all()
    rest = pmc(dates, [0.0] * 14)
    assert np.isnan(rest.monotony).all()
    assert np.isnan(pmc(dates[:5], [10.0, 20, 30, 40, 50]).monotony).all()  # fewer than 7 days


def test_rows_keys_and_none():
    table = load_table(hand_log())
    rows = list(table.rows())
    assert len(rows) == len(table)
    assert list(rows[0]) == ["date", "load", "ctl", "atl", "tsb", "acwr", "monotony", "strain", "ramp"]
    assert rows[0]["date"] == "2015-01-01"
    assert rows[0]["monotony"] is None and rows[0]["ramp"] is None
    assert isinstance(rows[-1]["ctl"], float)


def test_project_rolls_the_recursion_forward():
    log = hand_log()
    table = load_table(log, end="2015-01-26")
    future = [80.0, 0.0, 120.0, 60.0]
    ahead = project(table, future)
    assert len(ahead) == len(table) + 4
    assert ahead.planned.tolist() == [False] * len(table) + [True] * 4
    assert ahead.dates[-1] == np.datetime64("2015-01-30")
    decay = math.exp(-1 / 42)
    ctl = table.ctl[-1]
    for x in future:
        ctl = ctl * decay + x * (1 - decay)
    assert ahead.ctl[-1] == pytest.approx(ctl, abs=1e-9)
    assert ahead.tsb[len(table)] == pytest.approx(table.ctl[-1] - table.atl[-1], abs=1e-12)
    np.testing.assert_array_equal(ahead.ctl[:len(table)], table.ctl)


def test_pmc_rejects_bad_input():
    dates = np.array(["2015-01-01", "2015-01-03"], dtype="datetime64[D]")
    with pytest.raises(InvalidInputError, match="consecutive"):
        pmc(dates, [1.0, 2.0])
    with pytest.raises(InvalidInputError):
        pmc(dates[:1], [1.0, 2.0])
    with pytest.raises(InvalidInputError):
        pmc(dates[:1], [-1.0])
