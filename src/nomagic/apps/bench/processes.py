"""Benchmarks of the processes engine (``nomagic.engines.processes``): every neuron a process.

Measures, against the goals of DESIGN.md:

* memory per neuron process: ``ProcessNetwork`` for ``inputs(1) | dense(N)``, the bytes that
  spawning (and starting) its processes allocates (tracemalloc) divided by N, and the growth of
  the resident set (``/proc/self/statm``) for the million below (goal: <= 1 KB);
* memory per neuron process after a training batch (Adam), the wiring included: for those
  one-synapse neurons and for the digits network's; the neuron's own weights and optimizer slots
  (their arrays) reported apart from the rest (goal for the rest: <= 1 KB per one-synapse neuron);
* the time to start 1,000,000 neuron processes (wiring + spawn, then running each to its first
  receive; goal: <= 5 s) and one forward pass of that network with a batch of 4, checked against
  the tensor engine; run in a fresh interpreter, so that its memory figures are its own;
* training the digits 64-128-128-10 network (Adam 1e-3) with ``nm.fit(..., engine="processes")``,
  batch 256 and 128: samples/s beside the tensor engine's on the same data and arguments
  (goal: >= 2,000 samples/s), and the largest param difference between the two engines after
  the same epochs, in float32 and in float64 (goal: <= 1e-8 in float64).

Every timing is taken several times (the million-neuron run each time in a fresh interpreter;
the two engines' training runs in turns, after a warm-up run of each) and reported as the median
with the min and max beside it; nothing is a best-of. Nothing is asserted: rows are printed
(``python -m nomagic.apps.bench.processes [--quick]``) and returned by :func:`run`: name, value
(the median), min, max, repeats, unit, n, counts (what exactly is counted), a note, and where they
mean something reference (the reference's repeats) and reference_name, ratio (of the medians),
goal, goal_op ("<=" or ">=") and met. ``--quick`` uses 100,000 neurons, one epoch and 3 repeats.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

import nomagic as nm
from nomagic.engines.processes import ProcessNetwork, wiring_for

KB = 1024


def _rss() -> int:
    """Resident set size of this process in bytes, from /proc/self/statm (0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _wide(n: int):
    return nm.inputs(1) | nm.dense(n, activation="tanh")


# -- (a) memory per neuron process -----------------------------------------------------------------


def memory_per_neuron(n: int) -> dict:
    """tracemalloc'd bytes per neuron: the network's processes spawned, and then started (each run
    to its first receive). The wiring (the neuron-level graph as arrays, made once per network)
    is measured on its own."""
    net = _wide(n)
    params = net.init(seed=0)
    gc.collect()
    tracemalloc.start()
    try:
        m0 = tracemalloc.get_traced_memory()[0]
        wiring_for(net)
        m1 = tracemalloc.get_traced_memory()[0]
        pn = ProcessNetwork(net, params)
        m2 = tracemalloc.get_traced_memory()[0]
        pn.rt.run_until_idle()
        m3 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    processes = pn.n_processes
    pn.close()
    del pn
    gc.collect()
    return {"wiring": (m1 - m0) / n, "spawned": (m2 - m1) / n, "started": (m3 - m1) / n,
            "processes": processes}


def _own_bytes(a: np.ndarray) -> int:
    """An array's data and its object (the data once: a view's lives in its base)."""
    header = sys.getsizeof(a) - (a.nbytes if a.flags.owndata else 0)
    return header + a.nbytes


def memory_after_training(net, X: np.ndarray, Y: np.ndarray, loss: str) -> dict:
    """tracemalloc'd bytes per neuron after one training batch with Adam: wiring, processes and
    their snapshots, all included; the neurons' own weights and slots (arrays and their dict)
    counted apart."""
    from nomagic.model.losses import get_loss

    params = net.init(seed=0)
    gc.collect()
    tracemalloc.start()
    try:
        m0 = tracemalloc.get_traced_memory()[0]
        w = wiring_for(net)
        m1 = tracemalloc.get_traced_memory()[0]
        pn = ProcessNetwork(net, params, optimizer=nm.adam(1e-3), timeout=None)
        pn.train_batch(X, Y, get_loss(loss))
        pn.rt.run_until_idle()  # every neuron has taken the commit
        gc.collect()
        m2 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    n = w.n_neurons
    own = 0
    for pid in pn.ctx.pids[w.n_sensors:]:
        p, slots, _, batch = pid._sup.state  # between batches: the neuron's whole state
        assert batch is None
        own += _own_bytes(p) + sum(_own_bytes(v) for v in slots.values()) + (sys.getsizeof(slots) if slots else 0)
    pn.close()
    del pn
    gc.collect()
    total = (m2 - m0) / n
    return {"total": total, "wiring": (m1 - m0) / n, "own": own / n, "rest": total - (m1 - m0) / n - own / n,
            "n": n}


# -- (b) a million neuron processes: start and one forward pass ----------------------------------------


def million(n: int) -> dict:
    """Start ``n`` neuron processes and run one forward pass of batch 4 (in this interpreter)."""
    gc.collect()
    rss0 = _rss()
    t0 = time.perf_counter()
    net = _wide(n)
    params = net.init(seed=0)
    t1 = time.perf_counter()
    wiring_for(net)
    t2 = time.perf_counter()
    rss1 = _rss()
    pn = ProcessNetwork(net, params, timeout=None)
    t3 = time.perf_counter()
    pn.rt.run_until_idle()  # every process runs to its first receive, and waits there
    t4 = time.perf_counter()
    rss2 = _rss()
    X = np.linspace(-2.0, 2.0, 4, dtype=np.float32).reshape(4, 1)
    out = pn.predict(X)
    t5 = time.perf_counter()
    ref = net.predict(params, X)
    processes = pn.n_processes
    pn.close()
    return {"n": n, "init_s": t1 - t0, "wiring_s": t2 - t1, "spawn_s": t3 - t2, "first_receive_s": t4 - t3,
            "forward_s": t5 - t4, "max_diff": float(np.abs(out - ref).max()), "shape": list(out.shape),
            "processes": processes, "rss_per_neuron": (rss2 - rss1) / n,
            "rss_wiring_per_neuron": (rss1 - rss0) / n,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2 ** 30}


def million_in_child(n: int, repeats: int) -> list[dict]:
    """:func:`million`, ``repeats`` times, each in a fresh interpreter: its memory figures are then its own."""
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--million", str(n)],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"the million-neuron run failed: {done.stderr.strip()[-2000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


# -- (c) training the digits network ---------------------------------------------------------------


def _digits():
    from nomagic.data.digits import digits_network, load_digits_split

    split = load_digits_split(0)
    return digits_network(), split.X_train, split.y_train


def train_digits(batch_size: int, epochs: int, dtype: str, repeats: int, warmup: int = 1) -> dict:
    """Samples/s of nm.fit on both engines, ``repeats`` runs of each in turns after ``warmup`` runs of
    each (not counted), and their largest param difference after the last."""
    net, X, y = _digits()
    args = {"loss": "cross_entropy", "epochs": epochs, "batch_size": batch_size, "seed": 0, "dtype": dtype,
            "verbose": False}
    work = epochs * len(X)
    rates: dict[str, list[float]] = {"processes": [], "tensor": []}
    models = {}
    for r in range(warmup + repeats):
        for engine in ("processes", "tensor"):  # in turns: a change in load touches both alike
            gc.collect()
            t0 = time.perf_counter()
            models[engine] = nm.fit(net, X, y, optimizer=nm.adam(1e-3), engine=engine, **args)
            if r >= warmup:
                rates[engine].append(work / (time.perf_counter() - t0))
    a, b = models["processes"].params, models["tensor"].params
    diff = max(float(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)).max()) for k in a)
    return {**rates, "diff": diff, "n": len(X)}


def _summary(values: list[float]) -> dict:
    """A timing row's figures: the median (``value``), min, max and how many repeats."""
    return {"value": statistics.median(values), "min": min(values), "max": max(values), "repeats": len(values)}


# -- all of it -------------------------------------------------------------------------------------------


def run(quick: bool = False) -> list[dict]:
    """Run the benchmarks; one dict per result (see the module's docstring)."""
    n_mem = 20_000 if quick else 200_000
    n_big = 100_000 if quick else 1_000_000
    epochs = 1 if quick else 3
    repeats = 3  # the million-neuron runs and the training runs each
    rows: list[dict] = []

    def row(name: str, value, unit: str, n: int | None = None, note: str = "", counts: str = "", **extra) -> None:
        r = {"name": name, "value": value, "unit": unit, "n": n, "counts": counts, "note": note}
        r.update(extra)
        rows.append(r)

    def timing(name: str, values: list[float], unit: str, n: int | None, counts: str, note: str = "",
               **extra) -> None:
        rows.append({"name": name, **_summary(values), "unit": unit, "n": n, "counts": counts, "note": note,
                     **extra})

    mem = memory_per_neuron(n_mem)
    row("processes: memory per neuron process", mem["started"], "bytes", n_mem,
        f"spawned {mem['spawned']:.0f} B, then started (run to the first receive); "
        f"inputs(1) then dense(N): {mem['processes']:,} processes",
        counts=f"bytes per neuron = tracemalloc'd bytes that making the ProcessNetwork of {n_mem:,} one-synapse "
        "neurons and running each process to its first receive allocates, the wiring apart, ÷ N; one run",
        goal=KB, goal_op="<=", met=mem["started"] <= KB)
    row("processes: wiring per neuron", mem["wiring"], "bytes", n_mem,
        "the neuron-level graph as arrays, made once per network (not per process)",
        counts=f"bytes per neuron = tracemalloc'd bytes of wiring_for(net) ÷ {n_mem:,}; one run")
    X1 = np.linspace(-1.0, 1.0, 4, dtype=np.float32).reshape(4, 1)
    after = memory_after_training(_wide(n_mem), X1, np.zeros((4, n_mem), np.float32), "mse")
    after_counts = ("bytes per neuron = (tracemalloc'd bytes still allocated after making the ProcessNetwork and one "
                    "training batch with Adam, every neuron committed and the garbage collected − the wiring − "
                    "the neurons' own weights and Adam slots, arrays and dict) ÷ neurons; one run")
    row("processes: memory per neuron process after a training batch", after["rest"], "bytes", n_mem,
        f"inputs(1) then dense(N), Adam: {after['total']:.0f} B in all = wiring {after['wiring']:.0f} B"
        f" + own weights and slots {after['own']:.0f} B + the rest (process, snapshot, journal)",
        counts=after_counts, goal=KB, goal_op="<=", met=after["rest"] <= KB)
    net_d, Xd, yd = _digits()
    Xd = Xd[:64].astype(np.float32)
    Yd = np.eye(10, dtype=np.float32)[yd[:64]]
    dig = memory_after_training(net_d, Xd, Yd, "cross_entropy")
    row("processes: memory per digits neuron after a training batch", dig["rest"], "bytes", dig["n"],
        f"64-128-128-10, Adam, batch 64: {dig['total']:,.0f} B in all = wiring {dig['wiring']:,.0f} B "
        f"+ own weights and slots {dig['own']:,.0f} B + the rest (process, snapshot, journal)",
        counts=after_counts, goal=KB, goal_op="<=", met=dig["rest"] <= KB)

    big = million_in_child(n_big, repeats)
    start = [r["wiring_s"] + r["spawn_s"] for r in big]
    started = [r["wiring_s"] + r["spawn_s"] + r["first_receive_s"] for r in big]
    med = {k: statistics.median(r[k] for r in big) for k in ("wiring_s", "spawn_s", "first_receive_s", "init_s",
                                                                "rss_wiring_per_neuron", "peak_rss_gib")}
    fresh = f"each run in a fresh interpreter; {repeats} runs"
    timing(f"processes: start {n_big:,} neuron processes (wiring + spawn)", start, "s", n_big,
           f"seconds of wiring_for(net) and of making the ProcessNetwork (spawning every process), wall clock; {fresh}",
           f"medians: wiring {med['wiring_s']:.2f} s, spawn {med['spawn_s']:.2f} s; net.init "
           f"{med['init_s']:.2f} s not counted", goal=5.0, goal_op="<=", met=statistics.median(start) <= 5.0)
    timing(f"processes: start {n_big:,}, and run each to its first receive", started, "s", n_big,
           f"seconds of wiring, spawn and running every process to its first receive, wall clock; {fresh}",
           f"first receive {med['first_receive_s']:.2f} s more (median)", goal=5.0, goal_op="<=",
           met=statistics.median(started) <= 5.0)
    rss = [r["rss_per_neuron"] for r in big]
    timing("processes: resident memory per neuron process", rss, "bytes", n_big,
           f"bytes per neuron = growth of /proc/self/statm's resident set over spawn and start ÷ {n_big:,}; {fresh}",
           f"the wiring adds {med['rss_wiring_per_neuron']:.0f} B/neuron; peak RSS {med['peak_rss_gib']:.2f} GiB "
           "(medians)", goal=KB, goal_op="<=", met=statistics.median(rss) <= KB)
    worst = max(r["max_diff"] for r in big)
    timing(f"processes: forward pass, {n_big:,} neurons, batch 4", [r["forward_s"] for r in big], "s", n_big,
           f"seconds of one pn.predict of 4 samples (the first after start), wall clock; {fresh}",
           f"largest difference from the tensor engine's output: {worst:.1e} (float32); output "
           f"{tuple(big[0]['shape'])}")

    for bs in (256, 128):  # the goal is set at batch 256; batch 128 is for information
        t = train_digits(bs, epochs, "float32", repeats)
        ours = statistics.median(t["processes"])
        goal = {"goal": 2000.0, "goal_op": ">=", "met": ours >= 2000.0} if bs == 256 else {}
        timing(f"processes: digits 64-128-128-10 training, batch {bs}", t["processes"], "samples/s", t["n"],
               f"samples/s = {epochs} epoch(s) × {t['n']:,} training samples ÷ seconds of one whole nm.fit call "
               f"(Adam 1e-3, float32), wall clock; {repeats} runs of each engine in turns after a warm-up run of each",
               f"tensor engine {statistics.median(t['tensor']):,.0f} samples/s (median)",
               reference=t["tensor"], reference_name="tensor engine",
               ratio=ours / statistics.median(t["tensor"]), **goal)
        row(f"processes vs tensor: max param difference, batch {bs}, float32", t["diff"], "abs", t["n"],
            f"after {epochs} epoch(s); float32 rounding, summed in another order and amplified by "
            "Adam's m/sqrt(v) where gradients are tiny",
            counts="the largest absolute difference between the two engines' params after the last run")
    t64 = train_digits(256, epochs, "float64", 1, warmup=0)
    row("processes vs tensor: max param difference, batch 256, float64", t64["diff"], "abs", t64["n"],
        f"after {epochs} epoch(s) of nm.fit; one run each: processes {t64['processes'][0]:,.0f} samples/s, tensor "
        f"{t64['tensor'][0]:,.0f} samples/s in float64",
        counts="the largest absolute difference between the two engines' params after one run each",
        goal=1e-8, goal_op="<=", met=t64["diff"] <= 1e-8)
    return rows


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and (abs(v) < 1e-2 and v != 0):
        return f"{v:.2e}"
    return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--million"]:  # the child of million_in_child
        print(json.dumps(million(int(argv[1]))))
        return
    for r in run(quick="--quick" in argv):
        goal = "" if r.get("goal") is None else \
            f" goal {r['goal_op']} {_fmt(r['goal'])}: {'met' if r['met'] else 'NOT met'}"
        spread = f" [{_fmt(r['min'])} – {_fmt(r['max'])}], n={r['repeats']}" if "min" in r else ""
        print(f"{r['name']:<66} {_fmt(r['value']):>10}{spread} {r['unit']:<9}{goal}  {r['note']}")


if __name__ == "__main__":
    main()
