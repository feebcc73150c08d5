"""``nomagic bench``: the benchmarks, side by side with their references, inside the package.

``suite`` runs and reports them; ``runtime`` and ``processes`` measure the process runtime and
the processes engine; ``planner`` the planner's cold and warm runs and its importer.
"""

from .suite import BENCHMARKS, format_table, main, run_benchmarks

__all__ = ["BENCHMARKS", "format_table", "main", "run_benchmarks"]
