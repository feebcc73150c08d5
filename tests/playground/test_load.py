"""A load test of the real server (a subprocess on 127.0.0.1), bounded in count and time: 20
sessions training at once, a client that vanishes mid-run, a flood of malformed messages. The
server keeps answering, and its memory (RSS) comes back near its baseline once the sessions close."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

websockets = pytest.importorskip("websockets")
pytest.importorskip("uvicorn")
try:
    from websockets.asyncio.client import connect
except ImportError:  # websockets < 14
    connect = websockets.connect

from .conftest import free_port  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"
SESSIONS = 20
TRAIN_S = 5.0
RSS_BOUND_MB = 60.0  # what the server may keep after the sessions closed (allocator pools, caches)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/api/health", timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server():
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the server's memory")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-m", "nomagic", "playground", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        line = proc.stdout.readline()
        assert f"open {url}/" in line, line
        deadline = time.monotonic() + 20
        while True:
            try:
                health(url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def open_session(ws_url: str):
    ws = await connect(ws_url, max_size=2**22)
    seen = set()
    while "update" not in seen:
        seen.add(json.loads(await ws.recv())["type"])
    return ws


async def until(ws, kind: str, timeout: float = 15.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), max(end - time.monotonic(), 0.01)))
        if msg["type"] == kind:
            return msg


async def trainer(ws_url: str, k: int, stats: dict) -> None:
    ws = await open_session(ws_url)
    change = {"dataset": ("xor", "circle", "spiral", "gauss")[k % 4], "fps": 30}
    if k % 5 == 0:
        change["engine"] = "processes"
    await ws.send(json.dumps({"type": "config", "config": change}))
    await until(ws, "config")
    await ws.send('{"type": "run"}')
    updates, epochs, end = 0, 0, time.monotonic() + TRAIN_S
    while time.monotonic() < end:
        try:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
        except asyncio.TimeoutError:
            continue
        if msg["type"] == "update":
            updates += 1
            epochs = msg["epoch"]
        assert msg["type"] != "error", msg
    stats[k] = (updates, epochs)
    await ws.close()


async def vanisher(ws_url: str, stats: dict) -> None:
    """Starts a processes-engine run and drops the connection without a word."""
    ws = await open_session(ws_url)
    await ws.send(json.dumps({"type": "config", "config": {"engine": "processes"}}))
    await ws.send('{"type": "run"}')
    await until(ws, "update")
    await asyncio.sleep(1.0)
    ws.transport.abort() if hasattr(ws, "transport") else await ws.close()  # no closing handshake
    stats["vanished"] = True


async def flooder(ws_url: str, stats: dict, n: int = 400) -> None:
    ws = await open_session(ws_url)
    bad = ["nope", "[]", '{"type": "x"}', '{"type": "config", "config": {"lr": NaN}}',
           '{"type": "config", "config": {"layers": [99]}}', '{"type": "set_weight", "param": 1}',
           '{"type": "upload", "csv": "1,2"}', "{" * 5000]
    for i in range(n):
        await ws.send(bad[i % len(bad)])
    errors = 0
    while errors < n:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if msg["type"] == "error":
            errors += 1
    stats["flood_errors"] = errors
    await ws.send('{"type": "state"}')
    stats["flood_after"] = (await until(ws, "update"))["type"]
    await ws.close()


async def fresh(ws_url: str, stats: dict) -> None:
    """A client arriving in the middle of it all gets its page's state promptly."""
    await asyncio.sleep(2.0)
    t0 = time.monotonic()
    ws = await open_session(ws_url)
    await ws.send('{"type": "step"}')
    msg = await until(ws, "update")
    stats["fresh_s"] = time.monotonic() - t0
    stats["fresh_epoch"] = msg["epoch"]
    await ws.close()


def test_twenty_sessions_a_vanishing_client_and_a_flood(server):
    proc, url = server
    ws_url = url.replace("http", "ws") + "/ws"
    t_start = time.monotonic()

    async def warm_up():  # load every module once, so that the baseline counts them
        ws = await open_session(ws_url)
        await ws.send(json.dumps({"type": "config", "config": {"engine": "processes"}}))
        await ws.send('{"type": "step"}')
        await until(ws, "update")
        await ws.close()

    asyncio.run(warm_up())
    time.sleep(0.5)
    baseline = rss_mb(proc.pid)

    stats: dict = {}

    async def load():
        jobs = [trainer(ws_url, k, stats) for k in range(SESSIONS)]
        jobs += [vanisher(ws_url, stats), flooder(ws_url, stats), fresh(ws_url, stats)]
        await asyncio.wait_for(asyncio.gather(*jobs), 40)

    asyncio.run(load())
    peak = rss_mb(proc.pid)
    deadline = time.monotonic() + 10
    while health(url)["sessions"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert health(url)["sessions"] == 0, "every session ends when its client goes"
    time.sleep(0.5)
    after = rss_mb(proc.pid)

    trained = [stats[k] for k in range(SESSIONS)]
    assert all(u >= 3 and e >= 1 for u, e in trained), trained
    assert stats["vanished"] and stats["flood_errors"] == 400 and stats["flood_after"] == "update"
    assert stats["fresh_epoch"] == 1 and stats["fresh_s"] < 10, stats
    assert proc.poll() is None, "the server is still running"
    assert after <= baseline + RSS_BOUND_MB, f"RSS {baseline:.0f} MB before, {peak:.0f} at the peak, {after:.0f} after"
    print(f"\nload: {SESSIONS} sessions, updates per session {sorted(u for u, _ in trained)}; fresh client "
          f"answered in {stats['fresh_s']:.2f} s; RSS {baseline:.0f} -> {peak:.0f} -> {after:.0f} MB; "
          f"{time.monotonic() - t_start:.1f} s in all")
    assert time.monotonic() - t_start < 45
