"""One WebSocket connection on the loop: drives the sans-IO core from a transport, for both roles."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wsproto_lite import (
    Accepted,
    BinaryMessage,
    ClientConnection,
    CloseReceived,
    ConnectionState,
    HTTPRequest,
    LocalProtocolError,
    Ping,
    Pong,
    Rejected,
    Request,
    ServerConnection,
    TextMessage,
)
from wsproto_lite import ConnectionClosed as ClosedEvent

from .errors import HandshakeError
from .handler import UPGRADE_REQUIRED, Accept, Handler, HTTPHandler, HTTPResponse, Reject
from .loop import EventLoop, TimerHandle
from .options import SLOW_CONSUMER_CLOSE_CODE, Options
from .transport import BaseProtocol, SocketTransport

if TYPE_CHECKING:
    from wsproto_lite import PreparedMessage

    from .trace import FrameTracer

__all__ = ["WebSocket"]

logger = logging.getLogger("server.websocket")

Core = ServerConnection | ClientConnection


class WebSocket(BaseProtocol):
    """A connection as the application sees it: ``send``, ``ping``, ``close``, ``writable``...

    Created by the server for each accepted socket, or by :func:`server.async_client.connect_async`.
    All methods must be called from the loop thread.
    """

    def __init__(
        self,
        loop: EventLoop,
        core: Core,
        handler: Handler,
        options: Options,
        *,
        http_handler: HTTPHandler | None = None,
        over_capacity: bool = False,
        on_finished: Callable[[WebSocket], None] | None = None,
        tracer: FrameTracer | None = None,
    ) -> None:
        self.loop = loop
        self.core = core
        self.handler = handler
        self.options = options
        self.is_client = isinstance(core, ClientConnection)
        self.transport: SocketTransport | None = None
        self._attached: SocketTransport | None = None  # before connection_made (TLS handshake running)
        self.remote_address: Any = None
        self.request: Request | None = None
        """Server: the upgrade request, once received."""
        self.subprotocol: str | None = None
        self.response_headers: tuple[tuple[str, str], ...] = ()
        """Client: the headers of the server's 101 response."""
        self.data: dict[str, Any] = {}
        """Free space for the application (user id after auth, room, ...)."""
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.error: BaseException | None = None
        """Client: why connecting failed (``HandshakeError``, ``OSError``, ``ssl.SSLError``...)."""
        self._http_handler = http_handler
        self._over_capacity = over_capacity
        self._on_finished = on_finished
        self._tracer = tracer
        self._opened = False
        self._finished = False
        self._socket_closed = False
        self._handshake_timer: TimerHandle | None = None
        self._close_timer: TimerHandle | None = None
        self._ping_timer: TimerHandle | None = None
        self._pong_timer: TimerHandle | None = None
        self._slow_timer: TimerHandle | None = None
        self._linger_timer: TimerHandle | None = None
        self._ping_seq = 0
        self._processing = False
        self._again = False
        self._unflushed = 0  # bytes queued in the core during this event batch, not yet flushed
        if options.handshake_timeout is not None:
            self._handshake_timer = loop.call_later(options.handshake_timeout, self._handshake_timed_out)

    # -- public API ----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while messages can be sent (handshake done, no close sent)."""
        return self._opened and self.core.state is ConnectionState.OPEN

    @property
    def closed(self) -> bool:
        """True once the connection is fully closed (``on_close`` was or will be called)."""
        return self._finished

    @property
    def writable(self) -> bool:
        """False while unsent data is over the high watermark: wait for ``on_writable``."""
        t = self.transport
        return self.is_open and t is not None and not t.writing_paused

    @property
    def buffered_amount(self) -> int:
        """Bytes queued for this peer and not yet taken by the kernel."""
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    def send(self, message: str | bytes, *, fin: bool = True, compress: bool | None = None) -> bool:
        """Queue a text (``str``) or binary (``bytes``) message; never blocks.

        ``fin=False`` sends a fragment; continue with more calls of the same type, the last one with
        ``fin=True``.  Returns False (message dropped) when the connection is not open or its unsent
        data is over ``write_hard_limit`` (a slow consumer: it is closed if that lasts).
        """
        if not self.is_open or self._over_hard_limit():
            return False
        try:
            if isinstance(message, str):
                self.core.send_text(message, fin=fin, compress=compress)
            else:
                self.core.send_binary(message, fin=fin, compress=compress)
        except LocalProtocolError:
            return False
        self._queued(len(message))
        return True

    def _queued(self, size: int) -> None:
        """Flush now, or, inside an event batch, at its end: one write for many replies.

        What a batch may queue before it is flushed is bounded by the high watermark.
        """
        if self._processing and self._unflushed + size < self.options.write_high_water:
            self._unflushed += size
        else:
            self._flush()

    def send_prepared(self, prepared: PreparedMessage) -> bool:
        """Queue a frame built once by ``prepare_message`` (server role; see ``server.broadcast``)."""
        if not self.is_open or self._over_hard_limit():
            return False
        try:
            self.core.send_prepared(prepared)
        except LocalProtocolError:
            return False
        self._queued(len(prepared.frame))
        return True

    def ping(self, payload: bytes = b"") -> bool:
        """Send a ping (at most 125 bytes of payload); the pong arrives in ``on_pong``."""
        if not self.is_open:
            return False
        try:
            self.core.send_ping(payload)
        except LocalProtocolError:
            return False
        self._flush()
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (no-op if already closing); ``on_close`` follows."""
        if self._finished:
            return
        if not self._opened:
            self.abort()
            return
        if self.core.state is ConnectionState.OPEN:
            try:
                self.core.close(code, reason)
            except LocalProtocolError:
                pass
        self._flush()

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake."""
        if self._finished:
            return
        self.core.abort()
        transport = self.transport or self._attached
        if transport is not None and not transport.is_closing():
            transport.abort()  # -> connection_lost -> _process -> _finish
        elif transport is not None:
            transport.abort()  # a graceful close was flushing: give up on it
        if not self._processing:
            self._process()
            self._finish()

    def attach(self, transport: SocketTransport) -> None:
        """Remember the transport before ``connection_made`` (so a TLS handshake can be aborted)."""
        self._attached = transport

    def __repr__(self) -> str:
        role = "client" if self.is_client else "server"
        return f"<WebSocket {role} {self.remote_address} {self.core.state.name}>"

    # -- transport callbacks -------------------------------------------------------------------

    def connection_made(self, transport: SocketTransport) -> None:
        self.transport = transport
        self.remote_address = transport.get_extra_info("peername")
        transport.set_write_buffer_limits(self.options.write_high_water, self.options.write_low_water)
        if self._finished:  # closed/aborted while TLS was still handshaking
            transport.abort()
            return
        self._flush()  # client: the upgrade request

    def data_received(self, data: bytes) -> None:
        if self._tracer is not None:
            self._tracer.feed(False, data)
        self.core.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self.core.receive_data(b"")
        self._process()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self._socket_closed = True
        if self.is_client and not self._opened and self.error is None:
            # without its traceback: its frames would refer back to this connection (a reference cycle)
            self.error = (
                exc.with_traceback(None)
                if exc is not None
                else ConnectionResetError("connection closed during the handshake")
            )
        self._cancel("_linger_timer")
        if self.core.state is not ConnectionState.CLOSED:
            self.core.abort()
        self._process()
        if not self._processing:
            self._finish()
        self._release()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # backpressure: stop reading what we could not answer

    def resume_writing(self) -> None:
        if self.transport is not None and not self._finished:
            self.transport.resume_reading()
        if self._slow_timer is not None and not self._over_hard_limit():
            self._slow_timer.cancel()
            self._slow_timer = None
        if self.is_open:
            self._call(self.handler.on_writable, self)

    # -- driving the core ----------------------------------------------------------------------

    def _process(self) -> None:
        if self._processing:  # re-entered from a callback: the running loop picks the events up
            self._again = True
            return
        self._processing = True
        try:
            while True:
                self._again = False
                for event in self.core.events():
                    self._dispatch(event)
                self._flush()
                if not self._again:
                    break
        finally:
            self._processing = False

    def _dispatch(self, event: object) -> None:
        if isinstance(event, TextMessage) or isinstance(event, BinaryMessage):
            if self._opened:
                self._call(self.handler.on_message, self, event.data)
        elif isinstance(event, Request):
            self._on_request(event)
        elif isinstance(event, HTTPRequest):
            self._on_http_request(event)
        elif isinstance(event, Pong):
            self._cancel("_pong_timer")
            self._call(self.handler.on_pong, self, event.payload)
        elif isinstance(event, Ping):
            pass  # the core already queued the pong
        elif isinstance(event, CloseReceived):
            pass  # the core already queued the reply close; _flush arms the close timer
        elif isinstance(event, Accepted):
            self.subprotocol = event.subprotocol
            self.response_headers = tuple(event.headers)
            self._open()
        elif isinstance(event, Rejected):
            self.error = HandshakeError(event.status, event.reason, tuple(event.headers), event.body)
        elif isinstance(event, ClosedEvent):
            self.close_code, self.close_reason = event.code, event.reason
            self._finish()

    def _on_request(self, request: Request) -> None:
        self.request = request
        decision = self._decide(request)
        if isinstance(decision, Accept):
            try:
                self.core.accept(subprotocol=decision.subprotocol, extra_headers=list(decision.headers))  # type: ignore[union-attr]
            except (LocalProtocolError, ValueError) as exc:  # the core refused the hook's answer
                logger.error("handshake hook's Accept refused: %s", exc)
                decision = Reject(500)
        if isinstance(decision, Reject):
            logger.info("%s %s rejected with %d", self.remote_address, request.target, decision.status)
            self.core.reject(decision.status, headers=list(decision.headers), body=decision.body)  # type: ignore[union-attr]
            self._cancel("_handshake_timer")
            return
        self.subprotocol = decision.subprotocol
        self._flush()
        self._open()

    def _decide(self, request: Request) -> Accept | Reject:
        if self._over_capacity:
            return Reject(503, [("Retry-After", "5")], b"too many connections\n")
        allowed = self.options.allowed_origins
        if allowed is not None and request.origin is not None and request.origin not in allowed:
            return Reject(403, body=b"origin not allowed\n")
        try:
            decision = self.handler.handshake(self, request)
        except Exception:
            logger.exception("handshake hook raised")
            return Reject(500)
        if decision is None:
            return Accept()
        return decision

    def _on_http_request(self, request: HTTPRequest) -> None:
        self._cancel("_handshake_timer")
        if self._over_capacity:
            response = HTTPResponse(503, [("Retry-After", "5")], b"too many connections\n")
        elif self._http_handler is None:
            response = UPGRADE_REQUIRED
        else:
            try:
                response = self._http_handler(request)
            except Exception:
                logger.exception("http handler raised")
                response = HTTPResponse(500, body=b"internal error\n")
        self.core.reject(response.status, headers=list(response.headers), body=response.body)  # type: ignore[union-attr]

    def _open(self) -> None:
        self._cancel("_handshake_timer")
        self._opened = True
        self._schedule_ping()
        self._call(self.handler.on_open, self)

    def _flush(self) -> None:
        self._unflushed = 0
        transport = self.transport
        if transport is None:
            return
        chunks = self.core.data_to_send_list()
        if chunks:
            if self._tracer is not None:
                for chunk in chunks:
                    self._tracer.feed(True, chunk)
            transport.writelines(chunks)
            if self._slow_timer is None and self._over_hard_limit():
                self._slow_timer = self.loop.call_later(
                    self.options.slow_consumer_timeout, self._slow_consumer
                )
        if self.core.should_close_transport:
            transport.close()
        elif (
            self.core.close_expected
            and not self._finished
            and self._close_timer is None
            and self.options.close_timeout is not None
        ):
            self._close_timer = self.loop.call_later(self.options.close_timeout, self._close_timed_out)

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        for name in ("_handshake_timer", "_close_timer", "_ping_timer", "_pong_timer", "_slow_timer"):
            self._cancel(name)
        if self.close_code is None:
            self.close_code, self.close_reason = 1006, "connection lost"
        self._flush()  # the reply close frame, if the core queued one
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self.is_client and not self.core.should_close_transport and self.options.close_timeout:
                # RFC 6455 7.1.1: the server closes TCP first; give it close_timeout to do so
                self._linger_timer = self.loop.call_later(self.options.close_timeout, transport.abort)
            else:
                transport.close()
        if self._opened:
            self._call(self.handler.on_close, self, self.close_code, self.close_reason)
        elif self.is_client:
            self._call(
                self.handler.on_connect_error, self, self.error or ConnectionResetError("connection lost")
            )
        self._release()

    def _release(self) -> None:
        """Finished and the socket is closed (or there never was one): tell the owner, once."""
        if self._finished and (self._socket_closed or self._attached is None):
            on_finished, self._on_finished = self._on_finished, None
            if on_finished is not None:
                on_finished(self)

    def _call(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("handler %s raised", getattr(fn, "__name__", fn))

    # -- timers --------------------------------------------------------------------------------

    def _cancel(self, name: str) -> None:
        timer: TimerHandle | None = getattr(self, name)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        if not self._opened:
            logger.info("%s: opening handshake timed out", self.remote_address)
            if self.error is None:
                self.error = TimeoutError("opening handshake timed out")
            self.abort()

    def _close_timed_out(self) -> None:
        self._close_timer = None
        logger.info("%s: closing handshake timed out, aborting", self.remote_address)
        self.abort()

    def _schedule_ping(self) -> None:
        if self.options.ping_interval is not None and not self._finished:
            self._ping_timer = self.loop.call_later(self.options.ping_interval, self._keepalive)

    def _keepalive(self) -> None:
        self._ping_timer = None
        if not self.is_open:
            return
        if self._pong_timer is None:
            self._ping_seq += 1
            self.ping(struct.pack("!I", self._ping_seq & 0xFFFFFFFF))
            if self.options.ping_timeout is not None:
                self._pong_timer = self.loop.call_later(self.options.ping_timeout, self._pong_timed_out)
        self._schedule_ping()

    def _pong_timed_out(self) -> None:
        self._pong_timer = None
        if self.transport is not None and not self.transport.is_reading and not self._finished:
            # we stopped reading ourselves (backpressure): the pong may be waiting in the socket
            self._pong_timer = self.loop.call_later(self.options.ping_timeout or 1.0, self._pong_timed_out)
            return
        logger.info("%s: no pong within %ss, closing", self.remote_address, self.options.ping_timeout)
        self.close(1011, "keepalive ping timeout")

    def _over_hard_limit(self) -> bool:
        return self.buffered_amount > self.options.write_hard_limit

    def _slow_consumer(self) -> None:
        self._slow_timer = None
        if self._finished or not self._over_hard_limit():
            return
        logger.warning(
            "%s: slow consumer (%d bytes unsent for %ss), closing with %d",
            self.remote_address,
            self.buffered_amount,
            self.options.slow_consumer_timeout,
            SLOW_CONSUMER_CLOSE_CODE,
        )
        if self.core.state is ConnectionState.OPEN:
            try:
                self.core.close(SLOW_CONSUMER_CLOSE_CODE, "slow consumer")
            except LocalProtocolError:
                pass
        # the close frame would sit behind megabytes the peer does not read: drop the socket now
        self.core.data_to_send_list()
        self.abort()
