"""wsproto-lite I/O layer: a selectors event loop, WebSocket server and clients, TLS, and the CLI.

Server::

    from wsproto_lite.server import Handler, WebSocketServer

    class Echo(Handler):
        def on_message(self, conn, message):
            conn.send(message)

    WebSocketServer(Echo(), host="127.0.0.1", port=8765).serve_forever()

Blocking client: ``server.client.connect``; loop-native client: ``server.async_client.connect_async``.
"""

from .async_client import connect_async
from .client import ClientWebSocket, connect
from .errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    InvalidURL,
    WebSocketError,
)
from .handler import Accept, DeferredResponse, Handler, HTTPHandler, HTTPResponse, Reject
from .loop import EventLoop
from .options import Options
from .websocket import WebSocket
from .ws_server import WebSocketServer

__all__ = [
    "Accept",
    "ClientWebSocket",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "EventLoop",
    "HTTPHandler",
    "HTTPResponse",
    "DeferredResponse",
    "Handler",
    "HandshakeError",
    "InvalidURL",
    "Options",
    "Reject",
    "WebSocket",
    "WebSocketServer",
    "WebSocketError",
    "connect",
    "connect_async",
]
