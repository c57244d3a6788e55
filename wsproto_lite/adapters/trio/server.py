"""The server side on trio: a handshake waiting for its answer, the server, ``serve_websocket``."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Unpack

import trio

from wsproto_lite import CloseCode, HTTPRequest, Request, ServerConnection

from .connection import WebSocketConnection
from .errors import ConnectionClosed
from .settings import Headers, Options, Settings
from .streams import Endpoint, answer_and_close, opening_handshake, stream_endpoint

logger = logging.getLogger("wsproto_lite.adapters.trio")  # the package's logger: one name to configure

Handler = Callable[["WebSocketRequest"], Awaitable[None]]


class WebSocketRequest:
    """An opening handshake waiting for the handler's answer: ``await accept()`` or ``await reject()``."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        core: ServerConnection,
        request: Request,
        settings: Settings,
        nursery: trio.Nursery,  # where the accepted connection's tasks run
    ) -> None:
        self._stream = stream
        self._core = core
        self._request = request
        self._settings = settings
        self._nursery = nursery
        self.connection: WebSocketConnection | None = None
        self.answered = False
        self.local = stream_endpoint(stream, local=True)
        self.remote = stream_endpoint(stream, local=False)

    @property
    def path(self) -> str:
        """The request target: path and query."""
        return self._request.target

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return self._request.headers

    @property
    def subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered, in its order of preference."""
        return self._request.subprotocols

    async def accept(
        self, *, subprotocol: str | None = None, extra_headers: Headers | None = None
    ) -> WebSocketConnection:
        """Accept the handshake; the core checks ``subprotocol`` was offered (LocalProtocolError if not)."""
        self._check_unanswered()
        self._core.accept(subprotocol, extra_headers or ())  # may refuse: then the request is still open
        self.answered = True
        self.connection = WebSocketConnection(
            self._stream, self._core, self._settings, self.path, self.headers
        )
        self._nursery.start_soon(self.connection._run)
        await trio.lowlevel.checkpoint()
        return self.connection

    async def reject(
        self, status_code: int, *, extra_headers: Headers | None = None, body: bytes | None = None
    ) -> None:
        """Answer with an HTTP error and close the stream."""
        self._check_unanswered()
        self._core.reject(status_code, extra_headers or (), body or b"")
        self.answered = True
        await answer_and_close(self._stream, self._core, self._settings.disconnect_timeout)

    def _check_unanswered(self) -> None:
        if self.answered:
            raise RuntimeError("this request was already accepted or rejected")


class WebSocketServer:
    """Serves WebSockets on trio listeners: each connection's request goes to ``handler``."""

    def __init__(
        self,
        handler: Handler,
        listeners: Sequence[trio.abc.Listener[Any]],
        *,
        handler_nursery: trio.Nursery | None = None,
        **options: Unpack[Options],
    ) -> None:
        self._handler = handler
        self._listeners = list(listeners)
        self._handler_nursery = handler_nursery
        self._settings = Settings(**options)

    @property
    def listeners(self) -> list[Endpoint | str]:
        """Where the server listens (a str for a listener that is not TCP)."""
        endpoints: list[Endpoint | str] = []
        for listener in self._listeners:
            is_ssl = isinstance(listener, trio.SSLListener)
            inner = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
            if isinstance(inner, trio.SocketListener):
                address = inner.socket.getsockname()
                endpoints.append(Endpoint(address[0], address[1], is_ssl))
            else:
                endpoints.append(repr(listener))
        return endpoints

    @property
    def port(self) -> int:
        """The port, when the server has exactly one TCP listener (handy with port 0 in tests)."""
        endpoints = self.listeners
        if len(endpoints) != 1 or not isinstance(endpoints[0], Endpoint):
            raise RuntimeError(f"port is defined for one TCP listener, not {endpoints}")
        return endpoints[0].port

    async def run(self, *, task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(self)`` once listening."""
        async with trio.open_nursery() as nursery:
            serve = partial(
                trio.serve_listeners,
                self._handle_connection,
                self._listeners,
                handler_nursery=self._handler_nursery,
            )
            await nursery.start(serve)
            task_status.started(self)

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        settings = self._settings
        core = ServerConnection(settings.core_config(), settings.extensions())
        try:
            try:
                with trio.fail_after(settings.connect_timeout):
                    event = await opening_handshake(stream, core, settings.receive_buffer_size)
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not isinstance(event, Request):
                if isinstance(event, HTTPRequest):  # plain HTTP: this server speaks WebSocket only
                    core.reject(426, [("Upgrade", "websocket")], b"This service requires WebSocket.\n")
                await answer_and_close(stream, core, settings.disconnect_timeout)
                return
            async with trio.open_nursery() as nursery:
                await self._run_handler(WebSocketRequest(stream, core, event, settings, nursery))
        finally:
            await trio.aclose_forcefully(stream)

    async def _run_handler(self, request: WebSocketRequest) -> None:
        """Run the handler; then close its connection (1011 if it raised), or reject if it never answered."""
        code, reason = CloseCode.NORMAL, None
        try:
            await self._handler(request)
        except ConnectionClosed:  # the handler let the end of its connection propagate: a normal end
            pass
        except Exception:
            logger.exception("WebSocket handler failed on %s", request.path)
            code, reason = CloseCode.INTERNAL_ERROR, "internal error"
        if request.connection is not None:
            await request.connection.aclose(code, reason)
        elif not request.answered:
            await request.reject(500 if code == CloseCode.INTERNAL_ERROR else 403)


async def serve_websocket(
    handler: Handler,
    host: str | None,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    *,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
    **options: Unpack[Options],
) -> None:
    """Listen on ``host:port`` (TLS with ``ssl_context``) and serve until cancelled."""
    listeners: Sequence[trio.abc.Listener[Any]]
    if ssl_context is None:
        listeners = await trio.open_tcp_listeners(port, host=host)
    else:
        listeners = await trio.open_ssl_over_tcp_listeners(
            port, ssl_context, host=host, https_compatible=True
        )
    server = WebSocketServer(handler, listeners, handler_nursery=handler_nursery, **options)
    await server.run(task_status=task_status)
