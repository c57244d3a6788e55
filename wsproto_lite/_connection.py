"""A WebSocket connection, sans I/O: the opening handshake, then messages, then the closing handshake.

Bytes in with :meth:`Connection.receive_data`, events out with :meth:`Connection.events`, bytes to send
with :meth:`Connection.data_to_send`. The connection reacts to the protocol by itself: it answers pings
(§5.5.2), replies to a close (§5.5.1), fails the connection with the right close code when the peer breaks
a rule (§7.1.7), and tells the I/O layer when to close the transport (§7.1.1).
"""

from __future__ import annotations

import base64
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ._close import build_close_payload
from ._config import Config
from ._errors import CloseCode, HandshakeError, LocalProtocolError, RemoteProtocolError
from ._events import (
    Accepted,
    CloseReceived,
    ConnectionClosed,
    Event,
    Headers,
    HTTPRequest,
    Ping,
    Rejected,
    Request,
)
from ._frames import MAX_CONTROL_PAYLOAD, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, frame_header
from ._handshake import (
    accept_key,
    build_request,
    build_response,
    is_upgrade_request,
    parse_extension_header,
    validate_response,
    validate_upgrade_request,
)
from ._http import HeadReader, HTTPError, header_values, parse_request_head, parse_response_head, token_list
from ._reader import MessageReader
from ._state import PUBLIC_STATE, ConnectionState, Phase, Trigger, next_state
from ._writer import SMALL_HEADERS, FrameWriter
from .extensions import Extension, ExtensionFactory

__all__ = ["Connection", "ServerConnection", "ClientConnection", "PreparedMessage", "prepare_message"]

_OPEN = Phase.OPEN
_TEXT_HEADERS, _BINARY_HEADERS = SMALL_HEADERS[OP_TEXT], SMALL_HEADERS[OP_BINARY]


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    """A server frame built once and sent to many connections (see :func:`prepare_message`)."""

    frame: bytes


def prepare_message(data: str | bytes) -> PreparedMessage:
    """Build an unmasked, uncompressed server frame for ``data`` once, for broadcasting."""
    if isinstance(data, str):
        payload, opcode = data.encode("utf-8"), OP_TEXT
    else:
        payload, opcode = bytes(data), OP_BINARY
    return PreparedMessage(frame_header(opcode, len(payload)) + payload)


class Connection:
    """What both roles share; use :class:`ServerConnection` or :class:`ClientConnection`."""

    is_server: bool

    def __init__(
        self,
        config: Config | None,
        extensions: Sequence[ExtensionFactory],
        mask_key: Callable[[int], bytes] | None,
    ) -> None:
        self.config = config or Config()
        self._mask_key = mask_key  # None for a server: its frames are not masked (§5.1)
        self._factories = tuple(extensions)
        self._phase = Phase.CONNECTING
        self._events: deque[Event] = deque()
        self._head = HeadReader(self.config.max_handshake_size)
        self._reader: MessageReader | None = None
        self._ready: deque[Event] = deque()  # the reader's parsed-ahead data messages, once OPEN
        self._early: list[bytes] = []  # bytes that followed the handshake head before the reader exists
        self._writer = FrameWriter(None)
        self._eof = False
        self._clean = False  # both close frames crossed
        self._closed_reported = False
        self._reading = True  # False once the peer's close arrived or the connection failed
        #: ``(code, reason)`` of the close frame we sent / received, once that happened.
        self.close_sent: tuple[int, str] | None = None
        self.close_received: tuple[int, str] | None = None
        #: The negotiated extensions and subprotocol, once OPEN.
        self.extensions: tuple[Extension, ...] = ()
        self.subprotocol: str | None = None

    # -- state -----------------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """CONNECTING, OPEN, CLOSING or CLOSED."""
        return PUBLIC_STATE[self._phase]

    def _move(self, trigger: Trigger) -> None:
        self._phase = next_state(self._phase, trigger)

    @property
    def can_send(self) -> bool:
        """May data frames be sent now? Only while OPEN (§5.5.1: nothing after our close)."""
        return self._phase is Phase.OPEN

    @property
    def should_close_transport(self) -> bool:
        """Flush :meth:`data_to_send`, then close the TCP connection now.

        §7.1.1: the server closes the TCP connection first, right after the closing handshake; the client
        waits for the server to do it (see :attr:`close_expected`). A failed connection closes at once.
        """
        if self._phase is not Phase.CLOSED:
            return False
        return self.is_server or self._eof or not self._clean

    @property
    def close_expected(self) -> bool:
        """We are waiting for the peer (its close frame, or its TCP close): time to arm a close timer."""
        if self._phase is Phase.CLOSE_SENT:
            return True
        return self._phase is Phase.CLOSED and not self.should_close_transport

    # -- input -----------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Give the core bytes read from the transport; ``b""`` means the peer closed it (EOF)."""
        if not data:
            self._eof = True
            if self._phase is Phase.CONNECTING:
                self._handshake_eof()
            return
        if self._phase is Phase.CONNECTING:
            if self._head is not None:
                self._receive_head(data)
            elif self._early is not None:
                self._early.append(data)
                if sum(map(len, self._early)) > self.config.max_handshake_size:
                    # §4.1: a client must wait for the server's answer before sending frames; one that
                    # floods us while the handshake is pending is not a WebSocket client.
                    self._handshake_failed(HandshakeError("data sent before the handshake completed"))
        elif self._reader is not None and self._reading:
            self._reader.feed(data)

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes are needed."""
        if self._events:
            return self._events.popleft()
        if self._ready:  # data messages the reader parsed ahead: no reaction needed
            return self._ready.popleft()
        reader = self._reader
        if reader is not None and self._reading:
            try:
                event = reader.next_event()
            except RemoteProtocolError as exc:
                self._fail(exc.code, exc.reason)
                return self._events.popleft() if self._events else None
            if event is not None:
                cls = type(event)
                if cls is Ping or cls is CloseReceived:
                    self._react(event)
                return event
        if self._eof and not self._closed_reported:
            # §7.1.5: the transport closed; without a close frame that is an abnormal closure (1006)
            self._finish(CloseCode.ABNORMAL, "connection lost")
        return self._events.popleft() if self._events else None

    def events(self) -> Iterator[Event]:
        """Iterate over the events available now."""
        queued, next_event = self._events, self.next_event
        while True:
            ready = self._ready  # data messages parsed ahead: hand them out without further checks
            while ready and not queued:
                yield ready.popleft()
            event = next_event()
            if event is None:
                return
            yield event

    def _react(self, event: Event) -> None:
        """Apply the protocol's reactions to a received ping or close frame."""
        cls = type(event)
        if cls is Ping:
            # §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in response"
            # (unless it already sent a close, §5.5.1).
            if self.config.auto_pong and self._phase is Phase.OPEN:
                self._writer.frame(OP_PONG, event.payload)  # type: ignore[attr-defined]
        elif cls is CloseReceived:
            assert isinstance(event, CloseReceived)
            self._reading = False  # §5.5.1: nothing the peer sends after its close matters
            self.close_received = (event.code, event.reason)
            self._move(Trigger.RECEIVE_CLOSE)
            if self._phase is Phase.CLOSE_RECEIVED:
                # §5.5.1: reply with a close frame, typically echoing the status code received
                self._send_close(None if event.code == CloseCode.NO_STATUS else event.code, "")
            self._clean = True
            self._finish(event.code, event.reason)

    def _fail(self, code: int, reason: str) -> None:
        """§7.1.7 _Fail the WebSocket Connection_: send a close with ``code`` (if we can) and stop."""
        self._reading = False
        if self._phase is Phase.OPEN:
            payload = build_close_payload(code, reason[:100])
            self._writer.frame(OP_CLOSE, payload)
            self.close_sent = (code, reason)
        self._move(Trigger.FAIL)
        self._finish(code, reason)

    def _finish(self, code: int, reason: str) -> None:
        """Queue the final ConnectionClosed event (once)."""
        if self._phase is not Phase.CLOSED:
            self._move(Trigger.TRANSPORT_CLOSED)
        if not self._closed_reported:
            self._closed_reported = True
            self._events.append(ConnectionClosed(code, reason, self._clean))

    def abort(self) -> None:
        """The transport is gone or given up on (e.g. a close timer fired): the connection is CLOSED."""
        self._eof = True
        self._reading = False
        self._finish(CloseCode.ABNORMAL, "connection aborted")

    # -- output ----------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the wire, in order; the queue is emptied."""
        out = self._writer.out
        if not out:
            return b""
        data = b"".join(out) if len(out) > 1 else out[0]
        out.clear()
        return data

    def data_to_send_list(self) -> list[bytes]:
        """Like :meth:`data_to_send` without joining: a list of buffers for ``sendmsg``."""
        out = self._writer.out
        self._writer.out = []
        return out

    def _check_open(self) -> None:
        if self._phase is not Phase.OPEN:
            raise LocalProtocolError(f"cannot send in state {self.state.name}")

    def send_text(self, data: str, *, fin: bool = True, compress: bool | None = None) -> None:
        """Send a text message, or with ``fin=False`` a fragment of one."""
        if not isinstance(data, str):
            raise LocalProtocolError(f"send_text needs str, not {type(data).__name__}")
        if self._phase is not _OPEN:
            self._check_open()
        payload = data.encode("utf-8")
        writer = self._writer
        if fin and len(payload) < 126 and writer.plain_server and writer.continuing is None:
            writer.out.append(_TEXT_HEADERS[len(payload)] + payload)  # the writer's fast path, inlined
        else:
            writer.data(OP_TEXT, payload, fin, compress)

    def send_binary(
        self, data: bytes | bytearray | memoryview, *, fin: bool = True, compress: bool | None = None
    ) -> None:
        """Send a binary message, or with ``fin=False`` a fragment of one."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"send_binary needs bytes, not {type(data).__name__}")
        if self._phase is not _OPEN:
            self._check_open()
        payload = bytes(data)
        writer = self._writer
        if fin and len(payload) < 126 and writer.plain_server and writer.continuing is None:
            writer.out.append(_BINARY_HEADERS[len(payload)] + payload)
        else:
            writer.data(OP_BINARY, payload, fin, compress)

    def send_ping(self, payload: bytes = b"") -> None:
        """Send a ping (§5.5.2); at most 125 bytes of payload."""
        self._send_control(OP_PING, payload)

    def send_pong(self, payload: bytes = b"") -> None:
        """Send a pong (§5.5.3), e.g. an unsolicited one as a heartbeat."""
        self._send_control(OP_PONG, payload)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        self._check_open()
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError("control frame payloads are at most 125 bytes (§5.5)")
        self._writer.frame(opcode, bytes(payload))

    def close(self, code: int | None = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake (§7.1.2); data may still arrive until the peer's close."""
        if self._phase not in (Phase.OPEN, Phase.CLOSE_RECEIVED):
            raise LocalProtocolError(f"cannot close in state {self.state.name}")
        self._send_close(code, reason)

    def _send_close(self, code: int | None, reason: str) -> None:
        payload = build_close_payload(code, reason)
        self._writer.frame(OP_CLOSE, payload)
        self.close_sent = (CloseCode.NO_STATUS if code is None else code, reason)
        self._move(Trigger.SEND_CLOSE)

    def send_prepared(self, message: PreparedMessage) -> None:
        """Queue a frame built by :func:`prepare_message` (server role only)."""
        if not self.is_server:
            raise LocalProtocolError("prepared messages are unmasked server frames; clients must mask (§5.3)")
        self._check_open()
        if self._writer.continuing is not None:
            raise LocalProtocolError("a fragmented message is being sent; finish it first (§5.4)")
        self._writer.out.append(message.frame)

    # -- opening handshake -----------------------------------------------------------------------

    def _open(self, extensions: Sequence[Extension]) -> None:
        """The handshake succeeded: set up the frame layer and parse what followed the head."""
        self.extensions = tuple(extensions)
        out = self._writer.out
        self._writer = FrameWriter(self._mask_key, self.extensions)
        self._writer.out = out
        self._reader = MessageReader(self.config, expect_masked=self.is_server, extensions=self.extensions)
        self._ready = self._reader.ready
        self._move(Trigger.HANDSHAKE_DONE)
        for chunk in self._early:
            self._reader.feed(chunk)
        self._early = []

    def _handshake_failed(self, error: HandshakeError) -> None:
        raise NotImplementedError

    def _handshake_eof(self) -> None:
        self._head = None  # type: ignore[assignment]
        self._move(Trigger.TRANSPORT_CLOSED)
        self._closed_reported = True
        self._events.append(ConnectionClosed(CloseCode.ABNORMAL, "connection closed during the handshake"))

    def _receive_head(self, data: bytes) -> None:
        raise NotImplementedError


class ServerConnection(Connection):
    """The server side: waits for the client's upgrade request, then ``accept()`` or ``reject()``."""

    is_server = True

    def __init__(self, config: Config | None = None, extensions: Sequence[ExtensionFactory] = ()) -> None:
        super().__init__(config, extensions, None)
        self._request: HTTPRequest | None = None
        self._key = ""
        self._offers: list[tuple[str, list[tuple[str, str | None]]]] = []

    def _receive_head(self, data: bytes) -> None:
        try:
            done = self._head.feed(data)
            if done is None:
                return
            head, rest = done
            self._head = None  # type: ignore[assignment]
            self._early = [rest] if rest else []
            method, target, version, headers = parse_request_head(head, self.config.max_headers)
        except HTTPError as exc:
            self._handshake_failed(HandshakeError(exc.reason, exc.status))
            return
        if not is_upgrade_request(headers):
            # Not a WebSocket handshake: the application answers it like any HTTP request.
            self._request = HTTPRequest(method, target, headers)
        else:
            try:
                self._key = validate_upgrade_request(method, version, headers)
                self._offers = parse_extension_header(header_values(headers, "Sec-WebSocket-Extensions"))
            except HandshakeError as exc:
                self._handshake_failed(exc)
                return
            except ValueError as exc:
                self._handshake_failed(HandshakeError(f"malformed Sec-WebSocket-Extensions: {exc}"))
                return
            self._request = Request(
                method,
                target,
                headers,
                subprotocols=tuple(token_list(headers, "Sec-WebSocket-Protocol")),
                extensions=tuple(header_values(headers, "Sec-WebSocket-Extensions")),
            )
        self._events.append(self._request)

    def _handshake_failed(self, error: HandshakeError) -> None:
        """Answer a bad request with an HTTP error ourselves (§4.2.1: "an HTTP error code (such as 400)")."""
        body = f"{error.reason}\n".encode()
        self._writer.out.append(
            build_response(error.status, [*error.headers, ("Content-Type", "text/plain")], body)
        )
        self._head = None  # type: ignore[assignment]
        self._early = []
        self._move(Trigger.HANDSHAKE_FAILED)
        self._closed_reported = True
        self._events.append(ConnectionClosed(CloseCode.ABNORMAL, f"handshake failed: {error.reason}"))

    def _pending_request(self) -> HTTPRequest:
        if self._phase is not Phase.CONNECTING or self._request is None:
            raise LocalProtocolError("no request is waiting for an answer")
        return self._request

    def accept(self, subprotocol: str | None = None, extra_headers: Sequence[tuple[str, str]] = ()) -> None:
        """Accept the WebSocket handshake (§4.2.2): queue the 101 response; the connection is OPEN."""
        request = self._pending_request()
        if not isinstance(request, Request):
            raise LocalProtocolError("a plain HTTP request cannot be upgraded; answer it with reject()")
        if subprotocol is not None and subprotocol not in request.subprotocols:
            # §4.2.2 (5.4): the subprotocol must be one the client offered
            raise LocalProtocolError(f"the client did not offer subprotocol {subprotocol!r}")
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(self._key)),
        ]
        if subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        extensions: list[Extension] = []
        responses: list[str] = []
        for factory in self._factories:
            offers = [params for name, params in self._offers if name == factory.name]
            if not offers:
                continue
            negotiated = factory.negotiate(offers)
            if negotiated is not None:
                responses.append(negotiated[0])
                extensions.append(negotiated[1])
        if responses:
            headers.append(("Sec-WebSocket-Extensions", ", ".join(responses)))
        headers.extend(extra_headers)
        self._writer.out.append(build_response(101, headers))
        self.subprotocol = subprotocol
        self._request = None
        self._open(extensions)

    def reject(self, status: int = 403, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> None:
        """Refuse the handshake, or answer a plain HTTP request, with an ordinary HTTP response."""
        self._pending_request()
        if not 200 <= status <= 599 or status == 101:
            raise LocalProtocolError(f"cannot answer with status {status}")
        self._writer.out.append(build_response(status, list(headers), body))
        self._request = None
        self._move(Trigger.HANDSHAKE_FAILED)
        self._closed_reported = True
        self._events.append(ConnectionClosed(CloseCode.ABNORMAL, f"HTTP {status} sent"))


class ClientConnection(Connection):
    """The client side: the upgrade request is queued at once; the events tell how the server answered."""

    is_server = False

    def __init__(
        self,
        host: str,
        target: str = "/",
        subprotocols: Sequence[str] = (),
        extensions: Sequence[ExtensionFactory] = (),
        extra_headers: Sequence[tuple[str, str]] = (),
        config: Config | None = None,
        mask_key: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__(config, extensions, mask_key)
        # §4.1: the key is a random 16-byte value, base64-encoded, fresh for each connection
        self._key = base64.b64encode(mask_key(16)).decode("ascii")
        self._subprotocols = tuple(subprotocols)
        self._status: tuple[int, str, Headers] | None = None  # a non-101 head, while its body arrives
        self._body = bytearray()
        self._body_length: int | None = None
        self._writer.out.append(
            build_request(
                host,
                target,
                self._key,
                self._subprotocols,
                [f.offer() for f in self._factories],
                extra_headers,
            )
        )

    def _receive_head(self, data: bytes) -> None:
        if self._status is not None:
            self._receive_body(data)
            return
        try:
            done = self._head.feed(data)
            if done is None:
                return
            head, rest = done
            status, phrase, headers = parse_response_head(head, self.config.max_headers)
        except HTTPError as exc:
            self._handshake_failed(HandshakeError(f"bad response from the server: {exc.reason}", 0))
            return
        if status != 101:
            # §4.1: any status other than 101 is handled per HTTP; the handshake did not happen
            self._status = (status, phrase, headers)
            lengths = header_values(headers, "Content-Length")
            self._body_length = int(lengths[0]) if lengths and lengths[0].isdigit() else None
            self._receive_body(rest)
            return
        self._head = None  # type: ignore[assignment]
        try:
            subprotocol, accepted = validate_response(headers, self._key, self._subprotocols, self._factories)
            by_name = {factory.name: factory for factory in self._factories}
            extensions = [by_name[name].accept_response(params) for name, params in accepted]
        except HandshakeError as exc:
            self._handshake_failed(exc, headers)
            return
        except RemoteProtocolError as exc:  # an extension refused the server's parameters
            self._handshake_failed(HandshakeError(exc.reason, 101), headers)
            return
        self.subprotocol = subprotocol
        self._early = [rest] if rest else []
        self._open(extensions)
        self._events.append(
            Accepted(subprotocol, tuple(header_values(headers, "Sec-WebSocket-Extensions")), headers)
        )

    def _receive_body(self, data: bytes) -> None:
        # Keep at most max_http_body bytes; without Content-Length the body ends at EOF.
        limit = self.config.max_http_body
        wanted = limit if self._body_length is None else min(limit, self._body_length)
        self._body += data[: max(0, wanted - len(self._body))]
        if len(self._body) >= wanted:
            self._reject_done()

    def _reject_done(self) -> None:
        assert self._status is not None
        status, phrase, headers = self._status
        self._status = None
        self._handshake_failed(HandshakeError(phrase or f"HTTP {status}", status), headers, bytes(self._body))

    def _handshake_eof(self) -> None:
        if self._status is not None:
            self._reject_done()
        else:
            super()._handshake_eof()

    def _handshake_failed(self, error: HandshakeError, headers: Headers = (), body: bytes = b"") -> None:
        self._head = None  # type: ignore[assignment]
        self._move(Trigger.HANDSHAKE_FAILED)
        self._events.append(Rejected(error.status, headers, body, error.reason))
        self._closed_reported = True
        self._events.append(ConnectionClosed(CloseCode.ABNORMAL, f"handshake failed: {error.reason}"))
