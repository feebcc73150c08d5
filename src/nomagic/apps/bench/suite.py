"""``nomagic bench``: the tensor engine measured side by side with its references.

Every benchmark runs ours and the references in the same process, one after the other in turns
(ours, reference, ours, reference, ...), after a warm-up run of each, and reports for every row
the **median, min and max over the repeats** (never a best-of) and the ratio of the medians.
Every row says what it counts. Nothing here asserts a timing: the numbers are printed, and with
``--write-results`` written to ``benchmarks/RESULTS.md`` with the machine and the command.

References:

* PyTorch with its fastest Adam (``fused=True``); ``foreach=True`` is its own row. PyTorch runs
  on 1 and on 2 threads (``torch.set_num_threads``); the faster median is the reference, and the
  row says which won.
* JAX (when installed): the same MLP, a ``jax.jit``-compiled training step that includes
  ``optax.adam``'s update, the same mini-batches; its compile time is reported on its own and
  left out of its throughput. Without JAX the row says "JAX not installed".
* scikit-learn's ``MLPClassifier`` (digits only), for information.

Benchmarks (``--only NAME``, repeatable):

* ``digits``  MLP 64-128-128-10 (relu, softmax + cross-entropy, Adam 1e-3) on scikit-learn's
  digits, batch 32 and 128: training throughput of ``nm.fit`` and test accuracy.
* ``wide``    MLP 1024-1024-1024-10 on random data, batch 256: throughput against PyTorch, and
  GFLOP/s counting only the matrix products actually run, against ``np.matmul``'s on a large
  square product measured in the same run.
* ``rnn``     Elman RNN, LSTM and GRU, 30 steps, hidden 64, batch 32, a dense output: training step
  time against ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` + ``nn.Linear``.
* ``processes`` the processes engine (``nomagic.apps.bench.processes``).
* ``runtime`` the process runtime (``nomagic.apps.bench.runtime``): a message hop along a chain of
  100,000 processes (bare, and supervised + journaled neuron-shaped processes) against
  Elixir/BEAM with default schedulers and with ``+S 1``; memory and spawn time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

BENCHMARKS = ("digits", "wide", "rnn", "processes", "runtime", "planner", "ray", "playground")
COMMAND = "nomagic bench --write-results"
TORCH_THREADS = (1, 2)  # PyTorch is measured on both; the faster median is the reference
ADAM_KINDS = ("fused", "foreach")  # fused=True is the reference; foreach=True its own row
NEEDS = {"digits": ("torch", "sklearn"), "wide": ("torch",), "rnn": ("torch",), "processes": ("sklearn",),
         "runtime": (), "ray": ("ray",), "playground": ("starlette", "uvicorn", "websockets")}
JAX_MISSING = "JAX not installed"
_BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_CHILD = "NOMAGIC_BENCH_CHILD"


# -- measuring ------------------------------------------------------------------------------------


def _interleaved(cases: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of every repeat of every case (warm-up runs left out). Each callable does one unit
    of work and returns its seconds (so that it can leave set-up outside the clock); the cases run
    in turns, so that a change in the machine's load touches all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(warmup + repeats):
        for name, fn in cases.items():
            seconds = fn()
            if r >= warmup:
                times[name].append(seconds)
            _settle()
    return times


def _settle(window: float = 0.02, most: float = 1.0) -> None:
    """Wait until this process's threads have gone idle (for up to ``most`` seconds). After a
    multi-threaded run, a library's worker threads keep spinning on the cores for a while: an
    OpenBLAS worker for a tenth of a second and more (measured on 2 cores: a whole core for
    0.1 s after scikit-learn on 2 threads, half of one for 0.2 s), PyTorch's for some ms. A case
    started meanwhile would share its cores with them, so the next case waits until the process
    uses under a tenth of a core over ``window`` seconds."""
    end = time.perf_counter() + most
    while True:
        c0 = time.process_time()
        time.sleep(window)
        if time.process_time() - c0 < 0.1 * window or time.perf_counter() > end:
            return


def stats(values: Sequence[float] | float | None) -> dict | None:
    """Median, min, max and count of the repeats (a single number counts as one repeat)."""
    if values is None:
        return None
    if isinstance(values, (int, float)):
        values = [float(values)]
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _per_second(work: float, seconds: Sequence[float]) -> list[float]:
    return [work / s for s in seconds]


def _scaled(seconds: Sequence[float], factor: float) -> list[float]:
    return [s * factor for s in seconds]


def _fastest(times: dict[str, list[float]], prefix: str) -> str:
    """The case whose median time is the least among those named ``prefix ...``."""
    keys = [k for k in times if k.startswith(prefix + " ")]
    return min(keys, key=lambda k: statistics.median(times[k]))


def _threads_of(case: str) -> str:
    th = case.rsplit(" ", 1)[-1].rstrip("t")
    return f"{th} thread{'s' if th != '1' else ''}"


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


def _version(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except ImportError:
        return "not installed"


def _numba_info() -> str:
    """numba's version, and whether the compiled loops run (engines/compiled.py)."""
    from nomagic.engines import compiled

    version = _version("numba")
    if version == "not installed":
        return "not installed (NumPy calls, no compiled loops)"
    return f"{version}, " + ("the compiled loops run" if compiled.enabled()
                             else "NOMAGIC_NUMBA=0: NumPy calls, no compiled loops")


def machine_info() -> dict:
    """Cores, versions and the BLAS NumPy runs on (kernel and threads, via threadpoolctl)."""
    blas = _blas_info()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    jax = _version("jax")
    if jax != "not installed":
        jax += f", optax {_version('optax')}"
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": _version("torch"),
        "jax": jax,
        "sklearn": _version("sklearn"),
        "numba": _numba_info(),
        "blas": (f"{blas.get('internal_api', '?')} {blas.get('version', '?')}, kernel "
                 f"{blas.get('architecture', '?')}, {blas.get('num_threads', '?')} threads") if blas else "unknown",
        "blas_threads": int(blas.get("num_threads") or 1) if blas else (os.cpu_count() or 1),
        "blas_env": os.environ.get("NOMAGIC_BENCH_UNSET", ""),
        "load_before": _load(),
    }


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


def _row(bench: str, what: str, counts: str, ours: Sequence[float] | float | None, ref_name: str,
         ref: Sequence[float] | float | None, unit: str, goal: float | None, higher_is_better: bool = True,
         note: str = "") -> dict:
    """One line of the table. ``ours`` and ``ref`` are the repeats' values; the row keeps their
    median, min, max and count. ``ratio`` is the ratio of the medians, 'how many times better we
    are'; ``counts`` says exactly what the number counts."""
    o, r = stats(ours), stats(ref)
    ratio = None
    if o and r and r["median"] and o["median"]:
        ratio = o["median"] / r["median"] if higher_is_better else r["median"] / o["median"]
    return {"benchmark": bench, "what": what, "counts": counts, "ours": o, "reference": ref_name, "ref": r,
            "unit": unit, "ratio": ratio, "goal": goal,
            "met": None if goal is None or ratio is None else bool(ratio >= goal), "note": note}


def _ratio_str(r: dict) -> str:
    if r.get("ratio_text"):
        return r["ratio_text"]
    return "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"


def _goal_str(r: dict) -> str:
    if r.get("goal_text"):
        return r["goal_text"]
    return "—" if r["goal"] is None else f"≥ {r['goal']:g}×"


def _num(v: float, unit: str) -> str:
    if unit == "acc":
        return f"{v:.3f}"
    if unit in ("", "ratio", "×"):
        return f"{v:.2f}"
    if unit == "%":
        return f"{v:.0f}"
    if unit == "ms" and v >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _with_unit(text: str, unit: str) -> str:
    if unit in ("acc", "", "ratio"):
        return text
    if unit == "%":
        return text + "%"
    return f"{text} {unit}"


def _fmt(v: float | None, unit: str = "") -> str:
    """One number with its unit."""
    return "—" if v is None else _with_unit(_num(v, unit), unit)


def fmt_stat(s: dict | None, unit: str) -> str:
    """``median [min – max] unit``; a single figure (one repeat) without the brackets."""
    if s is None:
        return "—"
    if s["n"] <= 1:
        return _fmt(s["median"], unit)
    return _with_unit(f"{_num(s['median'], unit)} [{_num(s['min'], unit)} – {_num(s['max'], unit)}]", unit)


def _ref_str(r: dict) -> str:
    return f"{r['reference']}: {fmt_stat(r['ref'], r['unit'])}" if r["ref"] is not None else r["reference"]


def _repeats(r: dict) -> str:
    return "—" if r["ours"] is None else str(r["ours"]["n"])


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the rows (what ``nomagic bench`` prints): median [min – max]."""
    head = ["benchmark", "what", "n", "ours: median [min – max]", "reference: median [min – max]", "ratio",
            "goal", "met"]
    lines = [head]
    for r in rows:
        lines.append([r["benchmark"], r["what"], _repeats(r), fmt_stat(r["ours"], r["unit"]), _ref_str(r),
                      _ratio_str(r), _goal_str(r), {None: "", True: "yes", False: "NO"}[r["met"]]])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


# -- torch helpers --------------------------------------------------------------------------------


def _torch_mlp(sizes: list[int]):
    import torch

    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _torch_adam(params, kind: str):
    import torch

    return torch.optim.Adam(params, lr=1e-3, **{kind: True})


def _torch_epochs(model, params, Xt, yt, batch_size: int, epochs: int, loss_fn, adam: str, seed: int = 0,
                  head=None):
    """A plain PyTorch training loop over the same mini-batches as ``nm.fit``."""
    import torch

    opt = _torch_adam(params, adam)
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


def _torch_cases(make_run: Callable[[int, str], float]) -> dict[str, Callable[[], float]]:
    """``torch fused 1t``, ``torch fused 2t``, ``torch foreach 1t``, ...: every Adam kind on 1 and
    2 threads."""
    return {f"torch {kind} {th}t": (lambda th=th, kind=kind: make_run(th, kind))
            for kind in ADAM_KINDS for th in TORCH_THREADS}


def _torch_rows(label: str, what: str, counts: str, ours: list[float], times: dict[str, list[float]],
                convert: Callable[[list[float]], list[float]], unit: str, goal: float | None,
                higher_is_better: bool = True, torch_name: str = "PyTorch", extra: str = "") -> list[dict]:
    """Ours against PyTorch's fused Adam (the reference, with the goal) and its foreach Adam,
    each on the faster of 1 and 2 threads; the notes give every thread count's median."""
    rows = []
    for kind in ADAM_KINDS:
        best = _fastest(times, f"torch {kind}")
        others = " / ".join(f"{_threads_of(k)}: {fmt_stat(stats(convert(times[k])), unit)}"
                            for k in times if k.startswith(f"torch {kind} "))
        note = f"Adam({kind}=True); {_threads_of(best)} won (by median) — {others}"
        rows.append(_row(label, what, counts, ours, f"{torch_name} Adam({kind}=True), {_threads_of(best)}",
                         convert(times[best]), unit, goal if kind == "fused" else None, higher_is_better,
                         note=note + (f"; {extra}" if extra else "")))
    return rows


# -- JAX --------------------------------------------------------------------------------------------


def _jax_modules():
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        return None
    return jax, jnp, optax


def jax_missing_row(label: str, what: str, counts: str, ours: Sequence[float] | float | None, unit: str) -> dict:
    """The JAX reference's row when JAX (or optax) is not installed: says so, compares nothing."""
    return _row(label, what, counts, ours, JAX_MISSING, None, unit, None,
                note="pip install 'nomagic[bench]' brings jax and optax")


def _jax_mlp_trainer(sizes: list[int], X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                     batch_size: int, epochs: int, accuracies: list[float]):
    """A training run of the MLP in JAX: ``jax.jit`` of one step (forward, backward, optax.adam's
    update), compiled ahead of time for every batch shape the epochs use. Returns the run (the
    same mini-batches as ``nm.fit``; parameters made before the clock) and the compile seconds."""
    jax, jnp, optax = _jax_modules()

    def init(seed: int):
        key, params = jax.random.PRNGKey(seed), []
        for a, b in zip(sizes[:-1], sizes[1:]):  # PyTorch's nn.Linear initialization
            key, kw, kb = jax.random.split(key, 3)
            bound = 1.0 / np.sqrt(a)
            params.append((jax.random.uniform(kw, (a, b), jnp.float32, -bound, bound),
                           jax.random.uniform(kb, (b,), jnp.float32, -bound, bound)))
        return params

    def forward(params, x):
        for i, (W, b) in enumerate(params):
            x = x @ W + b
            if i < len(params) - 1:
                x = jax.nn.relu(x)
        return x

    def loss_fn(params, x, yb):
        return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), yb).mean()

    opt = optax.adam(1e-3)

    def step(params, state, x, yb):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, yb)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    n, y32 = len(X), y.astype(np.int32)
    p0 = init(0)
    s0 = opt.init(p0)
    t0 = time.perf_counter()
    jitted = jax.jit(step, donate_argnums=(0, 1))
    compiled = {size: jitted.lower(p0, s0, X[:size], y32[:size]).compile()
                for size in sorted({batch_size, n % batch_size} - {0})}
    predict = jax.jit(forward).lower(p0, X_test).compile()
    compile_seconds = time.perf_counter() - t0

    def run() -> float:
        params = init(0)
        state = opt.init(params)
        jax.block_until_ready((params, state))
        t0 = time.perf_counter()
        for epoch in range(epochs):
            order = np.random.default_rng([0, epoch]).permutation(n)
            Xe, ye = X[order], y32[order]
            for start in range(0, n, batch_size):
                xb = Xe[start:start + batch_size]
                params, state, _ = compiled[len(xb)](params, state, xb, ye[start:start + batch_size])
        jax.block_until_ready(params)
        seconds = time.perf_counter() - t0
        accuracies.append(float(np.mean(np.asarray(predict(params, X_test)).argmax(axis=1) == y_test)))
        return seconds

    return run, compile_seconds


# -- 1. digits --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _without_numba():
    """NumPy calls instead of the compiled loops of ``engines/compiled.py`` (``NOMAGIC_NUMBA=0``),
    for the row that shows nomagic without numba."""
    from nomagic.engines import compiled

    before = os.environ.get("NOMAGIC_NUMBA")
    os.environ["NOMAGIC_NUMBA"] = "0"
    compiled.reset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["NOMAGIC_NUMBA"]
        else:
            os.environ["NOMAGIC_NUMBA"] = before
        compiled.reset()


def _update_row(net, repeats: int, updates: int = 2000) -> dict:
    """µs per Adam update of the digits MLP's params (float32, as nm.fit's flat buffers), its
    compiled loop against its NumPy passes, in turns (``engines/compiled.py``)."""
    import nomagic as nm

    params = {k: np.asarray(v, np.float32) for k, v in net.init(seed=0).items()}
    n = sum(v.size for v in params.values())
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    slots = {"m": np.zeros(n, np.float32), "v": np.zeros(n, np.float32)}
    tmp, opt = np.empty(n, np.float32), nm.adam(1e-3)

    def run() -> float:
        opt.apply_(1, p, g, slots, tmp)  # a warm start: the loop made, the arrays in the cache
        t0 = time.perf_counter()
        for t in range(2, updates + 2):
            opt.apply_(t, p, g, slots, tmp)
        return (time.perf_counter() - t0) / updates

    def numpy_run() -> float:
        with _without_numba():
            return run()

    times = _interleaved({"compiled": run, "numpy": numpy_run}, repeats)
    us = lambda secs: [x * 1e6 for x in secs]  # noqa: E731
    return _row("digits MLP 64-128-128-10: Adam's update", "µs per update",
                f"µs = seconds of {updates:,} in-place updates of the {n:,} float32 params ÷ {updates:,} "
                "(opt.apply_ on flat vectors, as nm.fit runs it)", us(times["compiled"]),
                "the same update as NumPy passes (NOMAGIC_NUMBA=0)", us(times["numpy"]), "µs", None,
                higher_is_better=False, note="ours: the loop numba compiles (engines/compiled.py); the same numbers")


def _partner_ready() -> str:
    """Start the tensor engine's partner process before the clock (as JAX compiles before it), for
    the runs with ``partner=True``; says how they ran, for the row's note."""
    from nomagic.engines.tensor import partner

    p = partner.partner()
    if p is not None and p.ready(wait=60.0):
        return ("steps shared with the partner where a probe finds that faster; the partner started "
                "before the clock")
    return "no partner process on this machine"


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
    repeats = 3 if quick else 9  # a run is a fraction of a second: many, for medians that hold still
    net = digits_network()
    partner = _partner_ready()
    partner_used = partner.startswith("steps shared")
    from nomagic.engines import compiled

    compiled_loops = compiled.enabled()
    rows = []
    Xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr.astype(np.int64))
    ce = torch.nn.CrossEntropyLoss()
    have_jax = _jax_modules() is not None
    for bs in (32, 128):
        acc: dict[str, list[float]] = {}

        def ours(bs=bs, acc=acc, partner=False, key=None):
            t0 = time.perf_counter()
            model = nm.fit(net, Xtr, ytr, loss="cross_entropy", optimizer=nm.adam(1e-3), epochs=epochs,
                           batch_size=bs, seed=0, verbose=False, partner=partner)
            dt = time.perf_counter() - t0
            key = key or ("ours, partner" if partner else "ours")
            acc.setdefault(key, []).append(float(np.mean(model.predict(Xte).argmax(axis=1) == yte)))
            return dt

        def torch_run(threads, kind, bs=bs, acc=acc):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            model = _torch_mlp([64, 128, 128, 10])
            t0 = time.perf_counter()
            _torch_epochs(model, model.parameters(), Xt, yt, bs, epochs, ce, kind)
            dt = time.perf_counter() - t0
            with torch.no_grad():
                acc.setdefault(f"torch {kind} {threads}t", []).append(
                    float((model(torch.from_numpy(Xte)).argmax(1).numpy() == yte).mean()))
            return dt

        def sklearn_run(threads, bs=bs, acc=acc):
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
            acc.setdefault(f"sklearn {threads}t", []).append(float(clf.score(Xte, yte)))
            return dt * epochs / clf.n_iter_  # as if it had run every epoch

        def ours_numpy(f=ours) -> float:
            with _without_numba():
                return f(key="ours, numpy")

        cases: dict[str, Callable[[], float]] = {"ours": ours}
        if partner_used:
            cases["ours, partner"] = lambda f=ours: f(partner=True)
        if compiled_loops:
            cases["ours, numpy"] = ours_numpy
        cases.update(_torch_cases(torch_run))
        compile_seconds = None
        if have_jax:
            jax_acc = acc.setdefault("jax", [])
            cases["jax"], compile_seconds = _jax_mlp_trainer([64, 128, 128, 10], Xtr, ytr, Xte, yte, bs, epochs,
                                                             jax_acc)
        for th in TORCH_THREADS:
            cases[f"sklearn {th}t"] = lambda th=th, f=sklearn_run: f(th)
        times = _interleaved(cases, repeats)
        acc = {k: v[-repeats:] for k, v in acc.items()}  # the warm-up run's accuracy left out
        rate = lambda secs: _per_second(epochs * n, secs)  # noqa: E731
        label = f"digits MLP 64-128-128-10, batch {bs}"
        what = "training throughput"
        counts = (f"samples/s = {epochs} epochs × {n:,} training samples ÷ seconds of one whole training run "
                  "(ours: the nm.fit call; references: their loop over the same mini-batches, model made "
                  "before the clock)")
        ours_rate = rate(times["ours"])
        rows += _torch_rows(label, what, counts, ours_rate, times, rate, "samples/s", 2.0)
        if have_jax:
            rows.append(_row(label, what, counts, ours_rate, "JAX jit + optax.adam", rate(times["jax"]),
                             "samples/s", 1.0,
                             note=f"one jitted step (forward, backward, Adam update); compiled once beforehand in "
                                  f"{compile_seconds:.2f} s, not counted; XLA's own threads"))
        else:
            rows.append(jax_missing_row(label, what, counts, ours_rate, "samples/s"))
        if partner_used:
            rows.append(_row(label, what, counts, ours_rate, "nomagic with its partner process (partner=True)",
                             rate(times["ours, partner"]), "samples/s", None,
                             note=f"the same nm.fit on two processes (docs/ARCHITECTURE.md); {partner}"))
        else:
            rows.append(_row(label, what, counts, ours_rate, "nomagic with its partner process (partner=True)",
                             None, "samples/s", None, note=partner))
        numpy_row = "nomagic without numba (NOMAGIC_NUMBA=0: NumPy calls, no compiled loops)"
        if compiled_loops:
            rows.append(_row(label, what, counts, ours_rate, numpy_row, rate(times["ours, numpy"]), "samples/s",
                             None, note="the same nm.fit with NOMAGIC_NUMBA=0; the other rows of ours run Adam's "
                                        "update and the whole dense step, its BLAS calls included, as loops "
                                        "compiled by numba (engines/compiled.py), with the same numbers"))
        else:
            rows.append(_row(label, what, counts, ours_rate, numpy_row, None, "samples/s", None,
                             note="numba is not installed or NOMAGIC_NUMBA=0: every row of ours is without it"))
        best_s = _fastest(times, "sklearn")
        if compiled_loops and bs == 32:
            rows.append(_update_row(net, repeats))
        rows.append(_row(label, what, counts, ours_rate, f"scikit-learn MLPClassifier, {_threads_of(best_s)}",
                         rate(times[best_s]), "samples/s", None,
                         note="its own shuffling; time scaled to the full epochs when it stopped early; "
                              + " / ".join(f"{_threads_of(k)}: {fmt_stat(stats(rate(times[k])), 'samples/s')}"
                                           for k in times if k.startswith("sklearn "))))
        best_t = _fastest(times, "torch fused")
        others = [f"PyTorch foreach: {fmt_stat(stats(acc[_fastest(times, 'torch foreach')]), 'acc')}",
                  f"JAX: {fmt_stat(stats(acc['jax']), 'acc')}" if have_jax else JAX_MISSING,
                  f"scikit-learn: {fmt_stat(stats(acc[best_s]), 'acc')}"]
        a = _row(label, f"test accuracy after {epochs} epochs",
                 f"fraction of the {len(yte)} held-out digits classified right, after each timed run",
                 acc["ours"], f"PyTorch Adam(fused=True), {_threads_of(best_t)}", acc[best_t], "acc", None,
                 note="; ".join(others))
        if quick:  # a few epochs cannot reach the goal; it is judged on full runs only
            a.update(ratio=None, goal_text="≥ 0.97 (full run)", met=None)
        else:
            a.update(ratio=None, goal_text="≥ 0.97", met=bool(a["ours"]["median"] >= 0.97))
        rows.append(a)
    return rows


# -- 2. wide --------------------------------------------------------------------------------------


def matmul_cases(quick: bool) -> dict[str, Callable[[], float]]:
    """``matmul N``: seconds of one float32 ``np.matmul`` of two N×N matrices (the mean of three
    back to back), to run in turns with the training runs, so that the peak is measured under the
    same load as they are."""
    rng = np.random.default_rng(0)
    cases = {}
    for size in ((2048,) if quick else (2048, 3072)):
        a = rng.standard_normal((size, size)).astype(np.float32)
        b = rng.standard_normal((size, size)).astype(np.float32)
        out = np.empty_like(a)

        def run(a=a, b=b, out=out) -> float:
            t0 = time.perf_counter()
            for _ in range(3):
                np.matmul(a, b, out=out)
            return (time.perf_counter() - t0) / 3

        cases[f"matmul {size}"] = run
    return cases


def mlp_step_flops(sizes: Sequence[int], batch: int) -> float:
    """Floating-point operations in the matrix products one MLP training step runs: forward
    2·B·in·out per layer, the weight gradient 2·B·in·out per layer, and the input gradient
    2·B·in·out for every layer but the first (nomagic's fused path and PyTorch's autograd both
    skip the data's gradient). Bias sums, activations and the optimizer are not counted."""
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2.0 * batch * (2 * sum(macs) + sum(macs[1:]))


def bench_wide(quick: bool, info: dict) -> list[dict]:
    import torch

    import nomagic as nm

    B = 256
    sizes = [1024, 1024, 1024, 10]
    steps = 8 if quick else 12  # mini-batches per epoch
    epochs = 1 if quick else 4
    repeats = 3 if quick else 5
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

    def torch_run(threads, kind):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = _torch_mlp(sizes)
        t0 = time.perf_counter()
        _torch_epochs(model, model.parameters(), Xt, yt, B, epochs, ce, kind)
        return time.perf_counter() - t0

    cases: dict[str, Callable[[], float]] = {"ours": ours}
    cases.update(_torch_cases(torch_run))
    cases.update(matmul_cases(quick))
    times = _interleaved(cases, repeats)
    best_mm = _fastest(times, "matmul")
    size = int(best_mm.split()[1])
    peak = _per_second(2.0 * size ** 3 / 1e9, times[best_mm])
    n_steps = steps * epochs
    flops = mlp_step_flops(sizes, B)
    label = f"MLP {'-'.join(map(str, sizes))}, batch {B}, float32"
    counts = (f"samples/s = {epochs} epoch(s) × {steps} batches × {B} samples ÷ seconds of one whole training run "
              "(ours: the nm.fit call, set-up included; PyTorch: its loop, model made before the clock)")
    rate = lambda secs: _per_second(B * n_steps, secs)  # noqa: E731
    rows = _torch_rows(label, "training throughput", counts, rate(times["ours"]), times, rate, "samples/s", 0.9)
    gflops = lambda secs: _per_second(flops * n_steps / 1e9, secs)  # noqa: E731
    formula = (f"{flops / 1e9:.2f} GFLOP per step = 2·B·(2·Σ in·out + Σ in·out of layers 2..L): forward and "
               "weight-gradient products of every layer, input-gradient products of every layer but the first "
               "(neither nomagic nor PyTorch computes the data's gradient); bias sums, activations and Adam not "
               "counted; the time is the whole training run's")
    peak_name = f"np.matmul float32 {size}×{size}"
    peak_counts = (f"np.matmul peak: 2·{size}³ flops ÷ seconds of one product (the mean of 3), run in turns with "
                   "the training runs")
    best_t = _fastest(times, "torch fused")
    for who, secs, goal in (("ours (nm.fit)", times["ours"], 0.5),
                            (f"PyTorch Adam(fused=True), {_threads_of(best_t)}", times[best_t], None)):
        r = _row(label, f"GFLOP/s in matrix products, {who}", f"{formula}; {peak_counts}", gflops(secs),
                 peak_name, peak, "GFLOP/s", goal, note="for comparison" if goal is None else "")
        r["ratio_text"] = f"{100 * r['ratio']:.0f}% of peak"
        if goal is not None:
            r["goal_text"] = f"≥ {100 * goal:.0f}% of peak"
        rows.append(r)
    fb, step, how = _wide_breakdown(net, p0, X, y, B, steps=7 if quick else 15)
    total = [a + b for a, b in zip(fb, step)]
    rows.append(_row(label, "a step's time (Trainer, no nm.fit)",
                     "ms of forward + backward (loss_and_grad) plus the Adam update, per step", _scaled(total, 1e3),
                     "", None, "ms", None,
                     note=f"forward + backward {fmt_stat(stats(_scaled(fb, 1e3)), 'ms')}; Adam update of "
                          f"{sum(v.size for v in p0.values()):,} params {fmt_stat(stats(_scaled(step, 1e3)), 'ms')}; "
                          f"{how}"))
    return rows


def _wide_breakdown(net, p0, X, y, B: int, steps: int = 15) -> tuple[list[float], list[float], str]:
    """Seconds of each step's two halves (forward + backward, and the optimizer), and how the step
    used the threads."""
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
        return fb, st, how
    finally:
        tr.close()


# -- 3. recurrent -----------------------------------------------------------------------------------


def bench_rnn(quick: bool, info: dict) -> list[dict]:
    import torch

    import nomagic as nm

    B, T, F, H = 32, 30, 8, 64
    steps = 8 if quick else 25
    repeats = 3 if quick else 7
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

        def torch_run(threads, adam, tcls=tcls):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            rnn, head = tcls(F, H, batch_first=True), torch.nn.Linear(H, 1)
            t0 = time.perf_counter()
            _torch_epochs(rnn, list(rnn.parameters()) + list(head.parameters()), Xt, yt, B, 1, mse, adam, head=head)
            return time.perf_counter() - t0

        cases: dict[str, Callable[[], float]] = {"ours": ours}
        cases.update(_torch_cases(torch_run))
        times = _interleaved(cases, repeats)
        per_step = lambda secs: _scaled(secs, 1e3 / steps)  # noqa: E731
        rows += _torch_rows(f"{kind}, {T} steps, hidden {H}, batch {B}, {F} inputs, dense output",
                            "training step", f"ms per step = 1000 × seconds of one epoch of {steps} steps (forward, "
                            f"backward through time, Adam) ÷ {steps}; ours: the nm.fit call",
                            per_step(times["ours"]), times, per_step, "ms", goal, higher_is_better=False,
                            torch_name=f"PyTorch nn.{tcls.__name__}")
    return rows


# -- 4. the processes engine and its runtime: modules beside this one ------------------------------------


def _script(name: str):
    """The benchmark module ``nomagic.apps.bench.<name>`` (inside the package: runs when installed)."""
    return importlib.import_module(f"{__package__}.{name}")


def _script_rows(bench: str, rows: list[dict]) -> list[dict]:
    """A script's rows (name, value, unit, note; min, max, repeats, counts where it measured them;
    goal, goal_op, met, reference, ratio where they mean something) as lines of the table. Their
    goals are absolute (a number of the row's unit), so they are written out as text."""
    out = []
    for r in rows:
        note, met, goal = r.get("note", ""), r.get("met"), r.get("goal")
        if goal is None and r["name"].startswith("ratio:") and r["value"] is not None:
            goal, met = 1.0, r["value"] >= 1.0  # DESIGN.md: at least as fast as BEAM
            r = {**r, "goal_op": ">="}
        goal_text = None
        if goal is not None:
            op = {"<=": "≤", ">=": "≥"}.get(r.get("goal_op", ""), "")
            goal_text = f"{op} {goal:,g} {r['unit']}".strip()
        ours = None
        if r["value"] is not None:
            ours = {"median": r["value"], "min": r.get("min", r["value"]), "max": r.get("max", r["value"]),
                    "n": r.get("repeats", 1)}
        ref = r.get("reference")
        out.append({"benchmark": bench, "what": r["name"], "counts": r.get("counts", ""), "ours": ours,
                    "reference": r.get("reference_name", "—"), "ref": stats(ref), "unit": r["unit"],
                    "ratio": r.get("ratio"), "goal": None, "goal_text": goal_text, "met": met, "note": note})
    return out


def bench_processes(quick: bool, info: dict) -> list[dict]:
    return _script_rows("processes engine", _script("processes").run(quick=quick))


def bench_runtime(quick: bool, info: dict) -> list[dict]:
    return _script_rows("process runtime", _script("runtime").run(quick=quick))


# -- running and reporting --------------------------------------------------------------------------


RUNNERS = {"digits": bench_digits, "wide": bench_wide, "rnn": bench_rnn, "processes": bench_processes,
           "runtime": bench_runtime,
           "planner": lambda quick, info: _script_rows("planner", _script("planner").run(quick=quick)),
           "ray": lambda quick, info: _script_rows("ray engine", _script("ray").run(quick=quick)),
           "playground": lambda quick, info: _script_rows("playground", _script("playground").run(quick=quick))}


def missing_dependency(names: Sequence[str]) -> str | None:
    """One line naming the first module the chosen benchmarks need and cannot import, else None."""
    for name in names:
        for module in NEEDS.get(name, ()):
            try:
                importlib.import_module(module)
            except ImportError:
                return (f"nomagic bench: {module!r} is needed for the {name!r} benchmark; install it with: "
                        "pip install 'nomagic[bench]'")
    return None


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
                "runtime": "Process runtime", "planner": "Training planner: import and plan",
                "ray": "Ray engine: 1 against 2 workers, message volume",
                "playground": "Playground: live updates streamed to a page"}


def _block(name: str, text: str) -> str:
    return f"<!-- nomagic bench: {name} -->\n{text.strip()}\n<!-- nomagic bench: end {name} -->\n"


def header_markdown(info: dict) -> str:
    """What every suite shares: how the numbers were taken, and the machine."""
    lines = [
        "Written by `nomagic bench --write-results` (each suite below names the exact command that produced",
        "it; `--only NAME` rewrites that suite alone). Ours and the references ran in the same process, in",
        "turns, after a warm-up run of each. Every figure is the **median over the repeats, with the min and",
        "max beside it** as `median [min – max]`; `n` is the number of repeats. A ratio is the ratio of the",
        "medians: how many times faster (or, for accuracy, higher) we are; a goal is met when it reaches the",
        "goal. The column \"what is counted\" says exactly what each number counts. Before each suite the run",
        "waits up to a minute for other processes to leave the CPUs alone, and says how much CPU time they",
        "still took: multi-threaded BLAS gets many times slower when a core is taken.",
        "",
        "References: PyTorch with its fastest Adam (`fused=True`), and `foreach=True` as its own row, each on",
        "1 and 2 threads: the faster median is the reference and the row says which won. JAX (`jax.jit` of",
        "the whole training step with `optax.adam`, compile time reported apart) where installed. The tensor",
        "engine runs a network whose matrix products are all small on one BLAS thread, big products on all.",
        "",
        "Machine:",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores",
        f"- Python {info['python']}, NumPy {info['numpy']}, PyTorch {info['torch']}, JAX {info['jax']}, "
        f"scikit-learn {info['sklearn']}",
        f"- numba: {info.get('numba', 'not recorded')}",
        f"- NumPy's BLAS: {info['blas']}",
    ]
    if info.get("blas_env"):
        lines.append(f"- {info['blas_env']} was set in the environment; the benchmarks ran without it (it pins "
                     "OpenBLAS to an older, slower kernel); tests and CI keep it")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


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
        lines += [f"### {bench}", "",
                  "| measure | what is counted | n | ours: median [min – max] | reference: median [min – max] | "
                  "ratio of medians | goal | met | notes |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in group:
            met = {None: "", True: "yes", False: "**no**"}[r["met"]]
            cells = [r["what"], r.get("counts", ""), _repeats(r), fmt_stat(r["ours"], r["unit"]), _ref_str(r),
                     _ratio_str(r), _goal_str(r), met, r["note"]]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
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
    p = argparse.ArgumentParser(
        prog="nomagic bench",
        description="Run the benchmarks side by side with their references (PyTorch, JAX, scikit-learn, "
                    "Elixir/BEAM) and print the comparison table: median [min – max] over the repeats. "
                    "Needs: pip install 'nomagic[bench]' (the runtime suite needs nothing more).")
    p.add_argument("--quick", action="store_true", help="fewer repeats and epochs (a check that it runs)")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    names = args.only or list(BENCHMARKS)
    missing = missing_dependency(names)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    if not args.keep_blas_env:
        rc = _rerun_without_blas_env(argv)
        if rc is not None:
            return rc
    t0 = time.perf_counter()
    info = machine_info()
    print(f"{info['cpu']}, {info['cores']} cores; NumPy {info['numpy']} ({info['blas']}); "
          f"PyTorch {info['torch']}; JAX {info['jax']}", flush=True)
    print("each figure: median [min – max] over n repeats; ratio: of the medians", flush=True)
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
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
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
