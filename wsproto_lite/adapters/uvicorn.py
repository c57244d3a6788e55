"""A WebSocket protocol class for uvicorn, on the wsproto-lite core (and through uvicorn: FastAPI,
Starlette, Django Channels)::

    uvicorn app:app --ws wsproto_lite.adapters.uvicorn:WSProtoLiteProtocol
    uvicorn.run(app, ws=WSProtoLiteProtocol)

uvicorn's HTTP protocol parses the upgrade request, builds one of these with ``(config, server_state,
app_state)``, calls ``connection_made(transport)``, feeds it the request head rebuilt as bytes with
``data_received`` and hands the transport over. From there the core answers the handshake rules and the
frames; this module only translates between its events and the ASGI WebSocket messages (spec 2.4):

- ``websocket.accept`` (subprotocol, headers), ``websocket.close`` before accept -> HTTP 403, the
  ``websocket.http.response`` denial extension (start, then body chunks, sent as one response);
- ``websocket.receive`` for each message, one at a time: the next one stays in the core and the socket
  stops reading until the application has taken it (receive backpressure);
- ``websocket.disconnect`` with the peer's code and reason, 1009/1007/1002 with the core's reason when the
  core failed the connection, 1006 when the connection was lost, 1012 on server shutdown;
- ``send()`` after the connection is gone raises :class:`uvicorn.protocols.utils.ClientDisconnected` (an
  ``OSError``), as the spec asks; after the application's own close it raises ``RuntimeError``.

uvicorn's settings apply: ``ws_max_size`` (1009 above it), ``ws_ping_interval``/``ws_ping_timeout``
(keepalive) and ``ws_per_message_deflate``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from wsproto_lite import (
    BinaryMessage,
    CloseCode,
    CloseReceived,
    Config,
    ConnectionClosed,
    ConnectionState,
    Event,
    HTTPRequest,
    PerMessageDeflate,
    Request,
    ServerConnection,
    TextMessage,
)

from ._protocol import CoreProtocol

try:
    from uvicorn.protocols.utils import ClientDisconnected, get_local_addr, get_remote_addr, is_ssl
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "wsproto_lite.adapters.uvicorn needs uvicorn: pip install 'wsproto-lite[uvicorn]'"
    ) from exc

if TYPE_CHECKING:
    from uvicorn.config import Config as UvicornConfig
    from uvicorn.server import ServerState

__all__ = ["WSProtoLiteProtocol"]

Message = dict[str, Any]


class Phase(enum.Enum):
    """Where the application is in the ASGI WebSocket conversation."""

    HANDSHAKE = "waiting for accept, close or http.response.start"
    OPEN = "accepted: send and close"
    RESPONDING = "denial response started: body chunks"
    DONE = "closed or denied by the application"


class WSProtoLiteProtocol(CoreProtocol[ServerConnection]):
    """uvicorn's WebSocket protocol contract, on a ``wsproto_lite.ServerConnection``."""

    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.app_state = app_state
        self.root_path = config.root_path
        self.logger = logging.getLogger("uvicorn.error")
        self.connections: set[Any] = server_state.connections  # uvicorn types it with its own classes
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        extensions = [PerMessageDeflate()] if config.ws_per_message_deflate else []
        conn = ServerConnection(Config(max_message_size=config.ws_max_size), extensions)
        super().__init__(
            conn, ping_interval=config.ws_ping_interval, ping_timeout=config.ws_ping_timeout, loop=_loop
        )
        self.scope: dict[str, Any] = {}
        self.phase = Phase.HANDSHAKE
        self._inbox: deque[Message] = deque()  # websocket.connect, then at most one websocket.receive
        self._waiter: asyncio.Future[None] | None = None
        self._release_handle: asyncio.Handle | None = None
        self._disconnect: Message | None = None  # the final message, once the connection is over
        self._response: tuple[int, list[tuple[str, str]], list[bytes]] | None = None

    # -- transport ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.connections.add(self)

    def on_lost(self) -> None:
        self.connections.discard(self)
        self._wake()

    def shutdown(self) -> None:
        """uvicorn is stopping: deny a pending handshake (500) or close with 1012, then let the peer reply."""
        self.stop_keepalive()
        if self.conn.state is ConnectionState.CONNECTING:
            self._send_500()
        elif self.conn.can_send:
            self._set_disconnect({"type": "websocket.disconnect", "code": CloseCode.SERVICE_RESTART})
            self.conn.close(CloseCode.SERVICE_RESTART)
            self.release()  # read on until the peer's close reply (the close timer bounds the wait)
            self.flush()
        else:  # our close is already out, or the connection is over
            self.close_transport()

    # -- core events -> ASGI messages --------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        cls = type(event)
        if cls is TextMessage or cls is BinaryMessage:
            if self.phase is Phase.OPEN:  # after the application's close, messages are dropped
                key = "text" if cls is TextMessage else "bytes"
                self._inbox.append({"type": "websocket.receive", key: event.data})  # type: ignore[attr-defined]
                self._wake()
                self.hold()
        elif cls is Request:
            assert isinstance(event, Request)
            self._start_app(event)
        elif cls is CloseReceived:
            assert isinstance(event, CloseReceived)
            self._set_disconnect({"type": "websocket.disconnect", "code": event.code, "reason": event.reason})
        elif cls is ConnectionClosed:
            assert isinstance(event, ConnectionClosed)
            # The core's code: 1006 when the transport ended without a close frame (RFC 6455 §7.1.5, §7.4.1;
            # uvicorn's own classes say 1005 there), or the code it failed the connection with.
            message: Message = {"type": "websocket.disconnect", "code": event.code}
            if event.code != CloseCode.ABNORMAL:  # the core failed the connection (1002, 1007, 1009): say why
                message["reason"] = event.reason
            self._set_disconnect(message)
        elif cls is HTTPRequest:  # uvicorn only hands over upgrades; the core saw no valid one
            self.conn.reject(400, [("Content-Type", "text/plain")], b"not a WebSocket upgrade request\n")

    def _set_disconnect(self, message: Message) -> None:
        if self._disconnect is None:
            self._disconnect = message
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _start_app(self, request: Request) -> None:
        raw_path, _, query = request.target.partition("?")
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(self.transport) else "ws",
            "server": get_local_addr(self.transport),
            "client": get_remote_addr(self.transport),
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path),
            "raw_path": self.root_path.encode("ascii") + raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers],
            "subprotocols": list(request.subprotocols),
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self._inbox.append({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    # -- the ASGI application ----------------------------------------------------------------------

    async def run_asgi(self) -> None:
        """Run the application for this connection, then finish what it left open."""
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except Exception:
            self.logger.exception("Exception in ASGI application\n")
        else:
            if self.phase is Phase.HANDSHAKE:
                self.logger.error("ASGI callable returned without completing handshake.")
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        finally:
            self._app_finished()

    def _app_finished(self) -> None:
        if self.lost:
            return
        if self.phase is Phase.HANDSHAKE:
            self._send_500()
        elif self.phase is Phase.RESPONDING:
            self._finish_response()  # the response was started: send it with the body given so far
        elif self.phase is Phase.OPEN or self.close_timer is None:
            # An application that returns without closing ends the connection (as uvicorn's own classes do).
            self.conn.abort()
            self.close_transport()
        self.pump()

    async def receive(self) -> Message:
        """The next ASGI message; after the disconnect, the disconnect again.

        The next message stays in the core until the application asks for it (here), or at the latest
        until the application's current step is over (``_release_soon``): an application that answers a
        message before receiving the next one has its answer on the wire before whatever the core does
        with the next frames (a failure close, §7.1.7), and one that stops receiving still has its socket
        read (pings answered, the peer's close seen).
        """
        if not self._inbox:
            self.release()
        while not self._inbox:
            if self._disconnect is not None:
                return self._disconnect
            self._waiter = self.loop.create_future()
            self.flush()  # nothing to hand out: what the application sent leaves now
            await self._waiter
        message = self._inbox.popleft()
        if not self._inbox and self._release_handle is None:
            self._release_handle = self.loop.call_soon(self._release_soon)
        return message

    def _release_soon(self) -> None:
        self._release_handle = None
        if not self._inbox:
            self.release()

    async def send(self, message: Message) -> None:
        """An ASGI message from the application."""
        await self.drain()
        kind = message["type"]
        if self.lost or (self._disconnect is not None and self.phase is not Phase.DONE):
            raise ClientDisconnected()
        if self.phase is Phase.HANDSHAKE:
            self._send_handshake_answer(kind, message)
        elif self.phase is Phase.OPEN:
            self._send_on_open_connection(kind, message)
        elif self.phase is Phase.RESPONDING:
            self._send_response_body(kind, message)
        else:
            raise RuntimeError(f"Unexpected ASGI message '{kind}', after sending 'websocket.close'.")

    def _send_handshake_answer(self, kind: str, message: Message) -> None:
        """Before the handshake is answered: accept, close (HTTP 403) or start an HTTP response."""
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":  # ASGI: a close before accept is an HTTP 403
            self._deny(403, [], b"")
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
            self._response = (status, headers, [])
            self.phase = Phase.RESPONDING
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' "
                f"or 'websocket.http.response.start' but got '{kind}'."
            )

    def _send_on_open_connection(self, kind: str, message: Message) -> None:
        """After accept: a message to send, or the application's close."""
        if kind == "websocket.send":
            if not self.conn.can_send:  # failed or closing, the app not told yet (events held)
                raise ClientDisconnected()
            data = message.get("bytes")
            if data is None:
                data = message["text"]
                self.conn.send_text(data)
            else:
                self.conn.send_binary(data)
            self.write_soon(len(data))
        elif kind == "websocket.close":
            code = message.get("code") or CloseCode.NORMAL
            reason = message.get("reason") or ""
            self.phase = Phase.DONE
            self._set_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
            if self.conn.can_send:
                self.conn.close(code, reason)
            self.release()  # read on (dropping messages) until the peer's close reply
            self.flush()
        else:
            raise RuntimeError(
                f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'."
            )

    def _send_response_body(self, kind: str, message: Message) -> None:
        """After ``websocket.http.response.start``: the body, in chunks; the last one sends the response."""
        if kind != "websocket.http.response.body":
            raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'.")
        assert self._response is not None
        self._response[2].append(message.get("body", b""))
        if not message.get("more_body", False):
            self._finish_response()

    def _accept(self, message: Message) -> None:
        headers = [*self.default_headers, *message.get("headers", [])]
        self.conn.accept(
            message.get("subprotocol"), [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        )
        self.phase = Phase.OPEN
        self._log("[accepted]")
        self.flush()
        self.start_keepalive()

    def _deny(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.conn.reject(status, headers, body)
        self.phase = Phase.DONE
        self._set_disconnect({"type": "websocket.disconnect", "code": CloseCode.ABNORMAL})
        self._log(str(status))
        self.flush()

    def _finish_response(self) -> None:
        assert self._response is not None
        status, headers, body = self._response
        self._deny(status, headers, b"".join(body))

    def _send_500(self) -> None:
        if self.scope and self.conn.state is ConnectionState.CONNECTING:  # a response can still go out
            self.conn.reject(500, [("Content-Type", "text/plain; charset=utf-8")], b"Internal Server Error")
            self._set_disconnect({"type": "websocket.disconnect", "code": CloseCode.ABNORMAL})
            self.flush()

    def _log(self, outcome: str) -> None:
        client = self.scope.get("client")
        where = f"{client[0]}:{client[1]}" if client else ""
        path = self.scope.get("path", "")
        query = self.scope.get("query_string", b"")
        if query:
            path += "?" + query.decode("latin-1")
        self.logger.info('%s - "WebSocket %s" %s', where, path, outcome)
