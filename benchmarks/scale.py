"""Scale: server RSS per idle connection at 10 000 connections, and broadcast latency to 1 000 /
10 000 clients (time from the trigger until the last client has the message)."""

from __future__ import annotations

import os
import select
import selectors
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from . import frames
from .echo import IMPLS, _server_info, start
from .loopback import HOST, ServerProc
from .peers import OURS, OURS_PY
from .report import Table, median, ratio_cells
from .servers import raise_nofile

LINGER0 = struct.pack("ii", 1, 0)


class Swarm:
    """Many idle WebSocket client connections, opened with non-blocking handshakes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.socks: list[socket.socket] = []

    def grow(self, total: int, *, inflight: int = 256, timeout: float = 60.0) -> None:
        """Open connections until ``total`` are handshaken (at most ``inflight`` pending at once)."""
        sel = selectors.DefaultSelector()
        pending: dict[socket.socket, list[Any]] = {}  # sock -> [key, buffer, request]
        deadline = time.monotonic() + timeout
        to_open = total - len(self.socks)
        try:
            while to_open > 0 or pending:
                while to_open > 0 and len(pending) < inflight:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
                    s.setblocking(False)
                    s.connect_ex((HOST, self.port))
                    req, key = frames.handshake_request(f"{HOST}:{self.port}")
                    pending[s] = [key, b"", req]
                    sel.register(s, selectors.EVENT_WRITE)
                    to_open -= 1
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {len(self.socks)} of {total} connections after {timeout:.0f} s")
                for key_, ev in sel.select(timeout=1.0):
                    s = key_.fileobj  # type: ignore[assignment]
                    st = pending[s]
                    if ev & selectors.EVENT_WRITE:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise ConnectionError(f"connect failed: {os.strerror(err)}")
                        s.send(st[2])  # ~200 bytes: always fits an empty send buffer
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    chunk = s.recv(4096)
                    if not chunk:
                        raise ConnectionError("server closed during handshake")
                    st[1] += chunk
                    if b"\r\n\r\n" in st[1]:
                        head, _, rest = st[1].partition(b"\r\n\r\n")
                        frames.check_response(head, st[0])
                        if rest:
                            raise ValueError("unexpected data after the handshake")
                        sel.unregister(s)
                        del pending[s]
                        self.socks.append(s)
        finally:
            for s in pending:
                s.close()
            sel.close()

    def shrink(self, total: int) -> None:
        """Abort (RST, no TIME_WAIT) connections until ``total`` remain."""
        while len(self.socks) > total:
            self.socks.pop().close()

    def broadcast(self, payload: bytes, timeout: float = 60.0, read_after: float = 0.0) -> float:
        """Send ``payload`` as a text message on the first connection; seconds until every
        connection received the server's frame carrying it.

        With ``read_after`` > 0 the client waits that long first and times only its own reading of
        frames already delivered: the client-side floor of this measurement."""
        expect = frames.build_frame(frames.OP_TEXT, payload)
        want = len(expect)
        ep = select.epoll(len(self.socks))
        fd_sock = {s.fileno(): s for s in self.socks}
        got: dict[int, bytes] = {}
        for fd in fd_sock:
            ep.register(fd, select.EPOLLIN)
        done = 0
        trigger = frames.build_frame(frames.OP_TEXT, payload, key=os.urandom(4))
        try:
            t0 = time.perf_counter()
            self.socks[0].send(trigger)
            if read_after:
                time.sleep(read_after)
                t0 = time.perf_counter()
            deadline = time.monotonic() + timeout
            while done < len(fd_sock):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"broadcast reached {done} of {len(fd_sock)} clients")
                for fd, _ in ep.poll(1.0):
                    data = got.get(fd, b"") + fd_sock[fd].recv(4096)
                    got[fd] = data
                    if len(data) >= want:
                        ep.unregister(fd)
                        done += 1
            elapsed = time.perf_counter() - t0
        finally:
            ep.close()
        bad = sum(1 for d in got.values() if d != expect)
        if bad:
            raise ValueError(f"{bad} clients received something else than the broadcast frame")
        return elapsed

    def close(self) -> None:
        self.shrink(0)


def measure(server: ServerProc, levels: tuple[int, int], reps: int, settle: float = 1.0) -> dict[str, Any]:
    """Warm up, RSS, broadcasts at ``levels[0]``, grow to ``levels[1]``, RSS, broadcasts."""
    small, big = levels
    payload = frames.make_payload(100, "text").encode()  # type: ignore[union-attr]
    swarm = Swarm(server.port)
    out: dict[str, Any] = {}
    try:
        swarm.grow(10)
        time.sleep(0.3)
        rss0 = server.rss_bytes()
        swarm.grow(small)
        swarm.broadcast(payload)  # warm-up
        out[f"bcast{small}"] = median([swarm.broadcast(payload) for _ in range(reps)])
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        swarm.grow(big)
        out["connect_rate"] = (big - small) / (time.perf_counter() - t0)
        out["connect_cpu"] = (server.cpu_seconds() - cpu0) / (big - small)  # the server's alone
        time.sleep(0.5)
        rss1 = server.rss_bytes()
        out["rss_per_conn"] = (rss1 - rss0) / (big - 10)
        out["rss_total"] = rss1
        out[f"bcast{big}"] = median([swarm.broadcast(payload) for _ in range(reps)])
        out["client_floor"] = median([swarm.broadcast(payload, read_after=settle) for _ in range(2)])
    finally:
        swarm.close()
    return out


def run(*, quick: bool, reps: int, infos: dict[str, dict[str, str]], notes: list[str]) -> list[Table]:
    levels = (20, 100) if quick else (1000, 10_000)
    reps = 1 if quick else max(3, reps)
    nofile = raise_nofile()
    if nofile < levels[1] + 100:
        notes.append(f"scale: RLIMIT_NOFILE is {nofile}; fewer connections may be reached")
    results: dict[str, dict[str, Any]] = {}
    # Server frames are not masked: the accelerator plays no part here, so the pure row is left out.
    impls_here = [i for i in IMPLS if i != OURS_PY]
    for impl in impls_here:
        try:
            server = start(impl, "broadcast")
        except Exception as exc:  # noqa: BLE001 - reported
            notes.append(f"scale: {impl} not measured: {exc}")
            continue
        try:
            results[impl] = measure(server, levels, reps, 0.1 if quick else 1.0)
            infos.setdefault(impl, _server_info(impl))
        except Exception as exc:  # noqa: BLE001
            notes.append(f"scale: {impl} failed: {type(exc).__name__}: {exc}")
        finally:
            server.stop()
    impls = [i for i in impls_here if i in results]
    small, big = levels
    rows: list[tuple[str, str, bool, Callable[[Any], str]]] = [
        (
            f"server RSS per idle connection at {big} (KiB)",
            "rss_per_conn",
            False,
            lambda v: f"{v / 1024:.1f}",
        ),
        (f"server RSS with {big} connections (MiB)", "rss_total", False, lambda v: f"{v / 2**20:.0f}"),
        (f"broadcast 100 B to {small} clients (ms)", f"bcast{small}", False, lambda v: f"{v * 1e3:.1f}"),
        (f"broadcast 100 B to {big} clients (ms)", f"bcast{big}", False, lambda v: f"{v * 1e3:.1f}"),
        (
            f"  client floor: reading {big} delivered frames (ms)",
            "client_floor",
            False,
            lambda v: f"{v * 1e3:.1f}",
        ),
        ("handshakes per second (client + server)", "connect_rate", True, lambda v: f"{v:.0f}"),
        ("  server CPU per handshake (µs)", "connect_cpu", False, lambda v: f"{v * 1e6:.0f}"),
    ]
    t = Table(
        title="Scale (one server process each; broadcast = time from trigger until the last client has it)",
        key="scale",
        columns=["measure", *impls, *[f"us vs {i}" for i in impls if i != OURS and OURS in impls]],
        unit="see each row; ratio > 1 means we are better",
        chart_ylabel="ms until the last client has it (lower is better)",
    )
    for label, key, higher, fmt in rows:
        vals = {i: results[i].get(key) for i in impls}
        ratios = ratio_cells(vals, OURS, impls, higher) if OURS in impls else []
        if key == "client_floor":  # the client's own cost: not a comparison of servers
            ratios = ["" for _ in ratios]
        t.rows.append([label, *["n/a" if vals[i] is None else fmt(vals[i]) for i in impls], *ratios])
        if key.startswith("bcast") or key == "client_floor":
            t.data[label.split(" (")[0]] = {i: (v * 1e3 if v else None) for i, v in vals.items()}
    t.notes.append(
        f"broadcast: median of {reps}; the client reads all sockets with one epoll loop in Python, "
        "so its own cost is included (the same for every server); the 'client floor' row is that "
        "loop alone, timed after the frames were already delivered"
    )
    t.notes.append(
        "RSS per connection = (RSS at the top level - RSS after 10 warm-up connections) / connections"
    )
    return [t]
