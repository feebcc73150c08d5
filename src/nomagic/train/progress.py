"""A small progress bar for long work: shown on a terminal, silent otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class ProgressBar:
    """``with ProgressBar(total, "epoch 1") as bar: bar.update(n, loss=0.3)``.

    It shows the steps done, the time so far, the rate and the time left (ETA). With
    ``samples=N`` (the samples in all ``total`` steps) and ``update(n, samples=k)`` the rate is
    in samples per second, else in steps per second. ``enabled=None`` shows it only when the
    stream is a terminal; off a terminal it writes nothing at all.
    """

    def __init__(self, total: int, label: str = "", *, enabled: bool | None = None,
                 stream: TextIO | None = None, width: int = 28, samples: int | None = None) -> None:
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.total = max(int(total), 1)
        self.label = label
        self.width = width
        self.done = 0
        self.samples_total = samples
        self.samples_done = 0
        self.info = ""
        self._info: dict = {}
        self._start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1, *, samples: int | None = None, **info) -> None:
        self.done = min(self.done + n, self.total)
        if not self.enabled:
            return
        if samples is not None:
            self.samples_done += samples
        if info:
            self._info = info
        now = time.perf_counter()
        if now - self._last > 0.1 or self.done == self.total:
            self._last = now
            self._draw(now)

    def _rate(self, elapsed: float) -> tuple[str, float | None]:
        """The rate as text, and the seconds left (None when nothing is known yet)."""
        if elapsed <= 0 or self.done == 0:
            return "", None
        left = elapsed / self.done * (self.total - self.done)
        if self.samples_total is not None and self.samples_done:
            return f"{self.samples_done / elapsed:,.0f} samples/s", left
        return f"{self.done / elapsed:.1f} it/s", left

    def _draw(self, now: float) -> None:
        if self._info:
            self.info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in self._info.items())
        filled = int(self.width * self.done / self.total)
        bar = "█" * filled + "·" * (self.width - filled)
        elapsed = now - self._start
        rate, left = self._rate(elapsed)
        timing = f"{elapsed:5.1f}s"
        if rate:
            timing += f"  {rate}"
        if left is not None and self.done < self.total:
            timing += f"  ETA {_duration(left)}"
        self.stream.write(f"\r{self.label} {bar} {self.done}/{self.total} {timing}  {self.info}\033[K")
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
