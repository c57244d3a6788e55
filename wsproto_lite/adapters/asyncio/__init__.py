"""WebSocket servers and clients on asyncio, with the API Python users know from the websockets library::

    from .asyncio import serve, connect

    async def echo(ws):
        async for message in ws:  # str or bytes; ends when the peer closes normally
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 8765) as server:
        await server.serve_forever()

    async with connect("ws://127.0.0.1:8765/") as ws:
        await ws.send("hello")
        print(await ws.recv())

Everything protocol-related is the core's (``wsproto_lite``);
:class:`wsproto_lite.adapters._protocol.CoreProtocol`
moves the bytes. This package adds the application-facing part: a bounded receive queue (``max_queue``
messages; past it the socket stops reading), ``send()`` that waits while the transport is above its
high-water mark, ``close()`` that waits for the closing handshake (at most ``close_timeout``), keepalive
pings, subprotocols, extra headers, TLS and permessage-deflate.

One concern a module: :mod:`.connection` (:class:`WebSocket`, either role: receiving, sending, closing),
:mod:`.server` (the server role, :class:`Server` and ``serve()``), :mod:`.client` (the client role and
``connect()``).
"""

from __future__ import annotations

from ...server.errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from .client import ClientWebSocket as ClientWebSocket
from .client import InvalidStatus, connect
from .connection import Data as Data
from .connection import WebSocket
from .server import Handler as Handler
from .server import ProcessRequest as ProcessRequest
from .server import Server, serve
from .server import ServerWebSocket as ServerWebSocket

__all__ = [
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidStatus",
    "Server",
    "WebSocket",
    "connect",
    "serve",
]
