"""Lightweight processes in the style of Erlang/OTP: the ground the ``processes`` engine stands on.

A process is a plain generator. It runs until it ``yield``\\s a :class:`Receive`; the value of
that ``yield`` is the message it receives. Its first argument, ``self``, is its own
:class:`Process` (which is also its :class:`Pid`)::

    def echo(self):
        while True:
            sender, text = yield receive()
            self.send(sender, text)

    rt = Runtime()
    pid = rt.spawn(echo)
    rt.send(pid, (some_pid, "hello"))
    rt.run_until_idle()

How it is fast and small (CPython 3.11 on a 2-core VM: 0.35 µs per message hop along a chain,
about 450 bytes per waiting process, a million processes spawned in about 3 s):

* one small object per process: a :class:`Process` holds its generator, mailbox and state in
  ``__slots__``; it is its own Pid, so sending needs no lookup;
* one run queue (a ``deque``) of processes that can run; a process waiting for a message is on
  no queue at all and costs nothing until a message arrives;
* a message sent to a process that waits for any message is handed over directly, without
  touching a mailbox; a mailbox (a ``deque``) exists only while messages queue up in it;
* tracing, when asked for, is a different ``send`` chosen when the runtime is made, so the
  ordinary ``send`` carries no check for it.

Exit reasons are :data:`NORMAL` (the generator returned), :data:`SHUTDOWN` (stopped by its
supervisor), :data:`NOPROC` (monitored a process that was already gone) or the exception that
ended the process. A crash nobody watches (no link, monitor or supervisor) stops
:meth:`Runtime.run` with an :class:`~nomagic.errors.EngineError`: errors are never silent.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import reprlib
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import count
from types import FunctionType, GeneratorType
from typing import Any, NamedTuple

from ..errors import EngineError, InvalidInputError

__all__ = [
    "ANY", "NOPROC", "NORMAL", "SHUTDOWN", "TIMEOUT", "Child", "Down", "Pid", "Process",
    "Receive", "Runtime", "Supervisor", "TraceEvent", "receive",
]

_CO_GENERATOR = 0x20  # inspect.CO_GENERATOR
_BATCH = 1000  # resumptions between two looks at the clock, the timers and `until`
_SLICE = 100  # messages a process may take from its mailbox before others get a turn


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str):
        self._name = name

    def __repr__(self) -> str:
        return self._name


TIMEOUT = _Sentinel("TIMEOUT")
"""What ``yield receive(timeout=...)`` returns when no matching message came in time."""

NORMAL = "normal"
SHUTDOWN = "shutdown"
NOPROC = "noproc"

_PARKED = _Sentinel("PARKED")  # _receive: the process now waits
_HELD = _Sentinel("HELD")  # crashed; its mailbox is kept until its supervisor restarts it
_DEAD = _Sentinel("DEAD")  # gone; messages sent to it are dropped, as in Erlang
_START = _Sentinel("START")  # the value a process is first resumed with: not a message


# --- what a process yields -----------------------------------------------------------------


class Receive:
    """What a process waits for: ``msg = yield Receive(match, timeout)``.

    ``match``: a predicate; the first message in the mailbox for which it is true is taken, the
    others stay in order (selective receive). ``None`` takes the oldest message.
    ``timeout``: seconds to wait at most (``0``: only look at the mailbox); when it passes,
    the ``yield`` returns :data:`TIMEOUT`. ``None`` waits for ever.
    """

    __slots__ = ("match", "timeout")

    def __init__(self, match: Callable[[Any], bool] | None = None,
                 timeout: float | None = None):
        if match is not None and not callable(match):
            raise InvalidInputError(f"receive: match must be a predicate or None; got {match!r}")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise InvalidInputError(f"receive: timeout must be seconds or None; got "
                                        f"{timeout!r}")
            if not timeout >= 0:  # also NaN
                raise InvalidInputError(f"receive: timeout must be >= 0; got {timeout}")
            if math.isinf(timeout):
                timeout = None
        self.match = match
        self.timeout = timeout

    def describe(self) -> str:
        """What is waited for, in words (used in deadlock and timeout errors)."""
        what = "any message" if self.match is None else \
            f"a message matching {getattr(self.match, '__qualname__', repr(self.match))}"
        return what if self.timeout is None else f"{what} (timeout {self.timeout}s)"

    def __repr__(self) -> str:
        return f"Receive({self.describe()})"


ANY = Receive()
"""Wait for the next message, whatever it is, for ever: the fast, common receive."""


def receive(match: Callable[[Any], bool] | None = None, timeout: float | None = None) -> Receive:
    """``msg = yield receive(match, timeout)``: see :class:`Receive`. ``msg = yield`` is short
    for ``msg = yield receive()``."""
    return ANY if match is None and timeout is None else Receive(match, timeout)


class Down(NamedTuple):
    """The message a monitor receives when the monitored process exits."""

    pid: Pid
    reason: Any  # NORMAL, SHUTDOWN, NOPROC or an exception


# --- processes -----------------------------------------------------------------------------


class Pid:
    """A process identifier: what messages are sent to.

    Opaque; pids compare by identity. ``id`` is unique within its runtime, ``name`` is a free
    label shown in traces and errors. A process *is* its Pid (see :class:`Process`): the
    runtime keeps each process's state in the slots of this one small object.
    """

    __slots__ = ("id", "name", "_rt", "_gen", "_box", "_wait", "_value", "_timer", "_links",
                 "_monitors", "_sup")

    def __init__(self, rt: Runtime, id: int, name: str | None):
        self.id = id
        self.name = name
        self._rt = rt
        self._gen: Generator | None = None
        self._box: deque | None = None  # waiting messages; None while there are none
        self._wait: Any = None  # None: runnable/running; a Receive: waiting; _HELD; _DEAD
        self._value: Any = _START  # what the process is resumed with next
        self._timer: tuple | None = None  # the live entry in the runtime's timer heap
        self._links: set[Pid] | None = None
        self._monitors: list[Pid] | None = None  # who gets Down when this one exits
        self._sup: _ChildRecord | None = None

    @property
    def alive(self) -> bool:
        """False once the process has exited (a crashed child awaiting restart is alive)."""
        return self._wait is not _DEAD

    def __repr__(self) -> str:
        return f"<pid {self.id} {self.name!r}>" if self.name else f"<pid {self.id}>"


class Process(Pid):
    """A process as seen from inside: the ``self`` its generator function receives.

    It is the process's own Pid (Erlang's ``self()``), and has the calls a process makes:
    ``send``, ``spawn``, ``link``, ``monitor``, ``snapshot``.
    """

    __slots__ = ()

    def send(self, to: Pid, msg: Any) -> None:
        """Put ``msg`` in the mailbox of ``to`` (never blocks; dropped if ``to`` is gone)."""
        try:
            wait = to._wait
        except AttributeError:
            raise InvalidInputError(f"send: the receiver must be a Pid; got {to!r}") from None
        if wait is ANY:  # it waits for any message: hand this one over
            to._wait = None
            to._value = msg
            self._rt._run.append(to)
        elif wait is None:  # running or about to run: queue it
            box = to._box
            if box is None:
                to._box = deque((msg,))
            else:
                box.append(msg)
        else:
            self._rt._deliver(to, wait, msg)

    def spawn(self, fn: Callable[..., Generator], *args: Any, name: str | None = None) -> Pid:
        """Start a new process, like :meth:`Runtime.spawn`."""
        return self._rt.spawn(fn, *args, name=name)

    def link(self, other: Pid) -> None:
        """Tie this process's life to ``other``'s: when one exits with a reason other than
        NORMAL, the other exits too. Links are both ways; linking a gone process raises."""
        _check_pid(other, "link")
        if other._wait is _DEAD:
            raise EngineError(f"{self} cannot link to {other}: it has exited")
        if other is self:
            return
        for a, b in ((self, other), (other, self)):
            if a._links is None:
                a._links = set()
            a._links.add(b)

    def unlink(self, other: Pid) -> None:
        """Undo :meth:`link` (no error if there was no link)."""
        _check_pid(other, "unlink")
        for a, b in ((self, other), (other, self)):
            if a._links is not None:
                a._links.discard(b)

    def monitor(self, other: Pid) -> None:
        """Receive ``Down(other, reason)`` once ``other`` exits (at once, with reason NOPROC,
        if it is already gone). Each call adds one monitor, so one Down."""
        _check_pid(other, "monitor")
        if other._wait is _DEAD:
            self._rt._outside.send(self, Down(other, NOPROC))
        elif other._monitors is None:
            other._monitors = [self]
        else:
            other._monitors.append(self)

    def demonitor(self, other: Pid) -> None:
        """Remove one monitor this process holds on ``other`` (no error if there is none)."""
        _check_pid(other, "demonitor")
        if other._monitors is not None and self in other._monitors:
            other._monitors.remove(self)

    def snapshot(self, state: Any) -> None:
        """Record the state this process restarts from if it crashes, and forget the messages
        received so far (a restart replays only those received after the last snapshot).

        Does nothing in a process without a supervisor. Pass a value that is not mutated
        afterwards (a tuple, a copy).
        """
        record = self._sup
        if record is not None:
            record.state = state
            if record.journal is not None:
                record.journal.clear()

    @property
    def runtime(self) -> Runtime:
        """The runtime this process runs in."""
        return self._rt


class _TracedProcess(Process):
    """A Process whose sends are recorded: the class a tracing runtime spawns."""

    __slots__ = ()

    def send(self, to: Pid, msg: Any) -> None:
        Process.send(self, to, msg)
        self._rt._record(self, to, msg)


def _check_pid(pid: Any, what: str) -> None:
    if not isinstance(pid, Pid):
        raise InvalidInputError(f"{what}: expected a Pid; got {pid!r}")


class _Kill(Exception):
    """Raised inside a process that received an exit signal (see ``Runtime._kill``)."""

    def __init__(self, reason: Any):
        super().__init__(reason)
        self.reason = reason


def _dying(reason: Any) -> Generator:
    """The generator a killed process runs the next time it is scheduled: it only exits."""
    raise _Kill(reason)
    yield  # unreachable; makes this a generator


# --- tracing -------------------------------------------------------------------------------


class TraceEvent(NamedTuple):
    """One traced send. ``sender`` is ``<pid 0 'outside'>`` for :meth:`Runtime.send`."""

    seq: int
    time: float  # seconds since the runtime was made
    sender: Pid
    receiver: Pid
    kind: str  # the first item of a tuple message when it is a str, else the type's name
    summary: str  # a short repr; arrays appear as their dtype and shape


class _Summary(reprlib.Repr):
    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxtuple, self.maxlist, self.maxstring, self.maxother = 3, 6, 6, 40, 40

    def repr_ndarray(self, x: Any, level: int) -> str:
        return f"array({x.dtype}, shape={x.shape})"


_summarize = _Summary().repr


def _kind(msg: Any) -> str:
    if type(msg) is tuple and msg and type(msg[0]) is str:
        return msg[0]
    return type(msg).__name__


# --- the scheduler -------------------------------------------------------------------------


class Runtime:
    """A scheduler of processes: spawn them, send them messages, run them.

    ``trace``: ``True`` records every send as a :class:`TraceEvent` in ``trace_log``; a
    callable is called with each event instead (to stream them). Off by default, and then free.

    A runtime and its processes live in one thread; a Pid belongs to the runtime that made it.
    """

    def __init__(self, *, trace: bool | Callable[[TraceEvent], Any] = False):
        self._run: deque[Process] = deque()  # runnable processes, in order
        self._timers: list[tuple[float, int, Process]] = []  # heap of receive deadlines
        self._timer_seq = count()
        self._live: set[Process] = set()  # every process not yet exited
        self._ids = count(1)
        self._running = False
        self.trace_log: list[TraceEvent] = []
        self._hook: Callable[[Pid, Pid, Any], Any] | None = None
        self._cls: type[Process] = Process
        if trace is True or callable(trace):
            self._trace_sink = self.trace_log.append if trace is True else trace
            self._trace_seq = count()
            self._t0 = time.monotonic()
            self._hook = self._event
            self._cls = _TracedProcess
        elif not (trace is False or trace is None):
            raise InvalidInputError(f"trace must be True, False or a callable; got {trace!r}")
        # the sender of messages sent from outside any process; it receives nothing
        self._outside = self._cls(self, 0, "outside")
        self._outside._wait = _DEAD

    def set_trace(self, hook: Callable[[Pid, Pid, Any], Any] | None) -> None:
        """From now on call ``hook(sender, receiver, msg)`` at every send (replacing ``trace``);
        ``None`` turns tracing off. Every live process switches class, so that sends stay free of
        any check when nobody listens. A process that cached its bound ``send`` keeps the old one."""
        if hook is not None and not callable(hook):
            raise InvalidInputError(f"set_trace: hook must be a callable or None; got {hook!r}")
        self._hook = hook
        cls = Process if hook is None else _TracedProcess
        if cls is not self._cls:
            self._cls = cls
            self._outside.__class__ = cls
            for p in self._live:
                p.__class__ = cls

    # -- starting and talking to processes --

    def spawn(self, fn: Callable[..., Generator], *args: Any, name: str | None = None) -> Pid:
        """Start a process running ``fn(self, *args)``, a generator function; it runs when the
        runtime next runs. Returns its Pid."""
        if name is not None and not isinstance(name, str):
            raise InvalidInputError(f"spawn: name must be a str or None; got {name!r}")
        p = self._cls(self, next(self._ids), name)
        p._gen = _start(fn, p, args)
        self._live.add(p)
        self._run.append(p)
        return p

    def send(self, to: Pid, msg: Any) -> None:
        """Send ``msg`` to ``to`` from outside any process."""
        self._outside.send(to, msg)

    @property
    def process_count(self) -> int:
        """How many processes have been spawned and have not exited."""
        return len(self._live)

    def __repr__(self) -> str:
        return f"<Runtime: {len(self._live)} processes, {len(self._run)} ready to run>"

    # -- running --

    def run(self, until: Callable[[], bool] | None = None, timeout: float | None = None) -> None:
        """Run processes until ``until()`` is true, or, without ``until``, until none can run
        and no receive timeout is pending.

        ``until`` is checked before every batch of a thousand steps, so it may become true a
        little before run returns.
        Raises EngineError if the system goes idle while ``until()`` is still false (a
        deadlock) or ``timeout`` seconds pass, naming the processes still waiting and what
        for; and if a process crashes with nobody watching it.
        """
        driver = self._drive(until, timeout)
        try:
            for pause in driver:
                if pause > 0:
                    time.sleep(pause)
        finally:
            driver.close()

    def run_until_idle(self, timeout: float | None = None) -> None:
        """Run until no process can run and no receive timeout is pending."""
        self.run(None, timeout)

    async def run_async(self, until: Callable[[], bool] | None = None,
                        timeout: float | None = None) -> None:
        """:meth:`run` for asyncio code: it hands control back to the event loop after every
        batch of a thousand steps (about a millisecond) and while it waits for a receive
        timeout. Other tasks may :meth:`send` meanwhile."""
        driver = self._drive(until, timeout)
        try:
            for pause in driver:
                await asyncio.sleep(pause)
        finally:
            driver.close()

    def _drive(self, until: Callable[[], bool] | None, timeout: float | None) -> Iterator[float]:
        """The run loop, as a generator of pauses: 0 after each batch of steps, or how long to
        sleep until the next receive timeout is due."""
        if until is not None and not callable(until):
            raise InvalidInputError(f"run: until must be a callable or None; got {until!r}")
        if timeout is not None and (isinstance(timeout, bool) or
                                    not isinstance(timeout, (int, float)) or not timeout >= 0):
            raise InvalidInputError(f"run: timeout must be seconds >= 0 or None; got {timeout!r}")
        if self._running:
            raise EngineError("the runtime is already running (run() called from inside a "
                              "process, or twice at once)")
        deadline = None if timeout is None else time.monotonic() + timeout
        timers = self._timers
        self._running = True
        try:
            while until is None or not until():
                now = time.monotonic()
                if timers:
                    self._fire_timers(now)
                if not self._run and not timers:
                    if until is None:
                        return
                    raise EngineError("deadlock: no process can run and no receive timeout is "
                                      "pending, but until() is still false; "
                                      + self._waiting_report())
                if deadline is not None and now >= deadline:
                    ready = ", ".join(map(repr, list(self._run)[:5])) + \
                        (", ..." if len(self._run) > 5 else "")
                    raise EngineError(f"run timed out after {timeout}s with "
                                      f"{len(self._run)} processes ready to run ({ready}); "
                                      + self._waiting_report())
                if self._run:
                    self._step(_BATCH)
                    yield 0.0
                else:  # only receive timeouts are left: sleep until the first is due
                    due = timers[0][0] if deadline is None else min(timers[0][0], deadline)
                    yield max(due - now, 0.0)
        finally:
            self._running = False

    def _step(self, budget: int) -> None:
        """Resume up to ``budget`` processes from the run queue (the scheduler's inner loop)."""
        run = self._run
        popleft = run.popleft
        for _ in range(budget):
            try:
                p = popleft()
            except IndexError:
                return
            value = p._value
            p._value = None
            gen = p._gen
            record = p._sup
            if record is None or not record.spec.replay:
                journal = None
                if value is _START:
                    value = None
            else:  # a supervised child notes each message it takes, to replay them after a crash
                journal = record.journal
                if value is _START:
                    value = None
                    if journal is None:  # made at its first message: a child that waits costs
                        journal = _LazyJournal(record)  # no list (a million neurons: 56 MB)
                elif value is not TIMEOUT:
                    if journal is None:
                        journal = record.journal = []
                    journal.append(value)
            try:
                cmd = gen.send(value)
                takes = _SLICE
                while True:  # keep it running while its mailbox has what it asks for
                    if cmd is ANY:
                        box = p._box
                        if box is None:
                            p._wait = ANY  # parked: on no queue until a message comes
                            if journal is not None and not journal:  # (a _LazyJournal is true)
                                record.journal = None  # emptied by a snapshot: drop the list
                            break
                        value = box.popleft()
                        if not box:
                            p._box = None
                    else:
                        value = self._receive(p, cmd)
                        if value is _PARKED:
                            break
                    takes -= 1
                    if not takes:  # its time slice is used up: back of the queue
                        p._value = value
                        run.append(p)
                        break
                    if journal is not None and value is not TIMEOUT:
                        journal.append(value)
                    cmd = gen.send(value)
            except StopIteration:
                if p._links is None and p._monitors is None and p._sup is None:
                    p._wait = _DEAD  # the common, quiet end
                    p._gen = p._box = None
                    self._live.discard(p)
                else:
                    self._exit(p, NORMAL)
            except _Kill as kill:
                self._exit(p, kill.reason)
            except Exception as exc:
                try:
                    gen.close()  # still suspended if the scheduler raised (a bad yield)
                except Exception:
                    pass  # it has failed already, with exc
                self._exit(p, exc)

    def _receive(self, p: Process, r: Any) -> Any:
        """Any receive but a plain ANY: the message taken, TIMEOUT, or _PARKED."""
        if type(r) is not Receive:
            if r is not None:
                raise InvalidInputError(f"process {p} yielded {r!r}; a process may only yield "
                                        "receive(...) (or nothing, to receive any message)")
            r = ANY
        box, match, timeout = p._box, r.match, r.timeout
        if box is not None:
            if match is None:
                msg = box.popleft()
                if not box:
                    p._box = None
                return msg
            for i, msg in enumerate(box):
                if match(msg):
                    del box[i]
                    if not box:
                        p._box = None
                    return msg
        if timeout is None:
            p._wait = ANY if match is None else r
        elif timeout == 0:
            return TIMEOUT
        else:
            p._wait = r
            p._timer = entry = (time.monotonic() + timeout, next(self._timer_seq), p)
            heapq.heappush(self._timers, entry)
        return _PARKED

    def _deliver(self, to: Pid, wait: Any, msg: Any) -> None:
        """``send`` to a process that is neither runnable nor waiting for any message."""
        if wait is _DEAD:
            return
        if wait is not _HELD:  # a Receive with a match or a timeout
            match = wait.match
            try:
                ok = match is None or match(msg)
            except Exception as exc:  # the receiver's predicate failed: the receiver crashes
                ok = False
                self._kill(to, exc)
            if ok:
                to._wait = to._timer = None
                to._value = msg
                self._run.append(to)
                return
        box = to._box
        if box is None:
            to._box = deque((msg,))
        else:
            box.append(msg)

    def _fire_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            p = entry[2]
            if p._timer is entry:  # still waiting in that receive
                p._timer = p._wait = None
                p._value = TIMEOUT
                self._run.append(p)
        while timers and timers[0][2]._timer is not timers[0]:  # drop stale ones on top
            heapq.heappop(timers)

    # -- exits, links, supervision --

    def _exit(self, p: Process, reason: Any) -> None:
        """``p`` has stopped with ``reason``: tell its supervisor, links and monitors."""
        p._gen = p._timer = None
        record = p._sup
        if record is not None:
            if reason is not NORMAL:  # keep the mailbox; the supervisor restarts it in place
                p._wait = _HELD
                p.send(record.supervisor, Down(p, reason))
                return
            p._sup = None
            p.send(record.supervisor, Down(p, NORMAL))
        p._wait = _DEAD
        p._box = None
        self._live.discard(p)
        watched = False
        links, p._links = p._links, None
        if links:
            watched = True
            for q in links:
                q._links.discard(p)
                if reason is not NORMAL:
                    why = reason if isinstance(reason, str) else EngineError(
                        f"{q} exited because its linked process {p} crashed: {reason!r}")
                    self._kill(q, why)
        monitors, p._monitors = p._monitors, None
        if monitors:
            watched = True
            for w in monitors:
                p.send(w, Down(p, reason))
        if not watched and isinstance(reason, BaseException):
            if isinstance(reason, EngineError):
                raise reason
            raise EngineError(f"process {p} crashed: {reason!r}") from reason

    def _kill(self, p: Pid, reason: Any) -> None:
        """An exit signal: ``p`` exits with ``reason`` when it is next scheduled."""
        if p._wait is _DEAD or (p._wait is _HELD and p._sup is not None):
            return  # gone already, or crashed and about to be restarted anyway
        if p._gen is not None:
            try:
                p._gen.close()  # runs its `finally` blocks now
            except Exception as exc:
                reason = exc
        p._gen = _dying(reason)
        p._value = _START
        if p._wait is not None:  # waiting or held: make it runnable
            p._wait = p._timer = None
            self._run.append(p)

    def _spawn_child(self, record: _ChildRecord) -> Pid:
        p = self._cls(self, next(self._ids), record.spec.name)
        p._sup = record
        p._gen = _start_child(p, record)
        self._live.add(p)
        self._run.append(p)
        return p

    def _spawn_children(self, spec: Child, records: list[_ChildRecord]) -> list[Pid]:
        """``_spawn_child`` for many children of one spec: the spec's function is checked once
        (a million neurons start by one loop)."""
        fn = spec.fn
        if not records or type(fn) is not FunctionType or not fn.__code__.co_flags & _CO_GENERATOR:
            return [self._spawn_child(record) for record in records]  # checked (and refused) one by one
        cls, ids, name, args = self._cls, self._ids, spec.name, spec.args
        live, run = self._live, self._run
        children = []
        for record in records:
            p = cls(self, next(ids), name)
            p._sup = record
            p._gen = fn(p, record.state, *args)  # a generator function's call: a generator
            live.add(p)
            run.append(p)
            children.append(p)
        return children

    def _restart(self, p: Process) -> None:
        """Start a held (crashed) child again in place, from its snapshot, replaying the
        messages it received since then ahead of those still in its mailbox."""
        record = p._sup
        if p._wait is not _HELD or record is None:
            return
        replay, record.journal = record.journal, None
        if replay:
            if p._box:
                replay.extend(p._box)
            p._box = deque(replay)
        p._gen = _start_child(p, record)
        p._value = _START
        p._wait = None
        self._run.append(p)

    # -- reporting --

    def _waiting_report(self, limit: int = 10) -> str:
        """The processes that wait (those with queued messages first) and what for."""
        waiting = [p for p in self._live if p._wait is not None]
        if not waiting:
            return "no process is waiting"
        shown = heapq.nsmallest(limit, waiting, key=lambda p: (-len(p._box or ()), p.id))
        lines = []
        for p in shown:
            what = "crashed, waiting to be restarted" if p._wait is _HELD else \
                f"waits for {p._wait.describe()}"
            queued = len(p._box or ())
            lines.append(f"  {p} {what}" + (f" ({queued} other messages queued)" if queued
                                              else ""))
        more = len(waiting) - len(shown)
        return (f"{len(waiting)} processes are waiting:\n" + "\n".join(lines)
                + (f"\n  ... and {more} more" if more else ""))

    def _record(self, sender: Pid, to: Pid, msg: Any) -> None:
        hook = self._hook
        if hook is not None:
            hook(sender, to, msg)

    def _event(self, sender: Pid, to: Pid, msg: Any) -> None:
        self._trace_sink(TraceEvent(next(self._trace_seq), time.monotonic() - self._t0,
                                    sender, to, _kind(msg), _summarize(msg)))


def _start(fn: Any, p: Process, args: tuple) -> Generator:
    """``fn(p, *args)``, checked to be a generator (before the call, for a plain function)."""
    try:
        plain = not fn.__code__.co_flags & _CO_GENERATOR
    except AttributeError:  # a partial or other callable: judged by what it returns
        plain = not callable(fn)
    if plain:
        what = "not a generator function" if callable(fn) else "not callable"
        raise InvalidInputError(f"spawn: {getattr(fn, '__qualname__', repr(fn))} is {what}; a "
                                "process is a generator function, with `yield receive()` in it")
    gen = fn(p, *args)
    if type(gen) is not GeneratorType:
        raise InvalidInputError(f"spawn: {fn!r} returned {type(gen).__name__}, not a generator; "
                                "a process is a generator function, with `yield receive()` in it")
    return gen


# --- supervision ---------------------------------------------------------------------------


class Child(NamedTuple):
    """How a supervisor starts a child: ``fn(self, state, *args)``, a generator function.

    ``state`` is what the first incarnation gets; after a crash the child restarts from the
    state it last passed to ``self.snapshot(state)``. With ``replay`` (the default) the messages
    it received since that snapshot are put back at the head of its mailbox, so the work it
    was doing is done again; a message that crashes it every time then uses up its restarts.
    """

    fn: Callable[..., Generator]
    state: Any = None
    args: tuple = ()
    name: str | None = None
    replay: bool = True


class _ChildRecord:
    __slots__ = ("spec", "state", "journal", "crashes", "restarts", "supervisor")

    def __init__(self, spec: Child, supervisor: Process, state: Any):
        self.spec = spec
        self.state = state
        self.journal: list | None = None  # messages received since the last snapshot
        self.crashes: deque[float] | None = None  # when it crashed (monotonic seconds); made
        # at the first crash, so that a million children that never crash stay small
        self.restarts = 0
        self.supervisor = supervisor


class _LazyJournal:
    """A supervised child's journal until its first message: makes the list then."""

    __slots__ = ("record",)

    def __init__(self, record: _ChildRecord):
        self.record = record

    def append(self, msg: Any) -> None:
        journal = self.record.journal
        if journal is None:
            journal = self.record.journal = []
        journal.append(msg)


def _start_child(p: Process, record: _ChildRecord) -> Generator:
    spec = record.spec
    return _start(spec.fn, p, (record.state, *spec.args))


def _is_down(msg: Any) -> bool:
    return type(msg) is Down


class Supervisor:
    """A one-for-one supervisor: a process that restarts each crashed child on its own.

    ``states``: children all made from the one spec ``children``, child k first starting from
    ``states[k]`` (a million neurons then share one spec).

    A child is restarted *in place*: same Pid, same mailbox, links and monitors, so senders
    never notice. It starts again from its last snapshot, and the messages it received since
    that snapshot are put back at the head of its mailbox, so a crash loses nothing. A child
    that crashes more than ``max_restarts`` times (within ``within`` seconds, if given) makes
    the supervisor give up: it shuts the other children down and exits with an EngineError
    naming that child. A child that returns is not restarted; the supervisor exits once all
    children have.

    ``pid`` is the supervisor's Pid; ``children`` the children's Pids, in the order given.
    """

    def __init__(self, runtime: Runtime, children: Iterable[Child] | Child, *, max_restarts: int = 3,
                 within: float | None = None, name: str = "supervisor", states: Iterable | None = None):
        if states is not None:  # one spec for many children, each from its own state: a spec less each
            if not isinstance(children, Child):
                raise InvalidInputError(f"Supervisor: with states, children must be one Child spec; got {children!r}")
            template, specs = children, []
        else:
            specs = list(children)
        for spec in specs:
            if not isinstance(spec, Child):
                raise InvalidInputError(f"Supervisor: children must be Child specs; got {spec!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or \
                max_restarts < 0:
            raise InvalidInputError(f"Supervisor: max_restarts must be an int >= 0; got "
                                    f"{max_restarts!r}")
        if within is not None and (isinstance(within, bool) or
                                   not isinstance(within, (int, float)) or not within > 0):
            raise InvalidInputError(f"Supervisor: within must be seconds > 0 or None; got "
                                    f"{within!r}")
        self.max_restarts = max_restarts
        self.within = within
        self.pid = runtime.spawn(self._supervise, name=name)
        if states is not None:
            self._records = [_ChildRecord(template, self.pid, state) for state in states]
            self.children: list[Pid] = runtime._spawn_children(template, self._records)
        else:
            self._records = [_ChildRecord(spec, self.pid, spec.state) for spec in specs]
            self.children = [runtime._spawn_child(record) for record in self._records]

    def restarts(self, child: Pid) -> int:
        """How many times ``child`` has been restarted so far."""
        return self._records[self.children.index(child)].restarts

    def _supervise(self, me: Process) -> Generator:
        rt = me.runtime
        running = len(self._records)
        try:
            while running:
                down = yield receive(_is_down)
                child, reason = down.pid, down.reason
                if reason is NORMAL:
                    running -= 1
                    continue
                record = child._sup
                now = time.monotonic()
                if record.crashes is None:
                    record.crashes = deque()
                record.crashes.append(now)
                if self.within is not None:
                    while record.crashes[0] < now - self.within:
                        record.crashes.popleft()
                if len(record.crashes) > self.max_restarts:
                    window = "" if self.within is None else f" within {self.within}s"
                    raise EngineError(
                        f"supervisor {me} gave up: child {child} crashed "
                        f"{len(record.crashes)} times{window} (max_restarts="
                        f"{self.max_restarts}); last error: {reason!r}") from \
                        (reason if isinstance(reason, BaseException) else None)
                record.restarts += 1
                rt._restart(child)
        finally:  # giving up, or killed: the children go too
            for child in self.children:
                if child._wait is not _DEAD:
                    child._sup = None
                    rt._kill(child, SHUTDOWN)
