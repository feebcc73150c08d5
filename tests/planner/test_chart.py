"""The performance-management chart is written as a real PNG/SVG, atomically, and refuses bad names."""

from __future__ import annotations

import numpy as np
import pytest

from nomagic.apps.planner.chart import performance_chart
from nomagic.apps.planner.load import pmc, project
from nomagic.errors import InvalidInputError, MissingDependencyError

matplotlib = pytest.importorskip("matplotlib")


def table(days=120):
    rng = np.random.default_rng(3)
    dates = np.arange(np.datetime64("2014-01-01"), np.datetime64("2014-01-01") + days)
    loads = np.where(rng.random(days) < 0.3, 0.0, rng.uniform(30, 150, days))
    return pmc(dates, loads)


def test_png_is_written(tmp_path):
    from matplotlib import image

    path = tmp_path / "pmc.png"
    assert performance_chart(project(table(), [60.0, 0.0, 90.0] * 5), path, dpi=50, size=(8.0, 5.0)) == str(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(str(path))
    assert pixels.shape[:2] == (250, 400)
    assert [p.name for p in tmp_path.iterdir()] == ["pmc.png"]  # no temporary file left behind


def test_svg_is_written(tmp_path):
    path = tmp_path / "pmc.svg"
    performance_chart(table(30), path)
    text = path.read_text(encoding="utf-8")
    assert "<svg" in text and text.rstrip().endswith("</svg>")


def test_bad_extension_and_folder(tmp_path):
    with pytest.raises(InvalidInputError, match=r"\.png or \.svg"):
        performance_chart(table(10), tmp_path / "pmc.jpg")
    with pytest.raises(InvalidInputError):
        performance_chart(table(10), tmp_path / "missing" / "pmc.png")
    assert list(tmp_path.iterdir()) == []


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"nomagic\[plot\]"):
        performance_chart(table(10), tmp_path / "pmc.png")
