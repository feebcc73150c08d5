"""A second core for the tensor engine: a partner process that runs part of each training step.

Why a process. NumPy lets go of the GIL inside its calls, so a second thread could run half of a
step; but handing work to a thread (a lock or an event, then the GIL back) costs about 50 µs on a
2-core virtual machine — more than a whole matrix product of a batch of 32. Two processes that
spin on a flag in shared memory hand over in about 1 µs, and each runs NumPy on its own core.

What it runs is decided by the caller (``fused._DenseStep``): a *program*, a list of NumPy calls
on arrays that live in shared memory (``Arena``), with waits between them for the main process
to say how far it has got. The partner makes the very same calls on the very same arrays as the
serial step, so the numbers are identical, bit for bit.

The board (a few int64 and float64 slots in shared memory) carries the protocol:

  GO     the step the main process asks for (with PROG, the program, and T and LR, the
         optimizer's step number and learning rate)
  SIG    STRIDE·step + k: the main process has passed its k-th mark in that step
  ABORTED  a step the main process gave up (an exception): the partner skips what is left of it
  PASSED STRIDE·step + k: the partner has passed its k-th "passed" operation in that step
  DONE   the last step the partner finished; ERROR set when it failed (the reason on its pipe)
  STATE  SPINNING, or ASLEEP: after IDLE seconds without a step the partner blocks on its pipe,
         and the main process wakes it with a message
  MAIL   how many messages the main process has written to the partner's pipe

Every wait is bounded: the main process gives up after WAIT_LIMIT seconds or as soon as the
partner has died, with an ``EngineError``; the partner leaves when its parent does. The flags
rely on x86-64's order of stores (a store is seen after the stores before it), and the arenas on
Linux's /dev/shm: elsewhere ``available()`` is False and every step runs on one core.
"""

from __future__ import annotations

import atexit
import mmap
import os
import pickle
import platform
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from ...errors import EngineError

GO, PROG, SIG, DONE, STATE, MAIL, ERROR, PASSED, ABORTED = range(9)
T, LR = 0, 1
SPINNING, ASLEEP = 1, 2
STRIDE = 1 << 12
ABORT = STRIDE - 1
IDLE = 0.005  # seconds the partner spins without a step before it sleeps
WAIT_LIMIT = 60.0  # seconds the main process waits for a step before it gives up
START_LIMIT = 60.0  # seconds for the partner to start, or to answer a message
ALIGN = 64
RELAUNCHES = 3  # partners launched again after one broke, before a process gives up on them


def available() -> bool:
    """Whether this machine can run a partner: Linux on x86-64 with /dev/shm and /proc, two cores or more
    for this process, and ``NOMAGIC_PARTNER`` not set to 0."""
    if os.environ.get("NOMAGIC_PARTNER", "1") == "0":
        return False
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return (cores >= 2 and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)
            and os.path.isdir(f"/proc/{os.getpid()}/fd"))


# -- shared memory ------------------------------------------------------------------------------


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class Arena:
    """A block of shared memory cut into arrays, each aligned to 64 bytes. ``ref`` describes an
    array (or any view of one) so that the partner can rebuild it.

    The memory is a file in /dev/shm, removed as soon as it is made: nothing is left behind,
    however this process ends. The partner opens it through this process's open descriptor
    (``path``, under /proc), which is closed once the partner has it (``unlink``)."""

    _count = 0

    def __init__(self, nbytes: int) -> None:
        size = max(nbytes, ALIGN)
        fd, name = tempfile.mkstemp(prefix="nomagic-", dir="/dev/shm")
        os.unlink(name)
        try:  # the space is reserved now: a full /dev/shm fails here, not later with SIGBUS
            os.posix_fallocate(fd, 0, size)
            self._map = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self.path = f"/proc/{os.getpid()}/fd/{fd}"
        self._close = weakref.finalize(self, os.close, fd)
        Arena._count += 1
        self.key = f"{os.getpid()}-{Arena._count}"
        self.size = size
        self.bytes = np.frombuffer(self._map, np.uint8)
        self._base = self.bytes.__array_interface__["data"][0]
        self.used = 0

    @staticmethod
    def nbytes(shapes: list[tuple[tuple, np.dtype]]) -> int:
        """The size of an arena that holds arrays of these shapes and dtypes."""
        return sum(_aligned(int(np.prod(s, dtype=np.int64)) * np.dtype(d).itemsize) for s, d in shapes)

    def empty(self, shape, dtype) -> np.ndarray:
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        start = self.used
        if start + n > self.size:
            raise MemoryError(f"arena of {self.size} bytes is full")
        self.used = start + _aligned(n)
        return self.bytes[start:start + n].view(dtype).reshape(shape)

    def ref(self, a: np.ndarray) -> tuple:
        """(arena key, byte offset, shape, strides, dtype) of ``a``, a view into this arena."""
        offset = a.__array_interface__["data"][0] - self._base
        if not 0 <= offset < self.size:
            raise ValueError("the array is not in this arena")
        return (self.key, offset, a.shape, a.strides, a.dtype.str)

    def unlink(self) -> None:
        """Close the descriptor the partner opened the memory by; the memory lives on while it
        is mapped (here, and in the partner)."""
        self._close()


def _view(maps: dict, ref: tuple) -> np.ndarray:
    key, offset, shape, strides, dtype = ref
    return np.ndarray(shape, np.dtype(dtype), buffer=maps[key], offset=offset, strides=strides)


# -- the pipe: length-prefixed pickles ------------------------------------------------------------


def _send(fd: int, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    data = struct.pack("<Q", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int, deadline: float | None = None):
    (n,) = struct.unpack("<Q", _read_exact(fd, 8, deadline))
    return pickle.loads(_read_exact(fd, n, deadline))


# -- the main process's side ------------------------------------------------------------------------


class Partner:
    """The handle on one partner process (get this process's from ``partner()``). Making it
    starts the process and returns at once; the process imports NumPy meanwhile: use it once
    ``ready()``. One thread at a time runs steps on it (``lock``)."""

    def __init__(self) -> None:
        self.board = Arena(4096)
        self.ints = self.board.empty((16,), np.int64)
        self.floats = self.board.empty((16,), np.float64)
        self.ints[...] = 0
        self.floats[...] = 0.0
        self.lock = threading.Lock()
        self.broken: str | None = None
        self._ready = False
        self._step = 0
        self._programs = 0
        self._pending: list = []  # messages from finalizers, sent at the next safe moment
        root = str(Path(__file__).resolve().parents[3])  # the folder that holds nomagic
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nomagic.engines.tensor.partner", self.board.path, str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            close_fds=True)
        self._to, self._from = self.proc.stdin.fileno(), self.proc.stdout.fileno()

    # setting up

    def ready(self, wait: float = 0.0) -> bool:
        """True once the partner has started (waits up to ``wait`` seconds for it)."""
        if self._ready or self.broken:
            return self._ready and not self.broken
        if self.proc.poll() is not None:
            self._break("exited while starting")
            return False
        if not select.select([self._from], [], [], wait)[0]:
            return False
        try:
            reply = _receive(self._from, time.monotonic() + START_LIMIT)
        except (EOFError, TimeoutError, OSError, pickle.UnpicklingError):
            self._break("did not start")
            return False
        self._ready = reply == ("ready",)
        self.board.unlink()  # mapped on both sides now
        if not self._ready:
            self._break(f"answered {reply!r} when starting")
        return self._ready

    def _mail(self, message) -> None:
        self._flush()
        _send(self._to, message)
        self.ints[MAIL] += 1

    def _flush(self) -> None:
        while self._pending:
            _send(self._to, self._pending.pop(0))
            self.ints[MAIL] += 1

    def _ask(self, message):
        """Send a message and wait for the partner's answer."""
        try:
            self._mail(message)
            reply = _receive(self._from, time.monotonic() + START_LIMIT)
        except (EOFError, TimeoutError, OSError, pickle.UnpicklingError) as exc:
            self._break(f"did not answer ({type(exc).__name__})")
            raise EngineError(f"the tensor engine's partner process {self.broken}") from None
        if reply[0] != "ok":
            raise EngineError(f"the tensor engine's partner process refused: {reply[1]}")
        return reply[1]

    def attach(self, arena: Arena) -> None:
        """Map ``arena`` in the partner too; its file is removed afterwards."""
        self._ask(("attach", arena.key, arena.path, arena.size))
        arena.unlink()

    def register(self, program: list, optimizer) -> int:
        """Send a program (see ``serve``) and the optimizer its "step" operations run; returns its
        number for ``begin``."""
        self._programs += 1
        self._ask(("program", self._programs, program, optimizer))
        return self._programs

    def forget(self, programs: list[int], arenas: list[str]) -> None:
        """Drop programs and unmap arenas in the partner. Safe from a finalizer: the message is
        queued and sent when no step runs."""
        if self.broken or not self._ready:
            return
        self._pending.append(("forget", list(programs), list(arenas)))
        if self.lock.acquire(blocking=False):
            try:
                self._flush()
            except OSError:
                pass
            finally:
                self.lock.release()

    # a step

    @property
    def steps(self) -> int:
        """The steps begun on this partner."""
        return self._step

    def begin(self, program: int) -> int:
        """Start a step of ``program``; returns the step's number. Hold ``lock``."""
        self._flush()
        self._step += 1
        ints = self.ints
        ints[PROG] = program
        ints[GO] = self._step
        if ints[STATE] == ASLEEP:
            self._wake()
        return self._step

    def signal(self, step: int, mark: int, t: int | None = None, lr: float | None = None) -> None:
        """Mark that this process has passed ``mark`` in ``step``; with ``t`` and ``lr``: what
        the partner's optimizer updates after that mark use."""
        if t is not None:
            self.floats[T], self.floats[LR] = float(t), float(lr)
        self.ints[SIG] = step * STRIDE + mark

    def passed(self, step: int, mark: int) -> None:
        """Wait (bounded) until the partner has passed its ``mark`` (a "passed" operation)."""
        self._wait(PASSED, step * STRIDE + mark)

    def abort(self, step: int) -> None:
        """Give up a step: the partner skips its remaining operations; waits for it to stop."""
        self.ints[ABORTED] = step
        self.ints[SIG] = step * STRIDE + ABORT  # lets a wait of that step end
        try:
            self.finish(step)
        except EngineError:
            pass

    def finish(self, step: int) -> None:
        """Wait (bounded) until the partner has finished ``step``."""
        self._wait(DONE, step)

    def _wait(self, slot: int, value: int) -> None:
        ints, spins, woke = self.ints, 0, False
        t0 = None
        while ints[slot] < value and not ints[ERROR]:
            spins += 1
            if spins & 1023:
                continue
            if t0 is None:
                t0 = time.monotonic()
            if self.proc.poll() is not None:
                self._break(f"died (exit code {self.proc.returncode}) during a step")
            elif not woke and ints[STATE] == ASLEEP:
                self._wake()
                woke = True
            elif time.monotonic() - t0 > WAIT_LIMIT:
                self._break(f"did not finish a step within {WAIT_LIMIT:.0f} s")
            if self.broken:
                raise EngineError(f"the tensor engine's partner process {self.broken}; this step's "
                                  "update may be incomplete")
        if ints[ERROR]:
            deadline = time.monotonic() + WAIT_LIMIT
            while ints[DONE] < self._step and self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.0001)  # it has given the step up: wait for it to say so
            ints[ERROR] = 0
            try:
                reason = _receive(self._from, time.monotonic() + START_LIMIT)
            except (EOFError, TimeoutError, OSError, pickle.UnpicklingError):
                reason = "an error it could not report"
            raise EngineError(f"the tensor engine's partner process failed: {reason}")

    def _wake(self) -> None:
        try:
            self._mail(("wake",))
        except OSError:
            self._break("closed its pipe")

    def _break(self, why: str) -> None:
        self.broken = self.broken or why
        self.close()

    def close(self) -> None:
        """Stop the partner (it also stops by itself when this process ends). Steps begun on it
        afterwards are refused (``broken``): their Trainers run on one core."""
        self.broken = self.broken or "was closed"
        if self.proc.poll() is None:
            try:
                self._pending.clear()
                self._mail(("quit",))
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.board.unlink()


_shared: dict = {"partner": None}
_shared_lock = threading.Lock()


def partner() -> Partner | None:
    """This process's partner, launched on the first call, and again after one broke, up to
    RELAUNCHES times (None where ``available()`` is False). It may not be ``ready()`` yet."""
    with _shared_lock:
        p = _shared["partner"]
        if p is not None and p.broken:
            _shared["broken"] = _shared.get("broken", 0) + 1
            p = _shared["partner"] = None
            if _shared["broken"] > RELAUNCHES:
                _shared["off"] = True
        if p is None:
            if _shared.get("off") or not available():
                return None
            try:
                p = _shared["partner"] = Partner()
            except OSError:
                return None
            if not _shared.get("atexit"):
                atexit.register(shutdown)
                _shared["atexit"] = True
        return p


def shutdown() -> None:
    """Stop this process's partner, if one runs (the next ``partner()`` launches a new one)."""
    with _shared_lock:
        p, _shared["partner"] = _shared["partner"], None
    if p is not None:
        p.close()


# -- the partner's side ----------------------------------------------------------------------------


def _make_ops(maps: dict, program: list, optimizer, floats: np.ndarray) -> list:
    """The program as a list of ("wait", mark) and callables. Operations:
    ("wait", k)                      wait for the main process's mark k
    ("matmul", a, b, out)            np.matmul(a, b, out=out)
    ("passed", k)                    tell the main process that the partner has passed mark k
    ("step", p, g, {slot: s}, tmp)   optimizer.apply_(t, p, g, slots, tmp, lr=lr), in place
    (a, b, out, p, ... are ``Arena.ref`` tuples)"""
    ops: list = []
    for op in program:
        kind = op[0]
        if kind == "wait":
            ops.append(int(op[1]))
        elif kind == "passed":
            ops.append(("passed", int(op[1])))
        elif kind == "matmul":
            a, b, out = (_view(maps, r) for r in op[1:])
            ops.append(lambda t, lr, a=a, b=b, out=out: np.matmul(a, b, out=out))
        elif kind == "step":
            p, g, tmp = _view(maps, op[1]), _view(maps, op[2]), _view(maps, op[4])
            slots = {k: _view(maps, r) for k, r in op[3].items()}
            optimizer.prepare(p.dtype)  # its compiled update made now, not in a step
            ops.append(lambda t, lr, p=p, g=g, s=slots, tmp=tmp: optimizer.apply_(t, p, g, s, tmp, lr=lr))
        else:
            raise ValueError(f"unknown operation {kind!r}")
    return ops


def _alive(ppid: int) -> bool:
    return os.getppid() == ppid


def serve(board_path: str, ppid: int) -> None:
    """The partner's loop: spin for steps, sleep when idle, leave with its parent."""
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    if os.environ.get("NOMAGIC_PARTNER_CPU"):
        os.sched_setaffinity(0, {int(os.environ["NOMAGIC_PARTNER_CPU"])})
    maps: dict = {}
    with open(board_path, "r+b") as f:
        board = mmap.mmap(f.fileno(), 4096)
    ints = np.ndarray((16,), np.int64, buffer=board, offset=0)
    floats = np.ndarray((16,), np.float64, buffer=board, offset=ALIGN * 2)
    programs: dict = {}
    done, mail = int(ints[DONE]), 0
    ints[STATE] = SPINNING
    _send(fd_out, ("ready",))

    def handle(message) -> bool:
        kind = message[0]
        try:
            if kind == "attach":
                _, key, path, size = message
                with open(path, "r+b") as f:
                    maps[key] = mmap.mmap(f.fileno(), size)
                _send(fd_out, ("ok", None))
            elif kind == "program":
                _, number, program, optimizer = message
                programs[number] = _make_ops(maps, program, optimizer, floats)
                _send(fd_out, ("ok", None))
            elif kind == "forget":
                for number in message[1]:
                    programs.pop(number, None)
                for key in message[2]:
                    maps.pop(key, None)  # unmapped once no view is left
            elif kind == "quit":
                return False
        except Exception as exc:  # answered, and the partner carries on
            if kind in ("attach", "program"):
                _send(fd_out, ("error", f"{type(exc).__name__}: {exc}"))
        return True

    def run(step: int) -> None:
        base = step * STRIDE
        t, lr = 0, 0.0
        try:
            for op in programs[int(ints[PROG])]:
                if op.__class__ is tuple:
                    ints[PASSED] = base + op[1]
                elif op.__class__ is int:
                    spins, since = 0, time.monotonic()
                    while ints[SIG] < base + op:
                        spins += 1
                        if spins & 0xFFFFF:
                            continue
                        if not _alive(ppid):
                            raise SystemExit(0)
                        if time.monotonic() - since > WAIT_LIMIT:  # the main process is stuck
                            raise TimeoutError(f"no mark {op} in step {step} for {WAIT_LIMIT:.0f} s")
                    if ints[ABORTED] == step:
                        return
                    t, lr = int(floats[T]), float(floats[LR])  # as the main process set them for this mark
                else:
                    op(t, lr)
        except Exception as exc:
            ints[ERROR] = 1
            _send(fd_out, f"{type(exc).__name__}: {exc}")

    rest = False  # a Trainer has closed: sleep at once rather than spin
    while True:
        spins, since = 0, time.monotonic()
        while ints[GO] == done and ints[MAIL] <= mail:
            spins += 1
            if spins & 0x3FFF and not rest:
                continue
            if rest or time.monotonic() - since > IDLE:  # asleep until a message comes
                rest = False
                ints[STATE] = ASLEEP
                while ints[GO] == done and ints[MAIL] <= mail:  # checked again once asleep
                    if select.select([fd_in], [], [], 1.0)[0] or not _alive(ppid):
                        break
                if not _alive(ppid):
                    return
                ints[STATE] = SPINNING
                break
        if ints[MAIL] > mail:
            try:
                message = _receive(fd_in, time.monotonic() + START_LIMIT)
            except (EOFError, TimeoutError, OSError):
                return
            mail += 1
            if not handle(message):
                return
            rest = message[0] == "forget"
            continue
        if ints[GO] != done:
            step = int(ints[GO])
            run(step)
            done = step
            ints[DONE] = step


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
