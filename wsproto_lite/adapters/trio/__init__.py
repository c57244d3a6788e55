"""WebSockets on trio streams, driven by the sans-IO core; shaped like trio-websocket.

Server and client::

    async def echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        async for message in ws:  # ends when the connection closes; ws.closed tells how
            await ws.send_message(message)

    trio.run(serve_websocket, echo, "127.0.0.1", 8000, None)

    async with open_websocket_url("ws://127.0.0.1:8000/") as ws:
        await ws.send_message("hello")
        print(await ws.get_message())

The package, one concern a module: :mod:`.settings` (limits and timers), :mod:`.errors` (how a connection
ended, what the application catches), :mod:`.streams` (endpoints and the opening handshake on a stream),
:mod:`.connection` (an open WebSocket: how the core is driven, and what cancellation does), :mod:`.server`
(requests, the server, ``serve_websocket``), :mod:`.client` (the connect functions), :mod:`.echo`
(``python -m wsproto_lite.adapters.trio``).

Where it differs from trio-websocket: headers are ``(str, str)`` pairs; ``send_message`` returns once the
message is queued within ``write_limit``, not once it is written; ``CloseReason.name`` uses the core's names
(``NORMAL``, ``MESSAGE_TOO_BIG``...); a handler that raises gets its connection closed with 1011.
"""

from __future__ import annotations

try:
    import trio  # noqa: F401 - the extra this adapter needs, checked before any of its modules loads
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("wsproto_lite.adapters.trio needs trio: pip install 'wsproto-lite[trio]'") from exc

from .client import connect_websocket, connect_websocket_url, open_websocket, open_websocket_url
from .connection import WebSocketConnection
from .echo import main as main  # not in __all__; importable as before
from .errors import CloseReason, ConnectionClosed, ConnectionRejected, ConnectionTimeout, HandshakeError
from .server import Handler as Handler
from .server import WebSocketRequest, WebSocketServer, serve_websocket
from .settings import Headers as Headers
from .settings import Message as Message
from .settings import Options, Settings
from .streams import Endpoint

__all__ = [
    "CloseReason",
    "ConnectionClosed",
    "ConnectionRejected",
    "ConnectionTimeout",
    "Endpoint",
    "HandshakeError",
    "Options",
    "Settings",
    "WebSocketConnection",
    "WebSocketRequest",
    "WebSocketServer",
    "connect_websocket",
    "connect_websocket_url",
    "open_websocket",
    "open_websocket_url",
    "serve_websocket",
]
