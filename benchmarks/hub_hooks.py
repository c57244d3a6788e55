"""What backend hooks cost (issue 21): connects/s and publishes/s through the hub with hooks off, in-process
(sync callables in the hub's pool) and over HTTP (a ThreadingHTTPServer backend, keep-alive, pooled).

``python -m benchmarks.hub_hooks [--connects 300] [--publishes 3000] [--rounds 3] [--out FILE]``

The hub (``--serve MODE``) and the HTTP backend (``--backend``) each run in their own process on
127.0.0.1; this process is the load: **connects** = 4 threads, each opening WebSocket connections one
after the other (upgrade, ``connect``, its reply, close); **publishes** = one connection, 16 publishes in
flight (``publish`` to ``bench:x``, every reply read), after an untimed warm-up of each.  The modes are
interleaved round by round; the table has the medians.  The hooks answer at once (allow, a user id):
what is measured is the hub's side of a hook call, plus the HTTP round trip to a local backend.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("off", "in-process", "http")
UNLIMITED = os.path.join(ROOT, "benchmarks", "hub", "unlimited.toml")
CONNECT_THREADS = 4
IN_FLIGHT = 16  # a connection's hook calls in flight at most (Hooks.max_pending_per_connection)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the processes -------------------------------------------------------------------------------------


def serve_backend(port: int) -> None:
    """The HTTP backend: every hook allowed at once (connect: a user id)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = b'{"result":{"user":"u"}}' if self.path == "/connect" else b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


def serve_hub(mode: str, port: int, backend: int) -> None:
    from wsproto_lite.hub.app import HubServer
    from wsproto_lite.hub.config import load_config
    from wsproto_lite.hub.hook_http import HookConfig

    config = load_config(UNLIMITED)
    config.port = port
    if mode == "http":
        url = f"http://127.0.0.1:{backend}"
        config.hooks = HookConfig.from_mapping({"connect": f"{url}/connect", "publish": f"{url}/publish"})
    server = HubServer(config)
    if mode == "in-process":
        server.hub.hooks.on_connect(lambda request: {"result": {"user": "u"}})
        server.hub.hooks.on_publish(lambda request: None)
    print("ready", flush=True)
    server.serve_forever()


@contextmanager
def process(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``python -m benchmarks.hub_hooks ARGS`` until it says ready; stopped by PID afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.hub_hooks", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{args} did not start: {line!r}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the load --------------------------------------------------------------------------------------------


def _client(port: int) -> Any:
    from wsproto_lite.server.client import connect

    return connect(f"ws://127.0.0.1:{port}/connection/websocket", timeout=10, compression=False)


def _replies(ws: Any, count: int) -> None:
    """Read until ``count`` replies arrived (each checked: no error); pings answered."""
    while count:
        for line in ws.recv(timeout=10).split("\n"):
            value = json.loads(line)
            if value == {}:
                ws.send("{}")
                continue
            if "error" in value:
                raise RuntimeError(f"the hub refused: {value}")
            count -= "id" in value


def connects_per_second(port: int, total: int) -> float:
    each = total // CONNECT_THREADS
    failures: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(each):
                ws = _client(port)
                ws.send('{"id":1,"connect":{}}')
                _replies(ws, 1)
                ws.close(timeout=5)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(CONNECT_THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"connects failed: {failures[0]!r}")
    return each * CONNECT_THREADS / elapsed


def publishes_per_second(port: int, total: int) -> float:
    ws = _client(port)
    ws.send('{"id":1,"connect":{}}')
    _replies(ws, 1)
    sent = answered = 0
    started = time.perf_counter()
    while answered < total:
        window = min(IN_FLIGHT, total - sent)
        ws.send(
            "\n".join(
                f'{{"id":{sent + i + 2},"publish":{{"channel":"bench:x","data":{{"n":1}}}}}}'
                for i in range(window)
            )
        )
        sent += window
        _replies(ws, window)
        answered += window
    elapsed = time.perf_counter() - started
    ws.close(timeout=5)
    return total / elapsed


def measure(connects: int, publishes: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {m: {"connects": [], "publishes": []} for m in MODES}
    backend = _free_port()
    with process("--backend", str(backend)):
        for round_ in range(rounds):
            for mode in MODES:
                port = _free_port()
                with process("--serve", mode, "--port", str(port), "--backend-port", str(backend)):
                    connects_per_second(port, 4 * CONNECT_THREADS)  # warm-up, untimed
                    publishes_per_second(port, 4 * IN_FLIGHT)
                    results[mode]["connects"].append(connects_per_second(port, connects))
                    results[mode]["publishes"].append(publishes_per_second(port, publishes))
                print(f"round {round_ + 1} {mode}: done", file=sys.stderr, flush=True)
    return results


def report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> str:
    off = {kind: statistics.median(results["off"][kind]) for kind in ("connects", "publishes")}
    lines = [
        "# Backend hooks: what they cost (`python -m benchmarks.hub_hooks`)",
        "",
        f"{datetime.date.today()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs (shared), load average at the end {os.getloadavg()[0]:.1f}; "
        f"{args.rounds} rounds, medians; {args.connects} connects ({CONNECT_THREADS} threads, one after the "
        f"other each), {args.publishes} publishes ({IN_FLIGHT} in flight, one connection).",
        "",
        "| hooks | connects/s | vs off | publishes/s | vs off |",
        "|---|---|---|---|---|",
    ]
    for mode in MODES:
        c = statistics.median(results[mode]["connects"])
        p = statistics.median(results[mode]["publishes"])
        lines.append(
            f"| {mode} | {c:,.0f} | {c / off['connects']:.2f} | {p:,.0f} | {p / off['publishes']:.2f} |"
        )
    lines += [
        "",
        "in-process: `hub.hooks.on_connect` / `on_publish` with plain functions, run in the hub's pool "
        "and answered through the loop's `call_soon_threadsafe`; http: the same through `hook_http.py` "
        "(urllib3, pooled keep-alive connections) to a `ThreadingHTTPServer` in another process. Only the "
        "ratios within this run mean anything: the machine is small and shared.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hub_hooks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--connects", type=int, default=300)
    parser.add_argument("--publishes", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "RESULTS-hub-hooks.md"))
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--backend", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--backend-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend is not None:
        serve_backend(args.backend)
        return 0
    if args.serve is not None:
        serve_hub(args.serve, args.port, args.backend_port)
        return 0
    text = report(measure(args.connects, args.publishes, args.rounds), args)
    with open(args.out, "w") as out:
        out.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
