"""The adapters next to what a user would pick instead (``python -m benchmarks --only adapters``).

- uvicorn: the same ASGI echo app (``conformance/uvicorn_echo.py``) with our protocol class, and with
  uvicorn's ``websockets-sansio`` and ``wsproto`` classes;
- asyncio: our asyncio adapter's ``serve()`` next to websockets' asyncio ``serve()``.

Each server runs in its own process, all without compression or keepalive pings, driven by the same
raw-socket client as the echo benchmark (``benchmarks/loopback.py``); measurements are interleaved.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from . import echo
from .loopback import Client, ServerProc, free_port, peer_server
from .report import Table, fmt_rate, median, ratio_cells
from .servers import MAX

UVICORN = {
    "uvicorn + ours": "ours",
    "uvicorn + websockets-sansio": "websockets-sansio",
    "uvicorn + wsproto": "wsproto",
}
ASYNCIO = {"asyncio adapter": "asyncio-adapter", "websockets asyncio": "websockets"}


def uvicorn_server(name: str) -> ServerProc:
    port = free_port()
    argv = [sys.executable, "-m", "conformance.uvicorn_echo", "--ws", UVICORN[name], "--port", str(port)]
    return ServerProc(name, [*argv, "--no-compression", "--max-message-size", str(MAX)], port)


def handshakes(port: int, n: int) -> dict[str, Any]:
    """``n`` connections one after the other: TCP connect, opening handshake, closing handshake."""
    t0 = time.perf_counter()
    for _ in range(n):
        Client(port).close()
    return {"rate": n / (time.perf_counter() - t0)}


def measure(
    servers: dict[str, ServerProc], reps: int, quick: bool, problems: dict[str, str]
) -> dict[str, dict[str, list[float]]]:
    n_seq, n_pipe, n_big, n_hs = (50, 500, 2, 20) if quick else (3000, 30_000, 10, 300)
    benches: list[tuple[str, Callable[[ServerProc], dict[str, Any]]]] = [
        ("seq", lambda s: echo.sequential(s.port, n_seq)),
        ("pipe", lambda s: echo.pipelined(s, n_pipe)),
        ("large", lambda s: echo.large(s.port, 1 << 20, n_big)),
        ("hs", lambda s: handshakes(s.port, n_hs)),
    ]
    results: dict[str, dict[str, list[float]]] = {name: {} for name in servers}
    for bench, fn in benches:
        for rep in range(reps):
            alive = [name for name in servers if name not in problems]
            k = rep % max(1, len(alive))
            for name in alive[k:] + alive[:k]:  # interleaved, rotating who goes first
                try:
                    for key, value in fn(servers[name]).items():
                        results[name].setdefault(f"{bench}.{key}", []).append(value)
                except Exception as exc:  # noqa: BLE001 - reported
                    problems[name] = f"{bench}: {type(exc).__name__}: {exc}"
    return results


ROWS = [
    ("sequential 32 B round trips (msgs/s)", "seq.rate", True, fmt_rate),
    ("pipelined 32 B echoes (msgs/s)", "pipe.rate", True, fmt_rate),
    ("server CPU per pipelined message (µs)", "pipe.cpu_us", False, lambda v: f"{v:.1f}" if v else "-"),
    ("1 MiB binary echo (MB/s of payload)", "large.mbps", True, lambda v: f"{v:.0f}" if v else "n/a"),
    ("handshakes (connect + open + close, per s)", "hs.rate", True, fmt_rate),
]


def table(title: str, key: str, names: list[str], results: dict[str, dict[str, list[float]]]) -> Table:
    ours, peers = names[0], names[1:]
    t = Table(
        title=title,
        key=key,
        columns=["measure", *names, *[f"ours vs {p}" for p in peers]],
        unit="see each row; ratio > 1 means ours is better",
    )
    for label, metric, higher, fmt in ROWS:
        values = {n: (median(results[n][metric]) if results.get(n, {}).get(metric) else None) for n in names}
        t.rows.append([label, *[fmt(values[n]) for n in names], *ratio_cells(values, ours, names, higher)])
        if metric.endswith("rate"):
            t.data[label.split(" (")[0]] = dict(values)
    return t


def run(*, quick: bool, reps: int, infos: dict[str, dict[str, str]], notes: list[str]) -> list[Table]:
    import importlib.metadata

    problems: dict[str, str] = {}
    servers: dict[str, ServerProc] = {}
    starters: dict[str, Callable[[], ServerProc]] = {
        name: (lambda n=name: uvicorn_server(n)) for name in UVICORN
    }
    starters.update({name: (lambda i=impl: peer_server(i, "echo")) for name, impl in ASYNCIO.items()})
    try:
        for name, start in starters.items():
            try:
                servers[name] = start()
            except Exception as exc:  # noqa: BLE001 - reported
                problems[name] = str(exc)
        results = measure(servers, reps, quick, problems)
    finally:
        for server in servers.values():
            server.stop()
    for name, why in problems.items():
        notes.append(f"adapters: {name} not (fully) measured: {why}")
    for package in ("uvicorn", "websockets", "wsproto", "httptools"):
        try:
            infos.setdefault(package, {"version": importlib.metadata.version(package), "accelerations": "?"})
        except importlib.metadata.PackageNotFoundError:
            pass
    uv = table("uvicorn: one ASGI echo app, three WebSocket classes", "uvicorn", list(UVICORN), results)
    uv.notes.append(
        "`python -m conformance.uvicorn_echo --ws {ours,websockets-sansio,wsproto} --no-compression`: "
        "uvicorn with its default HTTP parser (httptools when installed) and loop, ws_ping_interval=None"
    )
    aio = table("asyncio: our adapter's serve() vs websockets' serve()", "asyncio", list(ASYNCIO), results)
    aio.notes.append(
        "`python -m benchmarks.servers {asyncio-adapter,websockets} echo`: `async for msg in ws: await "
        "ws.send(msg)` on both, compression off, no pings, max_size 64 MiB"
    )
    for t in (uv, aio):
        t.notes.append(
            "sequential: 3000 round trips; pipelined: 30 000 messages; 1 MiB: 10 echoes; 300 handshakes"
        )
    return [uv, aio]
