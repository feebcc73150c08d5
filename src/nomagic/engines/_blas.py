"""How many threads NumPy's BLAS may use while the tensor engine runs small matrix products.

OpenBLAS splits a matrix product over its threads once the product is big enough by its own
measure, and on small products (a batch of 32 through a layer of 128) the hand-over between
threads costs more than it saves: on a 2-core virtual machine it made training 2 to 10 times
slower, and erratic. So while it runs a network whose largest product is small, the engine asks
the BLAS for one thread, and gives the previous count back afterwards. Big products keep every
thread. Without ``threadpoolctl`` (which finds the BLAS that NumPy loaded) nothing is changed.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

# a product of (m, k) by (k, n) with m·k·n below this runs on one thread
SMALL_GEMM = 8_000_000

_lock = threading.Lock()
_state = {"controllers": None, "depth": 0, "saved": None}


def _controllers() -> list:
    """The threadpoolctl controllers of the BLAS libraries NumPy uses (found once)."""
    if _state["controllers"] is None:
        found = []
        try:
            import numpy as np  # noqa: F401  (its BLAS must be loaded to be found)
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
