"""Loopback measurements for the server/ report (not a test; run by hand).

    python tests/server/bench_echo.py rtt  [--seconds 3]    # 32-byte echo round trips/s: ours vs websockets
    python tests/server/bench_echo.py idle [--count 1000]   # server RSS with N idle connections

Each server runs in its own process; the client is the same raw-socket loop for both (one connection,
one 32-byte masked text frame at a time), so only the servers differ.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WEBSOCKETS_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with serve(echo, "127.0.0.1", 0, ping_interval=None, compression=None) as s:
        print("listening", s.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"""


def start(kind: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    if kind == "ours":
        argv = [sys.executable, "-m", "server", "echo", "--port", "0", "--ping-interval", "0", *extra]
    else:
        argv = [sys.executable, "-c", WEBSOCKETS_SERVER]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, int(line.rstrip().rsplit(":", 1)[-1].split()[-1].rstrip("/"))


def handshake(port: int, deflate: bool = False) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else b""
    s.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + offer + b"\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def rtt(port: int, seconds: float) -> float:
    s = handshake(port)
    payload = b"x" * 32
    key = b"\x00\x00\x00\x00"  # a zero mask: valid, and the client costs nothing
    frame = b"\x81\xa0" + key + payload
    count = 0
    deadline = time.perf_counter() + seconds
    start_t = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(100):
            s.sendall(frame)
            got = 0
            while got < 34:
                got += len(s.recv(4096))
        count += 100
    elapsed = time.perf_counter() - start_t
    s.close()
    return count / elapsed


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def idle(port: int, pid: int, count: int, deflate: bool = False) -> tuple[float, float]:
    before = rss_kib(pid)
    socks = [handshake(port, deflate) for _ in range(count)]
    for s in socks:  # one message each, so every connection went through the frame path
        if deflate:  # a compressed 500-byte message: both zlib contexts get allocated on the server
            c = zlib.compressobj(wbits=-15)
            body = (c.compress(b"hello " * 100) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
            s.sendall(bytes([0xC1, 0x80 | len(body)]) + b"\x00\x00\x00\x00" + body)
        else:
            s.sendall(b"\x81\x82\x00\x00\x00\x00hi")
        s.recv(4096)
    after = rss_kib(pid)
    peak = rss_kib(pid, "VmHWM")
    for s in socks:
        s.close()
    return before / 1024, max(after, peak) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["rtt", "idle"])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--count", type=int, default=1000)
    a = ap.parse_args()
    if a.mode == "rtt":
        for kind in ("ours", "websockets", "ours", "websockets"):
            proc, port = start(kind, "--no-compression") if kind == "ours" else start(kind)
            try:
                print(
                    f"{kind:10s} {rtt(port, a.seconds):9.0f} round trips/s (32-byte text, 1 connection)",
                    flush=True,
                )
            finally:
                proc.terminate()
                proc.wait(10)
    else:
        for extra in (["--compression"], ["--no-compression"]):
            proc, port = start("ours", *extra)
            try:
                before, peak = idle(port, proc.pid, a.count, deflate=extra[0] == "--compression")
                print(
                    f"ours {extra[0]:16s} RSS {before:.1f} MiB at rest, peak {peak:.1f} MiB with {a.count} "
                    f"idle connections ({(peak - before) * 1024 / a.count:.1f} KiB each)",
                    flush=True,
                )
            finally:
                proc.terminate()
                proc.wait(10)
        proc, port = start("websockets")
        try:
            before, peak = idle(port, proc.pid, a.count)
            print(
                f"websockets (no compression) RSS {before:.1f} MiB at rest, "
                f"peak {peak:.1f} MiB with {a.count} "
                f"idle connections ({(peak - before) * 1024 / a.count:.1f} KiB each)",
                flush=True,
            )
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
