"""What the tour's chapters print with: ``show(...)`` and a few builders of rich tables.

``show`` prints to the console the tour runner hands in (``using(console)``); in a notebook, or
when a chapter's code is run on its own, it prints to a fresh ``rich.console.Console``, which
writes colours on a terminal, HTML in Jupyter and plain text anywhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from nomagic.errors import MissingDependencyError

INSTALL = "pip install 'nomagic[tour]'"


def require_rich() -> None:
    """Raise ``MissingDependencyError`` with the install line when rich is missing."""
    try:
        import rich  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"the tour prints with rich, which is not installed: {INSTALL}") from None


_consoles: list = []


def console():
    """The console chapters print to."""
    if not _consoles:
        require_rich()
        from rich.console import Console

        _consoles.append(Console())
    return _consoles[-1]


@contextlib.contextmanager
def using(con) -> Iterator[None]:
    """Print every ``show`` inside the block to ``con``."""
    _consoles.append(con)
    try:
        yield
    finally:
        _consoles.remove(con)


def show(*things) -> None:
    """Print each thing (text, a table, a panel, ...) on the chapter's console."""
    con = console()
    for thing in things:
        con.print(thing)


def num(x, digits: int = 3) -> str:
    """A number as the chapters print it: ``digits`` decimals, integers as they are."""
    import numbers

    if isinstance(x, (bool, str)) or isinstance(x, numbers.Integral):
        return str(x)
    return f"{float(x):.{digits}f}"


def vec(v, digits: int = 3) -> str:
    """A vector as ``[0.123, -0.456]``."""
    return "[" + ", ".join(num(x, digits) for x in v) + "]"


def table(headers: Sequence[str], rows: Sequence[Sequence], title: str | None = None, digits: int = 3):
    """A rich table; floats are printed with ``digits`` decimals, the rest as they are."""
    import numbers

    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for h in headers:
        t.add_column(str(h), justify="left")
    for row in rows:
        t.add_row(*(num(c, digits) if isinstance(c, numbers.Real) else str(c) for c in row))
    return t


def panel(text: str, title: str | None = None):
    """Text in a box."""
    from rich.panel import Panel

    return Panel(text, title=title, expand=False)
