"""Inflate: what a deflate bomb costs a server, and compressed receive throughput.

``python -m benchmarks.inflate [--limits 16,64] [--quick] [--tree DIR] [--out FILE]``

- **bomb**: for each server (ours: ``python -m server echo --compression``; websockets and aiohttp with
  permessage-deflate, each in its own process, ``serve`` below) and each message limit, a fresh server
  process, one client (raw socket, hand-built frames) that negotiates permessage-deflate and sends 1 GiB
  of zeros compressed (~1 MiB, in 64 KiB fragments) as one binary message, then waits for the close. The
  figure is the server's peak RSS growth: VmHWM after the close minus VmRSS before the first fragment
  (the peak is reset first through ``/proc/PID/clear_refs``), as a multiple of the limit.
- **throughput**: compressed 64 KiB and 1 MiB JSON-like binary messages (context takeover, ratio ~0.2)
  received by a ``ServerConnection`` in 64 KiB chunks, MB/s of decompressed payload (best of 5), with and
  without the C accelerator (each in its own process). ``--tree DIR`` imports ``wsproto_lite`` from DIR
  instead (e.g. a checkout of an older commit, for a before/after row).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
import zlib
from typing import Any

MIB = 2**20
FRAGMENT = 64 * 1024
SERVERS = ("wsproto-lite", "websockets", "aiohttp")
MASK = b"\x11\x22\x33\x44"


# -- the servers -------------------------------------------------------------------------------------


async def serve_websockets(port: int, limit: int) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with serve(echo, "127.0.0.1", port, compression="deflate", max_size=limit, ping_interval=None):
        print("READY", flush=True)
        await asyncio.Future()


async def serve_aiohttp(port: int, limit: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=True, max_msg_size=limit, autoping=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == web.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("READY", flush=True)
    await asyncio.Future()


def start_server(name: str, port: int, limit: int) -> subprocess.Popen[bytes]:
    if name == "wsproto-lite":
        argv = ["-m", "server", "echo", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--max-message-size", str(limit), "--compression", "--ping-interval", "0"]
    else:
        argv = ["-m", "benchmarks.inflate", "serve", name, "--port", str(port), "--limit", str(limit)]
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{name} did not start")


# -- the client --------------------------------------------------------------------------------------


def make_bomb() -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = b"\0" * MIB
    first = c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)
    steady = c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)
    return (first + steady * 1023)[:-4]


def masked_frame(opcode: int, payload: bytes, *, fin: bool, rsv1: bool) -> bytes:
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode, 0x80 | 127])
    key = (MASK * (len(payload) // 4 + 1))[: len(payload)]
    xored = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    body = xored.to_bytes(len(payload), "little")
    return head + len(payload).to_bytes(8, "big") + MASK + body


def status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def bomb_growth(name: str, limit: int, bomb: bytes, port: int) -> tuple[int, str]:
    """The server's peak RSS growth in bytes, and how the connection ended."""
    proc = start_server(name, port, limit)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        if b" 101 " not in head.split(b"\r\n")[0] or b"permessage-deflate" not in head.lower():
            return 0, "no permessage-deflate"
        time.sleep(0.2)  # the server settles after the handshake
        try:
            with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        except OSError:
            pass
        before = status(proc.pid, "VmRSS")
        pieces = [bomb[i : i + FRAGMENT] for i in range(0, len(bomb), FRAGMENT)]
        try:
            for i, piece in enumerate(pieces):
                sock.sendall(masked_frame(2 if i == 0 else 0, piece, fin=i == len(pieces) - 1, rsv1=i == 0))
        except OSError:
            pass  # the server closed first
        ending = "eof"
        try:
            reply = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
                if len(reply) >= 4 and reply[0] & 0x0F == 0x8:
                    ending = f"close {int.from_bytes(reply[2:4], 'big')}"
                    break
        except OSError as exc:
            ending = type(exc).__name__
        time.sleep(0.1)
        return status(proc.pid, "VmHWM") - before, ending
    finally:
        proc.kill()
        proc.wait()


# -- throughput --------------------------------------------------------------------------------------


def json_like(size: int) -> bytes:
    rows = [{"id": i, "name": f"user{i}", "score": (i * 7919) % 1000 / 7, "tags": ["a", "bb"][: i % 3]}
            for i in range(size // 40 + 1)]  # fmt: skip
    return json.dumps(rows).encode()[:size]


def throughput(size: int, quick: bool) -> float:
    """MB/s of decompressed payload through a server connection (in this process)."""
    from wsproto_lite import BinaryMessage, ClientConnection, PerMessageDeflate, Request, ServerConnection

    count = max(2, (4 if quick else 32) * MIB // size)
    client = ClientConnection("example.com", "/", extensions=[PerMessageDeflate()])
    message = json_like(size)
    best = float("inf")
    for _ in range(2 if quick else 5):
        server = ServerConnection(extensions=[PerMessageDeflate()])
        client = ClientConnection("example.com", "/", extensions=[PerMessageDeflate()])
        server.receive_data(client.data_to_send())
        assert isinstance(server.next_event(), Request)
        server.accept()
        client.receive_data(server.data_to_send())
        list(client.events())
        for _ in range(count):
            client.send_binary(message)
        wire = client.data_to_send()
        chunks = [wire[i : i + FRAGMENT] for i in range(0, len(wire), FRAGMENT)]
        received = 0
        start = time.perf_counter()
        for chunk in chunks:
            server.receive_data(chunk)
            for event in server.events():
                assert isinstance(event, BinaryMessage)
                received += 1
        best = min(best, time.perf_counter() - start)
        assert received == count
    return count * size / best / 1e6


# -- the run ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.inflate", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command")
    serve = sub.add_parser("serve")
    serve.add_argument("server", choices=SERVERS[1:])
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--limit", type=int, required=True)
    tp = sub.add_parser("throughput")
    tp.add_argument("--quick", action="store_true")
    tp.add_argument("--tree", default=None)
    ap.add_argument("--limits", default="16,64", help="message limits in MiB")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tree", default=None, help="import wsproto_lite from this directory (throughput)")
    ap.add_argument("--out", default=None, help="also write the tables to this file")
    args = ap.parse_args(argv)
    if args.command == "serve":
        runner = serve_websockets if args.server == "websockets" else serve_aiohttp
        asyncio.run(runner(args.port, args.limit))
        return 0
    if args.command == "throughput":
        if args.tree:
            sys.path.insert(0, os.path.abspath(args.tree))
        sizes = (64 * 1024, MIB)
        print(json.dumps({str(size): throughput(size, args.quick) for size in sizes}))
        return 0

    lines = ["## Inflate: a 1 GiB deflate bomb (one binary message, 64 KiB fragments)", ""]
    limits = [int(x) * MIB for x in args.limits.split(",")]
    lines.append("| server | " + " | ".join(f"limit {limit // MIB} MiB" for limit in limits) + " |")
    lines.append("|---|" + "---|" * len(limits))
    bomb = make_bomb()
    port = 18700 + os.getpid() % 1000
    for name in SERVERS:
        cells = []
        for limit in limits:
            port += 1
            grown, ending = bomb_growth(name, limit, bomb, port)
            cells.append(f"+{grown / MIB:.0f} MiB RSS = {grown / limit:.2f}x, {ending}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Inflate: receive throughput, compressed JSON-like binary (MB/s decompressed)", ""]
    lines += ["| wsproto-lite | 64 KiB | 1 MiB |", "|---|---|---|"]
    for label, env in (("C accelerator", {}), ("pure Python", {"WSPROTO_LITE_NO_SPEEDUPS": "1"})):
        argv2 = [sys.executable, "-m", "benchmarks.inflate", "throughput"]
        argv2 += ["--quick"] * args.quick + (["--tree", args.tree] if args.tree else [])
        out = subprocess.run(argv2, env={**os.environ, **env}, capture_output=True, text=True, check=True)
        rates = json.loads(out.stdout)
        lines.append(f"| {label} | " + " | ".join(f"{rate:.0f}" for rate in rates.values()) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
