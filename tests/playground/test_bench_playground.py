"""The playground benchmark is registered with ``nomagic bench`` and its rows fit the table."""

from __future__ import annotations

from nomagic.apps.bench import playground
from nomagic.apps.bench.suite import BENCHMARKS, NEEDS, RUNNERS, _script_rows, format_table


def test_registered():
    assert "playground" in BENCHMARKS and "playground" in RUNNERS
    assert set(NEEDS["playground"]) == {"starlette", "uvicorn", "websockets"}


def test_rows_make_a_table():
    rows = [playground._row("tensor engine: updates streamed (capped at 60/s)", [55.0, 57.0, 56.0], "/s", "n",
                            playground.COUNTS, playground.UPDATES_GOAL),
            playground._row("server CPU share", [0.15, 0.17], "cores", "n", "CPU share"),
            playground._row("messages dropped", [0, 0, 0], "msgs", "n", "dropped", 0.0, "<="),
            playground._row("not run", [], "/s", "websockets is missing", playground.COUNTS)]
    assert rows[0]["value"] == 56.0 and rows[0]["min"] == 55.0 and rows[0]["met"] is True
    assert rows[2]["met"] is True and rows[3]["value"] is None and rows[3]["met"] is None
    text = format_table(_script_rows("playground", rows))
    assert "updates streamed" in text and "56" in text
