"""Pictures of networks (nomagic.apps.draw): checked through the returned Figure's artists, so a test
fails when the drawing is wrong: one synapse artist per synapse, blue for w > 0 and orange for w < 0,
thicker the larger |w|, recurrent synapses dashed, product neurons marked, biases as fills; the
unrolled picture; decision boundaries equal to the model's predictions; files; Jupyter; the CLI."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

import nomagic as nm
from nomagic.apps import draw
from nomagic.apps.draw import draw_decision_boundary, draw_network, draw_unrolled
from nomagic.cli import main

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.colors import to_rgb  # noqa: E402

BLUE, ORANGE, GREY = to_rgb(draw.POSITIVE), to_rgb(draw.NEGATIVE), to_rgb(draw.UNKNOWN)
PNG = b"\x89PNG\r\n\x1a\n"


# -- the networks ---------------------------------------------------------------------------------
def dense_net():
    return nm.inputs(3) | nm.dense(4, "tanh") | nm.dense(2, "softmax")


def graph_net():
    """A product neuron and a skip connection (x0 straight to the output)."""
    g = nm.GraphBuilder(3)
    x = g.inputs
    h1 = g.neuron([x[0], x[1]], activation="tanh", name="h1")
    h2 = g.neuron([x[1], x[2]], activation="relu", name="h2")
    p = g.neuron([h1, h2], aggregation="product", activation="linear", bias=False, name="p")
    y = g.neuron([p, x[0]], activation="sigmoid", name="y")
    return g.build(outputs=[y])


def lstm_net():
    return nm.inputs(2) | nm.lstm(3) | nm.dense(1)


def gru_net():
    return nm.inputs(2) | nm.gru(2) | nm.dense(1)


NETS = {"dense": dense_net, "graph": graph_net, "lstm": lstm_net, "gru": gru_net}


def synapses(fig) -> dict[str, object]:
    arts = [a for ax in fig.axes for a in ax.patches if (a.get_gid() or "").startswith("synapse:")]
    out = {a.get_gid().removeprefix("synapse:"): a for a in arts}
    assert len(out) == len(arts), "two synapse artists with the same ends"
    return out


def neuron_patches(fig) -> dict[str, object]:
    return {a.get_gid().removeprefix("neuron:"): a for ax in fig.axes for a in ax.patches
            if (a.get_gid() or "").startswith("neuron:")}


def true_synapses(net):
    """(source, target) -> Synapse, straight from the neuron-level view."""
    return {(s.source, s.target): s for v in net.neurons() for s in v.inputs}


def weight_of(net, params, s) -> float:
    return s.value if s.weight is None else float(np.asarray(params[s.weight])[s.index])


# -- the folded picture ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(NETS))
def test_one_artist_per_synapse_coloured_by_sign_and_wider_with_the_weight(kind):
    net = NETS[kind]()
    params = net.init(seed=3)
    params = nm.Params({k: v + (0.3 if k.endswith("bias") or ".b" in k else 0.0) for k, v in params.items()})
    fig = draw_network(net, params)
    drawn, truth = synapses(fig), true_synapses(net)
    assert set(drawn) == {f"{a}->{b}" for a, b in truth}
    assert len(neuron_patches(fig)) == sum(p.size for p in net.populations)
    trainable = []
    for (a, b), s in truth.items():
        art, w = drawn[f"{a}->{b}"], weight_of(net, params, s)
        assert to_rgb(art.get_edgecolor()) == (ORANGE if w < 0 else BLUE), (a, b, w)
        assert (art.get_linestyle() in ("--", "dashed")) == s.recurrent, (a, b)
        if s.weight is not None:
            trainable.append((abs(w), art.get_linewidth()))
    trainable.sort()
    widths = [lw for _, lw in trainable]
    assert widths == sorted(widths) and widths[-1] > widths[0]  # thicker the larger |w|


def test_weights_of_both_signs_and_their_widths_in_a_small_dense_net():
    net = nm.inputs(2) | nm.dense(2, name="out")
    params = nm.Params({"out.weight": np.array([[2.0, -1.0], [0.5, -4.0]]), "out.bias": np.array([1.0, -1.0])})
    fig = draw_network(net, params)
    s = synapses(fig)
    colours = {k: to_rgb(a.get_edgecolor()) for k, a in s.items()}
    assert colours == {"inputs[0]->out[0]": BLUE, "inputs[0]->out[1]": ORANGE,
                       "inputs[1]->out[0]": BLUE, "inputs[1]->out[1]": ORANGE}
    lw = {k: a.get_linewidth() for k, a in s.items()}
    assert lw["inputs[1]->out[0]"] < lw["inputs[0]->out[1]"] < lw["inputs[0]->out[0]"] < lw["inputs[1]->out[1]"]
    fills = {k: to_rgb(a.get_facecolor()) for k, a in neuron_patches(fig).items()}
    assert fills["out[0]"][2] > fills["out[0]"][0]  # bias +1: blue
    assert fills["out[1]"][0] > fills["out[1]"][2]  # bias -1: orange


def test_without_params_trainable_synapses_are_grey_and_fixed_ones_keep_their_sign():
    net = gru_net()
    truth = true_synapses(net)
    drawn = synapses(draw_network(net))
    for (a, b), s in truth.items():
        want = GREY if s.weight is not None else (ORANGE if s.value < 0 else BLUE)
        assert to_rgb(drawn[f"{a}->{b}"].get_edgecolor()) == want
    assert to_rgb(drawn["gru_0.n[0]->gru_0.d[0]"].get_edgecolor()) == ORANGE  # d = h₋₁ − n


@pytest.mark.parametrize("kind", list(NETS))
def test_product_neurons_are_marked(kind):
    net = NETS[kind]()
    fig = draw_network(net)
    marks = {t.get_gid().removeprefix("product:") for ax in fig.axes for t in ax.texts
             if (t.get_gid() or "").startswith("product:")}
    assert all(t.get_text() == "×" for ax in fig.axes for t in ax.texts if (t.get_gid() or "").startswith("product:"))
    want = {v.name for v in net.neurons() if v.aggregation == "product"}
    assert marks == want
    assert (len(want) > 0) == (kind != "dense")


def test_the_skip_connection_and_the_layout_by_depth():
    net = graph_net()
    fig = draw_network(net)
    assert "x0->y" in synapses(fig)
    x = {k: a.center[0] if hasattr(a, "center") else a.xy[0] for k, a in neuron_patches(fig).items()}
    assert x["x0"] == x["x1"] == x["x2"] < x["h1"] == x["h2"] < x["p"] < x["y"]


def test_recurrent_loops_are_dashed_and_a_neuron_feeding_itself_gets_a_loop():
    net = nm.inputs(2) | nm.recurrent(3, name="rnn") | nm.dense(1)
    fig = draw_network(net, net.init(seed=0))
    drawn = synapses(fig)
    loop = drawn["rnn.h[1]->rnn.h[1]"]
    assert loop.get_linestyle() in ("--", "dashed")
    verts = loop.get_path().vertices
    assert np.ptp(verts[:, 0]) > 0.5  # a loop with some room, not a dot
    assert sum(1 for a in drawn.values() if a.get_linestyle() in ("--", "dashed")) == 9  # U is 3 x 3


def test_large_layers_are_abbreviated():
    net = nm.inputs(64) | nm.dense(128, "relu") | nm.dense(10, "softmax")
    fig = draw_network(net, net.init(), max_neurons=12)
    neurons = neuron_patches(fig)
    assert len(neurons) == 12 + 12 + 10
    assert "dense_0[127]" in neurons and "dense_0[11]" not in neurons
    assert len([t for t in fig.axes[0].texts if t.get_gid() == "ellipsis"]) == 2
    assert len(synapses(fig)) == 12 * 12 + 12 * 10


# -- the unrolled picture --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_unrolled_copies_each_step_and_recurrent_synapses_go_from_t_minus_1(kind):
    net, steps = NETS[kind](), 3
    fig = draw_unrolled(net, net.init(seed=1), steps=steps)
    drawn = synapses(fig)
    static = {p.name for p in net.populations if p.static}
    pop_of = {v.name: v.population for v in net.neurons()}
    want = set()
    for (a, b), s in true_synapses(net).items():
        if s.recurrent:
            want |= {f"{a}@{t - 1}->{b}@{t}" for t in range(2, steps + 1)}
        elif pop_of[b] in static:
            want.add(f"{a}@{steps}->{b}@{steps}")
        else:
            want |= {f"{a}@{t}->{b}@{t}" for t in range(1, steps + 1)}
    assert set(drawn) == want
    for key, art in drawn.items():
        (a, ta), (b, tb) = (end.rsplit("@", 1) for end in key.split("->"))
        assert (art.get_linestyle() in ("--", "dashed")) == (int(tb) == int(ta) + 1)
    x = {k: a.center[0] if hasattr(a, "center") else a.xy[0] for k, a in neuron_patches(fig).items()}
    h = f"{kind}_0.h[0]"
    assert x[f"{h}@1"] < x[f"{h}@2"] < x[f"{h}@3"]
    assert f"{kind}_0.last[0]@3" in x and f"{kind}_0.last[0]@1" not in x  # evaluated once, after the last step


def test_unrolling_needs_a_recurrent_network_and_a_positive_step_count():
    with pytest.raises(nm.InvalidInputError, match="recurrent"):
        draw_unrolled(dense_net())
    with pytest.raises(nm.InvalidInputError, match="steps"):
        draw_unrolled(lstm_net(), steps=0)


# -- files and Jupyter --------------------------------------------------------------------------------
def test_png_and_svg_files(tmp_path):
    from matplotlib import image

    net = graph_net()
    fig = draw_network(net, net.init(seed=0), path=tmp_path / "net.png")
    data = (tmp_path / "net.png").read_bytes()
    assert data[:8] == PNG
    w, h = fig.get_size_inches() * fig.dpi
    assert image.imread(str(tmp_path / "net.png")).shape[:2] == (round(h), round(w))
    draw_unrolled(lstm_net(), steps=2, path=tmp_path / "lstm.svg")
    root = ET.parse(tmp_path / "lstm.svg").getroot()
    assert root.tag.endswith("svg")
    ids = {g.get("id") for g in root.iter("{http://www.w3.org/2000/svg}g")}
    assert "synapse:lstm_0.h[0]@1->lstm_0.i[0]@2" in ids
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lstm.svg", "net.png"]


def test_bad_names_are_clear_errors_and_write_nothing(tmp_path):
    with pytest.raises(nm.InvalidInputError, match=r"\.png or \.svg"):
        draw_network(dense_net(), path=tmp_path / "net.jpg")
    with pytest.raises(nm.InvalidInputError, match="does not exist"):
        draw_network(dense_net(), path=tmp_path / "no" / "net.png")
    with pytest.raises(nm.InvalidInputError, match="params lack"):
        draw_network(dense_net(), nm.Params({"x": np.zeros(1)}))
    assert list(tmp_path.iterdir()) == []


def test_jupyter_reprs():
    net = dense_net()
    png = net._repr_png_()
    assert isinstance(png, bytes) and png[:8] == PNG
    assert ET.fromstring(net._repr_svg_()).tag.endswith("svg")
    X = np.random.default_rng(0).normal(size=(16, 3))
    model = nm.fit(net, X, np.eye(2)[(X[:, 0] > 0).astype(int)], loss="cross_entropy", epochs=1)
    assert model._repr_png_()[:8] == PNG
    assert ET.fromstring(model._repr_svg_()).tag.endswith("svg")


def test_reprs_fall_back_to_text_without_matplotlib(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert dense_net()._repr_png_() is None and dense_net()._repr_svg_() is None


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(nm.MissingDependencyError, match=r"nomagic\[plot\]"):
        draw_network(dense_net(), path=tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_importing_nomagic_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, nomagic; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


# -- decision boundaries -----------------------------------------------------------------------------------
def boundary(fig):
    (im,) = [im for ax in fig.axes for im in ax.images if im.get_gid() == "boundary"]
    return im


def grid_points(im, n):
    x0, x1, y0, y1 = im.get_extent()
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    return np.column_stack([gx.ravel(), gy.ravel()])


@pytest.fixture
def blobs():
    rng = np.random.default_rng(7)
    centres = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    labels = np.repeat(np.arange(3), 30)
    return centres[labels] + rng.normal(scale=0.6, size=(90, 2)), labels


def test_multiclass_grid_colours_are_the_predicted_classes(blobs):
    X, labels = blobs
    model = nm.fit(nm.inputs(2) | nm.dense(8, "tanh") | nm.dense(3, "softmax"), X, np.eye(3)[labels],
                   loss="cross_entropy", epochs=40, optimizer=nm.adam(0.05), seed=0)
    fig = draw_decision_boundary(model, None, X, labels, grid=40)
    im = boundary(fig)
    predicted = model.predict(grid_points(im, 40)).argmax(axis=1).reshape(40, 40)
    assert np.array_equal(np.asarray(im.get_array()), predicted)
    assert len(np.unique(predicted)) == 3
    rgba = im.to_rgba(np.asarray(im.get_array()))
    for c in range(3):
        r, col = np.argwhere(predicted == c)[0]
        assert tuple(rgba[r, col, :3]) == pytest.approx(to_rgb(draw.CLASS_COLOURS[c]), abs=1e-2)
    points = [c for ax in fig.axes for c in ax.collections if c.get_gid() == "points"][0]
    assert len(points.get_offsets()) == 90
    assert {tuple(np.round(f[:3], 3)) for f in points.get_facecolors()} == \
        {tuple(np.round(to_rgb(draw.CLASS_COLOURS[c]), 3)) for c in range(3)}


def test_binary_grid_is_the_probability_and_regression_the_output(blobs, tmp_path):
    X, labels = blobs
    y = (labels == 1).astype(float)[:, None]
    net = nm.inputs(2) | nm.dense(4, "tanh") | nm.dense(1, "sigmoid")
    model = nm.fit(net, X, y, loss="binary_cross_entropy", epochs=20, optimizer=nm.adam(0.05), seed=0)
    im = boundary(draw_decision_boundary(model.net, model.params, X, y, path=tmp_path / "b.png", grid=30))
    assert np.allclose(np.asarray(im.get_array()), model.predict(grid_points(im, 30))[:, 0].reshape(30, 30))
    assert (tmp_path / "b.png").read_bytes()[:8] == PNG
    x0, x1, y0, y1 = im.get_extent()
    assert x0 < X[:, 0].min() and x1 > X[:, 0].max() and y0 < X[:, 1].min() and y1 > X[:, 1].max()
    reg = nm.inputs(2) | nm.dense(1)
    params = nm.Params({"dense_0.weight": np.array([[1.0], [-2.0]]), "dense_0.bias": np.array([0.5])})
    im = boundary(draw_decision_boundary(reg, params, X, X[:, 0] - 2 * X[:, 1], grid=20))
    P = grid_points(im, 20)
    assert np.allclose(np.asarray(im.get_array()), (P[:, 0] - 2 * P[:, 1] + 0.5).reshape(20, 20))


def test_decision_boundary_bad_input(blobs):
    X, labels = blobs
    net = nm.inputs(3) | nm.dense(1, "sigmoid")
    with pytest.raises(nm.InvalidInputError, match="2 inputs"):
        draw_decision_boundary(net, net.init(), X, labels)
    net = nm.inputs(2) | nm.dense(1, "sigmoid")
    with pytest.raises(nm.InvalidInputError, match="params"):
        draw_decision_boundary(net, None, X, labels)
    with pytest.raises(nm.ShapeError):
        draw_decision_boundary(net, net.init(), X[:, :1], labels)
    with pytest.raises(nm.ShapeError):
        draw_decision_boundary(net, net.init(), X, labels[:5])


# -- the command line ----------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    X = np.random.default_rng(0).normal(size=(32, 5, 2))
    model = nm.fit(nm.inputs(2) | nm.lstm(3) | nm.dense(1), X, X[:, -1, :1], epochs=1)
    model.save(tmp_path / "m.nomagic")
    return tmp_path / "m.nomagic"


def test_cli_draw(saved, tmp_path, capsys):
    assert main(["draw", str(saved), "-o", str(tmp_path / "m.png")]) == 0
    assert (tmp_path / "m.png").read_bytes()[:8] == PNG
    assert main(["draw", str(saved), "-o", str(tmp_path / "u.svg"), "--unroll", "3"]) == 0
    assert ET.parse(tmp_path / "u.svg").getroot().tag.endswith("svg")
    assert "drew" in capsys.readouterr().out


@pytest.mark.parametrize("case, fragment", [
    ("bad-extension", ".png or .svg"),
    ("no-model", "no such file"),
    ("not-a-model", "safetensors"),
    ("no-folder", "does not exist"),
    ("unroll-dense", "recurrent"),
])
def test_cli_draw_bad_input_is_one_line_exit_2_and_writes_nothing(case, fragment, saved, tmp_path, capsys):
    dense = tmp_path / "dense.nomagic"
    X = np.zeros((4, 2))
    nm.fit(nm.inputs(2) | nm.dense(1), X, X[:, :1], epochs=1).save(dense)
    junk = tmp_path / "junk.nomagic"
    junk.write_text("hello")
    out = tmp_path / "out"
    out.mkdir()
    args = {"bad-extension": [str(saved), "-o", str(out / "m.jpg")],
            "no-model": [str(tmp_path / "none.nomagic"), "-o", str(out / "m.png")],
            "not-a-model": [str(junk), "-o", str(out / "m.png")],
            "no-folder": [str(saved), "-o", str(out / "missing" / "m.png")],
            "unroll-dense": [str(dense), "-o", str(out / "m.png"), "--unroll", "2"]}[case]
    capsys.readouterr()
    assert main(["draw", *args]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and fragment in err[0] and "Traceback" not in err[0]
    assert list(out.iterdir()) == []


def test_cli_draw_rejects_a_bad_step_count(saved, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["draw", str(saved), "-o", str(tmp_path / "m.png"), "--unroll", "0"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "m.png").exists()
