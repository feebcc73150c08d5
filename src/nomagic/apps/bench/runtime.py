"""Benchmarks of the process runtime (``nomagic.runtime``), and the same chain on Elixir/BEAM.

Measures: the time of one message hop along a chain of 100,000 processes, the memory of a
waiting process (tracemalloc), and the time to spawn 1,000,000 processes. When ``elixir`` is
on PATH — or can be installed: run as root with apt-get at hand, this script installs Debian's
``elixir`` package unless ``NOMAGIC_BENCH_INSTALL=0`` — an Elixir script passes a token along
the same chain, and the rows give the ratio BEAM µs/hop ÷ ours
(above 1: we are faster).

    python -m nomagic.apps.bench.runtime [--quick]
"""

from __future__ import annotations

import gc
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc

from nomagic.runtime import ANY, Runtime

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

[arg | _] = System.argv()
n = String.to_integer(arg)
best = Enum.min(for _ <- 1..3, do: Chain.once(n))
IO.puts("us_per_hop=#{best}")
"""


def hop_us(n: int, repeat: int = 3) -> float:
    """Best µs per hop of a token passed along a chain of ``n`` processes."""
    best = float("inf")
    for _ in range(repeat):
        rt, out = Runtime(), []
        pid = rt.spawn(_sink, out)
        for _ in range(n):
            pid = rt.spawn(_relay, pid)
        rt.run_until_idle()  # all started, all waiting
        t = time.perf_counter()
        rt.send(pid, 0)
        rt.run_until_idle()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
        assert out == [n]
        del rt, pid
        gc.collect()
    return best


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


def elixir_hop_us(elixir: str, n: int, erl_flags: str = "") -> float:
    """Best µs per hop of the same chain on BEAM (three runs, as for ours)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "chain.exs")
        with open(script, "w") as f:
            f.write(ELIXIR_CHAIN)
        cmd = [elixir] + (["--erl", erl_flags] if erl_flags else []) + [script, str(n)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    found = re.search(r"us_per_hop=([0-9.eE+-]+)", done.stdout)
    if not found:
        raise RuntimeError(f"unexpected output from elixir: {done.stdout!r} {done.stderr!r}")
    return float(found.group(1))


def _elixir_version(elixir: str) -> str:
    code = 'IO.puts("Elixir #{System.version()}, OTP #{:erlang.system_info(:otp_release)}, ' \
        '#{:erlang.system_info(:emu_flavor)}")'
    done = subprocess.run([elixir, "-e", code], capture_output=True, text=True, timeout=120)
    return done.stdout.strip() or "elixir"


def run(quick: bool = False) -> list[dict]:
    """Run the benchmarks; one dict per result: name, value, unit, n, note."""
    n_chain = 10_000 if quick else 100_000
    n_mem = 20_000 if quick else 200_000
    n_spawn = 100_000 if quick else 1_000_000
    python = f"CPython {platform.python_version()}"
    rows: list[dict] = []

    def row(name: str, value: float | None, unit: str, n: int, note: str = "") -> None:
        rows.append({"name": name, "value": value, "unit": unit, "n": n, "note": note})

    ours = hop_us(n_chain)
    row("runtime: message hop along a chain", ours, "µs/hop", n_chain, f"{python}, best of 3")
    row("runtime: memory per waiting process", bytes_per_process(n_mem), "bytes", n_mem,
        "tracemalloc, neuron-shaped process after its start")
    spawn, start = spawn_seconds(n_spawn)
    row("runtime: spawn processes", spawn, "s", n_spawn, "garbage collector on")
    row("runtime: start spawned processes", start, "s", n_spawn,
        "run each to its first receive")
    spawn_paused, _ = spawn_seconds(n_spawn, gc_paused=True)
    row("runtime: spawn processes, gc paused", spawn_paused, "s", n_spawn,
        "gc.disable() while spawning: the cyclic collector is most of the plain time")

    elixir, why = _find_elixir()
    if elixir is None:
        row("beam: message hop along a chain", None, "µs/hop", n_chain, why)
        return rows
    version = _elixir_version(elixir)
    for label, flags in (("default schedulers", ""), ("one scheduler, +S 1", "+S 1")):
        try:
            beam = elixir_hop_us(elixir, n_chain, flags)
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            row(f"beam: message hop along a chain ({label})", None, "µs/hop", n_chain,
                f"failed: {exc}")
            continue
        row(f"beam: message hop along a chain ({label})", beam, "µs/hop", n_chain,
            f"{version}, best of 3")
        row(f"ratio: BEAM µs/hop ÷ ours ({label})", beam / ours, "×", n_chain,
            "above 1: nomagic's runtime is faster")
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    for r in run(quick="--quick" in argv):
        value = "—" if r["value"] is None else f"{r['value']:.3g}"
        print(f"{r['name']:<58} {value:>9} {r['unit']:<7} n={r['n']:<9,} {r['note']}")


if __name__ == "__main__":
    main()
