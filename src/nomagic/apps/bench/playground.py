"""``nomagic bench --only playground``: how fast the playground streams a training run to a page.

The server runs as its own process (``python -m nomagic playground`` on a free port of 127.0.0.1);
one WebSocket client, in this process, sets up TensorFlow Playground's default network (2 inputs,
hidden layers 4 and 2, tanh, 500 points of the circle data set half of them for training, batch
10, learning rate 0.03), presses Run and counts the ``update`` messages (one per epoch) that arrive
in each window of a few seconds. The server's CPU share is its user + system CPU time over the
window's wall time (1.0 = one core busy), read from ``/proc/<pid>/stat``.

* tensor engine, updates capped at 60 a second (the most the page asks for): updates per second
  (goal ≥ 30) and the server's CPU share;
* tensor engine at the page's default 30 updates a second: the CPU share that costs;
* processes engine at 10 updates a second: updates per second (goal ≥ 9.5: it keeps up), the
  messages of the neuron processes streamed per second, and the messages the bounded trace
  stream had to drop (goal 0).

Every figure is the median over the windows, with the min and max. Rows as the other scripts
give them (name, value, unit, n, note; goal, goal_op, met). ``python -m nomagic.apps.bench.playground
[--quick]`` prints them.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

UPDATES_GOAL = 30.0
PROCESSES_GOAL = 9.5  # of 10 a second asked for
DEFAULT_NET = {"dataset": "circle", "points": 500, "ratio": 50, "batch": 10, "lr": 0.03, "layers": [4, 2],
               "activations": ["tanh", "tanh"], "features": ["x1", "x2"], "noise": 0}
COUNTS = ("update messages received by a WebSocket client per second of wall time while the page's Run is on "
          "(one per epoch of 25 batches of 10)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _start_server() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    src = str(Path(__file__).resolve().parents[3])
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "nomagic", "playground", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the playground server did not start: {proc.stderr.read()[-300:]}") from None
            time.sleep(0.1)


async def _measure(url: str, pid: int, config: dict, windows: int, window_s: float) -> list[dict]:
    try:
        from websockets.asyncio.client import connect
    except ImportError:  # websockets < 13
        from websockets import connect

    async with connect(url.replace("http", "ws") + "/ws", max_size=2**22) as ws:
        seen = set()
        while "update" not in seen:
            seen.add(json.loads(await ws.recv())["type"])
        await ws.send(json.dumps({"type": "config", "config": config}))
        while json.loads(await ws.recv())["type"] != "update":
            pass
        await ws.send('{"type": "run"}')
        results = []
        for w in range(windows + 1):  # the first window warms up
            n, messages, dropped, end = 0, 0, 0, time.monotonic() + window_s
            t0, c0 = time.perf_counter(), _cpu_seconds(pid)
            while (left := end - time.monotonic()) > 0:
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), left))
                except asyncio.TimeoutError:
                    break
                if msg["type"] == "update":
                    n += 1
                    if msg.get("trace"):
                        messages += msg["trace"]["received"]
                        dropped = msg["trace"]["dropped"]
                elif msg["type"] == "error":
                    raise RuntimeError(msg["message"])
            wall = time.perf_counter() - t0
            cpu = _cpu_seconds(pid) - c0
            if w:
                results.append({"updates": n / wall, "cpu": cpu / wall, "messages": messages / wall,
                                "dropped": dropped})
        await ws.send('{"type": "pause"}')
        return results


def _row(name: str, values: list[float], unit: str, note: str, counts: str, goal: float | None = None,
         goal_op: str = ">=") -> dict:
    value = statistics.median(values) if values else None
    met = None
    if goal is not None and value is not None:
        met = value >= goal if goal_op == ">=" else value <= goal
    row = {"name": name, "value": value, "unit": unit, "n": len(values), "note": note, "goal": goal,
           "goal_op": goal_op if goal is not None else "", "met": met, "counts": counts, "repeats": len(values)}
    if values:
        row.update(min=min(values), max=max(values))
    return row


def run(quick: bool = False) -> list[dict]:
    """Run the playground benchmarks; one dict per result."""
    windows, window_s = (3, 2.0) if quick else (5, 3.0)
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
        import websockets  # noqa: F401
    except ImportError as exc:
        return [_row("playground", [], "/s", f"not run: {exc.name} is missing (pip install 'nomagic[playground]')",
                     COUNTS)]
    proc, url = _start_server()
    try:
        fast = asyncio.run(_measure(url, proc.pid, {**DEFAULT_NET, "engine": "tensor", "fps": 60}, windows, window_s))
        paced = asyncio.run(_measure(url, proc.pid, {**DEFAULT_NET, "engine": "tensor", "fps": 30}, windows, window_s))
        slow = asyncio.run(_measure(url, proc.pid, {**DEFAULT_NET, "engine": "processes", "fps": 10}, windows,
                                    window_s))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    spread = f"{windows} windows of {window_s:g} s"
    return [
        _row("tensor engine: updates streamed (capped at 60/s)", [r["updates"] for r in fast], "/s",
             f"TF Playground's default network, {spread}", COUNTS, UPDATES_GOAL),
        _row("tensor engine at 60/s: server CPU share", [r["cpu"] for r in fast], "cores",
             "user + system CPU seconds of the server process per wall second", "CPU share"),
        _row("tensor engine at the page's 30/s: updates streamed", [r["updates"] for r in paced], "/s", spread, COUNTS),
        _row("tensor engine at 30/s: server CPU share", [r["cpu"] for r in paced], "cores", spread, "CPU share"),
        _row("processes engine asked for 10/s: updates streamed", [r["updates"] for r in slow], "/s",
             f"every neuron a process, its messages traced and streamed; {spread}", COUNTS, PROCESSES_GOAL),
        _row("processes engine at 10/s: neuron messages streamed", [r["messages"] for r in slow], "/s",
             "messages of the neuron processes counted into the page's updates", "messages per second"),
        _row("processes engine at 10/s: messages dropped by the bounded stream", [r["dropped"] for r in slow],
             "msgs", "0: the trace stream keeps up with training", "dropped", 0.0, "<="),
        _row("processes engine at 10/s: server CPU share", [r["cpu"] for r in slow], "cores", spread, "CPU share"),
    ]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    for r in run(quick="--quick" in argv):
        value = "-" if r["value"] is None else f"{r['value']:.3g}"
        spread = f"(min {r['min']:.3g}, max {r['max']:.3g})" if "min" in r else ""
        goal = f"goal {r['goal_op']} {r['goal']:g} {'met' if r['met'] else 'NOT met'}" if r["goal"] is not None else ""
        print(f"{r['name']:<66} {value:>7} {r['unit']:<5} {spread:<24} {goal}")


if __name__ == "__main__":
    main()
