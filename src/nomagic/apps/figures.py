"""Saving matplotlib figures: one place that knows the formats and writes files atomically.

Every picture nomagic draws (networks, loss curves, decision boundaries, the planner's
performance-management chart) is a matplotlib ``Figure`` on the Agg canvas, no window and no
pyplot state. ``save_figure`` renders it into memory in the format the file name asks for and
writes the bytes with ``atomic_write_bytes``: a reader sees the old file or the new one, never
half of one, and a failure leaves nothing behind.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from ..errors import InvalidInputError, require
from ..io import atomic_write_bytes

#: File extension -> matplotlib format.
FORMATS = {".png": "png", ".svg": "svg"}


def figure_format(path: str | os.PathLike, what: str = "picture") -> str:
    """The format (``"png"`` or ``"svg"``) that ``path``'s extension asks for; else ``InvalidInputError``."""
    name = os.fspath(path)
    fmt = FORMATS.get(os.path.splitext(name)[1].lower())
    if fmt is None:
        raise InvalidInputError(f"{what} file {name!r} must end in .png or .svg")
    return fmt


def check_figure_path(path: str | os.PathLike, what: str = "picture") -> str:
    """Fail early, before any drawing: the format by extension, and a folder that exists and is writable."""
    fmt = figure_format(path, what)
    p = Path(os.fspath(path))
    if p.is_dir():
        raise InvalidInputError(f"{p} is a folder; give a file name for the {what}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInputError(f"cannot write {p}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InvalidInputError(f"cannot write {p}: the folder {parent} is not writable")
    return fmt


def new_figure(size: tuple[float, float] = (8.0, 5.0), dpi: int = 100):
    """A matplotlib ``Figure`` on the Agg canvas (needs the ``plot`` extra)."""
    require("matplotlib", "plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_bytes(fig, fmt: str, dpi: int | None = None) -> bytes:
    """The figure rendered as ``png`` or ``svg`` bytes."""
    if fmt not in FORMATS.values():
        raise InvalidInputError(f"unknown picture format {fmt!r}; use png or svg")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi if dpi is not None else fig.dpi)
    return buffer.getvalue()


def save_figure(fig, path: str | os.PathLike, what: str = "picture", dpi: int | None = None) -> str:
    """Write ``fig`` to ``path`` (``.png`` or ``.svg``) atomically and return the path written."""
    name = os.fspath(path)
    fmt = check_figure_path(name, what)
    data = figure_bytes(fig, fmt, dpi)
    try:
        atomic_write_bytes(name, data)
    except OSError as exc:
        raise InvalidInputError(f"cannot write {name}: {exc.strerror or exc}") from None
    return name
