"""Loopback echo: each server in its own process, all driven by the same raw-socket client."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import frames
from .loopback import Client, ServerProc, free_port, peer_server
from .peers import OURS, OURS_PY, VARIANTS
from .report import Table, fmt_rate, median, ratio_cells
from .servers import MAX

PEERS = ["websockets", "aiohttp", "picows"]
IMPLS = [OURS, OURS_PY, *PEERS]


def ours_server(
    mode: str = "echo", name: str = OURS, prefix: Sequence[str] = (), timeout: float = 15.0
) -> ServerProc:
    """Echo: ``python -m server echo`` (the project's CLI); broadcast: ``benchmarks.ours_server``.

    Raises RuntimeError when unavailable. Like the peers: no compression, no keepalive pings, a
    message-size limit above the 16 MiB echo."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, "server", "__main__.py")):
        raise RuntimeError("server/__main__.py does not exist yet")
    port = free_port()
    if mode == "echo":
        argv = [
            sys.executable,
            "-m",
            "server",
            "echo",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-compression",
            "--ping-interval",
            "0",
            "--max-message-size",
            str(MAX),
        ]
    else:
        argv = [sys.executable, "-m", "benchmarks.ours_server", "--host", "127.0.0.1", "--port", str(port)]
    # wsproto-lite-py: the same server with the C accelerator switched off
    return ServerProc(name, argv, port, env=VARIANTS[name].env, prefix=prefix, timeout=timeout)


def start(impl: str, mode: str = "echo") -> ServerProc:
    return ours_server(mode, impl) if impl in (OURS, OURS_PY) else peer_server(impl, mode)


def sequential(port: int, n: int, server: ServerProc | None = None) -> dict[str, Any]:
    """``n`` 32-byte text round trips, one at a time; with ``server``, its CPU per round trip from /proc
    (steadier than the rates on a busy machine: it does not count the time the server waits for a core)."""
    payload = frames.make_payload(32, "text")
    assert isinstance(payload, str)
    stream = frames.client_stream(payload, n)
    size = len(stream) // n
    reply = frames.build_frame(frames.OP_TEXT, payload.encode())
    c = Client(port)
    lat: list[float] = []
    perf = time.perf_counter
    cpu0 = server.cpu_seconds() if server is not None else 0.0
    try:
        t0 = perf()
        for i in range(n):
            t = perf()
            c.sock.sendall(stream[i * size : (i + 1) * size])
            got = c.recv_exact(len(reply))
            lat.append(perf() - t)
            if got != reply:
                raise ValueError(f"bad echo {got[:40]!r}")
        total = perf() - t0
        cpu = server.cpu_seconds() - cpu0 if server is not None else None
    finally:
        c.close()
    out = {"rate": n / total, "latency_us": median(lat) * 1e6}
    if cpu is not None:
        out["cpu_us"] = cpu / n * 1e6
    return out


def pipelined(server: ServerProc, n: int) -> dict[str, Any]:
    """``n`` 32-byte messages written back to back while replies are read; server CPU from /proc."""
    payload = frames.make_payload(32, "text")
    assert isinstance(payload, str)
    stream = frames.client_stream(payload, n)
    reply = frames.build_frame(frames.OP_TEXT, payload.encode())
    c = Client(server.port)
    try:
        cpu0 = server.cpu_seconds()
        t0 = time.perf_counter()
        sender = threading.Thread(target=c.sock.sendall, args=(stream,))
        sender.start()
        want, got, chunks = n * len(reply), len(c.buf), [c.buf]
        while got < want:
            chunk = c.sock.recv(262144)
            if not chunk:
                raise ConnectionError("server closed")
            chunks.append(chunk)
            got += len(chunk)
        total = time.perf_counter() - t0
        cpu = server.cpu_seconds() - cpu0
        sender.join()
        data = b"".join(chunks)
        if data != reply * n:
            raise ValueError("pipelined echo mismatch")
        c.buf = b""
    finally:
        c.close()
    return {"rate": n / total, "cpu_us": cpu / n * 1e6}


def large(port: int, size: int, count: int) -> dict[str, Any]:
    """``count`` binary echoes of ``size`` bytes; MB/s of payload per echo (median)."""
    payload = frames.make_payload(size, "binary")
    assert isinstance(payload, bytes)
    frame = frames.build_frame(frames.OP_BINARY, payload, key=os.urandom(4))
    head = frames.header(frames.OP_BINARY, size)
    buf = bytearray(len(head) + size)
    view = memoryview(buf)
    c = Client(port)
    speeds = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            sender = threading.Thread(target=c.sock.sendall, args=(frame,))
            sender.start()
            c.recv_into_exact(view)
            dt = time.perf_counter() - t0
            sender.join()
            if view[: len(head)] != head or view[len(head) :] != payload:
                raise ValueError("large echo mismatch")
            speeds.append(size / dt / 1e6)
    finally:
        view.release()
        c.close()
    return {"mbps": median(speeds)}


def run(*, quick: bool, reps: int, infos: dict[str, dict[str, str]], notes: list[str]) -> list[Table]:
    n_seq, n_pipe = (50, 500) if quick else (10_000, 30_000)
    big, n_big = (1 << 20, 2) if quick else (16 << 20, 10)
    servers: dict[str, ServerProc] = {}
    problems: dict[str, str] = {}
    for impl in IMPLS:
        try:
            servers[impl] = start(impl)
        except Exception as exc:  # noqa: BLE001 - reported
            problems[impl] = str(exc)
    results: dict[str, dict[str, list[float]]] = {i: {} for i in servers}
    try:
        benches: list[tuple[str, Callable[[ServerProc], dict[str, Any]]]] = [
            ("seq", lambda s: sequential(s.port, n_seq, s)),
            ("pipe", lambda s: pipelined(s, n_pipe)),
            ("large", lambda s: large(s.port, big, n_big)),
        ]
        for name, fn in benches:
            for rep in range(reps):
                alive = [i for i in servers if i not in problems]
                k = rep % max(1, len(alive))
                for impl in alive[k:] + alive[:k]:
                    try:
                        for key, val in fn(servers[impl]).items():
                            results[impl].setdefault(f"{name}.{key}", []).append(val)
                    except Exception as exc:  # noqa: BLE001
                        problems[impl] = f"{name}: {type(exc).__name__}: {exc}"
    finally:
        for s in servers.values():
            s.stop()

    impls = [i for i in IMPLS if i in results and results[i]]
    for impl in impls:
        infos.setdefault(impl if impl != OURS else OURS, _server_info(impl))
    for impl, why in problems.items():
        notes.append(f"echo: {impl} not (fully) measured: {why}")

    def cell(impl: str, key: str) -> float | None:
        vals = results.get(impl, {}).get(key)
        return median(vals) if vals else None

    rows = [
        ("sequential 32 B round trips (msgs/s)", "seq.rate", True, fmt_rate),
        (
            "sequential median latency (µs)",
            "seq.latency_us",
            False,
            lambda v: "n/a" if v is None else f"{v:.0f}",
        ),
        (
            "server CPU per sequential round trip (µs)",
            "seq.cpu_us",
            False,
            lambda v: "n/a" if v is None else f"{v:.1f}",
        ),
        ("pipelined 32 B echoes (msgs/s)", "pipe.rate", True, fmt_rate),
        (
            "server CPU per pipelined message (µs)",
            "pipe.cpu_us",
            False,
            lambda v: "n/a" if v is None else f"{v:.1f}",
        ),
        (
            f"{'1 MiB' if quick else '16 MiB'} binary echo (MB/s of payload)",
            "large.mbps",
            True,
            lambda v: "n/a" if v is None else f"{v:.0f}",
        ),
    ]
    t = Table(
        title="Loopback echo (one server process each, same raw-socket client, no compression)",
        key="echo",
        columns=["measure", *impls, *[f"us vs {i}" for i in impls if i != OURS and OURS in impls]],
        unit="see each row; ratio > 1 means we are better",
    )
    for label, key, higher, fmt in rows:
        vals = {i: cell(i, key) for i in impls}
        t.rows.append(
            [
                label,
                *[fmt(vals[i]) for i in impls],
                *(ratio_cells(vals, OURS, impls, higher) if OURS in impls else []),
            ]
        )
        if key.endswith(".rate"):
            t.data[label.split(" (")[0]] = dict(vals)
    t.notes.append(
        f"sequential: {n_seq} round trips; pipelined: {n_pipe} messages written in one go while "
        f"replies are read; large: {n_big} echoes of {big >> 20} MiB (client masks beforehand)"
    )
    t.notes.append("server CPU = utime+stime of the server process from /proc/PID/stat (10 ms ticks)")
    t.notes.append(
        "servers: ours = `python -m server echo --no-compression --ping-interval 0`; websockets "
        "(asyncio `serve`), aiohttp (`web.WebSocketResponse`) and picows in benchmarks/servers.py, "
        "each with its default accelerations"
    )
    if "picows" in impls:
        t.notes.append(
            "picows: frame-level API; the echo decodes text to str like the others; "
            "picows uses aiofastnet for its transports when installed"
        )
    return [t]


def _server_info(impl: str) -> dict[str, str]:
    if impl in (OURS, OURS_PY):
        from .peers import ours

        info = {**ours.info(), "note": "server/ I/O layer (selectors loop)"}
        if impl == OURS_PY:
            info["accelerations"] = "none (WSPROTO_LITE_NO_SPEEDUPS=1)"
        return info
    import importlib.metadata

    version = importlib.metadata.version(impl)
    accel = {
        "picows": "Cython (whole protocol)",
        "websockets": "C speedups (apply_mask)",
        "aiohttp": "Cython reader/mask/http parser",
    }.get(impl, "?")
    if impl == "picows":
        try:
            import aiofastnet  # noqa: F401

            accel += " + aiofastnet transports"
        except ImportError:
            pass
    return {"version": version, "accelerations": accel, "note": "asyncio server in benchmarks/servers.py"}
