"""Memory that stays flat: every role snapshots, and nothing a snapshot made unnecessary is kept
(journals are truncated at each snapshot), so serving and training do not grow with the batches."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

import nomagic as nm
from nomagic.engines.processes import ProcessNetwork

NET = nm.inputs(4) | nm.dense(3, activation="tanh") | nm.dense(2)
KB = 1024


def _journals(pn) -> list[int]:
    """How many messages each supervised process of the network keeps for replay."""
    procs = pn.ctx.pids + pn.ctx.actuator_pids + [pn.cortex]
    return [len(p._sup.journal or ()) for p in procs]


def test_serving_2000_batches_keeps_memory_flat():
    rng = np.random.default_rng(0)
    P = NET.init(seed=0, dtype="float64")
    batches = [rng.normal(size=(64, 4)) for _ in range(8)]
    pn = ProcessNetwork(NET, P)
    try:
        for i in range(100):  # warm-up
            pn.predict(batches[i % 8])
        gc.collect()
        tracemalloc.start()
        try:
            m0 = tracemalloc.get_traced_memory()[0]
            for i in range(2000):
                pn.predict(batches[i % 8])
            gc.collect()
            m1 = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert (m1 - m0) / 2000 < KB, f"{(m1 - m0) / 2000:.0f} bytes per batch"
        assert max(_journals(pn)) == 0  # a prediction keeps nothing to replay
        np.testing.assert_allclose(pn.predict(batches[0]), NET.predict(P, batches[0]), atol=1e-12)
    finally:
        pn.close()


def test_training_50_epochs_keeps_memory_flat():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(64, 4)), rng.normal(size=(64, 2))
    samples: list[int] = []

    def probe(event) -> None:  # at the start of every batch, the traced memory
        if event.kind == "begin batch" and event.receiver == "neuron dense_0[0]":
            samples.append(tracemalloc.get_traced_memory()[0])

    tracemalloc.start()
    try:
        nm.fit(NET, X, Y, engine="processes", optimizer=nm.adam(1e-2), epochs=50, batch_size=16, seed=0,
               dtype="float64", verbose=False, on_event=probe)
    finally:
        tracemalloc.stop()
    assert len(samples) == 50 * 4
    warm = samples[20:]
    growth = (warm[-1] - warm[0]) / (len(warm) - 1)
    assert growth < KB, f"{growth:.0f} bytes per batch"


def test_journals_are_truncated_after_training_batches():
    rng = np.random.default_rng(2)
    from nomagic.model.losses import get_loss

    pn = ProcessNetwork(NET, NET.init(seed=0, dtype="float64"), optimizer=nm.adam(1e-2))
    try:
        for _ in range(5):
            pn.train_batch(rng.normal(size=(16, 4)), rng.normal(size=(16, 2)), get_loss("mse"))
        assert max(_journals(pn)) == 0
        assert all(p._sup.state is None or p._sup.state[0] == "done" for p in pn.ctx.actuator_pids)
        assert pn.cortex._sup.state == ("idle", 5)
    finally:
        pn.close()
