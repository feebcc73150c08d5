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

A loop may also make the BLAS calls np.matmul makes (``blas_row``, ``blas_products``), through
NumPy's own BLAS library: the dense step runs whole that way, in two loops, without the
microsecond each np.matmul call costs around its BLAS call.

Without numba, or with ``NOMAGIC_NUMBA=0`` in the environment, the NumPy calls run.
"""

from __future__ import annotations

import hashlib
import os
import threading
import types
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


def kernel(loop: Callable, uses: tuple[Callable, ...] = ()) -> Callable | None:
    """``loop`` compiled (made once per process, kept on disk between processes), or None when
    compiled loops are off. ``error_model="numpy"``: a division by zero gives inf or nan as in
    NumPy instead of raising, which also lets the compiler use the CPU's vector instructions;
    no ``fastmath``, so every operation is rounded as NumPy rounds it. ``uses``: the other loops
    that ``loop`` calls by name; each is compiled first and given to it under its name."""
    if not (_state["on"] or enabled()):
        return None
    key = (loop, *uses)
    fast = _state["kernels"].get(key)
    if fast is None:
        given = {f.__name__: kernel(f) for f in uses}
        with _lock:
            fast = _state["kernels"].get(key)
            if fast is None:
                numba = _state["numba"]
                if uses:  # the same code, seeing the compiled loops where it sees the Python ones
                    code = types.FunctionType(loop.__code__, {**loop.__globals__, **given}, loop.__name__,
                                              loop.__defaults__, loop.__closure__)
                    # numba's cache checks only the file of the loop itself: naming the entry after
                    # the code of the loops it calls keeps an edit of theirs from loading stale code
                    digest = hashlib.sha1(repr([(f.__code__.co_code, f.__code__.co_consts) for f in uses])
                                          .encode()).hexdigest()[:12]
                    code.__qualname__, code.__module__ = f"{loop.__qualname__}_{digest}", loop.__module__
                else:
                    code = loop
                try:
                    fast = numba.njit(code, cache=True, nogil=True, error_model="numpy")
                except Exception:  # no writable place for numba's cache: compile in each process
                    fast = numba.njit(code, nogil=True, error_model="numpy")
                _state["kernels"][key] = fast
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


# -- NumPy's own BLAS, called from a compiled loop ---------------------------------------------------
#
# A small network's step is a dozen matrix products, and each np.matmul call costs about a
# microsecond around the BLAS call it makes. A compiled loop can make the same BLAS calls itself:
# the same functions of the same library, with the arguments NumPy's matmul would give them
# (``blas_row``), so the same numbers. Only for the BLAS that NumPy's wheels ship, scipy-openblas
# with 64-bit integers: there the names and argument types are known.

GEMM, GEMV = 0, 1
_ROW_MAJOR, _COL_MAJOR, _NO_TRANS, _TRANS = 101, 102, 111, 112  # the CBLAS enums
_BLAS_MAX = 2**63 - 2
_sgemm = _dgemm = _sgemv = _dgemv = None  # numba's handles on them, once ``blas_ready()``


def blas_ready() -> bool:
    """Whether compiled loops can call NumPy's BLAS (compiled loops on, and NumPy built on
    scipy-openblas with 64-bit integers); registers its gemm and gemv with numba the first time."""
    if not (_state["on"] or enabled()):
        return False
    if "blas" not in _state:
        with _lock:
            if "blas" not in _state:
                _state["blas"] = _register_blas()
    return _state["blas"]


def _register_blas() -> bool:
    global _sgemm, _dgemm, _sgemv, _dgemv
    try:
        import ctypes

        from llvmlite import binding
        from numba import types as nt
        from threadpoolctl import threadpool_info

        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        if blas.get("name") != "scipy-openblas" or "USE64BITINT" not in blas.get("openblas configuration", ""):
            return False
        paths = [lib["filepath"] for lib in threadpool_info()
                 if lib.get("internal_api") == "openblas" and "scipy_openblas64" in os.path.basename(lib["filepath"])
                 and "numpy" in lib["filepath"].replace("\\", "/").lower()]
        if len(paths) != 1:
            return False
        lib = ctypes.CDLL(paths[0])
        i32, i64, f32, f64, void = nt.int32, nt.int64, nt.float32, nt.float64, nt.void
        made = {}
        for p, real in (("s", f32), ("d", f64)):
            for name, sig in (("gemm", (i32, i32, i32, i64, i64, i64, real, i64, i64, i64, i64, real, i64, i64)),
                              ("gemv", (i32, i32, i64, i64, real, i64, i64, i64, i64, real, i64, i64))):
                symbol = f"nomagic_cblas_{p}{name}"
                found = getattr(lib, f"scipy_cblas_{p}{name}64_")
                binding.add_symbol(symbol, ctypes.cast(found, ctypes.c_void_p).value)
                made[p + name] = nt.ExternalFunction(symbol, void(*sig))
    except Exception:  # an older NumPy, another BLAS, no threadpoolctl: NumPy makes the calls
        return False
    _sgemm, _dgemm, _sgemv, _dgemv = made["sgemm"], made["dgemm"], made["sgemv"], made["dgemv"]
    return True


def _blasable(stride1: int, stride2: int, d2: int, size: int) -> bool:
    """NumPy's test for a 2-d operand BLAS can read as it is: unit steps along the second axis, and
    whole rows of at least ``d2`` elements along the first."""
    return stride2 == size and stride1 % size == 0 and d2 <= stride1 // size <= _BLAS_MAX


def blas_row(a: np.ndarray, b: np.ndarray, out: np.ndarray, x: np.ndarray | None = None) -> np.ndarray | None:
    """The one BLAS call ``np.matmul(a, b, out=out)`` makes, as a row for ``blas_products``, or None
    where NumPy would do more or other than one gemm or gemv call (a dimension of 1 or 0, operands
    it copies first, ``a @ a.T``, overlapping memory, mixed dtypes). An operand that is ``x`` or
    its transpose is written as address 0: ``blas_products`` reads it from its ``x`` at each call.

    Follows NumPy's matmul loop (numpy/_core/src/umath/matmul.c.src): a matrix product is one
    row-major gemm, of ``b.T @ a.T`` into ``out.T`` when ``out`` is column-major; a product with a
    vector is one gemv."""
    arrays = (a, b, out)
    dt = out.dtype
    if dt not in FLOATS or any(v.dtype != dt for v in arrays) or b.ndim != 2 and a.ndim != 2:
        return None
    if any(v.ndim not in (1, 2) for v in arrays) or any(v.size == 0 for v in arrays):
        return None
    if np.may_share_memory(a, out) or np.may_share_memory(b, out) or not all(v.flags.aligned for v in arrays):
        return None  # NumPy would copy or buffer
    size = dt.itemsize

    def address(v: np.ndarray) -> int:
        if x is not None and (v is x or v.base is x):
            return 0 if v.ctypes.data == x.ctypes.data else -1  # x itself or x.T; -1: another view of x
        return v.ctypes.data

    row = np.zeros(14, np.int64)
    row[13] = size
    if a.ndim == 2 and b.ndim == 2:
        (m, n), p = a.shape, b.shape[1]
        if out.shape != (m, p) or b.shape[0] != n or 1 in (m, n, p):
            return None
        (s1m, s1n), (s2n, s2p), (som, sop) = a.strides, b.strides, out.strides
        if not ((_blasable(s1m, s1n, n, size) or _blasable(s1n, s1m, m, size))
                and (_blasable(s2n, s2p, p, size) or _blasable(s2p, s2n, n, size))
                and (_blasable(som, sop, p, size) or _blasable(sop, som, m, size))):
            return None  # NumPy copies such an operand first
        pa, pb = address(a), address(b)
        if -1 in (pa, pb):
            return None
        if abs(som) < abs(sop):  # out is column-major: b.T @ a.T into out.T
            pa, pb, (s1m, s1n), (s2n, s2p), (som, sop), m, p = pb, pa, (s2p, s2n), (s1n, s1m), (sop, som), p, m
        if _blasable(s1m, s1n, n, size):
            trans_a, lda = _NO_TRANS, s1m // size
        else:
            trans_a, lda = _TRANS, s1n // size
        if _blasable(s2n, s2p, p, size):
            trans_b, ldb = _NO_TRANS, s2n // size
        else:
            trans_b, ldb = _TRANS, s2p // size
        if pa == pb and m == p and s1m == s2p and s1n == s2n and trans_a != trans_b:
            return None  # a @ a.T: NumPy calls syrk
        row[:13] = (GEMM, _ROW_MAJOR, trans_a, trans_b, m, p, n, pa, lda, pb, ldb, out.ctypes.data, som // size)
        return row
    if out.ndim != 1:
        return None
    if b.ndim == 1:  # matrix @ vector
        (m, n), (s1m, s1n), (vec, inc) = a.shape, a.strides, (b, b.strides[0])
        mat = a
    else:  # vector @ matrix: NumPy swaps the operands and reads b transposed
        (n, m), (s1n, s1m), (vec, inc) = b.shape, b.strides, (a, a.strides[0])
        mat = b
    if vec.shape[0] != n or out.shape[0] != m or 1 in (m, n) or inc != size:
        return None
    if _blasable(s1m, s1n, n, size):
        order, lda = _COL_MAJOR, s1m // size
    elif _blasable(s1n, s1m, m, size):
        order, lda = _ROW_MAJOR, s1n // size
    else:
        return None
    if out.strides[0] != size or -1 in (address(mat), address(vec)):
        return None
    row[:13] = (GEMV, order, _TRANS, 0, n, m, 0, address(mat), lda, address(vec), 1, out.ctypes.data, 1)
    return row


def blas_products(tape, first, last, x):  # tape rows first ... last − 1, each one BLAS call
    xp = np.int64(x.ctypes.data)
    for r in range(first, last):
        t = tape[r]
        pa = xp if t[7] == 0 else t[7]
        pb = xp if t[9] == 0 else t[9]
        if t[0] == 0 and t[13] == 4:
            _sgemm(np.int32(t[1]), np.int32(t[2]), np.int32(t[3]), t[4], t[5], t[6], np.float32(1.0), pa, t[8],
                   pb, t[10], np.float32(0.0), t[11], t[12])
        elif t[0] == 0:
            _dgemm(np.int32(t[1]), np.int32(t[2]), np.int32(t[3]), t[4], t[5], t[6], 1.0, pa, t[8], pb, t[10],
                   0.0, t[11], t[12])
        elif t[13] == 4:
            _sgemv(np.int32(t[1]), np.int32(t[2]), t[4], t[5], np.float32(1.0), pa, t[8], pb, t[10],
                   np.float32(0.0), t[11], t[12])
        else:
            _dgemv(np.int32(t[1]), np.int32(t[2]), t[4], t[5], 1.0, pa, t[8], pb, t[10], 0.0, t[11], t[12])
