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

from .endpoint import client_core, open_transport
from .handler import Handler
from .loop import EventLoop
from .net import connect_socket
from .options import Options
from .tls import client_context
from .trace import FrameTracer
from .urls import WSURL, parse_url
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
    options = options or Options()
    parsed = parse_url(url)
    tracer = FrameTracer(url, trace, server_side=False) if trace else None
    ctx = (ssl_context or client_context(ca_file)) if parsed.secure else None
    attempt = _Attempt(loop, parsed, ctx, options)
    conn = WebSocket(
        loop,
        client_core(parsed, options, subprotocols, headers),
        handler,
        options,
        on_finished=attempt.cancel,  # finished while connecting (e.g. the handshake timer): give up
        tracer=tracer,
    )
    attempt.start(conn)
    return conn


class _Attempt:
    """The TCP connect of one client connection; hands the socket to it, or the error.

    It holds the connection only while the connect is under way, so a finished attempt keeps nothing.
    """

    def __init__(self, loop: EventLoop, url: WSURL, ctx: ssl.SSLContext | None, options: Options) -> None:
        self._loop, self._url, self._ctx, self._options = loop, url, ctx, options
        self._conn: WebSocket | None = None
        self._cancel_connect: Callable[[], None] | None = None

    def start(self, conn: WebSocket) -> None:
        self._conn = conn
        self._cancel_connect = connect_socket(self._loop, self._url.host, self._url.port, self._connected)

    def cancel(self, _conn: WebSocket) -> None:
        cancel_connect, self._cancel_connect = self._cancel_connect, None
        self._conn = None
        if cancel_connect is not None:
            cancel_connect()

    def _connected(self, sock: socket.socket | None, error: BaseException | None) -> None:
        conn, self._conn, self._cancel_connect = self._conn, None, None
        if conn is None or conn.closed:
            if sock is not None:
                sock.close()
            return
        if sock is None:
            conn.error = error
            conn.abort()
            return
        try:
            transport = open_transport(
                self._loop,
                sock,
                conn,
                self._options,
                self._ctx,
                server_side=False,
                server_hostname=self._url.host,
            )
        except OSError as exc:
            sock.close()
            conn.error = exc
            conn.abort()
            return
        conn.attach(transport)
