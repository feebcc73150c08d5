"""A small progress bar for long work: shown on a terminal, silent otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``with ProgressBar(total, "epoch 1") as bar: bar.update(n, loss=0.3)``."""

    def __init__(self, total: int, label: str = "", *, enabled: bool | None = None,
                 stream: TextIO | None = None, width: int = 28) -> None:
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.total = max(int(total), 1)
        self.label = label
        self.width = width
        self.done = 0
        self.info = ""
        self._start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1, **info) -> None:
        self.done = min(self.done + n, self.total)
        if not self.enabled:
            return
        if info:
            self.info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in info.items())
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        filled = int(self.width * self.done / self.total)
        bar = "█" * filled + "·" * (self.width - filled)
        elapsed = now - self._start
        self.stream.write(f"\r{self.label} {bar} {self.done}/{self.total} "
                          f"{elapsed:5.1f}s  {self.info}\033[K")
        self.stream.flush()

    def close(self, summary: str = "") -> None:
        if self.enabled:
            self._draw(time.perf_counter())
            if summary:
                self.stream.write(f"  {summary}")
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
