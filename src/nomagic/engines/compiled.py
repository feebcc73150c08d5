"""Element-wise work as one compiled loop, when numba is installed (``pip install "nomagic[fast]"``).

In NumPy, element-wise work is a string of passes over the arrays, one call each. On a small
network those calls cost as much as the matrix products. For the digits MLP in float32 (2-core
AMD EPYC VM), Adam's update is twelve passes over 26,122 params, about 37 µs of a 130 µs step;
softmax with cross-entropy is twelve calls on a 10 × 32 array, about 10 µs.

So the places where this matters also write their work as a loop over the elements, with the very
same operations in the same order and precision:
- each optimizer's update (``_adam_loop`` and the others beside ``apply_`` in
  ``train/optimizers.py``);
- the dense step's relu and its softmax with cross-entropy (in ``tensor/fused.py``).

numba compiles each loop to machine code once per dtype and keeps it in its cache on disk. The
loop runs in one pass: about 10 µs for the same Adam step, under 5 µs for the softmax. The
results are the same to the bit: NumPy's exp and log still run between the loops, and the tests
check every loop against the NumPy calls it replaces. So which path ran never shows in a number.

Without numba, or with ``NOMAGIC_NUMBA=0`` in the environment, the NumPy calls run.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable

import numpy as np

_lock = threading.Lock()
_state: dict = {"on": None, "numba": None, "kernels": {}}
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def enabled() -> bool:
    """Whether compiled loops are used: numba is installed and ``NOMAGIC_NUMBA`` is not "0" (read
    once, at the first update; ``reset()`` reads it again)."""
    on = _state["on"]
    if on is None:
        on = os.environ.get("NOMAGIC_NUMBA", "1").strip() != "0"
        if on and _state["numba"] is None:
            try:
                import numba
            except Exception:  # not installed, or broken for this Python/NumPy: NumPy passes it is
                numba = False
            _state["numba"] = numba
        on = _state["on"] = on and _state["numba"] is not False
    return on


def reset() -> None:
    """Read ``NOMAGIC_NUMBA`` again at the next update."""
    _state["on"] = None


def call(fast: Callable, *args) -> bool:
    """``fast(*args)``; True once it ran. numba compiles a loop for its arguments' types at their
    first call, and may fail there: then compiled loops are turned off in this process with a
    warning that says why, nothing has been changed, and False tells the caller to make its NumPy
    calls instead."""
    try:
        fast(*args)
        return True
    except Exception as exc:
        _state["on"] = False
        warnings.warn(f"numba could not compile {getattr(fast, '__name__', fast)!s} "
                      f"({type(exc).__name__}: {exc}); nomagic runs its NumPy calls instead", RuntimeWarning,
                      stacklevel=2)
        return False


def kernel(loop: Callable) -> Callable | None:
    """``loop`` compiled (made once per process, kept on disk between processes), or None when
    compiled loops are off. ``error_model="numpy"``: a division by zero gives inf or nan as in
    NumPy instead of raising, which also lets the compiler use the CPU's vector instructions;
    no ``fastmath``, so every operation is rounded as NumPy rounds it."""
    if not (_state["on"] or enabled()):
        return None
    fast = _state["kernels"].get(loop)
    if fast is None:
        with _lock:
            fast = _state["kernels"].get(loop)
            if fast is None:
                njit = _state["numba"].njit
                try:
                    fast = njit(loop, cache=True, nogil=True, error_model="numpy")
                except Exception:  # no writable place for numba's cache: compile in each process
                    fast = njit(loop, nogil=True, error_model="numpy")
                _state["kernels"][loop] = fast
    return fast


def fits(*arrays: np.ndarray) -> bool:
    """Whether the loops can run on these vectors: one-dimensional, contiguous, writeable, all
    float32 or all float64."""
    dt = arrays[0].dtype
    if dt not in FLOATS:
        return False
    for a in arrays:
        if a.dtype != dt or a.ndim != 1 or not a.flags.c_contiguous or not a.flags.writeable:
            return False
    return True
