"""Pictures of networks and of training, drawn with matplotlib (the ``plot`` extra).

- ``draw_network(net, params)``: neurons and synapses. Inputs on the left, outputs on the right,
  each population a column at its depth (the longest feed-forward path from the inputs).
  Synapses are blue for a positive weight and orange for a negative one, thicker the larger
  ``|w|`` (grey and thin when no params are given; the fixed ±1 synapses of gated cells are
  always coloured). Recurrent synapses (the previous step's value) are dashed arcs with an
  arrow head, or a loop when a neuron feeds itself. Product neurons carry a ``×``. A neuron's
  fill is its bias (orange negative, white zero, blue positive). Populations larger than
  ``max_neurons`` show their first neurons, a ``⋮`` and their last one.
- ``draw_unrolled(net, params, steps)``: the same populations copied once per time step, the
  recurrent synapses going from step t−1 to step t.
- ``draw_history(history)``: loss and val_loss in one panel, each metric in its own.
- ``draw_decision_boundary(model, params, X, y)``: what a network with two inputs predicts over
  the plane, and the data points on top.

Each returns the matplotlib ``Figure`` (on the Agg canvas: no window, no pyplot state) and, given
``path``, also writes it as PNG or SVG by extension, atomically (``apps.figures.save_figure``).
The artists carry ids (``gid``) so that a test, or a curious reader, can find them again:
``neuron:NAME``, ``product:NAME``, ``synapse:SOURCE->TARGET``, ``curve-KEY``, ``boundary``,
``points``. In the unrolled picture a neuron's name ends in ``@t`` (t counts from 1).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInputError, ShapeError
from ..model.graph import Block, Network, Population
from .figures import check_figure_path, figure_bytes, new_figure, save_figure

POSITIVE = "#1f77b4"  # blue
NEGATIVE = "#ff7f0e"  # orange
UNKNOWN = "#9a9a9a"  # a trainable weight when no params are given
INPUT_FILL = "#e4e4e4"
DX = 3.0  # distance between two columns (data units; neurons are 1 apart)
RADIUS = 0.3
STEP_GAP = 3.0  # extra room between two time steps of the unrolled picture
MAX_INCHES = (18.0, 13.0)
INCHES_PER_UNIT = 0.42


# -- the layout ---------------------------------------------------------------------------------
@dataclass
class _Layout:
    """Where each shown neuron of one copy of the network sits."""

    depth: dict[str, int]
    shown: dict[str, list[int]]  # population -> the indices drawn
    xy: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    ellipsis: dict[str, tuple[float, float]] = field(default_factory=dict)
    top: dict[str, float] = field(default_factory=dict)  # population -> y above its first neuron
    width: float = 0.0


def _depths(net: Network) -> dict[str, int]:
    """The longest feed-forward path from the inputs to each population (populations are in order)."""
    depth: dict[str, int] = {}
    for p in net.populations:
        if p.role == "input":
            depth[p.name] = 0
            continue
        depth[p.name] = 1 + max((depth[b.source] for b in net.incoming(p.name) if not b.recurrent), default=0)
    return depth


def _shown(size: int, max_neurons: int) -> list[int]:
    if size <= max_neurons:
        return list(range(size))
    return list(range(max(max_neurons - 1, 1))) + [size - 1]


def _layout(net: Network, max_neurons: int, inputs_low: bool = False) -> _Layout:
    """Columns by depth, populations stacked in each, every column centred on y = 0; with
    ``inputs_low`` the input column sits at the bottom instead (the unrolled picture: the synapses
    from the previous step then pass above it)."""
    depth = _depths(net)
    shown = {p.name: _shown(p.size, max_neurons) for p in net.populations}
    lay = _Layout(depth, shown)
    columns: dict[int, list[Population]] = {}
    for p in net.populations:
        columns.setdefault(depth[p.name], []).append(p)
    slots: dict[int, list[tuple[str, int | None]]] = {}  # (population, index; None for ⋮), ("", None): a gap
    for d, pops in columns.items():
        col = slots[d] = []
        for k, p in enumerate(pops):
            if k:
                col += [("", None), ("", None)]  # room for the next population's label
            idx = shown[p.name]
            for n, i in enumerate(idx):
                if n and i != idx[n - 1] + 1:
                    col.append((p.name, None))
                col.append((p.name, i))
    tallest = max(len(col) - 1 for col in slots.values())
    for d, col in slots.items():
        top = (len(col) - 1) / 2
        if inputs_low and d == 0:
            top = -tallest / 2 + len(col) - 1
        x = d * DX
        for s, (pname, i) in enumerate(col):
            y = top - s
            if not pname:
                continue
            if i is None:
                lay.ellipsis[pname] = (x, y)
            else:
                lay.xy[(pname, i)] = (x, y)
                lay.top.setdefault(pname, y + 0.75)
    lay.width = max(depth.values()) * DX
    return lay


# -- colours and widths ---------------------------------------------------------------------------
def _weight(params, b: Block, i: int, j: int) -> float | None:
    if b.kind == "one_to_one":
        return float(b.scale)
    if params is None:
        return None
    return float(np.asarray(params[b.weight])[i, j])


def _colour(w: float | None) -> str:
    if w is None:
        return UNKNOWN
    return NEGATIVE if w < 0 else POSITIVE


def _width(w: float | None, wmax: float, fixed: bool = False) -> float:
    """Thicker the larger ``|w|`` (relative to the largest trainable weight drawn); fixed synapses 1.0."""
    if fixed:
        return 1.0
    if w is None or wmax <= 0:
        return 0.8
    return 0.4 + 2.2 * abs(w) / wmax


def _bias_cmap():
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("nomagic_bias", [NEGATIVE, "#ffffff", POSITIVE])


def _check_params(net: Network, params) -> None:
    if params is None:
        return
    for spec in net.param_specs():
        try:
            shape = np.shape(params[spec.key])
        except (KeyError, TypeError, IndexError):
            raise InvalidInputError(f"params lack {spec.key!r}: are they this network's?") from None
        if tuple(shape) != tuple(spec.shape):
            raise ShapeError(f"param {spec.key!r} has shape {tuple(shape)}; the network needs {spec.shape}")


# -- drawing one network (folded, or unrolled over time steps) ----------------------------------------
def _draw(ax, net: Network, params, steps: int | None, max_neurons: int) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle, FancyArrowPatch, RegularPolygon
    from matplotlib.path import Path

    _check_params(net, params)
    unrolled = steps is not None
    lay = _layout(net, max_neurons, inputs_low=unrolled)
    times = list(range(1, steps + 1)) if unrolled else [0]
    last = times[-1]
    pops = {p.name: p for p in net.populations}

    def present(pname: str, t: int) -> bool:  # a static population is evaluated once, after the last step
        return not (unrolled and pops[pname].static and t != last)

    def offset(t: int) -> float:
        return 0.0 if not unrolled else (t - 1) * (lay.width + DX + STEP_GAP)

    def where(pname: str, i: int, t: int) -> tuple[float, float]:
        x, y = lay.xy[(pname, i)]
        return x + offset(t), y

    def tag(name: str, t: int) -> str:
        return f"{name}@{t}" if unrolled else name

    # the synapses to draw: (block, i, j, t_source, t_target)
    edges: list[tuple[Block, int, int, int, int]] = []
    for b in net.blocks:
        src_shown, dst_shown = lay.shown[b.source], set(lay.shown[b.target])
        pairs = ([(i, i) for i in src_shown if i in dst_shown] if b.kind == "one_to_one" else
                 [(i, j) for i in src_shown for j in lay.shown[b.target] if b.mask is None or b.mask[i, j]])
        for t in times:
            ts = t - 1 if (unrolled and b.recurrent) else t
            if (unrolled and ts < 1) or not present(b.source, ts) or not present(b.target, t):
                continue
            edges += [(b, i, j, ts, t) for i, j in pairs]
    weights = [_weight(params, b, i, j) for b, i, j, _, _ in edges]
    wmax = max((abs(w) for (b, *_), w in zip(edges, weights) if w is not None and b.kind == "dense"), default=0.0)
    alpha = 0.8 if len(edges) <= 150 else 0.55

    # neurons first (the synapses are clipped at their edges)
    cmap = _bias_cmap()
    biases = [np.asarray(params[p.bias]) for p in net.populations if p.bias and params is not None]
    bmax = max((float(np.max(np.abs(a))) for a in biases if a.size), default=0.0)
    patches: dict[tuple[str, int, int], object] = {}
    any_product = False
    for t in times:
        for p in net.populations:
            if not present(p.name, t):
                continue
            for i in lay.shown[p.name]:
                x, y = where(p.name, i, t)
                name = tag(p.neuron_name(i), t)
                if p.role == "input":
                    patch = RegularPolygon((x, y), 4, radius=RADIUS * 1.25, orientation=math.pi / 4,
                                           facecolor=INPUT_FILL, edgecolor="#444444", linewidth=1.0, zorder=3)
                else:
                    fill = "#ffffff"
                    if p.bias and params is not None and bmax > 0:
                        fill = cmap(0.5 + 0.5 * float(np.asarray(params[p.bias])[i]) / bmax)
                    product = p.aggregation == "product"
                    patch = Circle((x, y), RADIUS, facecolor=fill, edgecolor="#222222",
                                   linewidth=1.6 if product else 1.0, zorder=3)
                    if product:
                        any_product = True
                        ax.text(x, y, "×", ha="center", va="center", fontsize=10, fontweight="bold",
                                zorder=4, gid=f"product:{name}")
                patch.set_gid(f"neuron:{name}")
                ax.add_patch(patch)
                patches[(p.name, i, t)] = patch
                if p.labels and len(p.labels[i]) <= 12:
                    ax.text(x, y - RADIUS - 0.12, p.labels[i], ha="center", va="top", fontsize=6,
                            color="#333333", zorder=4)
            if p.name in lay.ellipsis:
                x, y = lay.ellipsis[p.name]
                ax.text(x + offset(t), y, "⋮", ha="center", va="center", fontsize=12, zorder=4, gid="ellipsis")
            if t in (times[0], last) and (t == times[0] or p.static):
                x = lay.xy[(p.name, lay.shown[p.name][0])][0] + offset(t)
                what = ("input" if p.size == 1 else "inputs") if p.role == "input" else p.activation
                if p.aggregation == "product":
                    what = "product" + ("" if p.activation == "linear" else f" {p.activation}")
                ax.text(x, lay.top[p.name], f"{p.name}\n{p.size} {what}", ha="center", va="bottom",
                        fontsize=6.5, color="#222222", zorder=5, gid=f"label:{p.name}",
                        bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=0.6))

    # synapses
    any_rec = False
    for (b, i, j, ts, t), w in zip(edges, weights):
        a, z = patches[(b.source, i, ts)], patches[(b.target, j, t)]
        p0, p1 = where(b.source, i, ts), where(b.target, j, t)
        colour, lw = _colour(w), _width(w, wmax, b.kind == "one_to_one")
        style = dict(color=colour, linewidth=lw, alpha=alpha, zorder=1 if not b.recurrent else 2,
                     gid=f"synapse:{tag(pops[b.source].neuron_name(i), ts)}->{tag(pops[b.target].neuron_name(j), t)}")
        if b.recurrent:
            any_rec = True
            style["linestyle"] = "--"
        if b.recurrent and not unrolled and (b.source, i) == (b.target, j):  # a neuron feeding itself: a loop
            x, y = p0
            loop = Path([(x + 0.22, y + 0.2), (x + 1.0, y + 0.75), (x + 1.0, y - 0.75), (x + 0.22, y - 0.2)],
                        [Path.MOVETO, Path.CURVE4, Path.CURVE4, Path.CURVE4])  # on the right of the neuron
            arrow = FancyArrowPatch(path=loop, arrowstyle="-|>", mutation_scale=8, **style)
        else:
            if b.recurrent and not unrolled:
                # within a column the arc bulges to the left (self-loops sit on the right); backwards, above
                rad = (0.55 if p1[1] < p0[1] else -0.55) if p0[0] == p1[0] else -0.3
                head = "-|>"
            else:
                rad = -0.2 if (p1[0] - p0[0]) > DX * 1.5 and not unrolled else 0.0  # a skip bows upwards
                head = "-|>" if b.recurrent else "-"
            arrow = FancyArrowPatch(p0, p1, arrowstyle=head, mutation_scale=8, connectionstyle=f"arc3,rad={rad}",
                                    patchA=a, patchB=z, shrinkA=0, shrinkB=0, **style)
        ax.add_patch(arrow)

    # outputs: a short arrow out of each output neuron
    for pname, ix in net.outputs:
        for i in ix:
            if (pname, i, last) in patches:
                x, y = where(pname, i, last)
                ax.annotate("", (x + RADIUS + 0.9, y), (x + RADIUS, y), gid="output",
                            arrowprops=dict(arrowstyle="-|>", color="#222222", linewidth=1.0))
    if unrolled:
        _step_labels(ax, times, offset, lay)

    # legend and bias scale
    handles = []
    if params is not None or any(b.kind == "one_to_one" for b in net.blocks):
        handles += [Line2D([], [], color=POSITIVE, lw=2, label="positive weight"),
                    Line2D([], [], color=NEGATIVE, lw=2, label="negative weight")]
    if params is None and any(b.kind == "dense" for b in net.blocks):
        handles.append(Line2D([], [], color=UNKNOWN, lw=1, label="weight (no params given)"))
    if any_rec:
        handles.append(Line2D([], [], color="#444444", lw=1, ls="--",
                              label="from step t−1" if unrolled else "recurrent (previous step)"))
    if any_product:
        handles.append(Line2D([], [], marker="$×$", ls="", color="#222222", markersize=8, label="product neuron"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.01), ncol=min(len(handles), 3),
                  fontsize=7, frameon=False)
    if params is not None and bmax > 0:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        fig_w = ax.figure.get_size_inches()[0] * ax.get_position().width
        wide = min(0.18, 1.8 / max(fig_w, 1e-9))  # about 1.8 inches long
        cax = ax.inset_axes((0.98 - wide, -0.035, wide, 0.018))  # below the picture, beside the legend
        bar = ax.figure.colorbar(ScalarMappable(Normalize(-bmax, bmax), cmap), cax=cax, orientation="horizontal")
        bar.set_label("bias (neuron fill)", fontsize=7)
        bar.ax.tick_params(labelsize=6)

    xs = [offset(t) for t in times]
    ys = [y for _, y in lay.xy.values()]
    ax.set_xlim(xs[0] - 1.2, xs[-1] + lay.width + 1.6)
    ax.set_ylim(min(ys) - 1.0, max(lay.top.values()) + (2.4 if unrolled else 1.3))
    ax.set_aspect("equal")
    ax.set_axis_off()


def _step_labels(ax, times, offset, lay) -> None:
    top = max(lay.top.values()) + 1.0
    for t in times:
        x0 = offset(t)
        ax.text(x0 + lay.width / 2, top, f"t = {t}", ha="center", va="bottom", fontsize=9, fontweight="bold",
                gid=f"step:{t}")
        if t != times[0]:
            xm = x0 - (DX + STEP_GAP) / 2
            ax.axvline(xm, color="#cccccc", linewidth=0.8, linestyle=":", zorder=0, gid="step-separator")


def _network_figure(net: Network, params, steps: int | None, max_neurons: int, ax, title: str | None):
    if not isinstance(net, Network):
        raise InvalidInputError(f"draw a Network (or a Model's .net); got {type(net).__name__}")
    if isinstance(max_neurons, bool) or not isinstance(max_neurons, int) or max_neurons < 2:
        raise InvalidInputError(f"max_neurons must be an integer of at least 2; got {max_neurons!r}")
    if ax is None:
        lay = _layout(net, max_neurons)
        n = 1 if steps is None else steps
        w = n * (lay.width + 2.8) + (n - 1) * (DX + STEP_GAP - 2.8 + 1.2)
        h = (max(y for _, y in lay.xy.values()) - min(y for _, y in lay.xy.values())) + 4.0
        scale = min(INCHES_PER_UNIT, MAX_INCHES[0] / w, MAX_INCHES[1] / h)
        size = (round(max(w * scale, 4.0), 2), round(max(h * scale + 0.6, 3.0), 2))  # whole pixels at 100 dpi
        fig = new_figure(size, dpi=100)
        top = 0.98 - (0.45 / size[1] if title else 0.0)  # room for a title of about 0.45 inch
        ax = fig.add_axes((0.02, 0.1, 0.96, top - 0.1))
    _draw(ax, net, params, steps, max_neurons)
    if title:
        ax.set_title(title, fontsize=10)
    return ax.figure


def _unpack(net, params):
    """A Model (anything with ``.net`` and ``.params``) or a Network and its params."""
    if not isinstance(net, Network) and hasattr(net, "net") and hasattr(net, "params"):
        return net.net, net.params if params is None else params
    return net, params


def draw_network(net, params=None, path: str | os.PathLike | None = None, ax=None, *, max_neurons: int = 12,
                 title: str | None = None):
    """Draw the network's neurons and synapses; returns the ``Figure`` (and writes ``path`` if given)."""
    net, params = _unpack(net, params)
    if path is not None:
        check_figure_path(path)
    fig = _network_figure(net, params, None, max_neurons, ax, title)
    if path is not None:
        save_figure(fig, path)
    return fig


def draw_unrolled(net, params=None, steps: int = 4, path: str | os.PathLike | None = None, ax=None, *,
                  max_neurons: int = 6, title: str | None = None):
    """Draw a recurrent network unrolled over ``steps`` time steps: one copy of its populations per step,
    the recurrent synapses going from step t−1 to step t."""
    net, params = _unpack(net, params)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidInputError(f"steps must be a positive integer; got {steps!r}")
    if isinstance(net, Network) and not net.is_recurrent:
        raise InvalidInputError("only a recurrent network unrolls in time; this one has no recurrent synapse")
    if path is not None:
        check_figure_path(path)
    fig = _network_figure(net, params, steps, max_neurons, ax, title)
    if path is not None:
        save_figure(fig, path)
    return fig


def render_bytes(net: Network, params=None, fmt: str = "png") -> bytes:
    """The network drawn as PNG or SVG bytes: what Jupyter shows for a Network or a Model."""
    fig = _network_figure(net, params, None, 12, None, None)
    return figure_bytes(fig, fmt)


# -- training history ---------------------------------------------------------------------------------
def _series(history: Sequence[Mapping]) -> dict[str, tuple[list[float], list[float]]]:
    """Every numeric per-epoch series of a fit history: key -> (epochs, values)."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for n, record in enumerate(history):
        if not isinstance(record, Mapping):
            raise InvalidInputError(f"a history is a list of dicts (one per epoch); entry {n} is {record!r}")
        epoch = record.get("epoch", n + 1)
        for key, value in record.items():
            if key in ("epoch", "seconds") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            xs, ys = out.setdefault(key, ([], []))
            xs.append(float(epoch))
            ys.append(float(value))
    return out


def draw_history(history, path: str | os.PathLike | None = None, *, title: str | None = None):
    """Loss curves: loss and val_loss in the first panel, each metric (accuracy, mae, ...) with its val_
    twin in a panel of its own, epochs on x. Returns the ``Figure`` (and writes ``path`` if given)."""
    history = getattr(history, "history", history)  # a Model will do
    if path is not None:
        check_figure_path(path, "plot")
    if not history:
        raise InvalidInputError("the history is empty: nothing to draw")
    series = _series(history)
    if not series:
        raise InvalidInputError("the history holds no numbers to draw")
    groups: dict[str, list[str]] = {}
    for key in sorted(series, key=lambda k: (k.removeprefix("val_") != "loss", k.startswith("val_"))):
        groups.setdefault(key.removeprefix("val_"), []).append(key)
    n = len(groups)
    fig = new_figure((6.4, 2.2 + 1.9 * n), dpi=100)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    colours = {"train": "#1f77b4", "val": "#d62728"}
    for ax, (base, keys) in zip(axes, groups.items()):
        for key in keys:
            xs, ys = series[key]
            val = key.startswith("val_")
            ax.plot(xs, ys, color=colours["val" if val else "train"], linewidth=1.6, marker="o" if len(xs) <= 30
                    else None, markersize=3, linestyle="--" if val else "-", label=key, gid=f"curve-{key}")
        ax.set_ylabel(base)
        ax.grid(True, color="#eeeeee")
        ax.legend(fontsize="small", loc="best")
    axes[-1].set_xlabel("epoch")
    axes[0].set_title(title or "training history")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, "plot")
    return fig


# -- decision boundaries -----------------------------------------------------------------------------------
CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]


def decision_kind(net: Network) -> str:
    """How a 2-input network's output is pictured: ``binary`` (one sigmoid/step output: the probability),
    ``classes`` (several outputs: the arg-max class) or ``regression`` (one output: its value)."""
    if net.n_outputs > 1:
        return "classes"
    pop = net.population(net.outputs[0][0])
    return "binary" if pop.activation in ("sigmoid", "step") else "regression"


def decision_grid(net: Network, params, X: np.ndarray, grid: int = 200, engine: str = "tensor"):
    """The grid over the data's range and what is pictured at each point.

    Returns ``(xs, ys, Z)``: ``Z[r, c]`` is the value at ``(xs[c], ys[r])`` — the probability of class 1
    (binary), the arg-max class (classes) or the output (regression)."""
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = np.where(hi > lo, (hi - lo) * 0.08, 1.0)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid)
    gx, gy = np.meshgrid(xs, ys)
    points = np.column_stack([gx.ravel(), gy.ravel()]).astype(params.dtype if hasattr(params, "dtype") else float)
    out = np.asarray(net.predict(params, points, engine=engine))
    kind = decision_kind(net)
    Z = out.argmax(axis=1) if kind == "classes" else out[:, 0]
    return xs, ys, Z.reshape(grid, grid)


def draw_decision_boundary(model_or_net, params=None, X=None, y=None, path: str | os.PathLike | None = None,
                           grid: int = 200, ax=None, *, title: str | None = None, engine: str = "tensor"):
    """What a network with two inputs predicts over the plane, with the data points on top.

    Binary (one sigmoid or step output): the probability of class 1 from orange (0) to blue (1) and the
    0.5 contour. Several outputs (softmax): each point of the plane in its arg-max class's colour.
    Regression: the output on a colour scale, the points coloured by their targets on the same scale."""
    net, params = _unpack(model_or_net, params)
    if not isinstance(net, Network):
        raise InvalidInputError(f"draw a Model or a Network with its params; got {type(net).__name__}")
    if params is None:
        raise InvalidInputError("a decision boundary needs params: give a Model, or a Network and its params")
    if net.n_inputs != 2 or net.is_recurrent:
        raise InvalidInputError(f"a decision boundary is drawn for a feed-forward network with 2 inputs; this one "
                                f"has {net.n_inputs}{' and is recurrent' if net.is_recurrent else ''}")
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != 2 or len(X) == 0:
        raise ShapeError(f"X must have shape (n, 2); got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise InvalidInputError("X holds NaN or infinity")
    if isinstance(grid, bool) or not isinstance(grid, int) or not 2 <= grid <= 2000:
        raise InvalidInputError(f"grid must be an integer from 2 to 2000; got {grid!r}")
    _check_params(net, params)
    kind = decision_kind(net)
    labels = None
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(X):
            raise ShapeError(f"X has {len(X)} rows but y has {len(y)}")
        if kind == "classes":
            labels = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(len(y)).astype(int)
        elif kind == "binary":
            labels = (y.reshape(len(y)) >= 0.5).astype(int)
        else:
            labels = y.reshape(len(y)).astype(float)
    if path is not None:
        check_figure_path(path)
    xs, ys, Z = decision_grid(net, params, X, grid, engine)
    from matplotlib.colors import BoundaryNorm, LinearSegmentedColormap, ListedColormap, Normalize

    if ax is None:
        fig = new_figure((6.4, 5.2), dpi=100)
        ax = fig.add_subplot()
    extent = (xs[0], xs[-1], ys[0], ys[-1])
    image = dict(origin="lower", extent=extent, aspect="auto", interpolation="nearest", gid="boundary")
    if kind == "binary":
        cmap = LinearSegmentedColormap.from_list("nomagic_binary", [CLASS_COLOURS[1], "#ffffff", CLASS_COLOURS[0]])
        im = ax.imshow(Z, cmap=cmap, norm=Normalize(0.0, 1.0), alpha=0.75, **image)
        if Z.min() < 0.5 < Z.max():
            ax.contour(xs, ys, Z, levels=[0.5], colors="#222222", linewidths=1.0)
        ax.figure.colorbar(im, ax=ax, label="P(class 1)")
        point_colours = None if labels is None else [CLASS_COLOURS[0] if k else CLASS_COLOURS[1] for k in labels]
    elif kind == "classes":
        k = net.n_outputs
        colours = [CLASS_COLOURS[c % len(CLASS_COLOURS)] for c in range(k)]
        im = ax.imshow(Z, cmap=ListedColormap(colours), norm=BoundaryNorm(np.arange(k + 1) - 0.5, k), alpha=0.35,
                       **image)
        point_colours = None if labels is None else [colours[int(c) % k] for c in labels]
    else:
        values = Z if labels is None else np.concatenate([Z.ravel(), labels])
        norm = Normalize(float(np.min(values)), float(np.max(values)))
        im = ax.imshow(Z, cmap="viridis", norm=norm, alpha=0.85, **image)
        ax.figure.colorbar(im, ax=ax, label="output")
        point_colours = None if labels is None else [im.cmap(norm(v)) for v in labels]
    ax.scatter(X[:, 0], X[:, 1], c=point_colours if point_colours is not None else "#222222", s=18,
               edgecolors="#222222", linewidths=0.6, zorder=3, gid="points")
    if kind == "classes" and labels is not None:
        from matplotlib.lines import Line2D

        present = sorted({int(c) for c in labels})
        ax.legend(handles=[Line2D([], [], marker="o", ls="", color=CLASS_COLOURS[c % len(CLASS_COLOURS)],
                                  markeredgecolor="#222222", label=f"class {c}") for c in present],
                  fontsize="small", loc="best")
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_title(title or {"binary": "decision boundary (P = 0.5)", "classes": "predicted class",
                           "regression": "predicted value"}[kind])
    fig = ax.figure
    if path is not None:
        save_figure(fig, path)
    return fig
