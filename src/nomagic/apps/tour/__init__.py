"""The tour: the talk nomagic grew from, as chapters a person can run (``nomagic tour``) or open
as notebooks (``notebooks/``, made from the same code by ``make_notebooks``)."""

from .chapters import Cell, Chapter, all_chapters, find
from .run import listing, run_chapter, run_tour

__all__ = ["Cell", "Chapter", "all_chapters", "find", "listing", "run_chapter", "run_tour"]
