"""The live trace: callbacks and bounded async streams of message events while training runs."""

from __future__ import annotations

import asyncio
import re
import tracemalloc

import numpy as np
import pytest

import nomagic as nm
from nomagic.engines.processes import EventStream, MessageEvent, ProcessNetwork
from nomagic.errors import InvalidInputError
from nomagic.runtime.core import Process, _TracedProcess

NET = nm.inputs(3) | nm.dense(4, activation="tanh") | nm.dense(2)
FIT = {"loss": "mse", "optimizer": nm.sgd(0.05), "epochs": 2, "batch_size": 4, "seed": 0, "dtype": "float64",
       "verbose": False}


def _data(n=12):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 2))


def test_callback_sees_every_message_in_order_with_values_while_fit_runs():
    X, Y = _data()
    events: list[MessageEvent] = []
    model = nm.fit(NET, X, Y, engine="processes", on_event=events.append, **FIT)
    quiet = nm.fit(NET, X, Y, engine="processes", **FIT)
    assert all(np.array_equal(model.params[k], quiet.params[k]) for k in quiet.params)  # listening changes nothing
    assert [e.seq for e in events] == list(range(len(events)))
    assert all(a.time <= b.time for a, b in zip(events, events[1:]))
    kinds = {e.kind for e in events}
    assert {"forward", "delta", "output", "ready", "commit", "begin batch", "inputs"} <= kinds
    forward = [e for e in events if e.kind == "forward" and e.sender.startswith("sensor")]
    assert len(forward) == 2 * 3 * 3 * 4  # epochs x batches x sensors x their consumers
    line = str(forward[0])
    assert re.match(r"^sensor inputs\[\d\] -> neuron dense_0\[\d\]: forward \[-?\d+\.\d\d, -?\d+\.\d\d, "
                    r"-?\d+\.\d\d, \.\.\.\]$", line), line
    assert any(e.kind == "delta" and e.receiver.startswith("neuron dense_0") for e in events)


def test_recorded_trace_lines_show_values():
    X, _ = _data(5)
    P = NET.init(seed=0, dtype="float64")
    pn = ProcessNetwork(NET, P, trace=True)
    try:
        pn.predict(X)
        lines = pn.trace_lines()
    finally:
        pn.close()
    col = X[:, 0]
    want = ", ".join(f"{v:.2f}" for v in col[:3])
    assert any(line.startswith("sensor inputs[0] -> neuron dense_0[0]: forward [" + want + ", ...]")
               for line in lines), lines[:5]


def test_no_listener_means_untraced_processes():
    pn = ProcessNetwork(NET, NET.init(seed=0))
    try:
        assert all(type(p) is Process for p in pn.rt._live)
        stop = pn.subscribe(lambda e: None)
        assert all(type(p) is _TracedProcess for p in pn.rt._live)
        stop()
        assert all(type(p) is Process for p in pn.rt._live)
        stream = pn.events(maxsize=10)
        assert all(type(p) is _TracedProcess for p in pn.rt._live)
        stream.close()
        assert all(type(p) is Process for p in pn.rt._live)
        pn.predict(np.zeros((2, 3)))
        assert pn.trace_events == []
    finally:
        pn.close()
    with pytest.raises(InvalidInputError, match="maxsize"):
        EventStream(1)
    with pytest.raises(InvalidInputError, match="on_event"):
        ProcessNetwork(NET, NET.init(seed=0), on_event="print")


def test_async_stream_follows_a_fit_in_order_and_a_slow_consumer_sees_drops_counted():
    X, Y = _data(40)
    maxsize = 64

    async def main():
        stream = EventStream(maxsize=maxsize)
        fit = asyncio.create_task(asyncio.to_thread(nm.fit, NET, X, Y, engine="processes", on_event=stream,
                                                    **{**FIT, "epochs": 3}))
        got, longest = [], 0
        async for ev in stream:  # a slow consumer: the network does not wait for it
            got.append(ev)
            longest = max(longest, len(stream))
            await asyncio.sleep(0.002)
        return await fit, stream, got, longest

    tracemalloc.start()
    try:
        model, stream, got, longest = asyncio.run(main())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert model.params and stream.closed
    assert longest <= maxsize
    markers = [e for e in got if e.kind == "dropped"]
    events = [e for e in got if e.kind != "dropped"]
    assert stream.dropped > 0 and markers and sum(m.count for m in markers) == stream.dropped
    assert str(markers[0]) == f"dropped {markers[0].count} events"
    last, gap = -1, 0
    for e in got:  # in order; each gap in the sequence is exactly what the marker before it counts
        if e.kind == "dropped":
            gap += e.count
        else:
            assert e.seq == last + 1 + gap, (e.seq, last, gap)
            last, gap = e.seq, 0
    assert len(events) + stream.dropped >= 3 * 10 * 40  # messages of 3 epochs of 10 batches, at least
    assert peak < 20e6


def test_stream_of_a_network_in_the_event_loop():
    X, _ = _data(5)
    P = NET.init(seed=0, dtype="float64")

    async def main():
        pn = ProcessNetwork(NET, P)
        stream = pn.events(maxsize=1000)
        got = []

        async def reader():
            async for ev in stream:
                got.append(ev)

        task = asyncio.create_task(reader())
        out = await pn.predict_async(X)
        pn.close()  # ends the stream
        await task
        return out, got, stream

    out, got, stream = asyncio.run(main())
    np.testing.assert_allclose(out, NET.predict(P, X), atol=1e-12)
    assert stream.dropped == 0 and [e.seq for e in got] == list(range(len(got)))
    assert sum(e.kind == "forward" for e in got) == 3 * 4 + 4 * 2


def test_drain_takes_what_is_queued_without_waiting():
    from nomagic.engines.processes import EventStream
    from nomagic.engines.processes.trace import MessageEvent

    s = EventStream(maxsize=3)
    for i in range(5):
        s.offer(lambda i=i: MessageEvent(i, 0.0, "a", "b", "forward", str(i), 1))
    got = s.drain()
    assert [e.seq for e in got] == [0, 1, 2] and s.dropped == 2 and s.delivered == 3 and len(s) == 0
    assert s.drain() == []
