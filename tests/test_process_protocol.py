"""The neuron as a state machine, driven by hand-written messages with no runtime at all: its
forward, backward and commit, checked against numbers computed here from the definitions."""

from __future__ import annotations

import numpy as np
import pytest

import nomagic as nm
from nomagic.engines.processes import neuron, protocol
from nomagic.engines.processes.context import Context
from nomagic.engines.processes.protocol import Begin, Commit, Delta, Forward, Ready
from nomagic.engines.processes.wiring import wiring_for


class Outbox:
    """What a transport gives a machine: it only records."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.snapshots: list = []

    def send(self, to, msg) -> None:
        self.sent.append((to, protocol.decode(msg)))

    def snapshot(self, state) -> None:
        self.snapshots.append(state)


def make(optimizer=None):
    """inputs(2) | dense(2, tanh) | dense(1, linear), addressed by strings: no processes."""
    net = nm.inputs(2) | nm.dense(2, activation="tanh") | nm.dense(1)
    P = net.init(seed=1, dtype="float64")
    w = wiring_for(net)
    ctx = Context(w, optimizer or nm.sgd(0.1), 0.0, 0.0, [])
    ctx.pids.extend(["s0", "s1", "h0", "h1", "o0"])  # g = 0..4
    ctx.actuator_pids.append("act")
    ctx.cortex = "cortex"
    ps = w.split(w.layout.flatten(P, np.float64))
    states = [(p.copy(), neuron.NO_SLOTS, 0, None) for p in ps]
    return net, P, ctx, states


def test_messages_are_named_tuples_with_their_tag_first():
    v = np.zeros(3)
    m = Forward(0, 1, 2, v)
    assert m == ("f", 0, 1, 2, v) and m.tag == "f" and m.slot == 2 and isinstance(m, tuple)
    assert protocol.decode(("d", 0, 1, 2, v)).__class__ is Delta
    assert protocol.decode(("ready", 0, 3, 1.0, 0.0, v)).__class__ is Ready
    with pytest.raises(TypeError, match="Commit takes 2 values"):
        Commit(0)
    for name in protocol.__all__:
        cls = getattr(protocol, name)
        if isinstance(cls, type):
            assert cls.__doc__ and "→" in cls.__doc__, name  # who sends it to whom


def test_hidden_neuron_forward_aggregates_activates_and_sends_to_each_consumer():
    net, P, ctx, states = make()
    rng = np.random.default_rng(0)
    x0, x1 = rng.normal(size=4), rng.normal(size=4)
    out = Outbox()
    g = 3  # dense_0[1]
    state = neuron.step(ctx, g, states[g - 2], Begin(0, 1, 4, False, False, 0), out)
    assert callable(state) and out.sent == []
    state = neuron.step(ctx, g, state, Forward(0, 0, 1, x1), out)  # slot 1 first: order does not matter
    assert out.sent == []
    state = neuron.step(ctx, g, state, Forward(0, 0, 0, x0), out)
    W, b = P["dense_0.weight"], P["dense_0.bias"]
    expected = np.tanh(x0 * W[0, 1] + x1 * W[1, 1] + b[1])
    assert len(out.sent) == 1
    to, msg = out.sent[0]
    assert to == "o0" and type(msg) is Forward and (msg.b, msg.t, msg.slot) == (0, 0, 1)  # h1 is o0's input 1
    np.testing.assert_allclose(msg.value, expected, rtol=0, atol=1e-15)
    assert type(state) is tuple and state[3] is None  # a prediction: idle again, snapshot taken
    assert out.snapshots[-1][3] is None


def test_output_neuron_backward_and_commit():
    net, P, ctx, states = make(nm.sgd(0.1))
    rng = np.random.default_rng(1)
    h0, h1, G = rng.normal(size=5), rng.normal(size=5), rng.normal(size=5)
    out = Outbox()
    g = 4  # dense_1[0], linear, feeds the actuator
    p0 = states[2][0].copy()
    state = neuron.step(ctx, g, states[2], Begin(7, 1, 5, True, False, 0), out)
    assert out.snapshots and np.array_equal(out.snapshots[-1][0], p0)  # restart point: a copy of p
    for slot, x in ((0, h0), (1, h1)):
        state = neuron.step(ctx, g, state, Forward(7, 0, slot, x), out)
    W, b = P["dense_1.weight"], P["dense_1.bias"]
    z = h0 * W[0, 0] + h1 * W[1, 0] + b[0]
    (to, msg), = out.sent
    assert to == "act" and msg.tag == "o" and msg.j == 0
    np.testing.assert_allclose(msg.z, z, atol=1e-15)
    np.testing.assert_allclose(msg.a, z, atol=1e-15)
    out.sent.clear()
    state = neuron.step(ctx, g, state, Forward(7, 0, 0, h0 + 1), out)  # a copy: ignored
    state = neuron.step(ctx, g, state, Delta(6, 0, 0, G), out)  # an earlier batch's: ignored
    assert out.sent == []
    state = neuron.step(ctx, g, state, Delta(7, 0, 0, G), out)  # the loss gradient (slot after consumers)
    deltas = {to: m for to, m in out.sent if m.tag == "d"}
    np.testing.assert_allclose(deltas["h0"].value, W[0, 0] * G, atol=1e-15)  # dz = G for a linear neuron
    np.testing.assert_allclose(deltas["h1"].value, W[1, 0] * G, atol=1e-15)
    assert deltas["h0"].slot == 0 and deltas["h1"].slot == 0
    ready = [m for to, m in out.sent if to == "cortex"][0]
    grad = np.array([h0 @ G, h1 @ G, G.sum()])
    assert type(ready) is Ready and ready.g == g
    np.testing.assert_allclose(ready.grad, grad, atol=1e-13)
    assert ready.norm2 == pytest.approx(grad @ grad, rel=1e-13)
    state = neuron.step(ctx, g, state, Commit(7, 0.5), out)  # clipped by half
    assert type(state) is tuple
    p, slots, steps, batch = state
    assert steps == 1 and batch is None
    np.testing.assert_allclose(p, p0 - 0.1 * 0.5 * grad, atol=1e-14)
    assert out.snapshots[-1][0] is p  # restarts from the updated p, not the batch's start


def test_restart_from_the_batch_snapshot_recomputes_the_same_messages():
    net, P, ctx, states = make(nm.adam(1e-2))
    ps = [(s[0], {k: np.zeros_like(s[0]) for k in ("m", "v")}, 0, None) for s in states]
    rng = np.random.default_rng(2)
    msgs = [Begin(0, 1, 3, True, False, 0), Forward(0, 0, 0, rng.normal(size=3)),
            Forward(0, 0, 1, rng.normal(size=3)), Delta(0, 0, 0, rng.normal(size=3))]
    first = Outbox()
    state = ps[2]
    for m in msgs:
        state = neuron.step(ctx, 4, state, m, first)
    replay = Outbox()
    state2 = neuron.restart(ctx, 4, first.snapshots[0], replay)  # crashed after the Delta
    for m in msgs[1:]:
        state2 = neuron.step(ctx, 4, state2, m, replay)
    assert len(replay.sent) == len(first.sent)
    for (a, ma), (b, mb) in zip(first.sent, replay.sent):
        assert a == b and ma.tag == mb.tag
        assert all(np.array_equal(x, y) for x, y in zip(ma, mb) if isinstance(x, np.ndarray))
