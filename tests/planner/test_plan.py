"""``nomagic plan`` and ``nomagic audit`` on the shipped data: the JSON schema, the cache, the
engines agreeing, the reasons being what they claim, rolling a plan forward, and bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from nomagic.apps.planner import cache, dataset, evaluate, models, plancmd, recommend, shipped
from nomagic.apps.planner.load import project
from nomagic.apps.planner.logfile import read_log
from nomagic.apps.planner.sessions import CLASSES
from nomagic.cli import main

jsonschema = pytest.importorskip("jsonschema")
SCHEMA = json.loads(resources.files("nomagic.apps.planner").joinpath("plan.schema.json").read_text())


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One cold training for the module; every test after it runs warm."""
    folder = tmp_path_factory.mktemp("cache")
    old = os.environ.get(cache.CACHE_ENV)
    os.environ[cache.CACHE_ENV] = str(folder)
    yield folder
    if old is None:
        os.environ.pop(cache.CACHE_ENV, None)
    else:
        os.environ[cache.CACHE_ENV] = old


@pytest.fixture(scope="module")
def shipped_data():
    return dataset.build(read_log(None), shipped.seattle_weather())


@pytest.fixture(scope="module")
def planner_models(cache_dir, shipped_data):
    return plancmd.trained_models(shipped_data, models.TrainOptions(), [])


def test_plan_json_follows_the_schema(cache_dir, planner_models):
    one = plancmd.run_plan(as_json=True)
    doc = json.loads(one.output)
    jsonschema.validate(doc, SCHEMA)
    assert doc["date"] == "2015-12-31"  # the day after the last logged day of the shipped log
    assert doc["session"] in CLASSES and doc["model"] == "mlp"
    assert math.isclose(sum(doc["probabilities"].values()), 1.0, abs_tol=1e-3)
    assert doc["session"] == max(doc["probabilities"], key=doc["probabilities"].get)
    assert set(doc["load"]) >= {"ctl", "atl", "tsb", "acwr"} and doc["reasons"]
    several = json.loads(plancmd.run_plan(as_json=True, days=4, model="rnn").output)
    jsonschema.validate(several, SCHEMA)
    assert [d["date"] for d in several["plan"]] == ["2015-12-31", "2016-01-01", "2016-01-02", "2016-01-03"]
    broken = dict(doc)
    del broken["session"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_text_output_names_session_weather_load_and_reasons(cache_dir, planner_models):
    out = plancmd.run_plan().output
    assert "Recommendation for Thursday 2015-12-31" in out
    for word in ("session:", "weather:", "fitness (CTL)", "why", "backward pass"):
        assert word in out


def test_second_run_reuses_the_cache_and_new_data_trains_again(cache_dir, planner_models, shipped_data, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("trained although the cache holds the models")

    monkeypatch.setattr(plancmd, "train", refuse)
    again = plancmd.trained_models(shipped_data, models.TrainOptions(), [])
    assert set(again) == set(planner_models)
    for k in again:  # the same params came back from the files
        for name, a in planner_models[k].model.params.items():
            np.testing.assert_array_equal(again[k].model.params[name], a)
    # other options: another fingerprint, so training is asked for
    with pytest.raises(AssertionError, match="trained although"):
        plancmd.trained_models(shipped_data, models.TrainOptions(seed=1), [])


def test_a_damaged_cache_is_rebuilt_with_a_warning(tmp_path, shipped_data, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    opts = models.TrainOptions(epochs=3, rnn_epochs=2, patience=1, perceptron_epochs=2)
    plancmd.trained_models(shipped_data, opts, [])
    (entry,) = [p for p in tmp_path.iterdir() if p.name.startswith("planner-")]
    target = entry / "mlp.nomagic"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))
    notes: list[str] = []
    rebuilt = plancmd.trained_models(shipped_data, opts, notes)
    assert len(notes) == 1 and "damaged" in notes[0] and "training them again" in notes[0]
    assert set(rebuilt) == set(cache.KINDS)
    assert cache.load(cache.fingerprint(shipped_data, opts), opts)[0] is not None  # written anew, readable


def test_plan_and_audit_agree_on_both_engines(cache_dir, planner_models):
    for kind in ("mlp", "rnn"):
        t = plancmd.run_plan(model=kind, days=2, as_json=True).payload
        p = plancmd.run_plan(model=kind, days=2, engine="processes", as_json=True).payload
        for a, b in zip(t["plan"], p["plan"]):
            assert a["session"] == b["session"]
            for c in a["probabilities"]:
                assert abs(a["probabilities"][c] - b["probabilities"][c]) < 1e-9
            assert [r["feature"] for r in a["reasons"]] == [r["feature"] for r in b["reasons"]]
            for ra, rb in zip(a["reasons"], b["reasons"]):
                assert abs(ra["push"] - rb["push"]) < 1e-6
        at = plancmd.run_audit(model=kind, as_json=True).payload
        ap = plancmd.run_audit(model=kind, engine="processes", as_json=True).payload
        at.pop("engine"), ap.pop("engine")
        assert at == ap


def test_reasons_are_input_times_gradient_by_finite_differences(shipped_data, planner_models):
    """A push is x_i · ∂log p(class)/∂x_i: check it against central differences in float64."""
    m = planner_models["mlp"]
    i = len(shipped_data) - 3
    cls = 3
    X = m.inputs(shipped_data, [i])
    pushes = m.pushes(shipped_data, i, cls)

    def logp(x):
        return math.log(m.model.net.predict(m.model.params, x[None])[0, cls])

    eps = 1e-6
    for j in range(X.shape[1]):
        up, down = X[0].copy(), X[0].copy()
        up[j] += eps
        down[j] -= eps
        expected = X[0, j] * (logp(up) - logp(down)) / (2 * eps)
        assert abs(pushes[j] - expected) < 1e-6, j


def test_rnn_reasons_sum_input_times_gradient_over_time(shipped_data, planner_models):
    m = planner_models["rnn"]
    i = len(shipped_data) - 1
    cls = 1
    X = m.inputs(shipped_data, [i])
    pushes = m.pushes(shipped_data, i, cls)

    def logp(x):
        return math.log(m.model.net.predict(m.model.params, x[None])[0, cls])

    eps = 1e-6
    for j in (0, 9, 14, 18, 21):
        total = 0.0
        for t in range(X.shape[1]):
            up, down = X[0].copy(), X[0].copy()
            up[t, j] += eps
            down[t, j] -= eps
            total += X[0, t, j] * (logp(up) - logp(down)) / (2 * eps)
        assert abs(pushes[j] - total) < 1e-6, j


def test_several_days_roll_the_load_forward(shipped_data, planner_models):
    recs = recommend.plan(shipped_data, planner_models["mlp"], days=3)
    typical = recommend.typical_loads(shipped_data)
    for r in recs:
        assert r.planned_load == pytest.approx(typical[r.session], abs=0.05)
    # the plan starts the day after the log; day 3's fitness is the chart projected over the two
    # planned loads before it
    assert recs[0].date == str(shipped_data.dates[-1] + 1)
    rolled = project(shipped_data.table, [recs[0].planned_load, recs[1].planned_load])
    assert recs[2].load["ctl"] == pytest.approx(rolled.ctl[-1], abs=0.01)
    assert recs[2].load["atl"] == pytest.approx(rolled.atl[-1], abs=0.01)
    assert recs[0].load["ctl"] == pytest.approx(shipped_data.table.ctl[-1], abs=0.01)


def test_planning_a_day_inside_the_log_uses_only_the_days_before(shipped_data, planner_models):
    (r,) = recommend.plan(shipped_data, planner_models["mlp"], date=np.datetime64("2015-06-10"))
    i = int((np.datetime64("2015-06-10") - shipped_data.dates[0]).astype(int))
    assert r.load["ctl"] == pytest.approx(shipped_data.table.ctl[i - 1], abs=0.01)
    assert any("later sessions are left out" in w for w in r.warnings)


def test_a_hot_dry_forecast_is_flagged(tmp_path, cache_dir, planner_models):
    days = ["2015-12-31"] + [f"2016-01-0{d}" for d in range(1, 8)]
    rows = ["date,tavg,tmin,tmax,prcp,snow,wdir,wspd,wpgt,pres,tsun"] + [f"{d},33.0,26.0,41.0,0.0,,,10.0,,," for d in days]
    path = tmp_path / "phoenix.csv"
    path.write_text("\n".join(rows) + "\n")
    result = plancmd.run_plan(forecast=str(path), days=3, as_json=True).payload
    text = " ".join(result["warnings"])
    assert "hotter" in text and "learned from" in text
    assert result["plan"][1]["weather"]["source"] == "forecast"
    assert result["plan"][1]["weather"]["temp_max"] == 41.0


def test_unknown_weather_is_said(cache_dir, planner_models):
    doc = plancmd.run_plan(days=3, as_json=True).payload
    assert doc["plan"][1]["weather"] is None
    assert any("2016-01-01 .. 2016-01-02" in w and "unknown" in w for w in doc["plan"][0]["warnings"])


def test_evaluation_claims(shipped_data):
    """The multi-layer network beats the majority class, last week's weekday and logistic
    regression on the class, and the perceptron on "train or rest?"; the recurrent network beats
    the multi-layer one where the generator's history rules decided the day."""
    pytest.importorskip("sklearn")
    hist = evaluate.shipped_history_days(shipped_data)
    assert 0.05 < hist.mean() < 0.2
    rows = evaluate.evaluate(shipped_data, history_days=hist,
                             baselines=("majority", "same weekday last week", "logistic regression"))
    cls = {r.name: r for r in rows if r.task == "class"}
    binary = {r.name: r for r in rows if r.task == "train or rest"}
    for base in ("majority", "same weekday last week", "logistic regression"):
        assert cls["mlp"].scores["accuracy"] > cls[base].scores["accuracy"], base
    assert binary["mlp"].scores["accuracy"] > binary["perceptron"].scores["accuracy"]
    assert cls["rnn"].history_accuracy > cls["mlp"].history_accuracy
    assert cls["rnn"].scores["accuracy"] > cls["mlp"].scores["accuracy"]


# --- bad input: one line, exit 2, nothing written (the cache included) ---------------------------


def _cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, words", [
    (["plan", "--log", "no-such-file.csv"], "no-such-file.csv"),
    (["plan", "--days", "0"], "--days"),
    (["plan", "--days", "40"], "--days"),
    (["plan", "--date", "2011-01-01"], "no history"),
    (["plan", "--model", "svm"], "invalid choice"),
    (["audit", "--engine", "gpu"], "invalid choice"),
    (["plan", "--plot", "/no/such/folder/plan.png"], "folder"),
    (["plan", "--plot", "plan.jpg"], "jpg"),
])
def test_bad_input_is_one_line_and_writes_nothing(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(argv, capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "cache").exists() or argv[1:3] == ["--date", "2011-01-01"]


def test_no_overlap_between_log_and_weather(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    weather = tmp_path / "2020.csv"
    weather.write_text("date,tavg,tmin,tmax,prcp,snow,wdir,wspd,wpgt,pres,tsun\n"
                       + "".join(f"2020-01-{d:02d},5,1,9,0.5,,,10,,,\n" for d in range(1, 29)))
    code, out, err = _cli(["plan", "--weather", str(weather)], capsys)
    assert code == 2 and "no overlap" in err and "2020.csv" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists()


def test_a_short_log_is_refused_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    log = tmp_path / "short.csv"
    log.write_text("date,type,duration_min,distance_km\n" + "".join(
        f"2015-03-{d:02d},Run,40,8\n" for d in range(1, 20)))
    code, out, err = _cli(["plan", "--log", str(log)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "days" in err
    assert not (tmp_path / "cache").exists()


def test_plan_runs_as_a_command_without_traceback(tmp_path):
    env = {**os.environ, cache.CACHE_ENV: str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "nomagic", "plan", "--log", str(tmp_path / "missing.zip")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "missing.zip" in done.stderr and "Traceback" not in done.stderr
    assert list(Path(tmp_path).iterdir()) == []


def test_a_log_of_a_few_months_is_planned_from(tmp_path, monkeypatch):
    """A log shorter than a year and a hold-out holds out its last fifth instead."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    lines = Path(shipped.athlete_log_path()).read_text().splitlines()
    short = [lines[0]] + [row for row in lines[1:] if row >= "2015-07-01"]
    log = tmp_path / "half-year.csv"
    log.write_text("\n".join(short) + "\n")
    data = dataset.build(read_log(log), shipped.seattle_weather())
    split = evaluate.holdout_split(data)
    n = len(split.train) + len(split.holdout)
    assert len(split.holdout) == max(evaluate.MIN_HOLDOUT, n // 5) and split.train.max() < split.holdout.min()
    doc = plancmd.run_plan(str(log), as_json=True, options=models.TrainOptions(epochs=20, rnn_epochs=5)).payload
    jsonschema.validate(doc, SCHEMA)
    assert doc["date"] == "2015-12-31"


def test_planning_early_in_the_log_warns_that_fitness_is_not_yet_meaningful(cache_dir, planner_models):
    doc = plancmd.run_plan(date="2012-02-05", as_json=True).payload
    assert any("less than 42 days of history (35)" in w for w in doc["warnings"]), doc["warnings"]
    later = plancmd.run_plan(as_json=True).payload
    assert not any("42 days" in w for w in later["warnings"])
