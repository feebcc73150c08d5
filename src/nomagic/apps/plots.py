"""Pictures without dependencies: loss curves as SVG, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from ..errors import InvalidInputError
from ..io.safetensors import atomic_write_bytes

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def line_chart_svg(series: dict[str, Sequence[float]], *, title: str = "", xlabel: str = "epoch",
                   width: int = 640, height: int = 360) -> str:
    """An SVG line chart of one or more named series sharing the x axis 1..n."""
    series = {k: [float(v) for v in vs] for k, vs in series.items() if len(vs)}
    if not series:
        raise InvalidInputError("nothing to draw: every series is empty")
    left, right, top, bottom = 60, 20, 36, 44
    n = max(len(v) for v in series.values())
    lo = min(min(v) for v in series.values())
    hi = max(max(v) for v in series.values())
    if hi == lo:
        hi, lo = hi + 1, lo - 1
    pw, ph = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (pw * i / max(n - 1, 1))

    def y(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15">{escape(title)}</text>',
           f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
        out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" '
                   'stroke="#eee"/>')
    for k in range(min(n, 6)):
        i = round(k * (n - 1) / max(min(n, 6) - 1, 1))
        out.append(f'<text x="{x(i):.1f}" y="{top + ph + 16}" text-anchor="middle">{i + 1}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{escape(xlabel)}</text>')
    for c, (name, vs) in enumerate(series.items()):
        colour = _COLOURS[c % len(_COLOURS)]
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vs))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>')
        out.append(f'<text x="{left + pw - 4}" y="{top + 14 + 16 * c}" text-anchor="end" '
                   f'fill="{colour}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def save_loss_curve(history: Sequence[dict], path, title: str = "training") -> None:
    """Draw every numeric per-epoch series that ends in 'loss' from a fit history as SVG."""
    if not history:
        raise InvalidInputError("the history is empty: nothing to draw")
    keys = [k for k in history[0] if k.endswith("loss")]
    chart = line_chart_svg({k: [h[k] for h in history if k in h] for k in keys}, title=title)
    atomic_write_bytes(path, chart.encode())
