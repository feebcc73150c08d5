"""The tour's chapters: each one a Python file in ``chapters/`` written as cells.

A chapter file is plain Python split into cells by ``# %%`` lines (the "percent" format that
editors and jupytext read): ``# %% [markdown]`` starts a cell of text, each of its lines a comment;
``# %%`` starts a cell of code. The tour runs the code cells in order in one namespace and prints
the text between them; ``make_notebooks`` turns the same cells into a notebook. So the code a
reader sees in the notebook is the code the ``nomagic tour`` command runs.

File names are ``NN-name.py``: the chapter's number and its short name. The hyphen keeps them
from being imported as modules: they are read and run, never imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nomagic.errors import UnknownNameError

CHAPTER_DIR = Path(__file__).resolve().parent / "chapters"
_FILE = re.compile(r"^(\d\d)-([a-z][a-z0-9_]*)\.py$")


@dataclass(frozen=True)
class Cell:
    """One cell: ``kind`` "markdown" or "code", its ``source`` and the file line it starts on (1-based)."""

    kind: str
    source: str
    line: int


@dataclass(frozen=True)
class Chapter:
    number: int
    name: str
    path: Path

    @property
    def stem(self) -> str:
        return self.path.stem

    def cells(self) -> list[Cell]:
        return parse_cells(self.path.read_text(encoding="utf-8"))

    @property
    def title(self) -> str:
        """The first heading of the chapter's first text cell, without the "#"."""
        for cell in self.cells():
            if cell.kind == "markdown":
                for line in cell.source.splitlines():
                    if line.startswith("#"):
                        return line.lstrip("#").strip()
        return self.name


def parse_cells(text: str) -> list[Cell]:
    """Split a percent-format file into cells; what comes before the first ``# %%`` is left out."""
    cells: list[Cell] = []
    kind: str | None = None
    lines: list[str] = []
    start = 0

    def close() -> None:
        if kind is None:
            return
        while lines and not lines[-1].strip():
            lines.pop()
        if kind == "markdown":
            body = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        else:
            body = lines
        if body:
            cells.append(Cell(kind, "\n".join(body), start))

    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("# %%"):
            close()
            kind = "markdown" if "[markdown]" in line else "code"
            lines, start = [], n + 1
        elif kind is not None:
            if not lines and not line.strip():
                start = n + 1
                continue
            lines.append(line)
    close()
    return cells


def all_chapters() -> list[Chapter]:
    """Every chapter, in order."""
    out = []
    for path in sorted(CHAPTER_DIR.glob("*.py")):
        m = _FILE.match(path.name)
        if m:
            out.append(Chapter(int(m[1]), m[2], path))
    return out


def find(key: str | int) -> Chapter:
    """A chapter by number ("3", 3, "03") or short name ("xor")."""
    chapters = all_chapters()
    text = str(key).strip().lower()
    for c in chapters:
        if (text.isdigit() and int(text) == c.number) or text in (c.name, c.stem):
            return c
    names = ", ".join(f"{c.number} {c.name}" for c in chapters)
    raise UnknownNameError(f"no chapter {str(key)!r} in the tour; the chapters are: {names}")
