"""Loss and metric curves (nomagic.apps.draw.draw_history): the drawn lines hold the history's
numbers, one panel per quantity, and the files are real PNG / SVG written atomically."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

import nomagic as nm
from nomagic.apps.draw import draw_history

pytest.importorskip("matplotlib")

SVG = "{http://www.w3.org/2000/svg}"
HISTORY = [
    {"epoch": 1, "loss": 3.0, "val_loss": 2.5, "accuracy": 0.4, "val_accuracy": 0.35, "seconds": 0.1},
    {"epoch": 2, "loss": 2.0, "val_loss": 2.4, "accuracy": 0.6, "val_accuracy": 0.5, "seconds": 0.1},
    {"epoch": 3, "loss": 1.0, "val_loss": 2.6, "accuracy": 0.9, "val_accuracy": 0.55, "seconds": 0.1},
]


def lines_by_key(fig):
    return {line.get_gid().removeprefix("curve-"): (ax, line) for ax in fig.axes for line in ax.get_lines()
            if (line.get_gid() or "").startswith("curve-")}


def test_the_lines_hold_the_history_one_panel_per_quantity():
    fig = draw_history(HISTORY)
    lines = lines_by_key(fig)
    assert set(lines) == {"loss", "val_loss", "accuracy", "val_accuracy"}  # not epoch, not seconds
    for key, (_, line) in lines.items():
        assert list(line.get_xdata()) == [1.0, 2.0, 3.0]
        assert list(line.get_ydata()) == [h[key] for h in HISTORY]
    assert lines["loss"][0] is lines["val_loss"][0]
    assert lines["accuracy"][0] is lines["val_accuracy"][0]
    assert lines["loss"][0] is not lines["accuracy"][0]
    assert len(fig.axes) == 2
    assert fig.axes[0].get_ylabel() == "loss" and fig.axes[1].get_ylabel() == "accuracy"
    assert lines["val_loss"][1].get_linestyle() == "--" and lines["loss"][1].get_linestyle() == "-"


def test_a_regression_metric_gets_its_own_panel_and_missing_epochs_are_skipped():
    history = [{"epoch": 1, "loss": 1.0, "mae": 0.8}, {"epoch": 2, "loss": 0.5, "mae": 0.6, "val_mae": 0.7}]
    lines = lines_by_key(draw_history(history))
    assert list(lines["val_mae"][1].get_xdata()) == [2.0]
    assert lines["mae"][0] is lines["val_mae"][0] is not lines["loss"][0]


def test_png_has_the_figure_size(tmp_path):
    from matplotlib import image

    path = tmp_path / "loss.png"
    fig = draw_history(HISTORY, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = fig.get_size_inches() * fig.dpi
    assert image.imread(str(path)).shape[:2] == (round(h), round(w))
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]  # no temporary file left behind


def test_svg_parses_with_one_path_per_curve(tmp_path):
    path = tmp_path / "loss.svg"
    draw_history(HISTORY, path)
    root = ET.parse(path).getroot()
    groups = {g.get("id"): g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("curve-")}
    assert set(groups) == {"curve-loss", "curve-val_loss", "curve-accuracy", "curve-val_accuracy"}
    for g in groups.values():
        assert len([p for p in g.iter(f"{SVG}path") if p.get("d") and p.get("style") and "stroke" in
                    p.get("style") and "fill: none" in p.get("style")]) == 1


def test_from_a_fit_history(tmp_path):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    model = nm.fit(nm.inputs(2) | nm.dense(1, activation="sigmoid"), X, X[:, :1],
                   loss="binary_cross_entropy", epochs=4, batch_size=4, validation_data=(X, X[:, :1]))
    lines = lines_by_key(draw_history(model, tmp_path / "fit.svg"))  # a Model will do
    assert list(lines["loss"][1].get_ydata()) == [h["loss"] for h in model.history]
    assert "val_accuracy" in lines


def test_nothing_to_draw_and_bad_names_are_clear_errors(tmp_path):
    with pytest.raises(nm.InvalidInputError, match="empty"):
        draw_history([], tmp_path / "x.svg")
    with pytest.raises(nm.InvalidInputError, match="no numbers"):
        draw_history([{"epoch": 1, "note": "x"}], tmp_path / "x.svg")
    with pytest.raises(nm.InvalidInputError, match=r"\.png or \.svg"):
        draw_history(HISTORY, tmp_path / "x.pdf")
    with pytest.raises(nm.InvalidInputError, match="does not exist"):
        draw_history(HISTORY, tmp_path / "missing" / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(nm.MissingDependencyError, match=r"nomagic\[plot\]"):
        draw_history(HISTORY, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
