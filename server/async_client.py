"""A loop-native client: the same Handler callbacks as the server, thousands of connections per loop.

class Hello(Handler):
    def on_open(self, conn):
        conn.send("hello")
    def on_message(self, conn, message):
        print(message); conn.close()
    def on_close(self, conn, code, reason):
        loop.stop()
    def on_connect_error(self, conn, error):
        print("failed:", error); loop.stop()

loop = EventLoop()
connect_async(loop, "ws://127.0.0.1:8765/", Hello())
loop.run_forever()
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Sequence

from wsproto_lite import ClientConnection, Config

from .handler import Handler
from .loop import EventLoop
from .net import connect_socket
from .options import Options
from .tls import TLSTransport, client_context
from .trace import FrameTracer
from .transport import SocketTransport
from .urls import parse_url
from .websocket import WebSocket

__all__ = ["connect_async"]


def connect_async(
    loop: EventLoop,
    url: str,
    handler: Handler,
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    options: Options | None = None,
    ca_file: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    trace: Callable[[str], None] | None = None,
) -> WebSocket:
    """Start connecting to ``url``; returns the connection at once (not yet open).

    ``handler.on_open`` follows on success, ``handler.on_connect_error(conn, error)`` on failure
    (``HandshakeError`` with ``.status``, ``OSError``, ``ssl.SSLError``, ``TimeoutError`` when
    ``options.handshake_timeout`` elapses).  ``options.ping_interval`` applies to clients too.
    """
    opts = options or Options()
    parsed = parse_url(url)
    core = ClientConnection(
        host=parsed.host_header,
        target=parsed.target,
        subprotocols=list(subprotocols),
        extensions=opts.extensions(),
        extra_headers=list(headers),
        config=Config(max_message_size=opts.max_message_size, max_fragments=opts.max_fragments),
    )
    cancel: list[Callable[[], None]] = []

    def finished(_conn: WebSocket) -> None:
        for stop_connecting in cancel:
            stop_connecting()

    tracer = FrameTracer(url, trace, server_side=False) if trace else None
    conn = WebSocket(loop, core, handler, opts, on_finished=finished, tracer=tracer)
    ctx = (ssl_context or client_context(ca_file)) if parsed.secure else None

    def connected(sock: socket.socket | None, error: BaseException | None) -> None:
        if sock is None:
            conn.error = error
            conn.abort()
            return
        if conn.closed:
            sock.close()
            return
        try:
            transport: SocketTransport
            if ctx is not None:
                transport = TLSTransport(
                    loop,
                    sock,
                    conn,
                    ssl_context=ctx,
                    server_side=False,
                    server_hostname=parsed.host,
                    high_water=opts.write_high_water,
                    low_water=opts.write_low_water,
                )
            else:
                transport = SocketTransport(
                    loop, sock, conn, high_water=opts.write_high_water, low_water=opts.write_low_water
                )
            conn.attach(transport)
        except OSError as exc:
            sock.close()
            conn.error = exc
            conn.abort()

    cancel.append(connect_socket(loop, parsed.host, parsed.port, connected))
    return conn
