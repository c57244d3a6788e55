"""The hub scaled out, side by side: fan-out to many subscribers through Redis, and python-socketio's.

``python -m benchmarks.hub_scale [--subscribers 1000] [--publications 100] [--rounds 3] [--out FILE]``

A stop-gap driver until the hub's own load generator (branch hub-bench) lands: it starts a redis-server
on a free port, then, interleaved, each configuration as its own process(es):

- ``ours memory x1``: ``python -m server hub --workers 1`` (in-memory engine)
- ``ours redis x1``: ``--workers 1 --engine redis://...``
- ``ours redis x2``: ``--workers 2 --engine redis://...`` (two processes on one port, SO_REUSEPORT)
- ``socketio redis x1``: python-socketio's AsyncServer with its AsyncRedisManager, on aiohttp

The load generator (this process, our event loop) opens ``subscribers`` WebSocket connections that all
join one room/channel, then a publisher sends ``publications`` messages at once, each carrying its send
time.  Reported: deliveries/s (every subscriber's copy counted, from the first send to the last
delivery) and the fan-out latency of each delivery (receive time - send time): p50 and p99.  The load
generator shares the machine (and its 2 cores) with the servers and Redis: absolute numbers are low and
noisy, the ratios within one run are the result.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from wsproto_lite.server.async_client import connect_async
from wsproto_lite.server.handler import Handler
from wsproto_lite.server.loop import EventLoop
from wsproto_lite.server.options import Options
from wsproto_lite.server.websocket import WebSocket

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


SOCKETIO_SERVER = textwrap.dedent(
    """
    import sys
    import socketio
    from aiohttp import web

    port, redis_url = int(sys.argv[1]), sys.argv[2]
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=socketio.AsyncRedisManager(redis_url))

    @sio.on("join")
    async def join(sid, room):
        await sio.enter_room(sid, room)
        return "ok"

    @sio.on("publish")
    async def publish(sid, data):
        await sio.emit("pub", data, room="x")
        return "ok"

    app = web.Application()
    sio.attach(app)
    web.run_app(app, host="127.0.0.1", port=port, print=None)
    """
)


class Load(Handler):
    """Subscribers and one publisher, for the hub protocol or Socket.IO's (Engine.IO v4 over WebSocket)."""

    def __init__(self, loop: EventLoop, socketio: bool, subscribers: int) -> None:
        self.loop = loop
        self.socketio = socketio
        self.subscribers = subscribers
        self.ready = 0
        self.latencies: list[float] = []
        self.last = 0.0
        self.failed = 0
        self.publisher: WebSocket | None = None

    # -- protocol ----------------------------------------------------------------------------------

    def on_open(self, conn: WebSocket) -> None:
        if not self.socketio:
            conn.send('{"id":1,"method":"connect"}')
            if conn is not self.publisher:
                conn.send('{"id":2,"method":"subscribe","params":{"channel":"bench:x"}}')
            else:
                self.ready += 0
        # Socket.IO: wait for the Engine.IO open packet

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        assert isinstance(message, str)
        now = time.time()
        if self.socketio:
            if message.startswith("42"):  # an event: ["pub", {"t": ...}]
                self._delivery(message, now)
            elif message.startswith("0"):  # Engine.IO open
                conn.send("40")
            elif message.startswith("40"):  # namespace connected
                if conn is not self.publisher:
                    conn.send('421["join","x"]')
                else:
                    self.ready += 1
            elif message.startswith("431"):  # ack of join
                self.ready += 1
            elif message == "2":
                conn.send("3")
            return
        if message.startswith('{"push":"pub"'):
            self._delivery(message, now)
        elif message.startswith('{"id":2,"result"'):
            self.ready += 1
        elif message.startswith('{"id":1,"result"') and conn is self.publisher:
            self.ready += 1

    def _delivery(self, message: str, now: float) -> None:
        at = message.find('"t":')
        end = message.find("}", at)
        self.latencies.append(now - float(message[at + 4 : end]))
        self.last = now

    def on_connect_error(self, conn: WebSocket, error: BaseException) -> None:
        self.failed += 1

    def publish_frame(self, n: int) -> str:
        data = f'{{"n":{n},"t":{time.time():.6f}}}'
        if self.socketio:
            return f'42["publish",{data}]'
        return f'{{"id":{n + 10},"method":"publish","params":{{"channel":"bench:x","data":{data}}}}}'


def run_load(port: int, socketio: bool, subscribers: int, publications: int) -> dict[str, float]:
    loop = EventLoop()
    load = Load(loop, socketio, subscribers)
    path = "/socket.io/?EIO=4&transport=websocket" if socketio else "/connection/websocket"
    url = f"ws://{HOST}:{port}{path}"
    options = Options(max_message_size=1 << 20, handshake_timeout=30)
    conns = []

    def run_until(condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            loop.call_later(0.01, loop.stop)
            loop.run_forever()

    for i in range(subscribers):
        conns.append(connect_async(loop, url, load, options=options))
        if i % 100 == 99:
            run_until(lambda: load.ready + load.failed >= len(conns), 30)
    load.publisher = connect_async(loop, url, load, options=options)
    run_until(lambda: load.ready + load.failed >= subscribers + 1, 60)
    if load.failed or load.ready < subscribers + 1:
        raise RuntimeError(f"only {load.ready} of {subscribers + 1} connections ready ({load.failed} failed)")
    time.sleep(0.2)
    run_until(lambda: False, 0.2)  # settle
    expected = subscribers * publications
    start = time.time()
    for n in range(publications):
        load.publisher.send(load.publish_frame(n))
    run_until(lambda: len(load.latencies) >= expected, 120)
    got = len(load.latencies)
    for conn in [*conns, load.publisher]:
        conn.close()
    run_until(lambda: False, 0.5)
    loop.close()
    lat = sorted(load.latencies)
    return {
        "deliveries": got,
        "expected": expected,
        "per_s": got / max(1e-9, load.last - start),
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else float("nan"),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan"),
    }


class Config:
    def __init__(self, name: str, argv: list[str], socketio: bool = False) -> None:
        self.name = name
        self.argv = argv
        self.socketio = socketio


def start(config: Config, port: int) -> subprocess.Popen[bytes]:
    argv = [a.replace("{port}", str(port)) for a in config.argv]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wait_port(port)
    time.sleep(0.5 if "--workers" in argv and "2" in argv else 0.1)  # the second worker binds too
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publications", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=None, help="comma-separated configuration names")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", HOST, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    script = Path(tempfile.mkdtemp()) / "sio_server.py"
    script.write_text(SOCKETIO_SERVER)
    rurl = f"redis://{HOST}:{redis_port}/0"
    unlimited = str(Path(ROOT) / "benchmarks" / "hub" / "unlimited.toml")  # the peers have no rate limits
    hub = [sys.executable, "-m", "server", "hub", "--port", "{port}", "--config", unlimited]
    configs = [
        Config("ours memory x1", [*hub, "--workers", "1"]),
        Config("ours redis x1", [*hub, "--workers", "1", "--engine", rurl]),
        Config("ours redis x2", [*hub, "--workers", "2", "--engine", rurl]),
        Config("socketio redis x1", [sys.executable, str(script), "{port}", rurl], socketio=True),
    ]
    if args.only:
        configs = [c for c in configs if c.name in args.only.split(",")]
    results: dict[str, list[dict[str, float]]] = {c.name: [] for c in configs}
    try:
        wait_port(redis_port)
        for round_ in range(args.rounds):
            for config in configs:
                port = free_port()
                proc = start(config, port)
                try:
                    outcome = run_load(port, config.socketio, args.subscribers, args.publications)
                except RuntimeError as exc:
                    print(f"round {round_ + 1} {config.name}: {exc}", flush=True)
                    continue
                finally:
                    stop(proc)
                results[config.name].append(outcome)
                print(
                    f"round {round_ + 1} {config.name}: {outcome['per_s']:.0f} deliveries/s, "
                    f"p50 {outcome['p50_ms']:.1f} ms, p99 {outcome['p99_ms']:.1f} ms "
                    f"({outcome['deliveries']}/{outcome['expected']})",
                    flush=True,
                )
    finally:
        redis.terminate()
        redis.wait(10)
    lines = [
        f"{args.subscribers} subscribers, {args.publications} publications sent at once, "
        f"medians of {args.rounds} interleaved rounds",
        "",
        "| configuration | deliveries/s | fan-out p50 (ms) | fan-out p99 (ms) | delivered |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        if not runs:
            lines.append(f"| {name} | failed | | | |")
            continue
        med = {k: statistics.median(r[k] for r in runs) for k in ("per_s", "p50_ms", "p99_ms")}
        delivered = min(r["deliveries"] / r["expected"] for r in runs)
        lines.append(
            f"| {name} | {med['per_s']:,.0f} | {med['p50_ms']:.0f} | {med['p99_ms']:.0f} | {delivered:.0%} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
