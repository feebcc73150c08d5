"""Traces of the messages of a network: the recorded trace, and a bounded live stream.

The recorded trace (``trace=True``) keeps every message as a ``TraceEvent``. The live stream
hands ``MessageEvent``\\s to callbacks (``on_event=fn``, ``subscribe(fn)``) and to bounded async
streams (``events(maxsize=...)``), which drop what a slow consumer has no room for and count it.
When nobody records or listens the runtime sends untraced: tracing then costs nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from itertools import count
from typing import Any, NamedTuple

import numpy as np

from ...errors import InvalidInputError
from ...runtime import TraceEvent
from .protocol import KIND_NAMES, tag_of
from .wiring import Wiring


class MessageEvent(NamedTuple):
    """One message of the live stream: who sent what to whom, with a few of its values.

    ``kind`` is in words ("forward", "delta", ...); a stream that dropped events says so with an
    event of kind "dropped" whose ``count`` is how many were dropped there.
    """

    seq: int
    time: float  # seconds since the network was made
    sender: str
    receiver: str
    kind: str
    values: str
    count: int = 1

    def __str__(self) -> str:
        if self.kind == "dropped":
            return f"dropped {self.count} events"
        return f"{self.sender} -> {self.receiver}: {self.kind} {self.values}".rstrip()


def _vector(x: np.ndarray, k: int = 3) -> str:
    flat = x.reshape(-1)
    head = ", ".join(f"{float(v):.2f}" for v in flat[:k])
    return f"[{head}, ...]" if flat.size > k else f"[{head}]"


def summarize(msg: Any) -> str:
    """A message's values, short: the first few of its vector ("[0.31, -0.20, ...]"), or its fields."""
    if not isinstance(msg, tuple):
        return repr(msg)[:60]
    parts = []
    for v in msg[1:]:
        if isinstance(v, np.ndarray):
            parts.append(_vector(v))
        elif isinstance(v, (float, np.floating)):
            parts.append(f"{float(v):.4g}")
        elif isinstance(v, (int, str, type(None), np.integer)):
            parts.append(str(v))
        elif isinstance(v, dict):
            parts.append("{" + ", ".join(v) + "}")
        else:
            parts.append(type(v).__name__)
    tag = msg[0] if msg and type(msg[0]) is str else None
    if tag in ("f", "d", "pz", "pd") and len(parts) == 4:  # batch, step, slot: the vector says most
        return parts[3]
    if tag == "o" and len(parts) == 5:
        return f"z {parts[3]} a {parts[4]}"
    return " ".join(parts)


def pname(pid: Any, wiring: Wiring | None = None, pids: list | None = None) -> str:
    """A process's name for traces: its own, or "neuron <name>" for a (nameless) neuron."""
    if pid.name:
        return pid.name
    if wiring is not None and pids is not None and len(pids) > wiring.n_sensors:
        # neurons are spawned one after the other: their ids are consecutive (checked when
        # spawned); this still works once the processes have exited (after close())
        g = wiring.n_sensors + pid.id - pids[wiring.n_sensors].id
        if wiring.n_sensors <= g < len(pids) and pids[g] is pid:
            return f"neuron {wiring.name(g)}"
    return f"pid {pid.id}"


def format_event(e: TraceEvent, wiring: Wiring | None = None, pids: list | None = None) -> str:
    """One message as a readable line: "sensor x0 -> neuron h1[0]: forward [0.31, -0.20, ...]"."""
    return (f"{pname(e.sender, wiring, pids)} -> {pname(e.receiver, wiring, pids)}: "
            f"{KIND_NAMES.get(e.kind, e.kind)} {e.summary}")


class EventStream:
    """A bounded live stream of ``MessageEvent``\\s: ``async for event in stream``.

    Never blocks the network and never buffers more than ``maxsize`` events: when the consumer
    is slow the newest events are dropped, counted in ``dropped``, and a "dropped" event marks
    the gap in the stream. ``close()`` ends it (after what is queued); so does closing the network.
    Made by ``pn.events(maxsize)``, or made first and given as ``on_event`` (to ``nm.fit`` say,
    running in a thread while the event loop reads the stream).
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 2:
            raise InvalidInputError(f"EventStream: maxsize must be an int >= 2; got {maxsize!r}")
        self.maxsize = maxsize
        self.dropped = 0
        self.delivered = 0
        self.closed = False
        self._pending = 0  # dropped since the last marker
        self._queue: deque = deque()
        self._waiter: tuple | None = None
        self._unsubscribe: Callable[[EventStream], None] = lambda s: None

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, make: Callable[[], MessageEvent]) -> None:
        """Called for each message: queue it if there is room, else count it dropped."""
        q = self._queue
        if len(q) >= self.maxsize - (self._pending > 0):
            self.dropped += 1
            self._pending += 1
            return
        if self._pending:
            q.append(self._marker())
        q.append(make())
        self._wake()

    def _marker(self) -> MessageEvent:
        n, self._pending = self._pending, 0
        return MessageEvent(-1, 0.0, "", "", "dropped", f"{n} events", n)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            loop, fut = w
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # the loop has closed
                pass

    def drain(self) -> list[MessageEvent]:
        """Every event queued now, without waiting (for a reader in the thread that also runs the
        network: it never needs to await)."""
        q = self._queue
        out = [q.popleft() for _ in range(len(q))]
        self.delivered += len(out)
        return out

    def close(self) -> None:
        """End the stream: no more events come in; what is queued is still delivered."""
        if not self.closed:
            self.closed = True
            self._unsubscribe(self)
            if self._pending:
                self._queue.append(self._marker())
            self._wake()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> MessageEvent:
        while True:
            if self._queue:
                ev = self._queue.popleft()
                self.delivered += 1
                return ev
            if self.closed:
                raise StopAsyncIteration
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            self._waiter = (loop, fut)
            # re-checked at least every 50 ms: events pushed from another thread never get lost
            await asyncio.wait({fut}, timeout=0.05)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class _Callback:
    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[MessageEvent], Any]) -> None:
        self.fn = fn

    def offer(self, make: Callable[[], MessageEvent]) -> None:
        self.fn(make())


class Tracer:
    """The runtime's trace hook for one network: records, and hands events to subscribers."""

    def __init__(self, rt, wiring: Wiring, pids: list, record: bool) -> None:
        self.rt, self.wiring, self.pids = rt, wiring, pids
        self.record = record
        self.log: list[TraceEvent] = []
        self.subscribers: list = []
        self._seq = count()
        self._t0 = time.monotonic()
        self._update()

    def _update(self) -> None:
        self.rt.set_trace(self if self.record or self.subscribers else None)

    def subscribe(self, fn: Callable[[MessageEvent], Any] | EventStream) -> Callable[[], None]:
        if isinstance(fn, EventStream):
            sub: Any = fn
            fn._unsubscribe = self.unsubscribe
        elif callable(fn):
            sub = _Callback(fn)
        else:
            raise InvalidInputError(f"subscribe: expected a callable taking a MessageEvent, or an EventStream; "
                                    f"got {fn!r}")
        self.subscribers.append(sub)
        self._update()
        return lambda: self.unsubscribe(sub)

    def stream(self, maxsize: int) -> EventStream:
        s = EventStream(maxsize)
        self.subscribe(s)
        return s

    def unsubscribe(self, sub: Any) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)
            self._update()

    def close(self) -> None:
        for s in list(self.subscribers):
            if isinstance(s, EventStream):
                s.close()

    def __call__(self, sender: Any, to: Any, msg: Any) -> None:
        seq = next(self._seq)
        t = time.monotonic() - self._t0
        kind = tag_of(msg)
        if self.record:
            self.log.append(TraceEvent(seq, t, sender, to, kind, summarize(msg)))
        if self.subscribers:
            made: list = []

            def make() -> MessageEvent:
                if not made:
                    w, pids = self.wiring, self.pids
                    made.append(MessageEvent(seq, t, pname(sender, w, pids), pname(to, w, pids),
                                             KIND_NAMES.get(kind, kind), summarize(msg)))
                return made[0]

            for sub in self.subscribers:
                sub.offer(make)
