"""Benchmarks of the ray engine (``nomagic.engines.ray``): 1 against 2 workers, and messages.

* **data-parallel**: an MLP 256-1024-1024-10 (relu, softmax + cross-entropy, Adam, float32) with
  a global batch of 2048 (``--quick``: 1024): one training step on 1 and on 2 workers, split into
  the time inside the actors (the slowest worker's gradient: compute), the rest of the gradient's
  wall time (sending params and shares, waiting, returning gradients: messaging), and the driver's
  optimizer step; the tensor engine's step in this process beside it;
* **model-parallel**: an MLP 16-32-32-4 (tanh, softmax, Adam, float64), batch 256, its neurons
  on 1 and on 2 workers: a training step split into the time inside the actors along the
  critical path (Σ over rounds of the slowest worker in that round: compute) and the rest
  (Ray calls, moving message lists, the driver's sensors, actuators and cortex: messaging);
* **message volume against the cut**: MLPs 8-n-n-4 for growing n on 2 workers (the automatic
  partition), one training step with a batch of 64: the synapses cut, the messages and payload
  bytes that crossed between actors and between the driver and the actors, the rounds, and the
  step's time against the same network on 1 worker.

Every timing row gives the median, min and max over the repeats (never a best-of). Nothing is
asserted: rows are printed (``python -m nomagic.apps.bench.ray [--quick]``) and returned by
:func:`run`. A local Ray is started here (2 CPUs' worth is enough) and shut down at the end.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time

import numpy as np

import nomagic as nm
from nomagic.engines.ray import DataParallel, RayNetwork
from nomagic.model.losses import get_loss
from nomagic.model.validation import check_targets

REPEATS, QUICK_REPEATS = 10, 5


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "repeats": len(values)}


def _ms(values: list[float]) -> list[float]:
    return [v * 1e3 for v in values]


def _mlp_case(batch: int):
    """The MLP 256-1024-1024-10 (relu, softmax), a random batch of ``batch`` rows with its checked
    targets, and float32 params of seed 0: the work both the Ray rows and their baseline time."""
    net = nm.inputs(256) | nm.dense(1024, activation="relu") | nm.dense(1024, activation="relu") | \
        nm.dense(10, activation="softmax")
    r = np.random.default_rng(0)
    X = r.normal(size=(batch, 256)).astype(np.float32)
    Y = check_targets(net, get_loss("cross_entropy"), r.integers(0, 10, batch), X, np.dtype(np.float32))
    return net, X, Y, net.init(seed=0, dtype="float32")


def data_parallel(workers: int, batch: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per step of data-parallel training on ``workers``: total, compute, messaging, update."""
    net, X, Y, P = _mlp_case(batch)
    opt = nm.adam(1e-3)
    dp = DataParallel(net, P, opt, opt.init(P), get_loss("cross_entropy"), workers=workers)
    out: dict[str, list[float]] = {"total": [], "compute": [], "messaging": [], "update": []}
    try:
        dp.train_batch(X, Y)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            dp.train_batch(X, Y)
            total = time.perf_counter() - t0
            compute = max(dp.last["actor_seconds"])
            out["total"].append(total)
            out["compute"].append(compute)
            out["messaging"].append(dp.last["seconds"] - compute)
            out["update"].append(total - dp.last["seconds"])
    finally:
        dp.close()
    return out


def tensor_step(batch: int, repeats: int) -> list[float]:
    from nomagic.engines.tensor import Trainer

    net, X, Y, P = _mlp_case(batch)
    opt = nm.adam(1e-3)
    tr = Trainer(net, P, opt, opt.init(P), get_loss("cross_entropy"))
    times = []
    try:
        tr.train_batch(X, Y)
        for _ in range(repeats):
            t0 = time.perf_counter()
            tr.train_batch(X, Y)
            times.append(time.perf_counter() - t0)
    finally:
        tr.close()
    return times


def _mlp(n_in: int, width: int, n_out: int):
    return nm.inputs(n_in) | nm.dense(width, activation="tanh") | nm.dense(width, activation="tanh") | \
        nm.dense(n_out, activation="softmax")


def halves(net) -> dict[str, int]:
    """A partition that splits every population in two: the first half of its neurons on worker 0,
    the rest on worker 1 (the layers' work runs side by side; every synapse between halves is cut)."""
    part = {}
    for pop in net.populations[1:]:
        for i in range(pop.size):
            part[pop.neuron_name(i)] = int(i >= pop.size // 2)
    return part


def model_parallel(net, workers: int, batch: int, repeats: int, partition=None) -> dict:
    """Per training step of ``net`` with its neurons on ``workers``: seconds (total, critical
    compute, the rest) and the traffic of the last step."""
    r = np.random.default_rng(0)
    n_in = net.populations[0].size
    X = r.normal(size=(batch, n_in))
    Y = check_targets(net, get_loss("cross_entropy"), r.integers(0, net.output_population.size, batch), X,
                      np.dtype(np.float64))
    P = net.init(seed=0, dtype="float64")
    opt = nm.adam(1e-3)
    loss = get_loss("cross_entropy")
    rn = RayNetwork(net, P, optimizer=opt, opt_state=opt.init(P), workers=workers, partition=partition)
    out: dict = {"total": [], "compute": [], "messaging": []}
    try:
        rn.train_batch(X, Y, loss)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            rn.train_batch(X, Y, loss)
            total = time.perf_counter() - t0
            t = rn.traffic
            out["total"].append(total)
            out["compute"].append(t.critical_seconds)
            out["messaging"].append(total - t.critical_seconds)
        out["traffic"], out["cut"] = rn.traffic, rn.cut
    finally:
        rn.close()
    return out


def run(quick: bool = False) -> list[dict]:
    """Run the benchmarks; one dict per result: name, value (the median), min, max, repeats, unit,
    n, counts, note."""
    import ray

    reps = QUICK_REPEATS if quick else REPEATS
    rows: list[dict] = []
    cpus = os.cpu_count() or 1

    def row(name: str, values: list[float] | None, unit: str, n: int, counts: str, note: str = "") -> None:
        summary = _summary(values) if values else {"median": None, "repeats": 0}
        rows.append({"name": name, "value": summary.pop("median"), **summary, "unit": unit, "n": n,
                     "counts": counts, "note": note})

    owned = not ray.is_initialized()
    if owned:
        ray.init(num_cpus=max(2, cpus), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        batch = 1024 if quick else 2048
        counts = "ms per training step (median over the repeats; min and max in their columns)"
        ref = tensor_step(batch, reps)
        row("data-parallel MLP 256-1024-1024-10: tensor engine, this process", _ms(ref), "ms", batch, counts,
            "float32, Adam; the reference: no Ray")
        for w in (1, 2):
            d = data_parallel(w, batch, reps)
            row(f"data-parallel, {w} worker(s): step", _ms(d["total"]), "ms", batch, counts,
                f"global batch {batch}, shares of {batch // w}")
            row(f"data-parallel, {w} worker(s): compute (slowest worker's gradient, inside the actor)",
                _ms(d["compute"]), "ms", batch, counts, "tensor engine on the share, 1 BLAS thread per actor")
            row(f"data-parallel, {w} worker(s): messaging (params out, gradients back, waiting)",
                _ms(d["messaging"]), "ms", batch, counts, "the gradient's wall time less the compute")
            row(f"data-parallel, {w} worker(s): optimizer step in the driver", _ms(d["update"]), "ms", batch, counts,
                "combining the shares' gradients, Adam on 1.3M params")
        mp_net = _mlp(16, 32, 4)
        for w, part, how in ((1, None, ""), (2, None, " (automatic: whole layers)"),
                             (2, halves(mp_net), " (every layer split in halves)")):
            m = model_parallel(mp_net, w, 256, reps, part)
            t = m["traffic"]
            w = f"{w}{how}"
            row(f"model-parallel MLP 16-32-32-4, {w} worker(s): step", _ms(m["total"]), "ms", 256, counts,
                f"{t.rounds} rounds, {t.calls} Ray calls per step; cut {m['cut']} synapses, {t.actor_messages} "
                f"messages / {t.actor_bytes:,} payload bytes between actors")
            row(f"model-parallel, {w} worker(s): compute (inside the actors, critical path)", _ms(m["compute"]),
                "ms", 256, counts, "Σ over rounds of the slowest worker in the round")
            row(f"model-parallel, {w} worker(s): messaging and driver", _ms(m["messaging"]), "ms", 256, counts,
                "Ray calls, message lists between actors, the driver's sensors, actuators and cortex")
        widths = (8, 16, 32, 64) if quick else (8, 16, 32, 64, 128)
        for n in widths:
            net = _mlp(8, n, 4)
            one = model_parallel(net, 1, 64, max(2, reps // 2))
            two = model_parallel(net, 2, 64, max(2, reps // 2))
            t = two["traffic"]
            note = (f"cut {two['cut']} synapses; {t.actor_messages} messages, {t.actor_bytes:,} payload bytes "
                    f"between actors; driver→actors {t.driver_to_actor_messages} msgs / "
                    f"{t.driver_to_actor_bytes:,} B, actors→driver {t.actor_to_driver_messages} msgs / "
                    f"{t.actor_to_driver_bytes:,} B; {t.rounds} rounds; 1 worker: "
                    f"{statistics.median(one['total']) * 1e3:.1f} ms per step")
            row(f"message volume, MLP 8-{n}-{n}-4 on 2 workers: messages between actors per step",
                [float(t.actor_messages)], "messages", 64, "messages crossing between actors in one step", note)
            row(f"message volume, MLP 8-{n}-{n}-4 on 2 workers: step", _ms(two["total"]), "ms", 64, counts, note)
    finally:
        if owned:
            ray.shutdown()
    return rows


def _fmt(v) -> str:
    if v is None:
        return "—"
    return f"{v:,.2f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    for r in run(quick="--quick" in argv):
        print(f"{r['name']}: {_fmt(r['value'])} {r['unit']} (min {_fmt(r.get('min'))}, max {_fmt(r.get('max'))}, "
              f"n={r.get('repeats')}){'; ' + r['note'] if r.get('note') else ''}")


if __name__ == "__main__":
    main()
