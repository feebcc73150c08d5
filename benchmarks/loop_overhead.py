"""What the loop of handlers costs: today's ``nm.fit`` against the one-function ``fit`` of a
git revision (default 6a1658b, the last commit before the loop of handlers), side by side in one process.

    PYTHONPATH=src python benchmarks/loop_overhead.py [--rev 6a1658b] [--repeats 11] [--epochs 5]

The digits MLP (64-128-128-10, relu, softmax, Adam, float32), batch 32 and 128, no validation,
progress bar off. The runs take turns (old, new, new without metrics, old, ...) after a warm-up
of each; every figure is the median of the repeats, [min – max] beside it. "new" reports
training accuracy (as every fit now does); "new, no metrics" drops the built-in metrics to
show the cost of the loop alone. Timings are never tests: nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import nomagic as nm
from nomagic.train import metrics as metrics_module


def _old_fit(rev: str):
    """``fit`` from ``src/nomagic/train/fit.py`` at ``rev``, loaded as a module of nomagic.train."""
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(["git", "show", f"{rev}:src/nomagic/train/fit.py"], cwd=root, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "_old_fit.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("nomagic.train._old_fit", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.fit


def _digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data / 16.0, data.target


def _net():
    return (nm.inputs(64) | nm.dense(128, activation="relu") | nm.dense(128, activation="relu")
            | nm.dense(10, activation="softmax"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="6a1658b")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: this process's CPU time (steadier on a shared machine); wall: elapsed")
    ap.add_argument("--no-op", action="store_true",
                    help="replace the optimizer step by a no-op: what is left is the loop's own cost")
    args = ap.parse_args(argv)
    old_fit = _old_fit(args.rev)
    X, y = _digits()
    X = X[:1347]
    y = y[:1347]
    net = _net()
    real_builtin = metrics_module.builtin_metrics

    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def run(fit, batch_size, bare=False):
        if bare:
            metrics_module.builtin_metrics = lambda name: []
        try:
            t0 = clock()
            model = fit(net, X, y, loss="cross_entropy", optimizer=nm.adam(1e-3), epochs=args.epochs,
                        batch_size=batch_size, seed=0, verbose=False)
            return clock() - t0, model
        finally:
            metrics_module.builtin_metrics = real_builtin

    if args.no_op:  # the same Trainer class for old and new; its step does nothing
        from nomagic.engines import tensor

        def step(self, Xb, Yb):
            self._out = np.zeros((len(Xb), 10), np.float32)
            return 0.5

        tensor.Trainer.train_batch = step
        tensor.Trainer.last_outputs = lambda self, logits_ok=False: self._out
    print(f"digits MLP 64-128-128-10, {len(X)} samples, {args.epochs} epochs, float32, Adam; "
          f"median [min – max] of {args.repeats} runs; old = fit.py at {args.rev}; {args.clock} time"
          + ("; optimizer step replaced by a no-op" if args.no_op else ""))
    print(f"{'batch':>5} | {'old fit (ms)':>22} | {'new fit (ms)':>22} | {'new, no metrics (ms)':>22} "
          f"| new/old | no metrics/old")
    for bs in (32, 128):
        kinds = {"old": (old_fit, False), "new": (nm.fit, False), "bare": (nm.fit, True)}
        times = {k: [] for k in kinds}
        for k, (fit, bare) in kinds.items():  # warm-up; the same params from both
            _, model = run(fit, bs, bare)
            if k == "old":
                ref = model
            elif not args.no_op:
                assert all(np.array_equal(model.params[p], ref.params[p]) for p in ref.params), k
        for _ in range(args.repeats):
            for k, (fit, bare) in kinds.items():
                times[k].append(run(fit, bs, bare)[0] * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}

        def cell(k, med=med, times=times):
            return f"{med[k]:7.1f} [{min(times[k]):6.1f} – {max(times[k]):6.1f}]"

        print(f"{bs:>5} | {cell('old'):>22} | {cell('new'):>22} | {cell('bare'):>22} "
              f"| {med['new'] / med['old']:7.3f} | {med['bare'] / med['old']:7.3f}")
        if args.no_op:
            n_batches = args.epochs * -(-len(X) // bs)
            per = {k: med[k] * 1e3 / n_batches for k in med}
            print(f"      per batch (µs): old {per['old']:.2f}, new {per['new']:.2f}, "
                  f"new without metrics {per['bare']:.2f}")


if __name__ == "__main__":
    main()
