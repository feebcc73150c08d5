"""How many threads NumPy's BLAS may use while the tensor engine runs small matrix products.

OpenBLAS splits a matrix product over its threads once the product is big enough by its own
measure, and on small products (a batch of 32 through a layer of 128) the hand-over between
threads costs more than it saves: on a 2-core virtual machine it made training 2 to 10 times
slower, and erratic. So while it runs a network whose largest product is small, the engine asks
the BLAS for one thread, and gives the previous count back afterwards. Big products keep every
thread. Without ``threadpoolctl`` (which finds the BLAS that NumPy loaded) nothing is changed.

A ``Team`` is the other way to use the cores, for training a big plain MLP: the BLAS is held to
one thread and the engine cuts each big product into blocks itself, one per thread of the team.
The reason is what comes between the products. After a multi-threaded product OpenBLAS's worker
threads keep spinning, for about a tenth of a second, on the cores they ran on; the optimizer's
update (a dozen element-wise passes over every param, as long as a big product) then gets no
second core, while with the team's own threads it gets them all.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

# a product of (m, k) by (k, n) with m·k·n below this runs on one thread
SMALL_GEMM = 8_000_000

_lock = threading.Lock()
_state = {"controllers": None, "depth": 0, "saved": None}


def _controllers() -> list:
    """The threadpoolctl controllers of the BLAS libraries NumPy uses (found once)."""
    if _state["controllers"] is None:
        found = []
        try:
            from threadpoolctl import ThreadpoolController

            blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
            mine = [c for c in blas if "numpy" in c.filepath.replace("\\", "/").lower()]
            found = mine or blas
        except Exception:  # no threadpoolctl, or a BLAS it cannot drive: leave threads alone
            found = []
        _state["controllers"] = found
    return _state["controllers"]


def blas_threads() -> int | None:
    """The number of threads NumPy's BLAS uses now (None when it cannot be known)."""
    ctl = _controllers()
    return ctl[0].get_num_threads() if ctl else None


@contextmanager
def single_threaded(small: bool = True):
    """Run the body with one BLAS thread when ``small``; nested and multi-threaded use is safe."""
    if not small or not _controllers():
        yield
        return
    with _lock:
        if _state["depth"] == 0:
            _state["saved"] = [c.get_num_threads() for c in _state["controllers"]]
            for c in _state["controllers"]:
                c.set_num_threads(1)
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                for c, n in zip(_state["controllers"], _state["saved"]):
                    c.set_num_threads(n)


@contextmanager
def all_threads(gemm: int):
    """Inside ``single_threaded``: give one big product (m·k·n ≥ SMALL_GEMM) every thread again."""
    if gemm < SMALL_GEMM or _state["depth"] == 0 or not _controllers():
        yield
        return
    with _lock:
        saved = _state["saved"]
        for c, n in zip(_state["controllers"], saved):
            c.set_num_threads(n)
    try:
        yield
    finally:
        with _lock:
            if _state["depth"] > 0:
                for c in _state["controllers"]:
                    c.set_num_threads(1)


def is_small(largest_gemm: int) -> bool:
    return largest_gemm < SMALL_GEMM


class Team:
    """The calling thread and ``size - 1`` helpers, for work that lets go of the GIL (NumPy's
    matrix products and element-wise operations on long arrays)."""

    def __init__(self, size: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.size = size
        self._pool = ThreadPoolExecutor(size - 1, thread_name_prefix="nomagic") if size > 1 else None

    def _run(self, jobs: list) -> None:
        """Call every job (a function of no arguments), the first one on this thread."""
        if len(jobs) > 1 and self._pool is None:
            raise RuntimeError("this team has been closed")
        futures = [self._pool.submit(job) for job in jobs[1:]]
        error = None
        try:
            jobs[0]()
        except BaseException as exc:  # wait for the others before raising: they use the same arrays
            error = exc
        for f in futures:
            try:
                f.result()
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error

    def share(self, work, items) -> None:
        """``work(member, item)`` for every item; each member takes the next item left."""
        todo = iter(list(items))  # taking the next item holds the GIL: no item is taken twice

        def member(k):
            def run():
                for item in todo:
                    work(k, item)
            return run

        self._run([member(k) for k in range(self.size)])

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out ← a @ b (2-d), a block of ``out``'s rows or columns per member: the rows when
        there are at least as many of them (their blocks are contiguous), else the columns."""
        m, n = out.shape
        if self.size < 2 or m * a.shape[1] * n < SMALL_GEMM:
            return np.matmul(a, b, out=out)
        by_rows = m >= n
        cuts = _cuts(m if by_rows else n, self.size)
        if by_rows:
            jobs = [lambda r0=r0, r1=r1: np.matmul(a[r0:r1], b, out=out[r0:r1]) for r0, r1 in cuts]
        else:
            jobs = [lambda c0=c0, c1=c1: np.matmul(a, b[:, c0:c1], out=out[:, c0:c1]) for c0, c1 in cuts]
        self._run(jobs)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _cuts(n: int, parts: int, align: int = 64) -> list[tuple[int, int]]:
    """``n`` cut into at most ``parts`` nearly equal ranges, inner bounds on multiples of ``align``."""
    bounds = [0] + [min(n, round(n * k / parts / align) * align) for k in range(1, parts)] + [n]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
