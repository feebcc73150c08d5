"""The shipped Seattle weather, the CSV loader's checks, and ``nm.windows``."""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nomagic as nm
from nomagic.data.weather import weather_path

HEADER = "date,precipitation,temp_max,temp_min,wind,weather\n"
SHIPPED_SHA256 = "62f0609f787158128aa2bd102967173a4953122dd4f872bf1d502cae1037df0b"


def write(tmp_path: Path, text: str, name: str = "w.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the shipped file -------------------------------------------------------------------------------


def test_shipped_file_is_the_vega_datasets_copy():
    data = Path(weather_path()).read_bytes()
    assert hashlib.sha256(data).hexdigest() == SHIPPED_SHA256
    sources = Path(weather_path()).with_name("SOURCES.md").read_text(encoding="utf-8")
    assert "vega_datasets" in sources and "NOAA" in sources and SHIPPED_SHA256 in sources


def test_load_shipped_weather():
    w = nm.load_weather()
    assert isinstance(w, nm.Weather)
    assert len(w) == 1461
    assert w.dates.dtype == np.dtype("datetime64[D]")
    assert w.dates[0] == np.datetime64("2012-01-01") and w.dates[-1] == np.datetime64("2015-12-31")
    assert np.all(np.diff(w.dates) == np.timedelta64(1, "D"))  # every day, none missing
    # the first row of the file: 2012/01/01,0.0,12.8,5.0,4.7,drizzle
    assert (w.precipitation[0], w.temp_max[0], w.temp_min[0], w.wind[0]) == (0.0, 12.8, 5.0, 4.7)
    assert w.condition[0] == "drizzle" and w.condition[-1] == "sun"
    assert set(w.condition) == {"drizzle", "fog", "rain", "snow", "sun"}
    for name in ("precipitation", "temp_max", "temp_min", "wind"):
        a = getattr(w, name)
        assert a.dtype == np.float64 and a.shape == (1461,) and np.all(np.isfinite(a))
    assert np.all(w.temp_max >= w.temp_min)
    assert np.all(w.precipitation >= 0) and np.all(w.wind >= 0)
    assert "1461 days" in repr(w)


def test_weather_arrays_are_read_only():
    w = nm.load_weather()
    with pytest.raises(ValueError):
        w.temp_max[0] = 99.0
    with pytest.raises(AttributeError):
        w.temp_max = np.zeros(3)


def test_as_array():
    w = nm.load_weather()
    a = w.as_array()
    assert a.shape == (1461, 4) and a.dtype == np.float64
    np.testing.assert_array_equal(a[:, 1], w.temp_max)
    b = w.as_array(["wind", "temp_min"])
    np.testing.assert_array_equal(b, np.stack([w.wind, w.temp_min], axis=1))
    assert w.as_array("temp_max").shape == (1461, 1)
    b[0, 0] = -1.0  # a fresh, writable copy
    assert w.wind[0] != -1.0
    with pytest.raises(nm.UnknownNameError, match="condition"):
        w.as_array(["condition"])
    with pytest.raises(nm.UnknownNameError, match="temperature"):
        w.as_array(["temperature"])
    with pytest.raises(nm.InvalidInputError):
        w.as_array([])


def test_between():
    w = nm.load_weather()
    y2015 = w.between("2015-01-01", "2015-12-31")
    assert len(y2015) == 365 and y2015.dates[0] == np.datetime64("2015-01-01")
    train = w.between(None, "2014-12-31")
    assert len(train) == 1096 and len(train) + len(y2015) == len(w)
    assert len(w.between(datetime.date(2012, 2, 1), np.datetime64("2012-02-29"))) == 29
    assert len(w.between("2012/03/01")) == 1461 - 31 - 29
    np.testing.assert_array_equal(y2015.temp_max, w.temp_max[-365:])
    assert list(y2015.condition) == list(w.condition[-365:])
    assert len(w.between("2020-01-01", "2020-12-31")) == 0
    with pytest.raises(nm.InvalidInputError, match="before start"):
        w.between("2015-01-01", "2014-01-01")
    with pytest.raises(nm.InvalidInputError, match="not a date"):
        w.between("yesterday")
    with pytest.raises(nm.InvalidInputError):
        w.between(20150101)


def test_shipped_csv_installed_in_a_regular_install(tmp_path):
    """package-data: a non-editable install carries the CSV and loads it."""
    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # build from a copy: never write build/ into the working tree
    shutil.copytree(root / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).exists():
            shutil.copy2(root / name, source / name)
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    if proc.returncode != 0:
        pytest.skip(f"could not build the package here: {proc.stderr[-500:]}")
    assert (target / "nomagic" / "data" / "seattle-weather.csv").is_file()
    assert (target / "nomagic" / "data" / "SOURCES.md").is_file()
    code = "import nomagic as nm; w = nm.load_weather(); print(len(w), nm.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)})
    assert out.returncode == 0, out.stderr
    count, where = out.stdout.split()
    assert count == "1461" and where.startswith(str(target))


# -- user files and their errors ------------------------------------------------------------------


def test_user_file_any_column_order_and_iso_dates(tmp_path):
    path = write(tmp_path, "weather,wind,date,temp_min,temp_max,precipitation,note\n"
                           "sun,1.5,2020-05-01,8.0,20.5,0,x\n"
                           "rain,3.0,2020-05-02,9.0,15.0,4.2,y\n"
                           "\n")
    w = nm.load_weather(path)
    assert len(w) == 2
    np.testing.assert_array_equal(w.dates, np.array(["2020-05-01", "2020-05-02"], dtype="datetime64[D]"))
    np.testing.assert_array_equal(w.temp_max, [20.5, 15.0])
    np.testing.assert_array_equal(w.precipitation, [0.0, 4.2])
    assert list(w.condition) == ["sun", "rain"]
    assert len(nm.load_weather(str(path))) == 2


def test_missing_file(tmp_path):
    with pytest.raises(nm.InvalidInputError, match="does not exist"):
        nm.load_weather(tmp_path / "nope.csv")
    with pytest.raises(nm.InvalidInputError, match="directory"):
        nm.load_weather(tmp_path)
    with pytest.raises(nm.InvalidInputError):
        nm.load_weather(42)


def test_empty_file(tmp_path):
    with pytest.raises(nm.EmptyDataError, match="empty"):
        nm.load_weather(write(tmp_path, ""))
    with pytest.raises(nm.EmptyDataError, match="no days"):
        nm.load_weather(write(tmp_path, HEADER))


def test_missing_columns(tmp_path):
    path = write(tmp_path, "date,precipitation,temp_max,wind\n2012/01/01,0,1,2\n")
    with pytest.raises(nm.InvalidInputError, match="missing column.*temp_min, weather"):
        nm.load_weather(path)


def test_wrong_number_of_fields(tmp_path):
    path = write(tmp_path, HEADER + "2012/01/01,0.0,12.8,5.0,4.7,sun\n2012/01/02,0.0,12.8\n")
    with pytest.raises(nm.InvalidInputError, match="line 3: 3 fields"):
        nm.load_weather(path)


def test_unparseable_number(tmp_path):
    path = write(tmp_path, HEADER + "2012/01/01,0.0,12.8,5.0,4.7,sun\n2012/01/02,0.0,warm,5.0,4.7,sun\n")
    with pytest.raises(nm.InvalidInputError, match="line 3: temp_max 'warm' is not a number"):
        nm.load_weather(path)
    path = write(tmp_path, HEADER + "2012/01/01,,12.8,5.0,4.7,sun\n")
    with pytest.raises(nm.InvalidInputError, match="precipitation '' is not a number"):
        nm.load_weather(path)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_non_finite_number(tmp_path, value):
    path = write(tmp_path, HEADER + f"2012/01/01,0.0,12.8,{value},4.7,sun\n")
    with pytest.raises(nm.NonFiniteError, match="line 2: temp_min"):
        nm.load_weather(path)


@pytest.mark.parametrize("date", ["2012/13/01", "2012-02-30", "01/02/2012", "tomorrow", "", "2012-1"])
def test_unparseable_date(tmp_path, date):
    path = write(tmp_path, HEADER + f"{date},0.0,12.8,5.0,4.7,sun\n")
    with pytest.raises(nm.InvalidInputError, match="line 2: date"):
        nm.load_weather(path)


def test_dates_not_increasing(tmp_path):
    rows = "2012/01/02,0,1,0,1,sun\n2012/01/01,0,1,0,1,sun\n"
    with pytest.raises(nm.InvalidInputError, match="line 3: date 2012-01-01 comes before"):
        nm.load_weather(write(tmp_path, HEADER + rows))
    rows = "2012/01/01,0,1,0,1,sun\n2012/01/01,0,1,0,1,rain\n"
    with pytest.raises(nm.InvalidInputError, match="repeats"):
        nm.load_weather(write(tmp_path, HEADER + rows))


def test_empty_condition(tmp_path):
    with pytest.raises(nm.InvalidInputError, match="weather column is empty"):
        nm.load_weather(write(tmp_path, HEADER + "2012/01/01,0,1,0,1, \n"))


def test_duplicate_column(tmp_path):
    text = "date,precipitation,temp_max,temp_min,wind,weather,wind\n2012/01/01,0,1,0,1,sun,2\n"
    with pytest.raises(nm.InvalidInputError, match="more than once"):
        nm.load_weather(write(tmp_path, text))


def test_binary_file(tmp_path):
    path = tmp_path / "w.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(nm.NomagicError):
        nm.load_weather(path)


# -- windows ------------------------------------------------------------------------------------------


def test_windows_semantics_1d():
    s = np.arange(10.0)
    X, Y = nm.windows(s, 3)
    assert X.shape == (7, 3, 1) and Y.shape == (7, 1)
    for i in range(7):  # window i covers t = i..i+2; Y at t = i + 3 - 1 + 1
        np.testing.assert_array_equal(X[i, :, 0], s[i:i + 3])
        assert Y[i, 0] == s[i + 3]
    X, Y = nm.windows(s, 3, horizon=4)
    assert X.shape == (4, 3, 1)
    for i in range(4):
        assert Y[i, 0] == s[i + 3 - 1 + 4]
    assert Y[-1, 0] == s[-1]


def test_windows_2d_and_targets():
    T, F = 12, 3
    s = np.arange(T * F, dtype=np.float64).reshape(T, F)
    X, Y = nm.windows(s, 4, horizon=2)
    n = T - 4 - 2 + 1
    assert X.shape == (n, 4, F) and Y.shape == (n, F)
    for i in range(n):
        np.testing.assert_array_equal(X[i], s[i:i + 4])
        np.testing.assert_array_equal(Y[i], s[i + 4 - 1 + 2])
    _, Y1 = nm.windows(s, 4, target=1)
    np.testing.assert_array_equal(Y1[:, 0], s[4:, 1])
    assert Y1.shape == (T - 4, 1)
    _, Y2 = nm.windows(s, 4, target=[2, 0])
    np.testing.assert_array_equal(Y2, s[4:][:, [2, 0]])
    _, Y3 = nm.windows(s, 4, target=-1)
    np.testing.assert_array_equal(Y3[:, 0], s[4:, 2])
    X[0, 0, 0] = -5  # new arrays, not views of the series
    assert s[0, 0] == 0


def test_windows_dtypes_and_exact_fit():
    X, Y = nm.windows(np.arange(5, dtype=np.int64), 4)
    assert X.dtype == np.float64 and X.shape == (1, 4, 1) and Y[0, 0] == 4
    X, Y = nm.windows(np.arange(5, dtype=np.float32), 2)
    assert X.dtype == np.float32 and Y.dtype == np.float32
    X, Y = nm.windows([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], 2)
    assert X.shape == (1, 2, 2) and Y.tolist() == [[5.0, 6.0]]


def test_windows_feed_a_recurrent_network():
    s = nm.load_weather().as_array()
    X, Y = nm.windows(s, 7, target=1)
    net = nm.inputs(4) | nm.gru(3) | nm.dense(1)
    assert net.predict(net.init(), X[:5]).shape == (5, 1)
    loss, _ = net.loss_and_grad(net.init(), X[:5], Y[:5])
    assert np.isfinite(loss)


def test_windows_errors():
    s = np.arange(10.0)
    with pytest.raises(nm.ShapeError, match="needs at least 11 steps; the series has 10"):
        nm.windows(s, 10)
    with pytest.raises(nm.ShapeError, match="needs at least"):
        nm.windows(s, 8, horizon=3)
    with pytest.raises(nm.ShapeError, match="needs at least"):
        nm.windows(s, 50)
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(nm.InvalidInputError, match="length"):
            nm.windows(s, bad)
        with pytest.raises(nm.InvalidInputError, match="horizon"):
            nm.windows(s, 2, horizon=bad)
    with pytest.raises(nm.ShapeError, match="1-D .* or 2-D"):
        nm.windows(np.zeros((10, 2, 2)), 3)
    with pytest.raises(nm.ShapeError, match="1-D .* or 2-D"):
        nm.windows(np.float64(3.0), 1)
    nan = s.copy()
    nan[4] = np.nan
    with pytest.raises(nm.NonFiniteError):
        nm.windows(nan, 3)
    with pytest.raises(nm.NonFiniteError):
        nm.windows(np.array([1.0, np.inf, 2.0, 3.0]), 2)
    with pytest.raises(nm.ShapeError, match="ragged"):
        nm.windows([[1.0, 2.0], [3.0]], 1)
    with pytest.raises(nm.InvalidInputError, match="real numbers"):
        nm.windows(np.array(["a", "b", "c"]), 1)
    two = np.zeros((10, 2))
    with pytest.raises(nm.InvalidInputError, match="out of range"):
        nm.windows(two, 3, target=2)
    with pytest.raises(nm.InvalidInputError, match="out of range"):
        nm.windows(two, 3, target=[0, -3])
    with pytest.raises(nm.InvalidInputError, match="empty"):
        nm.windows(two, 3, target=[])
    with pytest.raises(nm.InvalidInputError):
        nm.windows(two, 3, target="temp_max")
    with pytest.raises(nm.ShapeError, match="no features"):
        nm.windows(np.zeros((10, 0)), 3)
