"""Server sends over TLS: MB/s, server CPU and the server's peak RSS, ours next to websockets and aiohttp.

Each server runs in its own process with the same certificate (a trustme CA made for the run) and the
same task: a client asks with one text message ``"SIZE COUNT"``, the server sends COUNT binary messages of
SIZE bytes (one payload object, built once per request) as fast as its backpressure lets it (ours:
``send`` while ``writable``, then ``on_writable``; websockets: ``await ws.send``; aiohttp:
``await ws.send_bytes``). The client is a blocking TLS socket written by hand (``benchmarks/frames.py``)
that reads into one reused buffer and checks the byte count; the clock runs from the request to the last
byte. Rows: 64 KiB and 1 MiB messages read as fast as they come, and one 16 MiB message to a client that
stalls 1 s before it reads (the server must hold the whole message: its peak RSS shows what it copies).
Peak RSS: the kernel's high-water mark reset (``/proc/PID/clear_refs``) before each request, minus the
RSS at that moment. No compression, no keepalive pings.

    python -m benchmarks.tls_send                 # interleaved runs; writes benchmarks/RESULTS-tls-send.md
    python -m benchmarks.tls_send --reps 3 --total-mib 32 --out /tmp/r.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import ssl
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from . import frames
from .loopback import HOST, ServerProc, free_port, read_head
from .report import median
from .servers import MAX, start_aiohttp

IMPLS = ["wsproto-lite", "websockets", "aiohttp"]
RESULTS = Path(__file__).resolve().parent / "RESULTS-tls-send.md"
KIB, MIB = 1 << 10, 1 << 20
STALL_SIZE = 16 * MIB
STALL_SECONDS = 1.0


# -- servers (the subprocess side) ---------------------------------------------------------------------


def _request(message: str | bytes) -> tuple[bytes, int]:
    size, count = (int(x) for x in (message.decode() if isinstance(message, bytes) else message).split())
    return b"\xab" * size, count


def serve_ours(port: int, ctx: ssl.SSLContext) -> None:
    from wsproto_lite.server import Handler, WebSocketServer
    from wsproto_lite.server.options import Options
    from wsproto_lite.server.websocket import WebSocket

    class Sender(Handler):
        def on_message(self, conn: WebSocket, message: str | bytes) -> None:
            conn.data["job"] = list(_request(message))
            self.on_writable(conn)

        def on_writable(self, conn: WebSocket) -> None:
            job = conn.data.get("job")
            if not job:
                return
            payload, left = job
            while left and conn.writable and conn.send(payload):
                left -= 1
            job[1] = left

    options = Options(max_message_size=MAX, compression=False, ping_interval=None)
    WebSocketServer(Sender(), host=HOST, port=port, ssl_context=ctx, options=options).serve_forever()


async def serve_websockets(port: int, ctx: ssl.SSLContext) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            payload, count = _request(message)
            for _ in range(count):
                await ws.send(payload)

    async with serve(handler, HOST, port, ssl=ctx, compression=None, max_size=MAX, ping_interval=None):
        await asyncio.Future()


async def serve_aiohttp(port: int, ctx: ssl.SSLContext) -> None:
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=0, heartbeat=None)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                payload, count = _request(message.data)
                for _ in range(count):
                    await ws.send_bytes(payload)
        return ws

    await start_aiohttp(handler, HOST, port, ssl_context=ctx)
    await asyncio.Future()


def serve(impl: str, port: int, certfile: str, keyfile: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    if impl == "wsproto-lite":
        serve_ours(port, ctx)
    elif impl == "websockets":
        asyncio.run(serve_websockets(port, ctx))
    else:
        asyncio.run(serve_aiohttp(port, ctx))


# -- the client and the measurements ----------------------------------------------------------------


class TLSClient:
    """A blocking WebSocket client over TLS, written by hand: handshake, masked requests, raw reads."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        raw = socket.create_connection((HOST, port), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname=HOST)
        request, key = frames.handshake_request(f"{HOST}:{port}")
        self.sock.sendall(request)
        head, self.leftover = read_head(self.sock)
        frames.check_response(head, key)
        self.buffer = bytearray(MIB)

    def ask(self, size: int, count: int) -> None:
        text = f"{size} {count}".encode()
        self.sock.sendall(frames.build_frame(frames.OP_TEXT, text, key=os.urandom(4)))

    def read(self, total: int) -> None:
        """Read exactly ``total`` bytes (frames of a known size), into the reused buffer."""
        got, view = len(self.leftover), memoryview(self.buffer)
        while got < total:
            count = self.sock.recv_into(view, min(len(view), total - got))
            if not count:
                raise ConnectionError("server closed the connection")
            got += count
        self.leftover = b""

    def close(self) -> None:
        try:
            self.sock.sendall(frames.build_frame(frames.OP_CLOSE, b"\x03\xe8", key=os.urandom(4)))
        except OSError:
            pass
        self.sock.close()


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def measure(
    server: ServerProc, ctx: ssl.SSLContext, size: int, count: int, stall: float = 0.0
) -> dict[str, float]:
    """One request: payload MB/s, server CPU seconds per GB, server peak RSS growth (MiB)."""
    client = TLSClient(server.port, ctx)
    try:
        with open(f"/proc/{server.pid}/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        rss0 = _status_kib(server.pid, "VmRSS")
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        client.ask(size, count)
        if stall:
            time.sleep(stall)
        client.read(count * (len(frames.header(frames.OP_BINARY, size)) + size))
        elapsed, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
        peak = _status_kib(server.pid, "VmHWM")
    finally:
        client.close()
    payload = size * count
    return {
        "mbps": payload / elapsed / 1e6,
        "cpu_s_per_gb": cpu / payload * 1e9,
        "peak_mib": (peak - rss0) / 1024,
    }


def rows(total_mib: int) -> list[tuple[str, int, int, float]]:
    return [
        ("64 KiB", 64 * KIB, total_mib * 16, 0.0),
        ("1 MiB", MIB, total_mib, 0.0),
        (f"16 MiB, reader stalled {STALL_SECONDS:.0f} s", STALL_SIZE, 1, STALL_SECONDS),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tls_send", description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--total-mib", type=int, default=64, help="MiB sent per 64 KiB / 1 MiB run")
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--serve", nargs=4, metavar=("IMPL", "PORT", "CERT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2], args.serve[3])
        return
    import trustme

    impls = args.impls.split(",")
    ca, tmp = trustme.CA(), tempfile.mkdtemp(prefix="tls-send-")
    leaf = ca.issue_cert(HOST)
    certfile, keyfile = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    leaf.private_key_and_cert_chain_pem.write_to_path(certfile)
    leaf.private_key_pem.write_to_path(keyfile)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    cases = rows(args.total_mib)
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for rep in range(args.reps):
        for impl in impls if rep % 2 == 0 else impls[::-1]:  # interleaved, alternating who goes first
            port = free_port()
            argv_ = [
                sys.executable,
                "-m",
                "benchmarks.tls_send",
                "--serve",
                impl,
                str(port),
                certfile,
                keyfile,
            ]
            server = ServerProc(impl, argv_, port)
            try:
                for label, size, count, stall in cases:
                    result = measure(server, client_ctx, size, count, stall)
                    runs.setdefault((impl, label), []).append(result)
                    print(
                        f"rep {rep + 1} {impl:12} {label:28} {result['mbps']:7.0f} MB/s "
                        f"{result['cpu_s_per_gb']:5.2f} CPU s/GB  peak +{result['peak_mib']:.1f} MiB",
                        flush=True,
                    )
            finally:
                server.stop()
    args.out.write_text(report(args, impls, cases, runs))
    print(args.out.read_text())


def report(
    args: argparse.Namespace,
    impls: list[str],
    cases: list[tuple[str, int, int, float]],
    runs: dict[tuple[str, str], list[dict[str, float]]],
) -> str:
    med = {key: {k: median([r[k] for r in results]) for k in results[0]} for key, results in runs.items()}
    versions = ", ".join(f"{name} {version(name)}" for name in ("websockets", "aiohttp") if name in impls)
    lines = [
        "# Server sends over TLS: wsproto-lite, websockets, aiohttp",
        "",
        f"`python -m benchmarks.tls_send --reps {args.reps} --total-mib {args.total_mib}` "
        f"({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC). See the module's docstring for the method. "
        f"Medians of {args.reps} interleaved runs; each server in its own process, one connection. Python "
        f"{platform.python_version()}, {ssl.OPENSSL_VERSION}, {versions}. A 2-core machine shared with other "
        "jobs: only the ratios within this run mean anything.",
        "",
        "| message | "
        + " | ".join(f"{i} MB/s" for i in impls)
        + " | "
        + " | ".join(f"{i} CPU s/GB" for i in impls)
        + " | "
        + " | ".join(f"{i} peak RSS +MiB" for i in impls)
        + " |",
        "|---|" + "---:|" * (3 * len(impls)),
    ]
    for label, _, _, stall in cases:
        cells = ["-" if stall else f"{med[(i, label)]['mbps']:.0f}" for i in impls]  # the stall is the clock
        cells += [f"{med[(i, label)]['cpu_s_per_gb']:.2f}" for i in impls]
        cells += [f"{med[(i, label)]['peak_mib']:.1f}" for i in impls]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
