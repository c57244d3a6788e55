"""The floor for a Python WebSocket echo: the least a readiness loop can do per small round trip.

``python -m benchmarks.bare_echo --port P``: one ``select.epoll`` loop, the upgrade answered from the key,
then every read taken as exactly one small masked client frame (what the sequential latency benchmark
sends), unmasked with one big-integer XOR and echoed as one unmasked frame.  No framing state, no
validation beyond UTF-8, no backpressure: not a server, a yardstick for ``benchmarks/latency.py`` (what
is left between a real implementation and the interpreter's own cost per round trip).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import select
import socket
import sys

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def _accept_key(head: bytes) -> bytes:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return base64.b64encode(hashlib.sha1(value.strip() + _GUID).digest())
    raise ValueError("no Sec-WebSocket-Key")


def _echo(data: bytes) -> bytes:
    """One masked client frame of under 126 bytes -> the same message, unmasked (§5.2, §5.3)."""
    size = data[1] & 0x7F
    key = (data[2:6] * (size // 4 + 1))[:size]
    payload = (int.from_bytes(data[6 : 6 + size], "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    payload.decode()  # text: UTF-8, as every implementation measured next to it checks
    return bytes((data[0], size)) + payload


def serve(port: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    conns: dict[int, tuple[socket.socket, bytearray]] = {}  # fd -> (socket, handshake bytes so far)
    while True:
        for fd, _ in poller.poll():
            if fd == listener.fileno():
                sock, _ = listener.accept()
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conns[sock.fileno()] = (sock, bytearray())
                poller.register(sock.fileno(), select.EPOLLIN)
                continue
            sock, head = conns[fd]
            data = sock.recv(65536)
            if not data or data[0] == 0x88:  # EOF, or a close frame: drop the connection
                poller.unregister(fd)
                sock.close()
                del conns[fd]
            elif head is not None and not head.endswith(b"\r\n\r\n"):
                head += data
                if head.endswith(b"\r\n\r\n"):
                    sock.sendall(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Accept: " + _accept_key(bytes(head)) + b"\r\n\r\n"
                    )
            else:
                sock.send(_echo(data))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bare_echo")
    ap.add_argument("--port", type=int, required=True)
    try:
        serve(ap.parse_args(argv).port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
