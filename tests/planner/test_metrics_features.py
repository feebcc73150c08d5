"""The evaluation scores against scikit-learn and their definitions; the features the models read
against the data they come from."""

from __future__ import annotations

import numpy as np
import pytest

from nomagic.apps.planner import dataset, features, metrics, shipped
from nomagic.apps.planner.logfile import read_log
from nomagic.apps.planner.records import Activity, TrainingLog
from nomagic.apps.planner.sessions import CLASSES, class_index, day_class


def test_scores_equal_scikit_learn_and_the_definitions():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    P = rng.dirichlet(np.ones(4), size=300)
    y = rng.integers(0, 4, 300)
    s = metrics.scores(y, P)
    assert s["accuracy"] == pytest.approx(sk.accuracy_score(y, P.argmax(1)))
    assert s["macro_f1"] == pytest.approx(sk.f1_score(y, P.argmax(1), average="macro"))
    assert s["log_loss"] == pytest.approx(sk.log_loss(y, P, labels=[0, 1, 2, 3]))
    brier = np.mean([sum((P[i, k] - (y[i] == k)) ** 2 for k in range(4)) for i in range(300)])
    assert s["brier"] == pytest.approx(brier)
    # calibration: a perfectly calibrated, certain model has error 0; a confident wrong one 1
    assert metrics.calibration_error(np.array([0, 1]), np.eye(2)) == 0.0
    assert metrics.calibration_error(np.array([1, 0]), np.eye(2)) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def data():
    return dataset.build(read_log(None), shipped.seattle_weather())


def test_classes_are_the_day_classes_of_the_log(data):
    by_day = {}
    for a in data.log.activities:
        by_day.setdefault(np.datetime64(a.date, "D"), []).append(a)
    for i in (0, 100, 500, len(data) - 1):
        assert data.classes[i] == class_index(day_class(by_day.get(data.dates[i], ()), data.settings.hr_max))
    assert set(np.unique(data.classes)) == set(range(len(CLASSES)))


def test_day_features_are_known_the_evening_before(data):
    i = 400
    row = features.day_matrix(data, [i])[0]
    names = features.DAY_FEATURES
    day = data.dates[i].astype(object)
    assert row[names.index(f"weekday: {features.WEEKDAYS[day.weekday()]}")] == 1.0 and row[:7].sum() == 1.0
    assert row[names.index("max temperature")] == data.weather.temp_max[i]
    assert row[names.index("precipitation")] == pytest.approx(np.log1p(data.weather.precipitation[i]))
    assert row[names.index("fitness (CTL)")] == data.table.ctl[i - 1]
    assert row[names.index("form (TSB)")] == pytest.approx(data.table.ctl[i - 1] - data.table.atl[i - 1])
    # changing the day's own session changes nothing the model reads for that day
    before = features.day_matrix(data, [i])
    classes = data.classes.copy()
    classes[i] = (classes[i] + 1) % 4
    other = dataset.PlannerData(data.log, data.dates, classes, data.table, data.weather, data.settings,
                                data.weather_days)
    np.testing.assert_array_equal(features.day_matrix(other, [i]), before)
    seq = features.sequence_tensor(other, [i])
    np.testing.assert_array_equal(seq, features.sequence_tensor(data, [i]))


def test_sequences_hold_the_past_days_and_hide_the_planned_one(data):
    i = 300
    seq = features.sequence_tensor(data, [i])[0]
    names = features.STEP_FEATURES
    assert seq.shape == (features.WINDOW + 1, len(names))
    for t in range(features.WINDOW):
        d = i - features.WINDOW + t
        assert seq[t, names.index(f"past days: {CLASSES[data.classes[d]]}")] == 1.0
        assert seq[t, names.index("past days: load")] == data.table.load[d]
    last = seq[-1]
    assert last[names.index("the day being planned")] == 1.0
    assert all(last[names.index(f"past days: {c}")] == 0.0 for c in CLASSES)
    assert last[names.index("max temperature")] == data.weather.temp_max[i]


def test_scaler_standardises_and_fills_missing_with_the_mean():
    X = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 30.0]])
    sc = features.Scaler.fit(X)
    np.testing.assert_allclose(sc.mean, [3.0, 20.0])
    Z = sc.transform(X)
    np.testing.assert_allclose(Z[:, 0], (X[:, 0] - 3.0) / np.std(X[:, 0]))
    assert Z[1, 1] == 0.0
    back = features.Scaler.from_json(sc.to_json())
    np.testing.assert_array_equal(back.transform(X), Z)


def test_no_activities_is_refused():
    with pytest.raises(dataset.DataFileError, match="no activities"):
        dataset.build(TrainingLog((), source="empty.csv"), shipped.seattle_weather())


def test_weather_gaps_are_nan_and_unknown():
    import datetime as dt

    acts = tuple(Activity(date=dt.date(2015, 12, d), sport="run", duration_s=1800.0) for d in (20, 25, 31))
    w = shipped.seattle_weather()
    cut = int(np.searchsorted(w.dates, np.datetime64("2015-12-29")))
    d = dataset.build(TrainingLog(acts), dataset.subset(w, slice(0, cut)))
    assert len(d) == 12 and d.weather_days == 9  # 20..28 December covered, 29..31 not
    assert np.isnan(d.weather.temp_max[-3:]).all() and list(d.weather.condition[-3:]) == ["unknown"] * 3
    assert d.weather.temp_max[0] == w.temp_max[int(np.searchsorted(w.dates, np.datetime64("2015-12-20")))]
