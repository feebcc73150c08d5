"""``nomagic bench``: the tensor engine measured side by side with its references.

Every benchmark runs ours and the reference in the same process, one after the other in turns
(ours, reference, ours, reference, ...), after a warm-up, and reports the median of the repeats
and the ratio. Nothing here asserts a timing: the numbers are printed, and with
``--write-results`` written to ``benchmarks/RESULTS.md`` with the machine and the command.

Threads: PyTorch is given as many threads as NumPy's BLAS has. The tensor engine runs matrix
products that are small by its measure on one BLAS thread (see ``engines/_blas.py``), so PyTorch
is also measured on one thread, and ratios are taken against the *faster* of the two.

Benchmarks (``--only NAME``, repeatable):

* ``digits``  MLP 64-128-128-10 (relu, softmax + cross-entropy, Adam 1e-3) on scikit-learn's
  digits, batch 32 and 128: training throughput of ``nm.fit`` against a plain PyTorch loop and
  scikit-learn's ``MLPClassifier``, and the test accuracy.
* ``wide``    MLP 1024-1024-1024-10 on random data, batch 256: throughput against PyTorch and the
  fraction of the machine's float32 matrix-multiply peak (best ``np.matmul`` GFLOP/s, same run).
* ``rnn``     Elman RNN, LSTM and GRU, 30 steps, hidden 64, batch 32, a dense output: training step
  time against ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` + ``nn.Linear``.
* ``processes`` the processes engine (``nomagic.apps.bench.processes``): memory per neuron process,
  starting a million of them, a forward pass of that million, and training the digits network
  beside the tensor engine.
* ``runtime`` the process runtime (``nomagic.apps.bench.runtime``): a message hop along a chain of
  100,000 processes against Elixir/BEAM (when ``elixir`` is on PATH), memory and spawn time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

BENCHMARKS = ("digits", "wide", "rnn", "processes", "runtime", "planner")
COMMAND = "nomagic bench --write-results"
_BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_CHILD = "NOMAGIC_BENCH_CHILD"


# -- measuring ------------------------------------------------------------------------------------


def _interleaved(cases: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per case. Each callable does one unit of work and returns its seconds (so
    that it can leave set-up outside the clock); the cases run in turns, so that a change in the
    machine's load touches all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(warmup + repeats):
        for name, fn in cases.items():
            seconds = fn()
            if r >= warmup:
                times[name].append(seconds)
            time.sleep(0.02)  # let worker threads of the other library go idle
    return {k: statistics.median(v) for k, v in times.items()}


def _timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


# -- the machine -------------------------------------------------------------------------------


def _blas_info() -> dict:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    for lib in threadpool_info():
        if lib.get("user_api") == "blas" and "numpy" in str(lib.get("filepath", "")).lower():
            return lib
    blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return blas[0] if blas else {}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Cores, versions and the BLAS NumPy runs on (kernel and threads, via threadpoolctl)."""
    import torch

    blas = _blas_info()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        import sklearn

        skl = sklearn.__version__
    except ImportError:
        skl = "not installed"
    info = {
        "cpu": _cpu_model(),
        "cores": cores,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "sklearn": skl,
        "blas": (f"{blas.get('internal_api', '?')} {blas.get('version', '?')}, kernel "
                 f"{blas.get('architecture', '?')}, {blas.get('num_threads', '?')} threads") if blas else "unknown",
        "blas_threads": int(blas.get("num_threads") or 1) if blas else (os.cpu_count() or 1),
        "torch_threads": torch.get_num_threads(),
        "blas_env": os.environ.get("NOMAGIC_BENCH_UNSET", ""),
        "load_before": _load(),
    }
    return info


def _busy_fraction(seconds: float = 0.5) -> float | None:
    """How busy the machine's CPUs were over ``seconds`` while this process slept (Linux)."""
    def sample():
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return sum(fields), idle

    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else None


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> float | None:
    """Wait (up to ``max_wait`` seconds) until other processes leave the CPUs alone; returns the
    last busy fraction seen. Multi-threaded BLAS slows down many times when a core is taken."""
    deadline = time.monotonic() + max_wait
    busy = _busy_fraction()
    while busy is not None and busy > threshold and time.monotonic() < deadline:
        busy = _busy_fraction(1.0)
    return busy


def _load() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


# -- rows -------------------------------------------------------------------------------------------


def _row(bench: str, what: str, ours: float, ref_name: str, ref: float | None, unit: str,
         goal: float | None, higher_is_better: bool = True, note: str = "") -> dict:
    """One line of the table; ``ratio`` is always 'how many times better we are'."""
    ratio = None
    if ref:
        ratio = ours / ref if higher_is_better else ref / ours
    return {"benchmark": bench, "what": what, "ours": ours, "reference": ref_name, "ref_value": ref,
            "unit": unit, "ratio": ratio, "goal": goal, "met": None if goal is None or ratio is None
            else bool(ratio >= goal), "note": note}


def _ratio_str(r: dict) -> str:
    if r.get("ratio_text"):
        return r["ratio_text"]
    return "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"


def _goal_str(r: dict) -> str:
    if r.get("goal_text"):
        return r["goal_text"]
    return "—" if r["goal"] is None else f"≥ {r['goal']:g}×"


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if unit == "acc":
        return f"{v:.3f}"
    if unit == "ms":
        return f"{v:.3g} ms" if v < 10 else f"{v:.1f} ms"
    if unit in ("", "ratio"):
        return f"{v:.2f}"
    if unit == "%":
        return f"{v:.0f}%"
    if abs(v) >= 1000:
        return f"{v:,.0f} {unit}"
    return f"{v:.3g} {unit}"


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the rows (what ``nomagic bench`` prints)."""
    head = ["benchmark", "what", "ours", "reference", "ratio", "goal", "met"]
    lines = [head]
    for r in rows:
        ref = f"{r['reference']}: {_fmt(r['ref_value'], r['unit'])}" if r["ref_value"] is not None else r["reference"]
        lines.append([r["benchmark"], r["what"], _fmt(r["ours"], r["unit"]), ref, _ratio_str(r), _goal_str(r),
                      {None: "", True: "yes", False: "NO"}[r["met"]]])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


# -- torch helpers --------------------------------------------------------------------------------


def _torch_configs(blas_threads: int) -> list[int]:
    return sorted({blas_threads, 1}, reverse=True)


def _best_torch(times: dict[str, float], prefix: str) -> tuple[str, float]:
    keys = [k for k in times if k.startswith(prefix)]
    best = min(keys, key=lambda k: times[k])
    return best, times[best]


def _torch_mlp(sizes: list[int]):
    import torch

    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _torch_epochs(model, params, Xt, yt, batch_size: int, epochs: int, loss_fn, seed: int = 0,
                  last_step_only: bool = False, head=None):
    """A plain PyTorch training loop over the same mini-batches as ``nm.fit``."""
    import torch

    opt = torch.optim.Adam(params, lr=1e-3)
    n = len(Xt)
    for epoch in range(epochs):
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))
        Xe, ye = Xt[order], yt[order]
        for start in range(0, n, batch_size):
            xb, yb = Xe[start:start + batch_size], ye[start:start + batch_size]
            opt.zero_grad()
            if head is None:
                out = model(xb)
            else:
                seq, _ = model(xb)
                out = head(seq[:, -1])
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()


# -- 1. digits --------------------------------------------------------------------------------------


def bench_digits(quick: bool, info: dict) -> list[dict]:
    import torch

    import nomagic as nm
    from nomagic.data.digits import digits_network, load_digits_split

    split = load_digits_split(0)
    Xtr = split.X_train.astype(np.float32)
    Xte = split.X_test.astype(np.float32)
    ytr, yte = split.y_train, split.y_test
    n = len(Xtr)
    epochs = 3 if quick else 30
    repeats = 2 if quick else 5
    net = digits_network()
    rows = []
    Xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr.astype(np.int64))
    ce = torch.nn.CrossEntropyLoss()
    for bs in (32, 128):
        result: dict = {}

        def ours(bs=bs, result=result):
            t0 = time.perf_counter()
            model = nm.fit(net, Xtr, ytr, loss="cross_entropy", optimizer=nm.adam(1e-3), epochs=epochs,
                           batch_size=bs, seed=0, verbose=False)
            dt = time.perf_counter() - t0
            result["acc"] = float(np.mean(model.predict(Xte).argmax(axis=1) == yte))
            return dt

        def torch_run(threads, bs=bs, result=result):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            model = _torch_mlp([64, 128, 128, 10])
            t0 = time.perf_counter()
            _torch_epochs(model, model.parameters(), Xt, yt, bs, epochs, ce)
            dt = time.perf_counter() - t0
            with torch.no_grad():
                result["torch_acc"] = float((model(torch.from_numpy(Xte)).argmax(1).numpy() == yte).mean())
            return dt

        def sklearn_run(threads, bs=bs, result=result):
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.neural_network import MLPClassifier
            from threadpoolctl import threadpool_limits

            clf = MLPClassifier(hidden_layer_sizes=(128, 128), solver="adam", batch_size=bs, max_iter=epochs,
                                random_state=0)
            with warnings.catch_warnings(), threadpool_limits(threads, user_api="blas"):
                warnings.simplefilter("ignore", ConvergenceWarning)
                t0 = time.perf_counter()
                clf.fit(Xtr, ytr)
                dt = time.perf_counter() - t0
            result["sk_epochs"] = clf.n_iter_
            result["sk_acc"] = float(clf.score(Xte, yte))
            return dt * epochs / clf.n_iter_  # as if it had run every epoch

        cases = {"ours": ours}
        for th in _torch_configs(info["blas_threads"]):
            cases[f"torch {th}t"] = lambda th=th, f=torch_run: f(th)
        for th in _torch_configs(info["blas_threads"]):
            cases[f"sklearn {th}t"] = lambda th=th, f=sklearn_run: f(th)
        times = _interleaved(cases, repeats)
        work = epochs * n
        best_t, t_torch = _best_torch(times, "torch")
        best_s, t_sk = _best_torch(times, "sklearn")
        label = f"digits MLP 64-128-128-10, batch {bs}"
        note = " / ".join(f"{k}: {work / v:,.0f}/s" for k, v in times.items() if k != "ours")
        rows.append(_row(label, "training samples/s (nm.fit)", work / times["ours"], f"PyTorch ({best_t})",
                         work / t_torch, "samples/s", 2.0, note=note))
        rows.append(_row(label, "training samples/s (nm.fit)", work / times["ours"],
                         f"scikit-learn MLPClassifier ({best_s})", work / t_sk, "samples/s", None))
        acc = _row(label, f"test accuracy after {epochs} epochs", result["acc"], "PyTorch", result["torch_acc"],
                   "acc", None, note=f"scikit-learn: {result['sk_acc']:.3f}")
        if quick:  # a few epochs cannot reach the goal; it is judged on full runs only
            acc.update(ratio=None, goal_text="(full run)", met=None)
        else:
            acc.update(ratio=None, goal_text="≥ 0.97", met=bool(result["acc"] >= 0.97))
        rows.append(acc)
    return rows


# -- 2. wide --------------------------------------------------------------------------------------


def matmul_peak(quick: bool) -> float:
    """The best float32 GFLOP/s of ``np.matmul`` on large square matrices, on this machine now."""
    rng = np.random.default_rng(0)
    best = 0.0
    for size in ((2048,) if quick else (2048, 3072)):
        a = rng.standard_normal((size, size)).astype(np.float32)
        b = rng.standard_normal((size, size)).astype(np.float32)
        out = np.empty_like(a)
        np.matmul(a, b, out=out)
        for _ in range(3 if quick else 5):
            t0 = time.perf_counter()
            np.matmul(a, b, out=out)
            best = max(best, 2.0 * size ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def bench_wide(quick: bool, info: dict) -> list[dict]:
    import torch

    import nomagic as nm

    B = 256
    sizes = [1024, 1024, 1024, 10]
    steps = 8 if quick else 12  # mini-batches per epoch
    epochs = 1 if quick else 4
    repeats = 2 if quick else 5
    rng = np.random.default_rng(0)
    X = rng.standard_normal((B * steps, sizes[0])).astype(np.float32)
    y = rng.integers(0, 10, len(X))
    net = nm.inputs(sizes[0])
    for k, units in enumerate(sizes[1:]):
        net = net | nm.dense(units, activation="relu" if k < len(sizes) - 2 else "softmax")
    p0 = net.init(seed=0)

    def ours():
        t0 = time.perf_counter()
        nm.fit(net, X, y, loss="cross_entropy", optimizer=nm.adam(1e-3), epochs=epochs, batch_size=B, seed=0,
               params=p0, verbose=False)
        return time.perf_counter() - t0

    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    ce = torch.nn.CrossEntropyLoss()

    def torch_run(threads):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = _torch_mlp(sizes)
        t0 = time.perf_counter()
        _torch_epochs(model, model.parameters(), Xt, yt, B, epochs, ce)
        return time.perf_counter() - t0

    cases = {"ours": ours}
    for th in _torch_configs(info["blas_threads"]):
        cases[f"torch {th}t"] = lambda th=th: torch_run(th)
    times = _interleaved(cases, repeats)
    peak = matmul_peak(quick)
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    goal_flops = 6.0 * B * macs  # forward 2·B·in·out per layer, backward twice that
    run_flops = goal_flops - 2.0 * B * sizes[0] * sizes[1]  # nobody computes the inputs' gradient
    n_steps = steps * epochs
    per_step = times["ours"] / n_steps
    best_t, t_torch = _best_torch(times, "torch")
    label = f"MLP {'-'.join(map(str, sizes))}, batch {B}, float32"
    note = " / ".join(f"{k}: {B * n_steps / v:,.0f}/s" for k, v in times.items() if k != "ours")
    note += f"; {epochs} epoch(s) of {steps} batches per run, set-up included"
    rows = [_row(label, "training samples/s (nm.fit)", B * n_steps / times["ours"], f"PyTorch ({best_t})",
                 B * n_steps / t_torch, "samples/s", 0.9, note=note)]
    achieved_goal = goal_flops / per_step / 1e9
    achieved_run = run_flops / per_step / 1e9
    torch_step = t_torch / n_steps
    for what, value, goal, note in (
            ("GFLOP/s, counted as 6·B·Σ in·out per step", achieved_goal, 0.5,
             "forward 2·B·in·out per layer, backward twice that"),
            ("GFLOP/s, counting the products actually run", achieved_run, None,
             "for information: neither engine computes the first layer's input gradient "
             "(2·B·in·out less); the goal is stated in the usual 6·B·Σ in·out count above"),
            ("PyTorch's GFLOP/s, counted as 6·B·Σ in·out", goal_flops / torch_step / 1e9, None, "for comparison")):
        r = _row(label, what, value, "np.matmul peak", peak, "GFLOP/s", goal, note=note)
        r["ratio_text"] = f"{100 * r['ratio']:.0f}% of peak"
        if goal is not None:
            r["goal_text"] = f"≥ {100 * goal:.0f}% of peak"
        rows.append(r)
    fb, step, how = _wide_breakdown(net, p0, X, y, B)
    rows.append(_row(label, "where a step's time goes (Trainer, no nm.fit)", 1e3 * (fb + step), "", None, "ms", None,
                     note=f"forward + backward {1e3 * fb:.1f} ms; Adam update of "
                          f"{sum(v.size for v in p0.values()):,} params {1e3 * step:.1f} ms; {how}"))
    return rows


def _wide_breakdown(net, p0, X, y, B: int, steps: int = 12) -> tuple[float, float, str]:
    """Median seconds of a training step's two halves (forward + backward, and the optimizer), and
    how the step used the threads."""
    import nomagic as nm
    from nomagic.engines.tensor import Trainer
    from nomagic.model.losses import get_loss
    from nomagic.model.validation import check_targets

    loss = get_loss("cross_entropy")
    opt = nm.adam(1e-3)
    tr = Trainer(net, p0, opt, opt.init(p0), loss)
    try:
        batches = [(X[i:i + B], check_targets(net, loss, y[i:i + B], X[i:i + B], X.dtype))
                   for i in range(0, len(X) - B + 1, B)]
        tr.train_batch(*batches[0])  # warm-up: buffers, threads
        fb, st = [], []
        for k in range(steps):
            xb, yb = batches[k % len(batches)]
            t0 = time.perf_counter()
            tr.chain.loss_and_grad(tr.P, tr.ws, xb, yb, loss, tr.G)
            t1 = time.perf_counter()
            tr.step_count += 1
            tr._optimizer_step(tr.flat, tr.gflat)
            t2 = time.perf_counter()
            fb.append(t1 - t0)
            st.append(t2 - t1)
        mode, threads = tr._modes[batches[0][0].shape], tr._threads
        how = {"team": f"the engine's own {threads} threads cut the big products (BLAS on one thread) and "
                       "share the update",
               "blas": f"the BLAS's {threads} threads ran the products, the update ran on one thread",
               "small": "the BLAS ran on one thread"}[mode]
        return statistics.median(fb), statistics.median(st), how
    finally:
        tr.close()


# -- 3. recurrent -----------------------------------------------------------------------------------


def bench_rnn(quick: bool, info: dict) -> list[dict]:
    import torch

    import nomagic as nm

    B, T, F, H = 32, 30, 8, 64
    steps = 8 if quick else 25
    repeats = 3 if quick else 9
    rng = np.random.default_rng(0)
    X = rng.standard_normal((B * steps, T, F)).astype(np.float32)
    y = rng.standard_normal((B * steps, 1)).astype(np.float32)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    mse = torch.nn.MSELoss()
    rows = []
    for kind, layer, tcls, goal in (("Elman RNN", nm.recurrent, torch.nn.RNN, 1.0),
                                    ("LSTM", nm.lstm, torch.nn.LSTM, 1.0),
                                    ("GRU", nm.gru, torch.nn.GRU, None)):
        net = nm.inputs(F) | layer(H) | nm.dense(1)
        p0 = net.init(seed=0)

        def ours(net=net, p0=p0):
            t0 = time.perf_counter()
            nm.fit(net, X, y, loss="mse", optimizer=nm.adam(1e-3), epochs=1, batch_size=B, seed=0, params=p0,
                   verbose=False)
            return time.perf_counter() - t0

        def torch_run(threads, tcls=tcls):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            rnn, head = tcls(F, H, batch_first=True), torch.nn.Linear(H, 1)
            t0 = time.perf_counter()
            _torch_epochs(rnn, list(rnn.parameters()) + list(head.parameters()), Xt, yt, B, 1, mse, head=head)
            return time.perf_counter() - t0

        cases = {"ours": ours}
        for th in _torch_configs(info["blas_threads"]):
            cases[f"torch {th}t"] = lambda th=th, f=torch_run: f(th)
        times = _interleaved(cases, repeats)
        best_t, t_torch = _best_torch(times, "torch")
        note = " / ".join(f"{k}: {1e3 * v / steps:.2f} ms" for k, v in times.items() if k != "ours")
        rows.append(_row(f"{kind}, {T} steps, hidden {H}, batch {B}, {F} inputs, dense output",
                         "training step (nm.fit)", 1e3 * times["ours"] / steps,
                         f"PyTorch nn.{tcls.__name__} ({best_t})", 1e3 * t_torch / steps, "ms", goal,
                         higher_is_better=False, note=note))
    return rows


# -- 4. the processes engine and its runtime: modules beside this one ------------------------------------


def _script(name: str):
    """The benchmark module ``nomagic.apps.bench.<name>`` (inside the package: runs when installed)."""
    import importlib

    return importlib.import_module(f"{__package__}.{name}")


def _script_rows(bench: str, rows: list[dict]) -> list[dict]:
    """A script's rows (name, value, unit, note; goal, goal_op, met, reference, ratio where they
    mean something) as lines of the table. Their goals are absolute, so they go in the notes."""
    out = []
    for r in rows:
        note, met, goal = r.get("note", ""), r.get("met"), r.get("goal")
        if goal is None and r["name"].startswith("ratio:") and r["value"] is not None:
            goal, met = 1.0, r["value"] >= 1.0  # DESIGN.md: at least as fast as BEAM
            r = {**r, "goal_op": ">="}
        if goal is not None:
            op = {"<=": "≤", ">=": "≥"}.get(r.get("goal_op", ""), "")
            note = f"goal {op} {goal:,g} {r['unit']}; {note}".replace(" ; ", "; ")
        out.append({"benchmark": bench, "what": r["name"], "ours": r["value"],
                    "reference": r.get("reference_name", "—"), "ref_value": r.get("reference"), "unit": r["unit"],
                    "ratio": r.get("ratio"), "goal": None, "met": met, "note": note})
    return out


def bench_processes(quick: bool, info: dict) -> list[dict]:
    return _script_rows("processes engine", _script("processes").run(quick=quick))


def bench_runtime(quick: bool, info: dict) -> list[dict]:
    return _script_rows("process runtime", _script("runtime").run(quick=quick))


# -- running and reporting --------------------------------------------------------------------------


RUNNERS = {"digits": bench_digits, "wide": bench_wide, "rnn": bench_rnn, "processes": bench_processes,
           "runtime": bench_runtime,
           "planner": lambda quick, info: _script_rows("planner", _script("planner").run(quick=quick))}


def run_benchmarks(quick: bool = False, only: list[str] | None = None, info: dict | None = None) -> list[dict]:
    """Run the chosen benchmarks (all by default); one dict per line of the table."""
    from ...errors import UnknownNameError

    names = list(only) if only else list(BENCHMARKS)
    for name in names:
        if name not in RUNNERS:
            raise UnknownNameError(f"unknown benchmark {name!r}; choose from: {', '.join(BENCHMARKS)}")
    info = info or machine_info()
    rows: list[dict] = []
    for name in names:
        rows += RUNNERS[name](quick, info)
    return rows


SUITE_TITLES = {"digits": "Tensor engine: the digits MLP", "wide": "Tensor engine: a wide MLP",
                "rnn": "Tensor engine: recurrent layers", "processes": "Processes engine",
                "runtime": "Process runtime", "planner": "Training planner: import and plan"}


def _block(name: str, text: str) -> str:
    return f"<!-- nomagic bench: {name} -->\n{text.strip()}\n<!-- nomagic bench: end {name} -->\n"


def header_markdown(info: dict) -> str:
    """What every suite shares: how the numbers were taken, and the machine."""
    lines = [
        "Written by `nomagic bench --write-results` (each suite below names the exact command",
        "that produced it; `--only NAME` rewrites that suite alone). Ours and the reference ran in the same",
        "process, in turns, after a warm-up; each number is the median of the repeats. A ratio is how many",
        "times faster (or, for accuracy, higher) we are; a goal is met when the ratio reaches it. Before each",
        "suite the run waits up to a minute for other processes to leave the CPUs alone, and says how much",
        "CPU time they still took: multi-threaded BLAS gets many times slower when a core is taken.",
        "",
        "Tensor engine suites: PyTorch and scikit-learn ran with as many threads as NumPy's BLAS has and",
        "with one thread; the faster of the two is the reference (both are in the notes). The tensor engine",
        "runs a network whose matrix products are all small on one BLAS thread, big products on all.",
        "",
        "Machine:",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores",
        f"- Python {info['python']}, NumPy {info['numpy']}, PyTorch {info['torch']}, scikit-learn {info['sklearn']}",
        f"- NumPy's BLAS: {info['blas']}",
    ]
    if info.get("blas_env"):
        lines.append(f"- {info['blas_env']} was set in the environment; the benchmarks ran without it (it pins "
                     "OpenBLAS to an older, slower kernel); tests and CI keep it")
    return "\n".join(lines)


def suite_markdown(name: str, rows: list[dict], run: dict) -> str:
    """One suite's section: how it was produced, then a table per benchmark."""
    busy = "n/a" if run.get("busy") is None else f"{100 * run['busy']:.0f}%"
    lines = [f"## {SUITE_TITLES.get(name, name)}", "",
             f"`{run['command']}` on {run['date']}, {run['seconds']:.0f} s"
             f"{' (quick: fewer repeats and epochs)' if run.get('quick') else ''}; CPU time taken by other "
             f"processes just before: {busy}; load average before and after: {run['load_before']} / "
             f"{run['load_after']}.", ""]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["benchmark"], []).append(r)
    for bench, group in groups.items():
        lines += [f"### {bench}", "", "| measure | ours | reference | ratio | goal | met | notes |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in group:
            ref = f"{r['reference']}: {_fmt(r['ref_value'], r['unit'])}" if r["ref_value"] is not None \
                else r["reference"]
            met = {None: "", True: "yes", False: "**no**"}[r["met"]]
            lines.append(f"| {r['what']} | {_fmt(r['ours'], r['unit'])} | {ref} | {_ratio_str(r)} | "
                         f"{_goal_str(r)} | {met} | {r['note']} |")
        lines.append("")
    return "\n".join(lines)


def default_results_path() -> Path:
    """``benchmarks/RESULTS.md`` of the source checkout this runs from, else of the current folder."""
    for folder in Path(__file__).resolve().parents:
        if (folder / "pyproject.toml").is_file() and (folder / "benchmarks").is_dir():
            return folder / "benchmarks" / "RESULTS.md"
    return Path.cwd() / "benchmarks" / "RESULTS.md"


def write_results(path: Path, header: str, suites: dict[str, str]) -> None:
    """Rewrite RESULTS.md: the header and the suites just run; other suites stay as they were."""
    import re

    from ...io.safetensors import atomic_write_bytes

    old = path.read_text(encoding="utf-8") if path.exists() else ""
    kept = {m.group(1): m.group(2) for m in re.finditer(
        r"<!-- nomagic bench: (\w+) -->\n(.*?)<!-- nomagic bench: end \1 -->", old, re.S)}
    kept.pop("header", None)
    kept.update(suites)
    order = [n for n in BENCHMARKS if n in kept] + [n for n in kept if n not in BENCHMARKS]
    text = "# Benchmark results\n\n" + _block("header", header) + "".join("\n" + _block(n, kept[n]) for n in order)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nomagic.apps.bench", description="Run the tensor engine's benchmarks side by "
                                "side with PyTorch and scikit-learn and print the comparison table.")
    p.add_argument("--quick", action="store_true", help="fewer repeats and epochs (well under a minute)")
    p.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME",
                   help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    p.add_argument("--write-results", nargs="?", const="", default=None, metavar="PATH",
                   help="also write the results to benchmarks/RESULTS.md (or PATH)")
    p.add_argument("--keep-blas-env", action="store_true",
                   help="do not unset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for the run")
    return p


def _rerun_without_blas_env(argv: list[str]) -> int | None:
    """OPENBLAS_CORETYPE pins an older kernel; it has to be gone before NumPy loads, so the
    benchmarks run again in a child process without it (the variables stay for everything else)."""
    found = [k for k in _BLAS_ENV if k in os.environ]
    if not found or os.environ.get(_CHILD):
        return None
    env = {k: v for k, v in os.environ.items() if k not in _BLAS_ENV}
    env[_CHILD] = "1"
    env["NOMAGIC_BENCH_UNSET"] = ", ".join(f"{k}={os.environ[k]}" for k in found)
    print(f"(unsetting {', '.join(found)} for the benchmark run)", file=sys.stderr)
    return subprocess.call([sys.executable, "-m", "nomagic.apps.bench", *argv], env=env)


def main(argv: list[str] | None = None) -> int:
    """``nomagic bench [--quick] [--only NAME] [--write-results [PATH]]``."""
    from ...errors import NomagicError, require

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if not args.keep_blas_env:
        rc = _rerun_without_blas_env(argv)
        if rc is not None:
            return rc
    try:
        require("torch", "bench")
        require("sklearn", "bench")
        require("threadpoolctl", "bench")
    except NomagicError as exc:
        print(f"nomagic bench: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    info = machine_info()
    print(f"{info['cpu']}, {info['cores']} cores; NumPy {info['numpy']} ({info['blas']}); "
          f"PyTorch {info['torch']}", flush=True)
    names = args.only or list(BENCHMARKS)
    suites: dict[str, str] = {}
    for name in names:
        busy = wait_for_quiet(5.0 if args.quick else 60.0)
        if busy is not None and busy > 0.15:
            print(f"(the machine is busy: {100 * busy:.0f}% of its CPU time goes elsewhere; "
                  "the numbers below suffer)", file=sys.stderr)
        run = {"busy": busy, "load_before": _load(), "quick": args.quick,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "command": COMMAND + (" --quick" if args.quick else "") + (f" --only {name}" if args.only else "")}
        t1 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            rows = run_benchmarks(args.quick, [name], info)
        run.update(seconds=time.perf_counter() - t1, load_after=_load())
        print(format_table(rows), end="\n\n", flush=True)
        suites[name] = suite_markdown(name, rows, run)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    if args.write_results is not None:
        path = Path(args.write_results) if args.write_results else default_results_path()
        write_results(path, header_markdown(info), suites)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
