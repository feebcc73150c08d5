"""``nomagic bench``'s reports, on fabricated rows: every figure is a median with its min and max,
nothing is a best-of, a missing JAX is said so. Timings are never asserted here."""

import subprocess
import sys

import pytest

from nomagic.apps.bench import suite

LABEL = "digits MLP 64-128-128-10, batch 32"
COUNTS = "samples/s = 30 epochs × 1,347 training samples ÷ seconds of one whole training run"


def fabricated_rows() -> list[dict]:
    ours = [120_000.0, 130_000.0, 125_000.0, 90_000.0, 131_000.0]
    torch = [50_000.0, 55_000.0, 52_000.0, 54_000.0, 51_000.0]
    rows = [
        suite._row(LABEL, "training throughput", COUNTS, ours, "PyTorch Adam(fused=True), 1 thread", torch,
                   "samples/s", 2.0, note="1 thread won"),
        suite.jax_missing_row(LABEL, "training throughput", COUNTS, ours, "samples/s"),
        suite._row(LABEL, "training step", "ms per step", [2.0, 3.0, 2.5], "PyTorch", [6.0, 7.0, 6.5], "ms", 1.0,
                   higher_is_better=False),
    ]
    rows += suite._script_rows("process runtime", [
        {"name": "runtime: message hop along a chain", "value": 0.45, "min": 0.41, "max": 0.52, "repeats": 5,
         "unit": "µs/hop", "counts": "µs per hop", "note": ""},
        {"name": "ratio: BEAM µs/hop ÷ ours (one scheduler, +S 1)", "value": 1.5, "min": 1.2, "max": 1.8,
         "repeats": 5, "unit": "×", "counts": "median ÷ median", "note": ""},
    ])
    return rows


RUN = {"command": "nomagic bench --write-results --only digits", "date": "2026-01-01 00:00 UTC", "seconds": 12.0,
       "busy": 0.01, "load_before": "0.10 0.10 0.10", "load_after": "0.20 0.10 0.10"}


def test_stats_are_median_min_max():
    assert suite.stats([3.0, 1.0, 2.0, 10.0, 4.0]) == {"median": 3.0, "min": 1.0, "max": 10.0, "n": 5}
    assert suite.stats(7.0) == {"median": 7.0, "min": 7.0, "max": 7.0, "n": 1}
    assert suite.fmt_stat(suite.stats([120_000.0, 130_000.0, 90_000.0]), "samples/s") == \
        "120,000 [90,000 – 130,000] samples/s"


def test_ratio_is_of_the_medians():
    rows = fabricated_rows()
    assert rows[0]["ratio"] == pytest.approx(125_000 / 52_000)
    assert rows[0]["met"] is True
    assert rows[2]["ratio"] == pytest.approx(6.5 / 2.5)  # time: lower is better


def test_table_and_markdown_show_median_min_max():
    rows = fabricated_rows()
    text = suite.format_table(rows)
    md = suite.suite_markdown("digits", rows, RUN)
    for out in (text, md):
        assert "median [min – max]" in out
        assert "125,000 [90,000 – 131,000] samples/s" in out
        assert "52,000 [50,000 – 55,000] samples/s" in out
        assert "0.45 [0.41 – 0.52] µs/hop" in out
        assert "best of" not in out.lower() and "best-of" not in out.lower()
    assert "| what is counted |" in md
    assert COUNTS in md
    header = suite.header_markdown({"cpu": "CPU", "cores": 2, "python": "3.11", "numpy": "2", "torch": "2.13",
                                    "jax": "not installed", "sklearn": "1.5", "blas": "openblas"})
    assert "median" in header and "min" in header and "max" in header
    assert "best of" not in header.lower()


def test_missing_jax_row_says_so():
    row = fabricated_rows()[1]
    assert row["reference"] == "JAX not installed"
    assert row["ref"] is None and row["ratio"] is None and row["met"] is None
    line = [line for line in suite.format_table([row]).splitlines() if "JAX" in line][0]
    assert "JAX not installed" in line
    assert "JAX not installed" in suite.suite_markdown("digits", [row], RUN)


def test_script_goals_are_written_out():
    ratio = fabricated_rows()[-1]
    assert ratio["met"] is True and ratio["goal_text"] == "≥ 1 ×"


def test_flops_count_only_the_products_run():
    # forward and weight gradient of both layers, input gradient of the second only
    assert suite.mlp_step_flops([3, 4, 5], 2) == 2 * 2 * (2 * (12 + 20) + 20)


def test_write_results_keeps_other_suites(tmp_path):
    path = tmp_path / "RESULTS.md"
    header = "header text"
    suite.write_results(path, header, {"runtime": "## Process runtime\n\nold\n"})
    suite.write_results(path, header, {"digits": suite.suite_markdown("digits", fabricated_rows(), RUN)})
    text = path.read_text(encoding="utf-8")
    assert "## Process runtime" in text and "## Tensor engine: the digits MLP" in text
    assert text.index("digits MLP") < text.index("## Process runtime")


def test_missing_dependency_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(suite.NEEDS, "runtime", ("no_such_module_for_nomagic_bench",))
    assert suite.main(["--only", "runtime"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("nomagic bench: 'no_such_module_for_nomagic_bench' is needed")
    assert "pip install 'nomagic[bench]'" in err


def test_bench_help_via_cli():
    out = subprocess.run([sys.executable, "-m", "nomagic.cli", "bench", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--quick" in out.stdout and "--only" in out.stdout and "--write-results" in out.stdout
    assert "median" in out.stdout
