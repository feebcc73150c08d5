"""The performance-management chart as a picture: what the load numbers look like to a coach.

Top panel: daily load as bars, fitness (CTL), fatigue (ATL) and form (TSB) as lines; planned
(projected) days are drawn dashed and their bars pale. Bottom panel: the acute:chronic ratio with
the 0.8–1.3 band shaded. Needs matplotlib (the ``plot`` extra); drawn with the Agg renderer, no
window, and written atomically by ``nomagic.apps.figures.save_figure`` (shared with every other picture).
"""

from __future__ import annotations

import os

import numpy as np

from nomagic.errors import InvalidInputError

from ..figures import FORMATS, figure_format, new_figure, save_figure
from .load import LoadTable

__all__ = ["ACWR_BAND", "FORMATS", "performance_chart"]
#: The acute:chronic band coaches call the sweet spot.
ACWR_BAND = (0.8, 1.3)


def performance_chart(table: LoadTable, path: str | os.PathLike, *, title: str = "Performance management chart",
                      dpi: int = 100, size: tuple[float, float] = (10.0, 6.0)) -> str:
    """Draw ``table`` to ``path`` (``.png`` or ``.svg``) and return the path written."""
    name = os.fspath(path)
    figure_format(name, "chart")
    if not len(table):
        raise InvalidInputError("the load table is empty: nothing to draw")
    fig = new_figure(size, dpi)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    days = table.dates.astype("datetime64[D]").astype(object)
    planned = np.asarray(table.planned, dtype=bool)
    done = ~planned
    # one collection of vertical lines, not a rectangle per day: 1,500 days draw in a blink
    top.vlines(np.array(days)[done], 0.0, table.load[done], color="#bbbbbb", linewidth=1.0, label="daily load")
    if planned.any():
        top.vlines(np.array(days)[planned], 0.0, table.load[planned], color="#9ecae1", linewidth=1.0,
                   label="planned load")
    lines = (("ctl", "fitness (CTL)", "#1f77b4"), ("atl", "fatigue (ATL)", "#d62728"), ("tsb", "form (TSB)", "#ff7f0e"))
    for column, label, colour in lines:
        _line(top, days, getattr(table, column), planned, colour, label)
    top.axhline(0.0, color="#444444", linewidth=0.5)
    top.set_ylabel("load per day")
    top.set_title(title)
    top.legend(loc="upper left", fontsize="small", ncol=3)
    bottom.axhspan(*ACWR_BAND, color="#2ca02c", alpha=0.15, label=f"{ACWR_BAND[0]}–{ACWR_BAND[1]}")
    _line(bottom, days, table.acwr, planned, "#9467bd", "ATL / C28")
    bottom.set_ylabel("ACWR")
    bottom.legend(loc="upper left", fontsize="small", ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    return save_figure(fig, name, "chart", dpi=dpi)


def _line(ax, days, values: np.ndarray, planned: np.ndarray, colour: str, label: str) -> None:
    """Solid over the logged days; dashed over the planned ones, joined to the last logged day."""
    days = np.array(days)
    done = ~planned
    ax.plot(days[done], values[done], color=colour, linewidth=1.2, label=label)
    if planned.any():
        start = max(int(np.argmax(planned)) - 1, 0)
        ax.plot(days[start:], values[start:], color=colour, linewidth=1.2, linestyle="--")
