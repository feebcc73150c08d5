"""``nomagic load`` on bad input: one clear line on stderr naming the file and the problem, exit
status 2, no traceback, nothing on stdout and nothing written. Most cases run through
``nomagic.cli.main``; a few through a real ``python -m nomagic`` to prove no traceback escapes."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nomagic.apps.planner import fixtures
from nomagic.apps.planner.strava import clean_column_name
from nomagic.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"
GOOD = "date,type,duration_min,distance_km,avg_hr,rpe\n2015-03-01,Run,45,10.2,150,6\n2015-03-02,Ride,60,25,,\n"


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    try:
        rc = main(["load", *args])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line(rc: int, out: str, err: str, *fragments: str) -> None:
    assert rc == 2, err
    assert out == ""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("nomagic: error: ")
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def run_module(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "nomagic", "load", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=cwd)


def strava_export(folder: Path, rows: list[dict], files: dict[str, bytes], layout: str = "zip") -> Path:
    """A minimal export: activities.csv with the current header (values by column name) and activity files."""
    header = fixtures.strava_header("current")
    names = [clean_column_name(h) for h in header]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        row = [""] * len(header)
        for key, value in r.items():
            row[names.index(key.lower())] = value
        w.writerow(row)
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "zip":
        path = folder / "export.zip"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("activities.csv", buf.getvalue())
            for name, data in files.items():
                zf.writestr(name, data)
        return path
    (folder / "activities").mkdir(exist_ok=True)
    (folder / "activities.csv").write_text(buf.getvalue(), encoding="utf-8")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def needs_file(name: str, when: str = "May 1, 2021, 7:00:00 AM") -> dict:
    """A row without elapsed time: the importer must read its activity file."""
    return {"Activity ID": "1", "Activity Date": when, "Activity Type": "Run", "Filename": name}


def complete(when: str = "May 2, 2021, 7:00:00 AM") -> dict:
    return {"Activity ID": "2", "Activity Date": when, "Activity Type": "Run", "Elapsed Time": "3600",
            "Distance": "10.0"}


BAD_GPX = b'<?xml version="1.0"?><gpx><trk><trkseg><trkpt lat="1" lon="2"></trk>'


def corrupt_fit() -> bytes:
    data = bytearray(fixtures.fit_bytes(fixtures.dt.datetime(2021, 5, 1, 7, tzinfo=fixtures.dt.timezone.utc),
                                        600, 1000, 120, 130))
    data[40] ^= 0xFF
    return gzip.compress(bytes(data))


# --- plain CSV ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, fragments", [
    (b"date,type,duration_min\n2015-03-01,Run,45\n", ["log.csv line 1", "missing column distance_km"]),
    (b"date,type,duration_min,distance_km\n2015-03-01,Run,45,10\n01/03/2015,Run,45,10\n",
     ["log.csv line 3", "date '01/03/2015' does not parse"]),
    (b"", ["log.csv", "is empty"]),
    (b"\n\n  \n", ["log.csv", "is empty"]),
    (b"date,type,duration_min,distance_km,avg_hr,rpe\n", ["log.csv", "has a header but no sessions"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, ["log.csv", "not a text file"]),
    (b"date,type,duration_min,distance_km\n2015-03-01,Run,-30,5\n", ["log.csv line 2", "duration_min -30 is outside"]),
    (b"date,type,duration_min,distance_km\n2015-03-01,Run,100000,5\n",
     ["log.csv line 2", "duration_min 100000 is outside"]),
    (b"date,type,duration_min,distance_km\n2015-03-01,Run,nan,5\n", ["log.csv line 2", "is outside"]),
    (b"name,when,minutes\nx,y,z\n", ["log.csv line 1", "not a training log", "Activity Date"]),
], ids=["missing-columns", "bad-date", "empty", "blank", "header-only", "binary", "negative-duration",
        "absurd-duration", "nan-duration", "unknown-header"])
def test_bad_plain_csv(tmp_path, capsys, content, fragments):
    p = tmp_path / "log.csv"
    p.write_bytes(content)
    assert_one_line(*run_main(capsys, "--log", str(p)), *fragments)


def test_line_of_tens_of_mb(tmp_path, capsys):
    p = tmp_path / "log.csv"
    p.write_bytes(GOOD.encode() + b"2015-03-03,Run,45,10,150," + b"9" * (20 * 1024 * 1024) + b"\n")
    assert_one_line(*run_main(capsys, "--log", str(p)), "log.csv line 4", "longer than 1 MB")


def test_missing_file(tmp_path, capsys):
    p = tmp_path / "nope" / "log.csv"
    assert_one_line(*run_main(capsys, "--log", str(p)), str(p), "file not found")


def test_latin1_file_is_read(tmp_path, capsys):
    p = tmp_path / "log.csv"
    p.write_bytes(GOOD.replace("Ride", "Vélo").encode("latin-1"))
    rc, out, err = run_main(capsys, "--log", str(p))
    assert rc == 0 and "log.csv: 2 sessions" in out
    assert "not UTF-8" in err and "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("bom, codec", [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")])
def test_utf16_with_bom_is_read(tmp_path, capsys, bom, codec):
    p = tmp_path / "log.csv"
    p.write_bytes(bom + GOOD.replace("\n", "\r\n").encode(codec))
    rc, out, err = run_main(capsys, "--log", str(p), "--json")
    assert rc == 0 and err == ""
    assert out.count('"date"') == 2


# --- zips and exports ----------------------------------------------------------------------------------

def test_truncated_zip(tmp_path, capsys):
    e = fixtures.make_strava_export(tmp_path, n=20)
    data = e.path.read_bytes()
    e.path.write_bytes(data[: len(data) // 2])
    assert_one_line(*run_main(capsys, "--log", str(e.path)), "export.zip", "truncated or corrupt")


def test_zip_member_with_dotdot(tmp_path, capsys):
    p = tmp_path / "evil.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("activities.csv", "x")
        zf.writestr("../../evil.txt", "x")
    assert_one_line(*run_main(capsys, "--log", str(p)), "evil.zip", "'..' component")
    assert sorted(os.listdir(tmp_path)) == ["evil.zip"]
    assert not (tmp_path.parent.parent / "evil.txt").exists()


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    chunk = b"\0" * (16 * 1024 * 1024)
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("activities.csv", "w", force_zip64=True) as f:
            for _ in range(20):  # 320 MB of zeros, ~320 KB compressed
                f.write(chunk)
    return p


def test_zip_bomb(bomb, capsys):
    assert bomb.stat().st_size < 2_000_000
    assert_one_line(*run_main(capsys, "--log", str(bomb)), "bomb.zip", "would expand to")


@pytest.mark.parametrize("name, data, fragment", [
    ("activities/1.gpx", BAD_GPX, "not a valid GPX"),
    ("activities/1.fit.gz", None, "not a valid FIT file"),
], ids=["gpx", "fit"])
@pytest.mark.parametrize("layout", ["zip", "folder"])
def test_broken_activity_file_alone_is_an_error(tmp_path, capsys, name, data, fragment, layout):
    data = data if data is not None else corrupt_fit()
    path = strava_export(tmp_path / "e", [needs_file(name)], {name: data}, layout)
    assert_one_line(*run_main(capsys, "--log", str(path)), name, fragment)


@pytest.mark.parametrize("name, data, fragment", [
    ("activities/1.gpx", BAD_GPX, "not a valid GPX"),
    ("activities/1.fit.gz", None, "not a valid FIT file"),
], ids=["gpx", "fit"])
def test_broken_activity_file_among_good_rows_is_reported(tmp_path, capsys, name, data, fragment):
    data = data if data is not None else corrupt_fit()
    path = strava_export(tmp_path / "e", [needs_file(name), complete()], {name: data})
    rc, out, err = run_main(capsys, "--log", str(path))
    assert rc == 0 and "activities.csv: 1 session from" in out
    lines = err.splitlines()
    assert lines[0].startswith("nomagic: skipped 2 rows or files of activities.csv")
    assert any(line.strip().startswith(f"{name}: ") and fragment in line for line in lines)
    assert any(line.strip().startswith("activities.csv line 2: no elapsed time") for line in lines)


def test_skipped_rows_are_a_count_and_the_first_few(tmp_path, capsys):
    rows = [complete("May 1, 2021, 7:00:00 AM")] + [
        {"Activity ID": str(i), "Activity Date": f"bad date {i}", "Activity Type": "Run", "Elapsed Time": "60"}
        for i in range(12)]
    path = strava_export(tmp_path / "e", rows, {})
    rc, out, err = run_main(capsys, "--log", str(path), "--json")
    assert rc == 0 and out.startswith("[")
    lines = err.splitlines()
    assert lines[0] == "nomagic: skipped 12 rows or files of activities.csv (not counted in the load; 1 session read):"
    assert lines[1].startswith("  activities.csv line 3: date 'bad date 0' does not parse")
    assert len(lines) == 1 + 5 + 1 and lines[-1] == "  ... and 7 more"


# --- the chart file -------------------------------------------------------------------------------------

@pytest.mark.parametrize("target, fragment", [
    ("missing/pmc.png", "does not exist"),
    ("pmc.jpg", "must end in .png or .svg"),
    ("pmc", "must end in .png or .svg"),
    ("adir.png", "is a folder"),
])
def test_bad_plot_target_writes_nothing(tmp_path, capsys, target, fragment):
    log = tmp_path / "log.csv"
    log.write_text(GOOD)
    (tmp_path / "adir.png").mkdir()
    before = sorted(os.listdir(tmp_path))
    plot = tmp_path / target
    assert_one_line(*run_main(capsys, "--log", str(log), "--plot", str(plot)), str(plot), fragment)
    assert sorted(os.listdir(tmp_path)) == before  # no chart, no temporary file
    assert list((tmp_path / "adir.png").iterdir()) == []


def test_bad_log_with_plot_writes_nothing(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_bytes(b"date,type,duration_min,distance_km\n2015-03-01,Run,-5,1\n")
    assert_one_line(*run_main(capsys, "--log", str(log), "--plot", str(tmp_path / "pmc.png")), "log.csv line 2")
    assert sorted(os.listdir(tmp_path)) == ["log.csv"]


# --- through a real interpreter -----------------------------------------------------------------------------

def _assert_process_line(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nomagic: error: "), done.stderr
    for f in fragments:
        assert f in lines[0]


def test_process_missing_file(tmp_path):
    _assert_process_line(run_module("--log", str(tmp_path / "none.csv")), "none.csv", "file not found")


def test_process_binary_and_truncated_zip(tmp_path):
    p = tmp_path / "log.csv"
    p.write_bytes(bytes(range(256)) * 64)
    _assert_process_line(run_module("--log", str(p)), "log.csv", "not a text file")
    e = fixtures.make_strava_export(tmp_path / "z", n=10)
    e.path.write_bytes(e.path.read_bytes()[:300])
    _assert_process_line(run_module("--log", str(e.path)), "export.zip", "truncated or corrupt")


def test_process_zip_bomb_and_dotdot(tmp_path, bomb):
    _assert_process_line(run_module("--log", str(bomb)), "bomb.zip", "would expand to")
    p = tmp_path / "evil.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("../activities.csv", "x")
    _assert_process_line(run_module("--log", str(p)), "evil.zip", "'..' component")


def test_process_plot_folder_missing_and_corrupt_fit(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(GOOD)
    _assert_process_line(run_module("--log", str(log), "--plot", str(tmp_path / "no" / "pmc.png")), "does not exist")
    path = strava_export(tmp_path / "e", [needs_file("activities/1.fit.gz")], {"activities/1.fit.gz": corrupt_fit()})
    _assert_process_line(run_module("--log", str(path)), "activities/1.fit.gz", "not a valid FIT file")
    assert sorted(os.listdir(tmp_path)) == ["e", "log.csv"]


def test_process_bad_option_and_good_run(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(GOOD)
    done = run_module("--log", str(log), "--from", "yesterday")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "not a date like" in done.stderr
    done = run_module("--log", str(log), "--json")
    assert done.returncode == 0 and done.stderr == "" and done.stdout.startswith("[")
