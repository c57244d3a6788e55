"""One WebSocket connection on the loop: drives the sans-IO core from a transport, for both roles.

Every protocol decision is the core's: this class moves bytes between the transport and the core, turns
the core's events into the handler's callbacks, and keeps the time (handshake, close, keepalive and
slow-consumer timers, :mod:`.connection_timers`), asking the core what to do when one fires. Keepalive and
the close timer follow the policy of :mod:`.keepalive`, shared with the adapters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wsproto_lite import (
    Accepted,
    BinaryMessage,
    ClientConnection,
    CloseCode,
    ConnectionClosed,
    ConnectionState,
    Event,
    HTTPRequest,
    LocalProtocolError,
    Pong,
    Request,
    ServerConnection,
    TextMessage,
)

from .connection_timers import TimerCallbacks
from .endpoint import Endpoint
from .handler import Accept, DeferredResponse, Handler, HTTPHandler, HTTPResponse, Reject
from .keepalive import PingTracker
from .loop import EventLoop
from .options import Options
from .prepared_sends import PreparedSends
from .timers import Timer, Timers
from .transport import BaseProtocol, SocketTransport
from .upgrade import http_answer, upgrade_decision

if TYPE_CHECKING:
    from .fanout import DirectSockets
    from .trace import FrameTracer

__all__ = ["WebSocket"]

logger = logging.getLogger("wsproto_lite.server.websocket")

Core = ServerConnection | ClientConnection


class WebSocket(BaseProtocol, Endpoint, PreparedSends, TimerCallbacks):
    """A connection as the application sees it: ``send``, ``ping``, ``close``, ``writable``...

    Created by the server for each accepted socket, or by :func:`server.async_client.connect_async`.
    All methods must be called from the loop thread. Life cycle: ``on_open`` once the handshake
    succeeded, then ``on_close`` exactly once when the core reports the end (``closed`` is then true);
    the owner's ``on_finished`` follows once the socket is closed too.
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
        direct_sockets: DirectSockets | None = None,
    ) -> None:
        Endpoint.__init__(self)
        self.loop = loop
        self.core = core
        self.handler = handler
        self.options = options
        self.is_client = isinstance(core, ClientConnection)
        self.transport: SocketTransport | None = None
        self.remote_address: Any = None
        self.request: Request | None = None
        """Server: the upgrade request, once received."""
        self.data: dict[str, Any] = {}
        """Free space for the application (user id after auth, room, ...)."""
        self._http_handler = http_handler
        self._over_capacity = over_capacity
        self._on_finished = on_finished
        self._tracer = tracer
        self.direct_sockets = direct_sockets
        """Server: its server's connections whose sockets a broadcast may write to directly."""
        self._timers = Timers(loop)
        self._opened = False  # on_open was called: the handshake succeeded
        self._pings = PingTracker()
        self._dispatching = False  # inside _process: callbacks may re-enter
        self._reply_now = False  # in _deliver, until the handler's first send: that one is written at once
        self._events_waiting = False  # bytes arrived during _process: run the event loop again
        self._messages_paused = False  # pause_messages(): no messages handed out, the peer not read
        self._unflushed = 0  # bytes queued in the core during this event batch, not yet flushed
        self._tick_pending = False  # a fanout.TickFlush writes what the core queued at the iteration's end
        if options.handshake_timeout is not None:
            self._timers.arm(Timer.HANDSHAKE, options.handshake_timeout, self._handshake_timed_out)

    # -- public API ----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while messages can be sent (handshake done, no close sent)."""
        return self._opened and self.core.can_send

    @property
    def closed(self) -> bool:
        """True once the connection is closed (``on_close`` was or is being called)."""
        return self.close_code is not None

    @property
    def writable(self) -> bool:
        """False while unsent data is over the high watermark: wait for ``on_writable``."""
        return self.is_open and self.transport is not None and not self.transport.writing_paused

    @property
    def buffered_amount(self) -> int:
        """Bytes queued for this peer and not yet taken by the kernel (the transport's buffer, plus what
        the current event batch queued in the core and will write at its end)."""
        return self._unflushed + (0 if self.transport is None else self.transport.buffered)

    def pause_messages(self) -> None:
        """No messages to the handler (what was read stays in the core), no reading, until resumed."""
        self._messages_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_messages(self) -> None:
        if self._messages_paused:
            self._messages_paused = False
            if self.transport is not None and not self.closed and not self.transport.writing_paused:
                self.transport.resume_reading()
            self._process()

    def send(self, message: str | bytes, *, fin: bool = True, compress: bool | None = None) -> bool:
        """Queue a text (``str``) or binary (``bytes``) message; never blocks.

        ``fin=False`` sends a fragment; continue with more calls of the same type, the last one with
        ``fin=True``.  Returns False (message dropped) when the connection is not open or its unsent
        data is over ``write_hard_limit`` (a slow consumer: it is closed if that lasts).
        """
        transport, core = self.transport, self.core
        if not self._opened or not core.can_send or transport is None:
            return False
        buffered = transport.buffered
        if buffered > self.options.write_hard_limit:
            self._over_hard_limit_now()
            return False
        if self._reply_now and fin:  # the first reply to a message handed over at once: no queue, no batch
            self._reply_now = False
            frame = core.message_frame(message)  # None when the core must queue it (see there)
            if frame is not None:
                transport.write(frame)
                return True
        try:
            if isinstance(message, str):
                core.send_text(message, fin=fin, compress=compress)
            else:
                core.send_binary(message, fin=fin, compress=compress)
        except LocalProtocolError:
            return False
        self._queued(len(message), buffered)
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

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake (no-op if already closing); ``on_close`` follows."""
        if self.closed:
            return
        if not self._opened:
            self.abort()
            return
        if self.core.state is ConnectionState.OPEN:
            self.core.close(code, reason)
        self._flush()

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake (``on_close`` follows with 1006).

        A closed connection whose socket still lingers (draining, or waiting for the server's TCP
        close) loses its socket at once.
        """
        if not self.closed:
            self.core.abort()
        if self.transport is not None and not self.transport.is_closed:
            self.transport.abort()  # -> connection_lost -> _process: the core's ConnectionClosed
        self._process()

    def attach(self, transport: SocketTransport) -> None:
        """Drive this connection from ``transport`` (before ``connection_made``: a TLS handshake may run)."""
        self.transport = transport

    def __repr__(self) -> str:
        role = "client" if self.is_client else "server"
        return f"<WebSocket {role} {self.remote_address} {self.core.state.name}>"

    # -- transport callbacks -------------------------------------------------------------------

    def connection_made(self, transport: SocketTransport) -> None:
        self.remote_address = transport.get_extra_info("peername")
        if self.closed:  # aborted while TLS was still handshaking
            transport.abort()
            return
        self._flush()  # client: the upgrade request

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if (  # open, nothing held back or being handed out, not traced: the common case, one small message
            self._opened
            and self.close_code is None
            and not self._dispatching
            and not self._messages_paused
            and self._tracer is None
            and transport is not None
            and not transport.writing_paused
        ):
            message = self.core.receive_message(data)
            if message is None:
                self._process()  # anything else: the core has it, as after receive_data
            else:
                self._deliver(message.data)
            return
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
        if self.direct_sockets is not None:
            self.direct_sockets.leave(self)  # the socket is closed: its number may be reused
        if self.is_client and not self._opened and self.error is None:
            # without its traceback: its frames would refer back to this connection (a reference cycle)
            self.error = (
                exc.with_traceback(None)
                if exc is not None
                else ConnectionResetError("connection closed during the handshake")
            )
        self._timers.cancel(Timer.SERVER_TCP_CLOSE)
        if self.core.state is not ConnectionState.CLOSED:
            self.core.abort()
        self._process()
        self._release()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # backpressure: stop reading what we could not answer

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed and not self._messages_paused:
            self.transport.resume_reading()
        if Timer.SLOW_CONSUMER in self._timers and not self._over_hard_limit():
            self._timers.cancel(Timer.SLOW_CONSUMER)
        self._process()  # the messages held back while over the high watermark
        if self.is_open:
            self._call(self.handler.on_writable, self)

    # -- driving the core ----------------------------------------------------------------------

    def _process(self) -> None:
        """Hand every event the core has to its handler, then write what the core queued.

        Backpressure: while the connection is open and its unsent data is over the high watermark, the
        events not yet handed out stay in the core (what was read before reading paused: bounded by the
        read size) until ``resume_writing``; the handler is not asked to answer more than the peer reads.
        """
        self._unsure_again()
        if self._dispatching:  # re-entered from a callback: the running loop picks the events up
            self._events_waiting = True
            return
        self._dispatching = True
        transport = self.transport
        try:
            while True:
                self._events_waiting = False
                if not self._holding():
                    for event in self.core.events():
                        self._dispatch(event)
                        paused = self._messages_paused or (transport is not None and transport.writing_paused)
                        if paused and self._holding():
                            break
                self._flush()
                if not self._events_waiting:
                    break
        finally:
            self._dispatching = False

    def _deliver(self, data: str | bytes) -> None:
        """:meth:`_process` for one message the core handed over at once (``receive_message``): its first
        reply is written at once (:meth:`send`), what else the handler queues at its end, in one write."""
        sockets = self.direct_sockets
        if sockets is not None and sockets.ready:  # (as _unsure_again, inline: this runs for every message)
            sockets.unsure_again(self)
        self._dispatching = self._reply_now = True
        self._events_waiting = False
        try:
            self.handler.on_message(self, data)
        except Exception:
            logger.exception("handler on_message raised")
        finally:
            self._dispatching = self._reply_now = False
        if self._events_waiting:  # a callback made more events ready (resume_messages, a close)
            self._process()
        elif self._unflushed:  # replies queued in the core (the first one may have gone already)
            self._flush()

    def _holding(self) -> bool:
        """True while events are left in the core: writing (or messages) paused, the connection open."""
        transport = self.transport
        return (
            transport is not None
            and (transport.writing_paused or self._messages_paused)
            and self.core.can_send
            and not transport.is_closing()
        )

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, (TextMessage, BinaryMessage)):
            if self._opened and not self.closed:  # a message held back past the end is not delivered
                self._call(self.handler.on_message, self, event.data)
        elif isinstance(event, Request):
            self._on_request(event)
        elif isinstance(event, HTTPRequest):
            self._on_http_request(event)
        elif isinstance(event, Pong):
            if self._pings.pong(event.payload, self.loop.time()):
                self._timers.cancel(Timer.PONG)
            self._call(self.handler.on_pong, self, event.payload)
        else:
            # Accepted, Rejected, ConnectionClosed: the outcome. Ping and CloseReceived need nothing
            # here: the core answered them (the pong, the reply close) and _flush arms the close timer.
            self.record(event)
            if isinstance(event, Accepted):
                self._open()
            elif isinstance(event, ConnectionClosed):
                self._finish()

    def _on_request(self, request: Request) -> None:
        self.request = request
        core = self.core
        assert isinstance(core, ServerConnection)
        decision = upgrade_decision(self, request, over_capacity=self._over_capacity)
        if isinstance(decision, Accept):
            try:
                core.accept(subprotocol=decision.subprotocol, extra_headers=list(decision.headers))
            except LocalProtocolError as exc:  # the core refused the hook's answer
                logger.error("handshake hook's Accept refused: %s", exc)
                decision = Reject(500)
        if isinstance(decision, Reject):
            logger.info("%s %s rejected with %d", self.remote_address, request.target, decision.status)
            core.reject(decision.status, headers=list(decision.headers), body=decision.body)
            self._timers.cancel(Timer.HANDSHAKE)
            return
        self.subprotocol = decision.subprotocol
        self._flush()
        self._open()

    def _on_http_request(self, request: HTTPRequest) -> None:
        response = http_answer(request, over_capacity=self._over_capacity, http_handler=self._http_handler)
        if isinstance(response, DeferredResponse):
            if response.response is None:
                # answered later: the handshake timer stays armed and aborts a request never answered
                response.then(self._deferred_http_response)
                return
            response = response.response
        self._respond_http(response)

    def _respond_http(self, response: HTTPResponse) -> None:
        self._timers.cancel(Timer.HANDSHAKE)
        assert isinstance(self.core, ServerConnection)
        self.core.reject(response.status, headers=list(response.headers), body=response.body)

    def _deferred_http_response(self, response: HTTPResponse) -> None:
        """A deferred answer arrived: send it, unless the connection is gone (timed out, reset)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        self._respond_http(response)
        self._process()  # writes the response, then closes the transport as the core says

    def _open(self) -> None:
        self._timers.cancel(Timer.HANDSHAKE)
        self._opened = True
        if self.direct_sockets is not None:
            self.direct_sockets.join(self)
        self._schedule_ping()
        self._call(self.handler.on_open, self)

    def _queued(self, size: int, buffered: int | None = None) -> None:
        """Flush now, or, inside an event batch, at its end: one write for many replies.

        What a batch may queue before it is flushed is bounded by the high watermark, counting what the
        transport still holds (``buffered``, when the caller has just read it): a batch that goes over it
        is written at once, so the transport pauses.
        """
        if buffered is None:
            transport = self.transport
            buffered = 0 if transport is None else transport.buffered
        if (
            self._dispatching
            and 0 < size
            and buffered + self._unflushed + size < self.options.write_high_water
        ):
            self._unflushed += size  # > 0 while something waits: _deliver flushes only then
            self._unsure_again()
        else:
            self._flush()

    def _flush(self) -> None:
        """Write what the core queued; then do what the core says about the transport."""
        self._unflushed = 0
        self._unsure_again()
        transport = self.transport
        if transport is None:
            return
        core = self.core
        chunks = core.buffers_to_send()  # large payloads as they are: written with sendmsg
        if chunks:
            if self._tracer is not None:
                for chunk in chunks:
                    self._tracer.feed(True, chunk)
            if len(chunks) == 1:
                transport.write(chunks[0])
            else:
                transport.writelines(chunks)
            if transport.buffered > self.options.write_hard_limit:
                self._over_hard_limit_now()
        if core.can_send:
            return  # open: nothing for the transport to do
        if core.should_close_transport:
            transport.close()
        elif core.close_expected and not self.closed and Timer.CLOSE not in self._timers:
            if self.options.close_timeout is not None:
                self._timers.arm(Timer.CLOSE, self.options.close_timeout, self._close_timed_out)

    def _unsure_again(self) -> None:
        """This connection may stop being one a broadcast writes to directly: it is asked again first
        (see :class:`~.fanout.DirectSockets`; called before control can go back to the loop)."""
        sockets = self.direct_sockets
        if sockets is not None and sockets.ready:  # one test while none is ready (or none is kept)
            sockets.unsure_again(self)

    def _finish(self) -> None:
        """The core reported the end: stop the timers, close the transport, tell the handler."""
        self._timers.cancel_all()
        self._flush()  # the reply close frame, if the core queued one
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self.core.close_expected and self.options.close_timeout:
                # §7.1.1: the client waits for the server to close TCP first, for close_timeout at most
                self._timers.arm(Timer.SERVER_TCP_CLOSE, self.options.close_timeout, transport.abort)
            else:
                transport.close()
        if self._opened:
            assert self.close_code is not None
            self._call(self.handler.on_close, self, self.close_code, self.close_reason)
        elif self.is_client:
            error = self.error or ConnectionResetError("connection lost")
            self._call(self.handler.on_connect_error, self, error)
        self._release()

    def _release(self) -> None:
        """Closed, and the socket too (or there never was one): tell the owner, once."""
        if self.closed and (self.transport is None or self.transport.is_closed):
            on_finished, self._on_finished = self._on_finished, None
            if on_finished is not None:
                on_finished(self)

    def _call(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("handler %s raised", getattr(fn, "__name__", fn))
