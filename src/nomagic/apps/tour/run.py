"""``nomagic tour``: run the chapters in order (or one), printing their text, code and results."""

from __future__ import annotations

import sys

from .chapters import Chapter, all_chapters, find
from .show import require_rich, using


def listing() -> str:
    """One line per chapter: number, short name, title."""
    chapters = all_chapters()
    width = max(len(c.name) for c in chapters)
    return "".join(f"{c.number:2d}  {c.name:<{width}}  {c.title}\n" for c in chapters)


def make_console(file=None, width: int | None = None):
    """A rich console: colours on a terminal, plain text (120 columns) anywhere else."""
    require_rich()
    from rich.console import Console

    out = file or sys.stdout
    if width is None and not (hasattr(out, "isatty") and out.isatty()):
        width = 120
    return Console(file=out, width=width, highlight=False)


def run_chapter(chapter: Chapter | str | int, con=None, show_code: bool = True) -> dict:
    """Run one chapter's cells in a fresh namespace, printing text, code and results on ``con``;
    returns the namespace (every variable the chapter made)."""
    require_rich()
    from rich.markdown import Markdown
    from rich.rule import Rule
    from rich.syntax import Syntax

    ch = chapter if isinstance(chapter, Chapter) else find(chapter)
    con = con or make_console()
    ns: dict = {"__name__": f"nomagic_tour_{ch.name}"}
    con.print(Rule(f"Chapter {ch.number}: {ch.title}"))
    with using(con):
        for cell in ch.cells():
            if cell.kind == "markdown":
                con.print(Markdown(cell.source))
                con.print()
                continue
            if show_code:
                con.print(Syntax(cell.source, "python", theme="ansi_dark", background_color="default",
                                 line_numbers=False, padding=(0, 2), word_wrap=True))
                con.print()
            # padded with newlines so that a traceback names the chapter file's own line numbers
            code = compile("\n" * (cell.line - 1) + cell.source, str(ch.path), "exec")
            exec(code, ns)  # the chapter's code, exactly as its notebook shows it
            con.print()
    return ns


def run_tour(keys: list[str] | None = None, *, pause: bool = True, con=None, show_code: bool = True) -> int:
    """Run the chapters named by ``keys`` (all when empty), waiting for Enter between them when
    ``pause`` and standard input is a terminal."""
    chapters = [find(k) for k in keys] if keys else all_chapters()
    con = con or make_console()
    pause = pause and sys.stdin is not None and sys.stdin.isatty()
    for i, ch in enumerate(chapters):
        if i and pause:
            try:
                input(f"\n[Enter: chapter {ch.number}, {ch.title}; Ctrl-C to stop] ")
            except EOFError:
                return 0
        run_chapter(ch, con, show_code=show_code)
    return 0


def main(chapter: str | None = None, *, list_only: bool = False, pause: bool = True) -> int:
    if list_only:
        sys.stdout.write(listing())
        return 0
    keys = [chapter] if chapter else None
    if keys:
        find(chapter)  # an unknown chapter is an error before anything runs
    require_rich()
    return run_tour(keys, pause=pause)
