"""Churn with unfinished messages: does a server give back the memory of connections that are gone?

``python -m benchmarks.churn [--clients 100] [--rounds 8] [--before CHECKOUT] [--out FILE]``

Each round, ``clients`` connections each send 1 MiB of a fragmented message that never finishes (16
continuation frames of 64 KiB), then all of them are reset at once. After each round, when the server's
open file descriptors are back to where they were, its RSS above the start is recorded. A server that
frees a connection by reference counting stays flat (within the allocator's first-round high-water mark);
one whose dead connections wait for the cyclic garbage collector ratchets up. The collector is left alone.

``--before DIR`` adds a row for our echo server run from another checkout (e.g. ``git worktree add
/tmp/before <commit>``), measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

from . import frames
from .loopback import HOST, Client, ServerProc, free_port, peer_server

MIB = 1 << 20
PIECE = 64 * 1024


def unfinished_message(size: int) -> bytes:
    """A text message of ``size`` bytes in PIECE-sized frames, the last one without FIN."""
    key = b"\x01\x02\x03\x04"
    first = frames.build_frame(frames.OP_TEXT, b"x" * PIECE, key=key, fin=False)
    more = frames.build_frame(frames.OP_CONT, b"x" * PIECE, key=key, fin=False)
    return first + more * (size // PIECE - 1)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def one_round(server: ServerProc, clients: int, data: bytes, baseline_fds: int, timeout: float = 15.0) -> int:
    """One round; returns how many of its sockets the server still holds after ``timeout``."""
    conns = [Client(server.port, timeout=10) for _ in range(clients)]
    for conn in conns:
        conn.sock.sendall(data)
    for conn in conns:  # a reset (SO_LINGER 0): the server sees ECONNRESET, as from a crashed client
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        conn.sock.close()
    deadline = time.monotonic() + timeout
    while open_fds(server.pid) > baseline_fds and time.monotonic() < deadline:
        time.sleep(0.05)
    return open_fds(server.pid) - baseline_fds


def measure(server: ServerProc, clients: int, rounds: int, size: int) -> list[str]:
    """RSS above the start (MiB) after each round; ``*`` where the server still held sockets."""
    data = unfinished_message(size)
    warm = Client(server.port)  # handshake once so the start includes a served connection
    warm.close()
    time.sleep(0.2)
    baseline_fds, start = open_fds(server.pid), server.rss_bytes()
    growth = []
    for _ in range(rounds):
        try:
            held = one_round(server, clients, data, baseline_fds)
        except OSError as exc:  # the server stopped answering handshakes: no further rounds
            growth.append(f"stalled ({type(exc).__name__})")
            break
        time.sleep(0.1)  # let the server finish the iteration that closed the last socket
        growth.append(f"{(server.rss_bytes() - start) / MIB:+.0f}" + ("*" if held > 0 else ""))
    return growth


def ours(name: str, checkout: str) -> ServerProc:
    """``python -m server echo`` with its defaults, run from ``checkout`` (its code first on sys.path)."""
    port = free_port()
    argv = [sys.executable, "-m", "server", "echo", "--host", HOST, "--port", str(port)]
    return ServerProc(name, argv, port, cwd=checkout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.churn", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--size", type=int, default=MIB, help="bytes of the unfinished message per client")
    ap.add_argument("--before", help="another checkout of this project, measured as 'before'")
    ap.add_argument("--out", help="also write the table (Markdown) to this file")
    args = ap.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    targets = [("wsproto-lite", lambda: ours("wsproto-lite", root))]
    if args.before:
        targets.insert(0, ("wsproto-lite before", lambda: ours("wsproto-lite before", args.before)))
    targets.append(("websockets", lambda: peer_server("websockets", "echo")))
    rows = []
    for name, start in targets:
        server = start()
        try:
            growth = measure(server, args.clients, args.rounds, args.size)
        finally:
            server.stop()
        rows.append((name, growth))
        print(f"{name:22s} " + " ".join(f"{g:>7s}" for g in growth), flush=True)
    table = [
        f"{args.clients} clients x {args.size // MIB} MiB unfinished message, then reset; "
        "RSS above the start (MiB); * = sockets still open 15 s after the reset; "
        "stalled = new handshakes no longer answered",
        "",
        "| server | " + " | ".join(str(i + 1) for i in range(args.rounds)) + " |",
        "|---|" + "---|" * args.rounds,
        *(
            f"| {name} | " + " | ".join(growth + [""] * (args.rounds - len(growth))) + " |"
            for name, growth in rows
        ),
    ]
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
