"""The process runtime: messages, receive, timeouts, links, monitors, supervision, running."""

import asyncio
import gc
import tracemalloc

import pytest

from nomagic.errors import EngineError, InvalidInputError
from nomagic.runtime import (
    ANY,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    TIMEOUT,
    Child,
    Down,
    Pid,
    Runtime,
    Supervisor,
    TraceEvent,
    receive,
)


def collector(self, out):
    """Append every message it receives to `out`."""
    while True:
        out.append((yield receive()))


def relay(self, next_pid):
    token = yield ANY
    self.send(next_pid, token + 1)


# --- messages ------------------------------------------------------------------------------


def test_ping_pong():
    log = []

    def ping(self, peer, n):
        for i in range(n):
            self.send(peer, ("ping", i, self))
            kind, j = yield receive()
            log.append((kind, j))
        self.send(peer, ("stop", n, self))

    def pong(self):
        while True:
            kind, i, sender = yield receive()
            if kind == "stop":
                return
            self.send(sender, ("pong", i))

    rt = Runtime()
    b = rt.spawn(pong, name="pong")
    a = rt.spawn(ping, b, 5, name="ping")
    rt.run_until_idle()
    assert log == [("pong", i) for i in range(5)]
    assert not a.alive and not b.alive
    assert rt.process_count == 0


def test_chain_of_10000_processes_passes_a_token():
    rt, out = Runtime(), []
    pid = rt.spawn(collector, out)
    for _ in range(10_000):
        pid = rt.spawn(relay, pid)
    rt.run_until_idle()
    assert rt.process_count == 10_001  # all waiting, none on the run queue
    rt.send(pid, 0)
    rt.run_until_idle()
    assert out == [10_000]
    assert rt.process_count == 1


def test_bare_yield_receives_any_message():
    def proc(self, out):
        out.append((yield))

    rt, out = Runtime(), []
    pid = rt.spawn(proc, out)
    rt.send(pid, "x")
    rt.run_until_idle()
    assert out == ["x"]


def test_messages_to_an_exited_process_are_dropped():
    rt = Runtime()
    pid = rt.spawn(relay, None)
    rt.send(pid, "not a number")  # relay crashes on it... unwatched, so run raises
    with pytest.raises(EngineError, match="crashed"):
        rt.run_until_idle()
    assert not pid.alive
    rt.send(pid, 1)  # no error: dropped, as in Erlang
    rt.run_until_idle()


def test_messages_queue_up_in_order_while_a_process_is_busy():
    rt, out = Runtime(), []
    pid = rt.spawn(collector, out)
    for i in range(5):
        rt.send(pid, i)  # it has not run yet: all five queue up in its mailbox
    rt.run_until_idle()
    assert out == [0, 1, 2, 3, 4]
    rt.send(pid, 5)  # now it waits: handed over directly
    rt.run_until_idle()
    assert out == [0, 1, 2, 3, 4, 5]


# --- selective receive and timeouts ---------------------------------------------------------


def test_selective_receive_takes_the_first_match_and_keeps_the_rest_in_order():
    def picky(self, out):
        out.append((yield receive(lambda m: m[0] == "urgent")))
        out.append((yield receive(lambda m: m[0] == "urgent")))
        for _ in range(3):
            out.append((yield receive()))

    rt, out = Runtime(), []
    pid = rt.spawn(picky, out)
    for msg in [("a", 1), ("b", 2), ("urgent", 3), ("c", 4)]:
        rt.send(pid, msg)
    rt.run_until_idle()
    assert out == [("urgent", 3)]  # the second selective receive waits: nothing matches
    rt.send(pid, ("urgent", 5))  # matched on arrival, not queued behind the others
    rt.run_until_idle()
    assert out == [("urgent", 3), ("urgent", 5), ("a", 1), ("b", 2), ("c", 4)]


def test_receive_timeout_returns_TIMEOUT():
    def waiter(self, out):
        out.append((yield receive(timeout=0.02)))
        out.append((yield receive(timeout=0)))
        out.append((yield receive(lambda m: m == "never", timeout=0.01)))

    rt, out = Runtime(), []
    pid = rt.spawn(waiter, out)
    rt.send(pid, "other")  # does not match the last receive, stays queued
    rt.run_until_idle()
    assert out == ["other", TIMEOUT, TIMEOUT]


def test_a_message_before_the_timeout_cancels_it():
    def waiter(self, out):
        out.append((yield receive(timeout=0.05)))  # answered by `sender` below
        out.append((yield receive()))  # the first timer must not fire in here

    def sender(self, to):
        self.send(to, "hi")
        yield from ()

    rt, out = Runtime(), []
    pid = rt.spawn(waiter, out)
    rt.spawn(sender, pid)  # runs after waiter is waiting
    rt.run_until_idle(timeout=5)
    assert out == ["hi"]
    assert rt._timers == []  # the stale timer is gone, nothing left to fire


def test_bad_receive_arguments():
    with pytest.raises(InvalidInputError, match=">= 0"):
        receive(timeout=-1)
    with pytest.raises(InvalidInputError, match="seconds"):
        receive(timeout="1")
    with pytest.raises(InvalidInputError, match="predicate"):
        receive(match=3)
    assert receive() is ANY
    assert receive(timeout=float("inf")).timeout is None


# --- links and monitors --------------------------------------------------------------------


def test_monitor_delivers_down_with_the_exit_reason():
    def crasher(self):
        yield receive()
        raise ValueError("boom")

    def quitter(self):
        yield receive()

    def watcher(self, targets, out):
        for t in targets:
            self.monitor(t)
        for _ in targets:
            out.append((yield receive()))

    rt, out = Runtime(), []
    c, q = rt.spawn(crasher, name="c"), rt.spawn(quitter, name="q")
    rt.spawn(watcher, [c, q], out)
    rt.run_until_idle()
    rt.send(c, "go")
    rt.send(q, "go")
    rt.run_until_idle()  # the crash is watched: no error
    assert [d.pid for d in out] == [c, q]
    assert isinstance(out[0], Down) and isinstance(out[0].reason, ValueError)
    assert out[1].reason == NORMAL


def test_monitoring_an_exited_process_gives_noproc():
    def watcher(self, target, out):
        self.monitor(target)
        out.append((yield receive()))

    rt, out = Runtime(), []
    gone = rt.spawn(relay, None)
    rt.run_until_idle()
    rt.send(gone, 0)
    with pytest.raises(EngineError):  # relay sends to None: it crashes, unwatched
        rt.run_until_idle()
    rt.spawn(watcher, gone, out)
    rt.run_until_idle()
    assert out == [Down(gone, NOPROC)]


def test_a_crash_kills_linked_processes():
    def worker(self):
        yield receive()
        raise RuntimeError("worker failed")

    def partner(self, w):
        self.link(w)
        while True:
            yield receive()

    def watcher(self, target, out):
        self.monitor(target)
        out.append((yield receive()))

    rt, out = Runtime(), []
    w = rt.spawn(worker, name="worker")
    p = rt.spawn(partner, w, name="partner")
    rt.spawn(watcher, p, out)
    rt.run_until_idle()
    rt.send(w, "go")
    rt.run_until_idle()
    assert not w.alive and not p.alive
    (down,) = out
    assert down.pid is p and isinstance(down.reason, EngineError)
    assert "worker" in str(down.reason)


def test_an_unwatched_crash_stops_run_with_an_engine_error():
    def bad(self):
        yield receive()
        return 1 / 0

    rt = Runtime()
    pid = rt.spawn(bad, name="divider")
    rt.send(pid, "go")
    with pytest.raises(EngineError, match="divider.*ZeroDivisionError") as info:
        rt.run_until_idle()
    assert isinstance(info.value.__cause__, ZeroDivisionError)


# --- supervision ---------------------------------------------------------------------------


def accumulator(self, total, crash_on, out):
    """Sums numbers; "report" sends the sum to `out`. Snapshots every third number, and
    crashes (once) on receiving the number in `crash_on`."""
    seen = 0
    while True:
        msg = yield receive()
        if msg == "report":
            self.send(out, total)
            continue
        if crash_on and msg == crash_on[0]:
            crash_on.clear()
            raise RuntimeError(f"injected crash on {msg}")
        total += msg
        seen += 1
        if seen % 3 == 0:
            self.snapshot(total)


def run_accumulator(crash_on):
    rt, results = Runtime(), []
    sink = rt.spawn(collector, results)
    sup = Supervisor(rt, [Child(accumulator, 0, (crash_on, sink), name="acc")],
                     max_restarts=1)
    (acc,) = sup.children
    for i in range(1, 21):  # all queued before the child runs: the crash leaves a full mailbox
        rt.send(acc, i)
    rt.send(acc, "report")
    rt.run_until_idle()
    return results, sup.restarts(acc), acc


def test_supervisor_restarts_from_the_snapshot_and_nothing_is_lost():
    clean, restarts, _ = run_accumulator([])
    assert clean == [sum(range(1, 21))] and restarts == 0
    crashed, restarts, acc = run_accumulator([8])  # mid-work, two numbers after a snapshot
    assert restarts == 1
    assert crashed == clean
    assert acc.alive  # the same pid, restarted in place


def test_restart_keeps_the_pid_so_senders_and_monitors_do_not_notice():
    def fragile(self, crashes):
        while True:
            msg = yield receive()
            if msg == "crash" and crashes < 1:
                self.snapshot(crashes + 1)  # the state it restarts from: it crashed once
                raise RuntimeError("crash")
            if msg == "stop":
                return

    def watcher(self, target, out):
        self.monitor(target)
        out.append((yield receive()))

    rt, out = Runtime(), []
    sup = Supervisor(rt, [Child(fragile, 0, name="fragile")])
    (child,) = sup.children
    rt.spawn(watcher, child, out)
    rt.send(child, "crash")
    rt.run_until_idle()
    assert out == [] and child.alive and sup.restarts(child) == 1
    rt.send(child, "stop")
    rt.run_until_idle()
    assert out == [Down(child, NORMAL)]
    assert not sup.pid.alive  # its only child is done


def test_restart_limit_raises_engine_error_naming_the_child():
    def doomed(self, state):
        yield receive(timeout=0)
        raise RuntimeError("always fails")

    def steady(self, state):
        while True:
            yield receive()

    rt = Runtime()
    sup = Supervisor(rt, [Child(steady, name="steady"), Child(doomed, name="doomed")],
                     max_restarts=2, within=3600, name="sup")
    with pytest.raises(EngineError, match=r"child <pid \d+ 'doomed'> crashed 3 times") as info:
        rt.run_until_idle()
    assert "max_restarts=2" in str(info.value) and "always fails" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    steady_pid, doomed_pid = sup.children
    assert sup.restarts(doomed_pid) == 2
    rt.run_until_idle()  # the other child is shut down, quietly
    assert not steady_pid.alive and not doomed_pid.alive and not sup.pid.alive


def test_shutdown_reaches_monitors_of_children():
    def steady(self, state):
        while True:
            yield receive()

    def doomed(self, state):
        yield receive(timeout=0)
        raise RuntimeError("fails")

    def watcher(self, target, out):
        self.monitor(target)
        out.append((yield receive()))

    rt, out = Runtime(), []
    sup = Supervisor(rt, [Child(steady), Child(doomed)], max_restarts=0)
    rt.spawn(watcher, sup.children[0], out)
    with pytest.raises(EngineError, match="gave up"):
        rt.run_until_idle()
    rt.run_until_idle()
    assert out == [Down(sup.children[0], SHUTDOWN)]


def test_without_replay_the_crashing_message_is_lost_but_the_mailbox_is_kept():
    def child(self, state, out):
        while True:
            msg = yield receive()
            if msg == "boom":
                raise RuntimeError("boom")
            out.append(msg)

    rt, out = Runtime(), []
    sup = Supervisor(rt, [Child(child, None, (out,), replay=False)])
    for msg in ["a", "boom", "b", "c"]:
        rt.send(sup.children[0], msg)
    rt.run_until_idle()
    assert out == ["a", "b", "c"] and sup.restarts(sup.children[0]) == 1


def test_a_failing_match_crashes_the_receiver_not_the_sender():
    def picky(self):
        yield receive(lambda m: m["key"] == 1)

    def sender(self, to):
        self.send(to, "not a dict")
        yield receive(timeout=0)

    def watcher(self, target, out):
        self.monitor(target)
        out.append((yield receive()))

    rt, out = Runtime(), []
    p = rt.spawn(picky, name="picky")
    rt.spawn(watcher, p, out)
    rt.run_until_idle()  # picky now waits with its match
    s = rt.spawn(sender, p, name="sender")
    rt.run_until_idle()
    assert not s.alive and not p.alive
    assert out[0].pid is p and isinstance(out[0].reason, TypeError)


def test_supervisor_rejects_bad_specs():
    rt = Runtime()
    with pytest.raises(InvalidInputError, match="Child"):
        Supervisor(rt, [collector])
    with pytest.raises(InvalidInputError, match="max_restarts"):
        Supervisor(rt, [], max_restarts=-1)


# --- running -------------------------------------------------------------------------------


def test_deadlock_is_reported_with_the_blocked_processes():
    def asker(self, server):
        self.send(server, ("question", self))
        yield receive(lambda m: m[0] == "answer")

    def server(self):
        yield receive()  # takes the question and never answers
        while True:
            yield receive()

    rt = Runtime()
    s = rt.spawn(server, name="server")
    rt.spawn(asker, s, name="asker")
    with pytest.raises(EngineError, match="deadlock") as info:
        rt.run(until=lambda: False)
    text = str(info.value)
    assert "'asker'> waits for a message matching" in text
    assert "'server'> waits for any message" in text


def test_run_timeout_names_what_is_left():
    def busy(self):
        while True:
            self.send(self, "again")
            yield receive()

    rt = Runtime()
    rt.spawn(busy, name="busy")
    with pytest.raises(EngineError, match="timed out after 0.05s") as info:
        rt.run_until_idle(timeout=0.05)
    assert "1 processes ready to run (<pid 1 'busy'>)" in str(info.value)


def test_run_until_stops_when_the_condition_holds():
    rt, out = Runtime(), []
    pid = rt.spawn(collector, out)
    rt.send(pid, 1)
    rt.run(until=lambda: out == [1], timeout=10)
    assert out == [1]


def test_run_from_inside_a_process_is_refused():
    def nested(self):
        self.runtime.run_until_idle()
        yield receive()

    rt = Runtime()
    rt.spawn(nested, name="nested")
    with pytest.raises(EngineError, match="already running"):
        rt.run_until_idle()


def test_run_async_lets_the_event_loop_run():
    async def main():
        rt, out = Runtime(), []
        pid = rt.spawn(collector, out)
        for _ in range(20_000):
            pid = rt.spawn(relay, pid)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await rt.run_async()
        rt.send(pid, 0)
        await rt.run_async(until=lambda: out, timeout=30)
        task.cancel()
        return out, ticks

    out, ticks = asyncio.run(main())
    assert out == [20_000]
    assert ticks > 1  # 40,000 steps are run in batches, handing back to the loop between them


# --- tracing -------------------------------------------------------------------------------


def test_tracing_records_every_send():
    def ping(self, peer):
        self.send(peer, ("ping", self))
        yield receive()

    def pong(self):
        _, sender = yield receive()
        self.send(sender, ("pong", [1, 2, 3]))

    rt = Runtime(trace=True)
    b = rt.spawn(pong, name="pong")
    a = rt.spawn(ping, b, name="ping")
    rt.send(a, "extra")  # from outside
    rt.run_until_idle()
    log = rt.trace_log
    assert [e.seq for e in log] == [0, 1, 2]
    assert all(isinstance(e, TraceEvent) for e in log)
    assert [(e.sender.name, e.receiver, e.kind) for e in log] == [
        ("outside", a, "str"), ("ping", b, "ping"), ("pong", a, "pong")]
    assert "[1, 2, 3]" in log[2].summary
    assert log[0].time <= log[1].time <= log[2].time


def test_tracing_to_a_callable_and_off_by_default():
    events = []
    rt = Runtime(trace=events.append)
    rt.send(rt.spawn(collector, []), 42)
    rt.run_until_idle()
    assert [e.summary for e in events] == ["42"]

    quiet = Runtime()
    quiet.send(quiet.spawn(collector, []), 1)
    quiet.run_until_idle()
    assert quiet.trace_log == []


# --- bad input -----------------------------------------------------------------------------


def test_bad_input_raises_clear_errors():
    rt = Runtime()

    def not_a_generator(self):
        return 1

    with pytest.raises(InvalidInputError, match="not a generator function"):
        rt.spawn(not_a_generator)
    with pytest.raises(InvalidInputError, match="generator function"):
        rt.spawn(42)
    with pytest.raises(InvalidInputError, match="must be a Pid"):
        rt.send("someone", "hi")
    with pytest.raises(InvalidInputError, match="name"):
        rt.spawn(collector, [], name=7)
    with pytest.raises(InvalidInputError, match="timeout"):
        rt.run(timeout=-1)
    with pytest.raises(InvalidInputError, match="trace"):
        Runtime(trace="yes")


def test_a_process_that_yields_something_else_crashes_clearly():
    def confused(self):
        yield "hello"

    rt = Runtime()
    rt.spawn(confused, name="confused")
    with pytest.raises(EngineError, match="may only yield receive"):
        rt.run_until_idle()


def test_a_process_sending_to_a_non_pid_crashes_clearly():
    def sender(self):
        self.send(42, "hi")
        yield receive()

    rt = Runtime()
    rt.spawn(sender, name="sender")
    with pytest.raises(EngineError, match="'sender'.*must be a Pid"):
        rt.run_until_idle()


# --- memory --------------------------------------------------------------------------------


def neuron(self, weight, consumers):
    while True:
        x = yield ANY
        for c in consumers:
            self.send(c, x * weight)


def test_a_waiting_process_takes_less_than_1_kb():
    n = 200_000
    rt = Runtime()
    consumers = ()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pids = [rt.spawn(neuron, 0.5, consumers) for _ in range(n)]
        rt.run_until_idle()  # every one has started and waits for a message
        per_process = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert rt.process_count == n and len(pids) == n
    assert isinstance(pids[0], Pid)
    assert per_process < 1024, f"{per_process:.0f} bytes per process"
