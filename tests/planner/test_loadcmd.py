"""``nomagic load``: the table and JSON match ``load.load_table``, the header says how load was
computed, --from/--to choose the days shown, --plot writes a PNG; ``read_log`` tells the formats apart."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nomagic.apps.planner import fixtures
from nomagic.apps.planner.load import LoadSettings, load_table
from nomagic.apps.planner.loadcmd import COLUMNS, JSON_DIGITS, TEXT_DIGITS, run_load
from nomagic.apps.planner.logcsv import read_log_csv
from nomagic.apps.planner.logfile import detect, read_log
from nomagic.apps.planner.shipped import athlete_log_path, shipped_log
from nomagic.cli import main

# ten days: heart rate on some sessions, RPE only on one, neither on another; a rest day; two sessions on one day
LOG = """date,type,duration_min,distance_km,avg_hr,rpe
2015-03-01,Run,45,10.2,150,
2015-03-02,Ride,90,40,140,
2015-03-03,Run,30,6,,6
2015-03-03,Weight Training,40,,,
2015-03-05,Run,60,12,165,
2015-03-06,Swim,40,2,,
2015-03-07,Run,100,20,145,
2015-03-08,Run,50,10,158,
2015-03-09,Ride,75,30,135,
2015-03-10,Run,35,7,178,
"""


@pytest.fixture
def log_file(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text(LOG, encoding="utf-8")
    return p


def exit_code(argv: list[str]) -> int:
    """``main``'s exit status, whether it returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _json(capsys, *args) -> list[dict]:
    assert main(["load", *args, "--json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out)


def test_json_matches_load_table(log_file, capsys):
    rows = _json(capsys, "--log", str(log_file))
    table = load_table(read_log_csv(log_file))
    assert len(rows) == len(table) == 10
    for row, expected in zip(rows, table.rows()):
        assert list(row) == list(COLUMNS)  # exactly these keys, in this order
        assert row["date"] == expected["date"]
        for c in COLUMNS[1:]:
            if expected[c] is None:
                assert row[c] is None  # NaN is null, never NaN
            else:
                assert row[c] == pytest.approx(round(expected[c], JSON_DIGITS[c]), abs=1e-12)
    assert rows[0]["monotony"] is None and rows[6]["monotony"] is not None  # first 6 days undefined
    assert rows[3]["load"] == 0.0  # the rest day is a row with load 0


def test_json_is_the_only_thing_on_stdout(log_file, capsys):
    assert main(["load", "--log", str(log_file), "--json"]) == 0
    out = capsys.readouterr()
    assert out.out.lstrip().startswith("[") and out.out.rstrip().endswith("]")
    assert "NaN" not in out.out
    assert out.err == ""


def test_text_table_header_and_rounding(log_file, capsys):
    assert main(["load", "--log", str(log_file)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("# load auto")
    assert "hr_rest 60 bpm (default)" in lines[0] and "hr_max 178 bpm (the log's highest heart rate)" in lines[0]
    assert "sex male, CTL 42 days, ATL 7 days" in lines[0]
    assert "7 TRIMP, 1 sRPE, 2 duration sessions" in lines[0]
    assert lines[1].startswith("# log.csv: 10 sessions from 2015-03-01 to 2015-03-10")
    assert lines[2].split() == list(COLUMNS)
    body = [line.split() for line in lines[3:]]
    assert len(body) == 10
    assert len({len(line) for line in lines[2:]}) == 1  # aligned
    table = load_table(read_log_csv(log_file))
    for cells, expected in zip(body, table.rows()):
        assert cells[0] == expected["date"]
        for c, cell in zip(COLUMNS[1:], cells[1:]):
            if expected[c] is None:
                assert cell == "-"
            else:
                assert cell == f"{expected[c]:.{TEXT_DIGITS[c]}f}".replace("-0.0", "0.0")
                assert len(cell.split(".")[1]) == TEXT_DIGITS[c]


def test_constants_and_method_in_header(log_file, capsys):
    assert main(["load", "--log", str(log_file), "--load", "duration", "--hr-rest", "50", "--hr-max", "190",
                 "--sex", "female", "--ctl-days", "28", "--atl-days", "5"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("# load duration")
    assert "10 duration sessions" in first
    assert "hr_rest 50 bpm (given), hr_max 190 bpm (given), sex female, CTL 28 days, ATL 5 days" in first


def test_settings_reach_the_numbers(log_file, capsys):
    rows = _json(capsys, "--log", str(log_file), "--hr-rest", "50", "--hr-max", "190", "--sex", "female",
                 "--ctl-days", "28", "--atl-days", "5")
    table = load_table(read_log_csv(log_file), LoadSettings(hr_rest=50, hr_max=190, sex="female", ctl_days=28,
                                                             atl_days=5))
    assert [r["ctl"] for r in rows] == [round(v, 2) + 0.0 for v in table.ctl]
    assert [r["load"] for r in rows] == [round(v, 2) + 0.0 for v in table.load]


def test_trimp_without_heart_rate_says_which_option(log_file, capsys):
    assert main(["load", "--log", str(log_file), "--load", "trimp"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs an average heart rate" in err and "--load auto" in err


def test_from_to_choose_days_but_keep_history(log_file, capsys):
    full = _json(capsys, "--log", str(log_file))
    part = _json(capsys, "--log", str(log_file), "--from", "2015-03-04", "--to", "2015-03-08")
    assert [r["date"] for r in part] == ["2015-03-04", "2015-03-05", "2015-03-06", "2015-03-07", "2015-03-08"]
    assert part == full[3:8]  # the same numbers: CTL is computed from the log's first day
    later = _json(capsys, "--log", str(log_file), "--from", "2015-03-09", "--to", "2015-03-14")
    assert len(later) == 6 and [r["load"] for r in later[2:]] == [0.0] * 4  # rest days after the log
    assert later[2]["ctl"] < later[1]["ctl"]
    assert main(["load", "--log", str(log_file), "--from", "2015-03-09"]) == 0
    text = capsys.readouterr().out
    assert "showing 2015-03-09 to 2015-03-10 (2 days)" in text


@pytest.mark.parametrize("args, fragment", [
    (["--from", "2015-03-08", "--to", "2015-03-02"], "lies before --from"),
    (["--from", "2016-01-01"], "no days to show"),
    (["--from", "2015-02-30"], "not a date like"),
    (["--hr-max", "400"], "not a heart rate"),
    (["--ctl-days", "0"], "positive number"),
    (["--hr-rest", "170", "--hr-max", "160"], "must be above hr_rest"),
])
def test_bad_options(log_file, capsys, args, fragment):
    assert exit_code(["load", "--log", str(log_file), *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0]


def test_plot_is_a_png(log_file, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "pmc.png"
    assert main(["load", "--log", str(log_file), "--plot", str(png), "--json"]) == 0
    out = capsys.readouterr()
    json.loads(out.out)  # the chart note goes to stderr, stdout stays JSON
    assert "pmc.png" in out.err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "pmc.png"]


def test_shipped_log_is_the_default(capsys):
    result = run_load(None, as_json=True)
    rows = json.loads(result.output)
    shipped = shipped_log()
    assert len(shipped) > 1000 and shipped.source == "athlete-log.csv"
    assert rows[0]["date"] == str(shipped.activities[0].date)
    assert rows[-1]["date"] == str(shipped.activities[-1].date)
    assert detect(None) == "shipped" and detect(athlete_log_path()) == "log-csv"
    assert all(math.isfinite(r["ctl"]) for r in rows)


# --- read_log: which format is it? -------------------------------------------------------------------

def test_read_log_tells_the_formats_apart(tmp_path):
    z = fixtures.make_strava_export(tmp_path / "z", n=40, layout="zip")
    f = fixtures.make_strava_export(tmp_path / "f", n=40, layout="folder")
    old = fixtures.make_strava_export(tmp_path / "o", n=40, layout="folder", variant="old")
    plain = tmp_path / "plain.csv"
    plain.write_text(LOG, encoding="utf-8")
    assert detect(z.path) == "strava-zip" and detect(f.path) == "strava-folder"
    assert detect(f.path / "activities.csv") == "strava-csv" and detect(old.path / "activities.csv") == "strava-csv"
    assert detect(plain) == "log-csv"
    by_zip, by_folder, by_csv = read_log(z.path), read_log(f.path), read_log(f.path / "activities.csv")
    assert len(by_zip) == len(by_folder) == len(by_csv) == 40  # the csv's activity files are read beside it
    assert [a.duration_s for a in by_zip.activities] == [a.duration_s for a in by_csv.activities]
    assert len(read_log(old.path / "activities.csv")) == 40
    assert len(read_log(plain)) == 10
    renamed = tmp_path / "export.dat"
    renamed.write_bytes(z.path.read_bytes())  # a zip is a zip whatever its name
    assert detect(renamed) == "strava-zip" and len(read_log(renamed)) == 40


def test_strava_export_through_the_command(tmp_path, capsys):
    e = fixtures.make_strava_export(tmp_path, n=60, layout="zip")
    assert main(["load", "--log", str(e.path)]) == 0
    out = capsys.readouterr()
    assert "activities.csv: 60 sessions" in out.out
    dates = [line.split()[0] for line in out.out.splitlines()[3:]]
    assert dates[0] == str(min(a.date for a in e.activities)) and dates[-1] == str(max(a.date for a in e.activities))
    assert np.all(np.diff(np.array(dates, dtype="datetime64[D]")) == np.timedelta64(1, "D"))
