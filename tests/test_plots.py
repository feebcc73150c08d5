"""Loss curves as SVG: well-formed, one line per series, points placed by value."""

import xml.etree.ElementTree as ET

import pytest

import nomagic as nm
from nomagic.apps.plots import line_chart_svg, save_loss_curve

SVG = "{http://www.w3.org/2000/svg}"


def test_one_polyline_per_series_with_one_point_per_epoch():
    svg = ET.fromstring(line_chart_svg({"loss": [3.0, 2.0, 1.0], "val_loss": [2.5, 2.4, 2.6]}))
    lines = svg.findall(f"{SVG}polyline")
    assert len(lines) == 2
    points = [[tuple(map(float, p.split(","))) for p in line.get("points").split()] for line in lines]
    assert [len(p) for p in points] == [3, 3]
    loss = points[0]
    assert loss[0][0] < loss[1][0] < loss[2][0]  # x grows with the epoch
    assert loss[0][1] < loss[1][1] < loss[2][1]  # a falling loss is drawn going down (SVG y grows down)


def test_save_loss_curve_from_a_fit_history(tmp_path):
    import numpy as np

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    model = nm.fit(nm.inputs(2) | nm.dense(1, activation="sigmoid"), X, X[:, :1],
                   loss="binary_cross_entropy", epochs=4, batch_size=4, validation_data=(X, X[:, :1]))
    path = tmp_path / "loss.svg"
    save_loss_curve(model.history, path)
    texts = [t.text for t in ET.parse(path).getroot().iter(f"{SVG}text")]
    assert "loss" in texts and "val_loss" in texts


def test_nothing_to_draw_is_a_clear_error(tmp_path):
    with pytest.raises(nm.InvalidInputError):
        line_chart_svg({"loss": []})
    with pytest.raises(nm.InvalidInputError):
        save_loss_curve([], tmp_path / "x.svg")
    assert not (tmp_path / "x.svg").exists()
