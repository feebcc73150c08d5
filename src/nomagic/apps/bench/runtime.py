"""Benchmarks of the process runtime (``nomagic.runtime``), and the same chain on Elixir/BEAM.

Measures, each as the median, min and max over the repeats (after a warm-up run): the time of one
message hop along a chain of 100,000 processes — bare relays, and neuron-shaped processes that
hold a small NumPy vector and pass a ``(tag, batch, vector)`` message on, started under a
``Supervisor`` with journaling on (and, to show what supervision costs, the same without it) —
the memory of a waiting process (tracemalloc), and the time to spawn 1,000,000 processes. When
``elixir`` is on PATH — or can be installed: run as root with apt-get at hand, this script installs
Debian's ``elixir`` package unless ``NOMAGIC_BENCH_INSTALL=0`` — an Elixir script passes a token
along the same chain, with default schedulers and with one (``elixir --erl "+S 1"``), and the rows
give the ratio BEAM µs/hop ÷ ours (above 1: we are faster).

    python -m nomagic.apps.bench.runtime [--quick]
"""

from __future__ import annotations

import gc
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

from nomagic.runtime import ANY, Child, Runtime, Supervisor

REPEATS, QUICK_REPEATS = 5, 3
VECTOR = 4  # the batch a neuron-shaped message carries

# A chain: each process waits for the token, passes it on plus one, and exits; the same in
# Elixir below. Timed from the first send to the arrival at the end, after every process
# of the chain has started and waits.


def _relay(self, next_pid):
    token = yield ANY
    self.send(next_pid, token + 1)


def _sink(self, out):
    out.append((yield ANY))


def _neuron(self, weight, consumers):
    """A process the shape of a neuron: waits for an input, sends weighted output on."""
    while True:
        x = yield ANY
        for c in consumers:
            self.send(c, x * weight)


def _carrier(self, w, route, i):
    """Neuron-shaped: holds its own vector ``w``; each message ``(tag, batch, x)`` goes on to
    the next process as ``(tag, batch, x * w)``. ``route[i]`` is filled in once every process of
    the chain has a Pid (a supervisor starts its children all at once). Also a supervised child's
    ``fn(self, state, *args)``: its state is the vector."""
    nxt = route[i]
    while True:
        tag, batch, x = yield ANY
        self.send(nxt, (tag, batch, x * w))


ELIXIR_CHAIN = r"""
defmodule Chain do
  def relay(next) do
    receive do
      n -> send(next, n + 1)
    end
  end

  def once(n) do
    first = Enum.reduce(1..n, self(), fn _, next -> spawn(fn -> relay(next) end) end)
    Process.sleep(200)  # let every process reach its receive
    {t, hops} = :timer.tc(fn ->
      send(first, 0)
      receive do
        k -> k
      end
    end)
    true = hops == n
    t / hops
  end
end

[arg, reps | _] = System.argv()
n = String.to_integer(arg)
_warm_up = Chain.once(n)
runs = for _ <- 1..String.to_integer(reps), do: Chain.once(n)
IO.puts("us_per_hop=" <> Enum.map_join(runs, ",", &Float.to_string/1))
"""


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "repeats": len(values)}


def hop_us(n: int, repeat: int = REPEATS) -> list[float]:
    """µs per hop of a token passed along a chain of ``n`` processes, for each repeat (after a
    warm-up run)."""
    samples = []
    for _ in range(repeat + 1):
        rt, out = Runtime(), []
        pid = rt.spawn(_sink, out)
        for _ in range(n):
            pid = rt.spawn(_relay, pid)
        rt.run_until_idle()  # all started, all waiting
        t = time.perf_counter()
        rt.send(pid, 0)
        rt.run_until_idle()
        samples.append((time.perf_counter() - t) / n * 1e6)
        assert out == [n]
        del rt, pid
        gc.collect()
    return samples[1:]


def neuron_hop_us(n: int, repeat: int = REPEATS, supervised: bool = True) -> list[float]:
    """µs per hop of a ``(tag, batch, vector)`` message along a chain of ``n`` neuron-shaped
    processes (each multiplies the vector by its own and sends it on); ``supervised``: started by
    one ``Supervisor`` with journaling on (``Child(replay=True)``: each child notes every message
    it takes, to replay it after a crash). One value per repeat, after a warm-up run."""
    samples = []
    rng = np.random.default_rng(0)
    weights = [rng.uniform(0.99, 1.01, VECTOR) for _ in range(n)]
    for _ in range(repeat + 1):
        rt, out = Runtime(), []
        route: list = [None] * n
        if supervised:
            sup = Supervisor(rt, [Child(_carrier, weights[i], (route, i), replay=True) for i in range(n)])
            pids = sup.children
        else:
            pids = [rt.spawn(_carrier, weights[i], route, i) for i in range(n)]
        route[:-1] = pids[1:]
        route[-1] = rt.spawn(_sink, out)
        rt.run_until_idle()  # all started, all waiting
        t = time.perf_counter()
        rt.send(pids[0], ("forward", 0, np.ones(VECTOR)))
        rt.run_until_idle()
        samples.append((time.perf_counter() - t) / n * 1e6)
        assert len(out) == 1 and out[0][0] == "forward" and out[0][2].shape == (VECTOR,)
        if supervised:
            assert all(len(record.journal) == 1 for record in sup._records)
            del sup
        del rt, pids, route
        gc.collect()
    return samples[1:]


def bytes_per_process(n: int) -> float:
    """tracemalloc'd bytes per started, waiting neuron-shaped process (run queue included)."""
    gc.collect()
    rt, consumers = Runtime(), ()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            rt.spawn(_neuron, 0.5, consumers)
        rt.run_until_idle()
        return (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
        del rt
        gc.collect()


def spawn_seconds(n: int, gc_paused: bool = False) -> tuple[float, float]:
    """Seconds to spawn ``n`` neuron-shaped processes, and to start them all (run each to its
    first receive)."""
    gc.collect()
    rt, consumers = Runtime(), ()
    if gc_paused:
        gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            rt.spawn(_neuron, 0.5, consumers)
        t1 = time.perf_counter()
        rt.run_until_idle()
        t2 = time.perf_counter()
    finally:
        gc.enable()
    assert rt.process_count == n
    del rt
    gc.collect()
    return t1 - t0, t2 - t1


def _find_elixir() -> tuple[str | None, str]:
    """The elixir command; Debian's package is installed when it is missing (as root, with
    apt-get, unless NOMAGIC_BENCH_INSTALL=0), else the comparison is skipped with a message."""
    found = shutil.which("elixir")
    if found:
        return found, ""
    if os.environ.get("NOMAGIC_BENCH_INSTALL") == "0":
        return None, "skipped: elixir is not on PATH (NOMAGIC_BENCH_INSTALL=0 forbids installing it)"
    if not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "skipped: elixir is not on PATH; install it (apt-get install elixir) to compare"
    print("installing Debian's elixir package for the BEAM comparison ...", flush=True)
    try:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "elixir"]):
            subprocess.run(cmd, check=True, capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"skipped: apt-get install elixir failed ({exc})"
    found = shutil.which("elixir")
    return found, "" if found else "skipped: elixir still not on PATH after apt-get"


def elixir_hop_us(elixir: str, n: int, erl_flags: str = "", repeat: int = REPEATS) -> list[float]:
    """µs per hop of the same chain on BEAM, for each repeat (after a warm-up run, as for ours)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "chain.exs")
        with open(script, "w") as f:
            f.write(ELIXIR_CHAIN)
        cmd = [elixir] + (["--erl", erl_flags] if erl_flags else []) + [script, str(n), str(repeat)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    found = re.search(r"us_per_hop=([0-9.eE+,-]+)", done.stdout)
    if not found:
        raise RuntimeError(f"unexpected output from elixir: {done.stdout!r} {done.stderr!r}")
    return [float(v) for v in found.group(1).split(",")]


def _elixir_version(elixir: str) -> str:
    code = 'IO.puts("Elixir #{System.version()}, OTP #{:erlang.system_info(:otp_release)}, ' \
        '#{:erlang.system_info(:emu_flavor)}")'
    done = subprocess.run([elixir, "-e", code], capture_output=True, text=True, timeout=120)
    return done.stdout.strip() or "elixir"


def run(quick: bool = False) -> list[dict]:
    """Run the benchmarks; one dict per result: name, value (the median), min, max, repeats,
    unit, n, counts, note."""
    n_chain = 10_000 if quick else 100_000
    n_mem = 20_000 if quick else 200_000
    n_spawn = 100_000 if quick else 1_000_000
    reps = QUICK_REPEATS if quick else REPEATS
    python = f"CPython {platform.python_version()}"
    rows: list[dict] = []

    def row(name: str, values: list[float] | None, unit: str, n: int, counts: str, note: str = "") -> None:
        summary = _summary(values) if values else {"median": None, "repeats": 0}
        rows.append({"name": name, "value": summary.pop("median"), **summary, "unit": unit, "n": n,
                     "counts": counts, "note": note})

    hop_counts = (f"µs per hop = seconds from the first send to the arrival at the end of a chain of {n_chain:,} "
                  f"started, waiting processes ÷ {n_chain:,}")
    ours = hop_us(n_chain, reps)
    row("runtime: message hop along a chain", ours, "µs/hop", n_chain, hop_counts,
        f"{python}; each process takes an int and sends it + 1 on")
    row("runtime: hop along supervised, journaled neuron-shaped processes",
        neuron_hop_us(n_chain, reps, supervised=True), "µs/hop", n_chain, hop_counts,
        f"{python}; the chain's processes are one Supervisor's children with journaling on (each notes the "
        f"message it takes); each holds a NumPy vector of {VECTOR} and sends (tag, batch, x * w) on: one "
        "NumPy multiply per hop")
    row("runtime: hop along neuron-shaped processes, unsupervised", neuron_hop_us(n_chain, reps, supervised=False),
        "µs/hop", n_chain, hop_counts, f"{python}; the same processes spawned bare: the difference to the row "
        "above is what supervision and the journal cost")
    row("runtime: memory per waiting process", [bytes_per_process(n_mem) for _ in range(reps)], "bytes", n_mem,
        f"tracemalloc'd bytes after spawning and starting {n_mem:,} neuron-shaped processes ÷ {n_mem:,}",
        "run queue included")
    spawn, start = zip(*(spawn_seconds(n_spawn) for _ in range(reps)))
    row("runtime: spawn processes", list(spawn), "s", n_spawn,
        f"seconds to spawn {n_spawn:,} neuron-shaped processes", "garbage collector on")
    row("runtime: start spawned processes", list(start), "s", n_spawn,
        f"seconds to run {n_spawn:,} spawned processes each to its first receive")
    row("runtime: spawn processes, gc paused", [spawn_seconds(n_spawn, gc_paused=True)[0] for _ in range(reps)],
        "s", n_spawn, f"seconds to spawn {n_spawn:,} neuron-shaped processes with gc.disable()",
        "the cyclic collector is most of the plain time")

    elixir, why = _find_elixir()
    if elixir is None:
        row("beam: message hop along a chain", None, "µs/hop", n_chain, hop_counts, why)
        return rows
    version = _elixir_version(elixir)
    for label, flags in (("default schedulers", ""), ("one scheduler, +S 1", "+S 1")):
        try:
            beam = elixir_hop_us(elixir, n_chain, flags, reps)
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            row(f"beam: message hop along a chain ({label})", None, "µs/hop", n_chain, hop_counts,
                f"failed: {exc}")
            continue
        cmd = f'elixir --erl "{flags}" chain.exs' if flags else "elixir chain.exs"
        row(f"beam: message hop along a chain ({label})", beam, "µs/hop", n_chain, hop_counts,
            f"{version}; `{cmd}`; the same relay chain as the first row")
        row(f"ratio: BEAM µs/hop ÷ ours ({label})", None, "×", n_chain,
            "median BEAM µs/hop ÷ median nomagic µs/hop (the bare chains); min and max: the least and the "
            "greatest ratio of any BEAM repeat to any of ours", "above 1: nomagic's runtime is faster")
        rows[-1].update(value=statistics.median(beam) / statistics.median(ours), repeats=len(beam),
                        min=min(beam) / max(ours), max=max(beam) / min(ours))
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    for r in run(quick="--quick" in argv):
        if r["value"] is None:
            value = "—"
        else:
            value = f"{r['value']:.3g} [{r['min']:.3g} – {r['max']:.3g}]"
        print(f"{r['name']:<66} {value:>24} {r['unit']:<7} n={r['n']:<9,} {r['note']}")


if __name__ == "__main__":
    main()
