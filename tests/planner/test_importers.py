"""The planner's importers on files in the real formats, with their quirks, and on bad input."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import math
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nomagic.apps.planner import fixtures
from nomagic.apps.planner.activity_files import read_activity_file, summarise
from nomagic.apps.planner.logcsv import read_log_csv
from nomagic.apps.planner.safezip import SafeZip
from nomagic.apps.planner.strava import clean_column_name, parse_strava_date, read_strava
from nomagic.apps.planner.textfile import DataFileNote, read_text
from nomagic.apps.planner.weather import read_weather
from nomagic.errors import DataFileError

UTC = dt.timezone.utc
SEATTLE = Path(__file__).resolve().parents[2] / "src" / "nomagic" / "data" / "seattle-weather.csv"


def strava_csv(tmp_path: Path, rows: list[dict], variant: str = "current", name: str = "activities.csv") -> Path:
    """Write an activities.csv with the real header; ``rows`` give values by (name, occurrence)."""
    header = fixtures.strava_header(variant)
    names = [clean_column_name(h) for h in header]
    out = []
    for r in rows:
        row = [""] * len(header)
        for key, value in r.items():
            col, occ = key if isinstance(key, tuple) else (key, 0)
            row[[i for i, n in enumerate(names) if n == col.lower()][occ]] = value
        out.append(row)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(out)
    p = tmp_path / name
    p.write_text(buf.getvalue(), encoding="utf-8")
    return p


def row(date: str, kind: str = "Run", elapsed: str = "3600", km: str = "10.00", metres: str = "10000.0",
        name: str = "Run", **extra: str) -> dict:
    r = {"Activity ID": "1", "Activity Date": date, "Activity Name": name, "Activity Type": kind,
         ("Elapsed Time", 0): elapsed, ("Elapsed Time", 1): elapsed, ("Distance", 0): km, ("Distance", 1): metres}
    r.update({k.replace("_", " "): v for k, v in extra.items()})
    return r


# --- Strava ----------------------------------------------------------------------------------------

def test_current_header_has_repeated_names_at_known_positions():
    h = fixtures.strava_header("current")
    assert len(h) == 99
    for name, pos in (("Elapsed Time", [5, 15]), ("Distance", [6, 17]), ("Max Heart Rate", [7, 30]),
                      ("Relative Effort", [8, 37]), ("Commute", [9, 50])):
        assert [i for i, n in enumerate(h) if n == name] == pos


def test_us_and_uk_dates(tmp_path):
    p = strava_csv(tmp_path, [row("Feb 22, 2021, 10:30:06 AM"), row("24 Dec 2020, 08:13:59"),
                              row("Mar 1, 2015, 5:32:25\u202fPM")])
    log = read_strava(p)
    assert [a.start for a in log.activities] == [dt.datetime(2015, 3, 1, 17, 32, 25, tzinfo=UTC),
                                                 dt.datetime(2020, 12, 24, 8, 13, 59, tzinfo=UTC),
                                                 dt.datetime(2021, 2, 22, 10, 30, 6, tzinfo=UTC)]
    assert log.activities[0].date == dt.date(2015, 3, 1)
    assert parse_strava_date("Foo 99") is None


def test_names_with_commas_and_doubled_quotes(tmp_path):
    name = 'Run with Anna, Ben and "the dog", again'
    p = strava_csv(tmp_path, [row("Feb 22, 2021, 10:30:06 AM", name=name)])
    assert '""the dog""' in p.read_text()
    assert read_strava(p).activities[0].name == name


def test_second_distance_in_metres_is_used_not_the_miles(tmp_path):
    p = strava_csv(tmp_path, [row("Feb 22, 2021, 10:30:06 AM", km="6.21", metres="10000.0",
                                  Max_Heart_Rate="171", Average_Heart_Rate="150.5", Perceived_Exertion="7")])
    a = read_strava(p).activities[0]
    assert a.distance_m == 10000.0
    assert a.duration_s == 3600.0 and a.avg_hr == 150.5 and a.max_hr == 171.0 and a.rpe == 7.0


def test_first_distance_taken_as_km_when_metres_missing(tmp_path):
    p = strava_csv(tmp_path, [row("Feb 22, 2021, 10:30:06 AM", km="12.50", metres="")])
    assert read_strava(p).activities[0].distance_m == pytest.approx(12500.0)


def test_sports_mapped_and_kind_kept(tmp_path):
    kinds = ["Run", "Trail Run", "Virtual Ride", "E-Bike Ride", "Swim", "Walk", "Hike", "Weight Training",
             "Crossfit", "Yoga", "Kitesurf"]
    p = strava_csv(tmp_path, [row(f"Feb {i + 1}, 2021, 10:30:06 AM", kind=k) for i, k in enumerate(kinds)])
    got = [(a.kind, a.sport) for a in read_strava(p).activities]
    assert got == list(zip(kinds, ["run", "run", "ride", "ride", "swim", "walk", "hike", "strength", "strength",
                                   "other", "other"]))


def test_junk_rows_skipped_and_reported_with_line(tmp_path):
    p = strava_csv(tmp_path, [row("Feb 1, 2021, 10:30:06 AM"), row("Foo 99"), row("Feb 3, 2021, 10:30:06 AM",
                              elapsed="-5"), row("Feb 4, 2021, 10:30:06 AM", Average_Heart_Rate="900")])
    with open(p, "a") as f:
        f.write("1,2,3\n")
    log = read_strava(p)
    assert len(log) == 1
    assert [s.source for s in log.skipped] == ["activities.csv:3", "activities.csv:4", "activities.csv:5",
                                               "activities.csv:6"]
    assert "does not parse" in log.skipped[0].reason and "fields" in log.skipped[3].reason


def test_html_header_2021_variant(tmp_path):
    assert clean_column_name(fixtures.strava_header("2021")[3]) == "activity type"
    assert clean_column_name(fixtures.strava_header("2021")[43]) == "perceived exertion"  # empty text: title
    e = fixtures.make_strava_export(tmp_path, n=40, variant="2021", layout="folder", dates="uk")
    log = read_strava(e.path)
    assert len(fixtures.strava_header("2021")) == 87
    assert [a.kind for a in log.activities] == [a.kind for a in e.activities]
    assert [a.duration_s for a in log.activities] == [a.duration_s for a in e.activities]


def test_old_ten_column_format(tmp_path):
    p = tmp_path / "activities.csv"
    p.write_text("id,date,name,type,description,elapsed_time,distance,commute,gear,filename\n"
                 '123,2015-03-01 17:32:25,"Sunday, long",Run,,5400,21097.5,false,,\n')
    a = read_strava(p).activities[0]
    assert (a.start, a.duration_s, a.distance_m, a.name) == (dt.datetime(2015, 3, 1, 17, 32, 25, tzinfo=UTC),
                                                             5400.0, 21097.5, "Sunday, long")


def test_export_fills_missing_rows_from_gpx_tcx_fit(tmp_path):
    e = fixtures.make_strava_export(tmp_path, n=120, missing_every=3, miles=True, layout="folder")
    log = read_strava(e.path)
    assert not log.skipped and len(log) == len(e.activities)
    for got, want in zip(log.activities, e.activities):
        assert got.start == want.start and got.kind == want.kind
        assert got.duration_s == pytest.approx(want.duration_s, abs=1)
        assert got.distance_m == pytest.approx(want.distance_m, rel=0.01)
    rows = list(csv.reader(io.StringIO((e.path / "activities.csv").read_text())))[1:]
    blank = {i + 2: r[12] for i, r in enumerate(rows) if not r[5] and r[12]}
    kinds = {f.rsplit(".", 2)[-2] if f.endswith(".gz") else f.rsplit(".", 1)[-1] for f in blank.values()}
    assert kinds == {"gpx", "tcx", "fit"}  # every file format had to be read
    by_line = {a.source: (a, w) for a, w in zip(log.activities, e.activities)}
    for line in blank:
        got, want = by_line[f"activities.csv:{line}"]
        assert got.avg_hr == pytest.approx(want.avg_hr, abs=1) and got.duration_s == pytest.approx(want.duration_s)


def test_zip_folder_and_csv_give_the_same_log(tmp_path, monkeypatch):
    z = fixtures.make_strava_export(tmp_path / "z", n=60, missing_every=2, layout="zip")
    f = fixtures.make_strava_export(tmp_path / "f", n=60, missing_every=2, layout="folder")
    private = tmp_path / "tmp"  # a temporary folder of this test's own: others may write to the shared one
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    a, b, c = read_strava(z.path), read_strava(f.path), read_strava(f.path / "activities.csv")
    assert a == b == c and len(a) == 60
    assert os.listdir(private) == []
    assert sorted(os.listdir(tmp_path / "z")) == ["export.zip"]


def test_ten_year_export_imports_fast(tmp_path):
    e = fixtures.make_strava_export(tmp_path, n=3000, years=10)
    t = time.perf_counter()
    log = read_strava(e.path)
    assert time.perf_counter() - t < 3.0
    assert len(log) == 3000 and not log.skipped


def test_german_header_refused(tmp_path):
    p = tmp_path / "activities.csv"
    p.write_text("Aktivitäts-ID,Aktivitätsdatum,Aktivitätsname,Aktivitätsart\n1,x,y,z\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="activities.csv.*English"):
        read_strava(p)


def test_missing_columns(tmp_path):
    p = tmp_path / "activities.csv"
    p.write_text("Activity ID,Activity Name\n1,x\n")
    with pytest.raises(DataFileError, match="activities.csv: missing column 'Activity Date'"):
        read_strava(p)


def test_dates_that_do_not_parse(tmp_path):
    p = strava_csv(tmp_path, [row("Foo 99"), row("Bar 12")])
    with pytest.raises(DataFileError, match=r"activities.csv line 2: date 'Foo 99' does not parse \(expected"):
        read_strava(p)


def test_header_with_no_rows(tmp_path):
    p = strava_csv(tmp_path, [])
    with pytest.raises(DataFileError, match="activities.csv: has a header but no activities"):
        read_strava(p)


# --- activity files ----------------------------------------------------------------------------

START = dt.datetime(2021, 5, 1, 7, 0, tzinfo=UTC)


def test_tcx_with_leading_whitespace(tmp_path):
    text = fixtures.tcx_text(START, 1800, 5000, 140, 165)
    assert text.startswith(" ")
    p = tmp_path / "a.tcx"
    p.write_text(text)
    s = read_activity_file(p)
    assert (s.start, s.duration_s, s.distance_m, s.avg_hr, s.max_hr) == (START, 1800, 5000, 140, 165)


def test_gpx(tmp_path):
    p = tmp_path / "a.gpx"
    p.write_text(fixtures.gpx_text(START, 1800, 5000, 150))
    s = read_activity_file(p)
    assert s.start == START and s.duration_s == 1800 and s.avg_hr == 150
    assert s.distance_m == pytest.approx(5000, rel=0.01)


def test_fit_gz_fills_a_row_that_lacks_values(tmp_path):
    (tmp_path / "activities").mkdir()
    (tmp_path / "activities" / "9.fit.gz").write_bytes(gzip.compress(fixtures.fit_bytes(START, 2400, 8000, 145, 172)))
    p = strava_csv(tmp_path, [row("May 1, 2021, 7:00:00 AM", elapsed="", km="", metres="",
                                  Filename="activities/9.fit.gz")])
    a = read_strava(p).activities[0]
    assert (a.duration_s, a.distance_m, a.avg_hr, a.max_hr) == (2400, 8000, 145, 172)


def test_fit_written_by_fit_tool_reads(tmp_path):
    fit_tool = pytest.importorskip("fit_tool.fit_file_builder")
    from fit_tool.profile.messages.file_id_message import FileIdMessage
    from fit_tool.profile.messages.session_message import SessionMessage
    b = fit_tool.FitFileBuilder(auto_define=True)
    m = FileIdMessage()
    m.time_created = int(START.timestamp() * 1000)
    b.add(m)
    s = SessionMessage()
    s.start_time = int(START.timestamp() * 1000)
    s.total_elapsed_time = 1234.0
    s.total_distance = 4321.0
    s.avg_heart_rate = 133
    b.add(s)
    got = summarise(b.build().to_bytes(), "x.fit")
    assert (got.start, got.duration_s, got.distance_m, got.avg_hr) == (START, 1234.0, 4321.0, 133)


def test_malformed_gpx(tmp_path):
    p = tmp_path / "bad.gpx"
    p.write_text('<?xml version="1.0"?><gpx><trk><trkseg><trkpt lat="1" lon="2"></trk>')
    with pytest.raises(DataFileError, match="bad.gpx: not a valid GPX"):
        read_activity_file(p)


def test_corrupt_fit(tmp_path):
    data = bytearray(fixtures.fit_bytes(START, 600, 1000, 120, 130))
    data[40] ^= 0xFF
    p = tmp_path / "bad.fit"
    p.write_bytes(bytes(data))
    with pytest.raises(DataFileError, match="bad.fit: not a valid FIT file"):
        read_activity_file(p)


def test_unreadable_activity_file_reported_not_fatal(tmp_path):
    (tmp_path / "activities").mkdir()
    (tmp_path / "activities" / "1.gpx").write_text("<gpx><oops")
    p = strava_csv(tmp_path, [row("May 1, 2021, 7:00:00 AM", elapsed="", Filename="activities/1.gpx"),
                              row("May 2, 2021, 7:00:00 AM")])
    log = read_strava(p)
    assert len(log) == 1
    assert {s.source for s in log.skipped} == {"activities/1.gpx", "activities.csv:2"}


# --- zips -----------------------------------------------------------------------------------------

def _zip_listing(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def test_truncated_zip(tmp_path):
    e = fixtures.make_strava_export(tmp_path, n=20)
    data = e.path.read_bytes()
    e.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match="export.zip: not a readable zip archive"):
        read_strava(e.path)
    assert _zip_listing(tmp_path) == ["export.zip"]


def test_zip_member_with_dotdot(tmp_path):
    p = tmp_path / "evil.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("activities.csv", "x")
        zf.writestr("../../etc/evil.txt", "x")
    with pytest.raises(DataFileError, match="evil.zip: member '../../etc/evil.txt' has a '..' component"):
        read_strava(p)
    assert _zip_listing(tmp_path) == ["evil.zip"]


def test_zip_bomb_refused_without_expanding(tmp_path):
    p = tmp_path / "bomb.zip"
    chunk = b"\0" * (16 * 1024 * 1024)
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("activities.csv", "w", force_zip64=True) as f:
            for _ in range(20):  # 320 MB of zeros, ~320 KB compressed
                f.write(chunk)
    assert p.stat().st_size < 2_000_000
    with pytest.raises(DataFileError, match="bomb.zip: member 'activities.csv' would expand to"):
        read_strava(p)


def test_zip_bomb_that_lies_about_its_size(tmp_path):
    p = tmp_path / "liar.zip"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("activities.csv", b"a" * (3 * 1024 * 1024))
    data = bytearray(p.read_bytes())
    real = (3 * 1024 * 1024).to_bytes(4, "little")
    fake = (1000).to_bytes(4, "little")
    data = bytes(data).replace(real, fake)  # local header and central directory both claim 1000 bytes
    p.write_bytes(data)
    with SafeZip(p, max_member=1024 * 1024) as zf, pytest.raises(DataFileError, match="liar.zip: member"):
        zf.read("activities.csv")


# --- text files ----------------------------------------------------------------------------------

LOG = "date,type,duration_min,distance_km,avg_hr,rpe\n2015-03-01,Run,45,10.2,150,6\n2015-03-01,Weight Training,30,,,\n"


def test_empty_file(tmp_path):
    p = tmp_path / "log.csv"
    p.write_bytes(b"")
    with pytest.raises(DataFileError, match="log.csv: is empty"):
        read_log_csv(p)


def test_latin1_file_is_read_with_a_note(tmp_path):
    p = tmp_path / "log.csv"
    p.write_bytes((LOG.replace("Weight Training", "Kraft Übung")).encode("latin-1"))
    with pytest.warns(DataFileNote, match="log.csv: not UTF-8"):
        log = read_log_csv(p)
    assert log.activities[1].kind == "Kraft Übung"


def test_utf16_with_bom_is_read(tmp_path):
    p = tmp_path / "log.csv"
    p.write_bytes(LOG.encode("utf-16"))
    assert len(read_log_csv(p)) == 2
    p.write_bytes(b"\xef\xbb\xbf" + LOG.encode())
    assert len(read_log_csv(p)) == 2


def test_binary_file(tmp_path):
    p = tmp_path / "log.csv"
    p.write_bytes(b"date,type\x00\x01\x02" * 50)
    with pytest.raises(DataFileError, match="log.csv: not a text file"):
        read_log_csv(p)


def test_line_of_tens_of_mb(tmp_path):
    p = tmp_path / "activities.csv"
    p.write_bytes(b"date,type,duration_min,distance_km\n2015-03-01,Run,45,1\n2015-03-02," + b"x" * (20 * 1024 * 1024))
    with pytest.raises(DataFileError, match="activities.csv line 3: line 3 is longer than 1 MB"):
        read_text(p)


# --- plain log CSV -------------------------------------------------------------------------------

def test_log_csv_reads_sessions(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text(LOG)
    a, b = read_log_csv(p).activities
    assert (a.date, a.sport, a.duration_s, a.distance_m, a.avg_hr, a.rpe) == (dt.date(2015, 3, 1), "run", 2700.0,
                                                                              10200.0, 150.0, 6.0)
    assert (b.sport, b.kind, b.distance_m) == ("strength", "Weight Training", None)


@pytest.mark.parametrize("bad, match", [("-5", "duration_min -5 is outside"), ("1500", "duration_min 1500"),
                                        ("abc", "duration_min 'abc' is not a number")])
def test_log_csv_negative_or_absurd_duration(tmp_path, bad, match):
    p = tmp_path / "log.csv"
    p.write_text(LOG + f"2015-03-02,Run,{bad},5\n")
    with pytest.raises(DataFileError, match=f"log.csv line 4: {match}"):
        read_log_csv(p)


def test_log_csv_bad_date_and_missing_column(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text(LOG + "03/02/2015,Run,30,5\n")
    with pytest.raises(DataFileError, match="log.csv line 4: date '03/02/2015' does not parse"):
        read_log_csv(p)
    p.write_text("date,type,duration_min\n2015-03-01,Run,30\n")
    with pytest.raises(DataFileError, match="log.csv line 1: missing column distance_km"):
        read_log_csv(p)


# --- weather -------------------------------------------------------------------------------------

def test_seattle_file():
    w = read_weather(SEATTLE)
    assert len(w) == 1461 and str(w.dates[0]) == "2012-01-01"
    assert (w.precipitation[1], w.temp_max[1], w.temp_min[1], w.wind[1], w.condition[1]) == (10.9, 10.6, 2.8, 4.5,
                                                                                              "rain")
    assert np.all(np.isnan(w.snow))


METEO = ("2024-01-02,1.5,-0.5,4.0,0.0,,200,18.0,40.0,1012.0,120\n"
         "2024-01-01,-2.0,-5.0,0.5,3.2,40,180,7.2,30.0,1020.0,\n"
         "2024-01-03,5.0,2.0,8.0,0.5,,,,,,\n")


@pytest.mark.parametrize("header, gz", [(True, False), (False, False), (False, True)])
def test_meteostat(tmp_path, header, gz):
    text = ("date,tavg,tmin,tmax,prcp,snow,wdir,wspd,wpgt,pres,tsun\n" if header else "") + METEO
    p = tmp_path / ("10384.csv.gz" if gz else "m.csv")
    p.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    w = read_weather(p)
    assert [str(d) for d in w.dates] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert w.wind[0] == pytest.approx(2.0) and w.wind[1] == pytest.approx(5.0) and math.isnan(w.wind[2])
    assert list(w.condition) == ["snow", "sun", "drizzle"]
    assert w.snow[0] == 40.0 and math.isnan(w.snow[1])
    assert (w.temp_max[0], w.temp_min[0], w.precipitation[0]) == (0.5, -5.0, 3.2)


OM_HEAD = ("latitude,longitude,elevation,utc_offset_seconds,timezone,timezone_abbreviation\n"
           "47.6,-122.3,50.0,-28800,America/Los_Angeles,PST\n\n")


def test_open_meteo_daily_block(tmp_path):
    p = tmp_path / "open-meteo.csv"
    p.write_text(OM_HEAD + "time,temperature_2m (°C),precipitation (mm)\n2024-11-14T00:00,5.0,0.0\n\n"
                 "time,temperature_2m_max (°F),temperature_2m_min (°F),precipitation_sum (inch),"
                 "wind_speed_10m_max (mph),weather_code (wmo code),snowfall_sum (cm)\n"
                 "2024-11-15,50.0,32.0,0.1,10.0,61,0.0\n2024-11-14,59.0,41.0,0.0,20.0,3,1.5\n", encoding="utf-8")
    w = read_weather(p)
    assert [str(d) for d in w.dates] == ["2024-11-14", "2024-11-15"] and w.wind_kind == "max"
    assert w.temp_max[0] == pytest.approx(15.0) and w.temp_min[0] == pytest.approx(5.0)
    assert w.temp_max[1] == pytest.approx(10.0) and w.temp_min[1] == pytest.approx(0.0)
    assert w.precipitation[1] == pytest.approx(2.54) and w.wind[0] == pytest.approx(8.9408)
    assert w.snow[0] == pytest.approx(15.0) and list(w.condition) == ["sun", "rain"]


def test_open_meteo_hourly_aggregated(tmp_path):
    hours = ["time,temperature_2m (°C),precipitation (mm),wind_speed_10m (km/h),weather_code (wmo code)"]
    for h in range(24):
        hours.append(f"2024-11-14T{h:02d}:00,{h / 2:.1f},{0.5 if h < 4 else 0.0},{3.6 * (h % 3)},"
                     f"{63 if h == 5 else 2}")
    hours.append("2024-11-15T00:00,1.0,0.0,36.0,45")
    p = tmp_path / "om.csv"
    p.write_text(OM_HEAD + "\n".join(hours) + "\n", encoding="utf-8")
    w = read_weather(p)
    assert len(w) == 2 and w.wind_kind == "mean"
    assert (w.temp_max[0], w.temp_min[0]) == (11.5, 0.0)
    assert w.precipitation[0] == pytest.approx(2.0) and w.wind[0] == pytest.approx(1.0)
    assert list(w.condition) == ["rain", "fog"] and w.wind[1] == pytest.approx(10.0)


def test_weather_duplicate_dates_refused(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text(METEO + METEO.splitlines()[0] + "\n")
    with pytest.raises(DataFileError, match="m.csv line 4: date 2024-01-02 appears twice"):
        read_weather(p)


def test_weather_unknown_format(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataFileError, match="w.csv line 1: not a weather format"):
        read_weather(p)
