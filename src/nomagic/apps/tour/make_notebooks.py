"""Make the tour's notebooks from its chapters: ``python -m nomagic.apps.tour.make_notebooks``.

Each chapter ``chapters/NN-name.py`` becomes ``notebooks/NN-name.ipynb``: its text cells become
Markdown cells and its code cells code cells, in order, without outputs. The notebooks are
committed; ``--check`` exits 1 (naming them) when one differs from what the chapters make, as the
tests check too. Needs ``nbformat`` (in the ``test`` extra).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nomagic.errors import MissingDependencyError

from .chapters import Chapter, all_chapters

NOTEBOOK_DIR = Path(__file__).resolve().parent / "notebooks"


def _nbformat():
    try:
        import nbformat
    except ImportError:
        raise MissingDependencyError("making the notebooks needs nbformat: pip install nbformat") from None
    return nbformat


def notebook(chapter: Chapter):
    """The chapter as a notebook (an ``nbformat`` node, no outputs, stable cell ids)."""
    nbf = _nbformat()
    cells = []
    for i, cell in enumerate(chapter.cells()):
        make = nbf.v4.new_markdown_cell if cell.kind == "markdown" else nbf.v4.new_code_cell
        c = make(cell.source)
        c["id"] = f"{chapter.stem}-{i:02d}"
        cells.append(c)
    nb = nbf.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "nomagic": {"made_by": "python -m nomagic.apps.tour.make_notebooks",
                    "from": f"nomagic/apps/tour/chapters/{chapter.path.name}"}})
    nbf.validate(nb)
    return nb


def notebook_text(chapter: Chapter) -> str:
    """The notebook file's text, as written."""
    return _nbformat().writes(notebook(chapter)) + "\n"


def notebook_path(chapter: Chapter) -> Path:
    return NOTEBOOK_DIR / f"{chapter.stem}.ipynb"


def stale() -> list[Path]:
    """The notebooks that differ from what the chapters make (or are missing), and stray ones."""
    made = {notebook_path(c): notebook_text(c) for c in all_chapters()}
    out = [p for p, text in made.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    return out + sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if p not in made)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nomagic.apps.tour.make_notebooks", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check that the notebooks are up to date")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for p in bad:
            print(f"out of date: {p.name}", file=sys.stderr)
        return 1 if bad else 0
    NOTEBOOK_DIR.mkdir(exist_ok=True)
    for c in all_chapters():
        notebook_path(c).write_text(notebook_text(c), encoding="utf-8")
        print(f"wrote {notebook_path(c)}")
    for p in NOTEBOOK_DIR.glob("*.ipynb"):
        if p not in {notebook_path(c) for c in all_chapters()}:
            p.unlink()
            print(f"removed {p}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
