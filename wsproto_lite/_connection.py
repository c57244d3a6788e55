"""A WebSocket connection, sans I/O: the opening handshake, then messages, then the closing handshake.

Bytes in with :meth:`Connection.receive_data`, events out with :meth:`Connection.events`, bytes to send
with :meth:`Connection.data_to_send`. The connection reacts to the protocol by itself: it answers pings
(§5.5.2), replies to a close (§5.5.1), fails the connection with the right close code when the peer breaks
a rule (§7.1.7), and tells the I/O layer when to close the transport (§7.1.1).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ._close import build_close_payload, fit_close_reason
from ._config import Config
from ._errors import CloseCode, HandshakeFailure, LocalProtocolError, RemoteProtocolError
from ._events import (
    Accepted,
    BinaryMessage,
    CloseReceived,
    ConnectionClosed,
    Event,
    Headers,
    HTTPRequest,
    Ping,
    Rejected,
    Request,
    TextMessage,
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
from ._http import (
    HeadReader,
    HTTPError,
    header_index,
    header_values,
    parse_request_head,
    parse_response_head,
    request_body_length,
    split_tokens,
)
from ._reader import MessageReader
from ._state import (
    PUBLIC_STATE,
    SENDING,
    ConnectionState,
    Phase,
    Trigger,
    close_expected,
    next_state,
    should_close_transport,
)
from ._writer import COPY_LIMIT, FrameWriter
from .extensions import Extension, ExtensionFactory

__all__ = ["Connection", "ServerConnection", "ClientConnection", "PreparedMessage", "prepare_message"]


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
    """What both roles share; use :class:`ServerConnection` or :class:`ClientConnection`.

    The protocol state is ``_phase`` alone, moved only by :meth:`_move` through the table in
    :mod:`._state`; every property below is read from it, from the close frames that crossed
    (``close_sent``, ``close_received``) and from whether the transport reported EOF.
    """

    is_server: bool

    def __init__(
        self,
        config: Config | None,
        extensions: Sequence[ExtensionFactory],
        mask_key: Callable[[int], bytes] | None,
    ) -> None:
        self.config = config or Config()
        self._factories = tuple(extensions)
        self._phase = Phase.CONNECTING
        self.can_send = False
        """May data frames be sent now? Only while OPEN (§5.5.1: nothing after our close)."""
        self._eof = False  # the transport reported EOF: a fact about the input, not a protocol state
        # Events the connection itself queued (handshake, close): a few at most, so a list (an empty
        # deque costs 760 bytes per connection, issue 22).
        self._events: list[Event] = []
        self._head: HeadReader | None = HeadReader(self.config.max_handshake_size)  # until the head is in
        # Bytes that followed the head, until the frame reader exists (then an empty tuple: issue 22).
        self._after_head: list[bytes] | tuple[()] = []
        # The frame reader exists exactly in the RECEIVING phases: created when the handshake is done,
        # dropped (with every byte it buffers) on entering CLOSED.
        self._reader: MessageReader | None = None
        self._ready: list[Event] = []  # the reader's parsed-ahead data messages (reversed: pop()), once OPEN
        self._writer = FrameWriter(mask_key)  # mask_key is None for a server: no masking (§5.1)
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

    @property
    def _clean(self) -> bool:
        """Both close frames crossed: the peer's arrived, and ours was sent before it or in reply."""
        return self.close_received is not None

    @property
    def should_close_transport(self) -> bool:
        """Flush :meth:`data_to_send`, then close the TCP connection now (§7.1.1, see :mod:`._state`)."""
        return should_close_transport(self._phase, is_server=self.is_server, clean=self._clean, eof=self._eof)

    @property
    def close_expected(self) -> bool:
        """We are waiting for the peer (its close frame, or its TCP close): time to arm a close timer."""
        return close_expected(self._phase, is_server=self.is_server, clean=self._clean, eof=self._eof)

    def _move(self, trigger: Trigger, code: int = CloseCode.ABNORMAL, reason: str = "") -> None:
        """Change phase through the table; entering CLOSED queues the final event and frees the buffers.

        This is the one place that queues :class:`ConnectionClosed` (``code`` and ``reason`` are its
        fields), so it is queued exactly once, and always last.
        """
        before = self._phase
        self._phase = next_state(before, trigger)
        self.can_send = self._phase in SENDING
        if self._phase is Phase.CLOSED and before is not Phase.CLOSED:
            self._events.append(ConnectionClosed(code, reason, self._clean))
            self._release()

    def _release(self) -> None:
        """Drop what the connection buffers for input, so that a closed connection kept alive costs nothing.

        Unparsed bytes, the message being assembled, data messages parsed ahead but not handed out (a
        dropped connection does not deliver them after ConnectionClosed), the handshake buffers, and the
        extensions' state (e.g. zlib objects). Queued output stays: it may hold our close frame.
        """
        self._reader = None
        self._ready = []
        self._head = None
        self._after_head = ()
        for extension in self.extensions:
            extension.release()

    # -- input -----------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Give the core bytes read from the transport; ``b""`` means the peer closed it (EOF)."""
        if not data:
            self._eof = True
            if self._phase is Phase.CONNECTING:
                self._handshake_eof()
        elif self._reader is not None:  # a RECEIVING phase
            self._reader.feed(data)
        elif self._phase is Phase.CONNECTING:
            self._receive_handshake_data(data)

    def receive_message(self, data: bytes) -> TextMessage | BinaryMessage | None:
        """:meth:`receive_data` for the most common read, one small message: when ``data`` is exactly one
        whole data message and no event is waiting, its event is returned here, not from :meth:`events`;
        otherwise None, and the events come from :meth:`events` as after :meth:`receive_data`.  The same
        checks and the same events either way (the reader's fast case makes them); one call, not four."""
        reader = self._reader
        if reader is None or self._events or not data:
            self.receive_data(data)
            return None
        return reader.feed_one_message(data)

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes are needed."""
        if self._events:
            return self._events.pop(0)
        if self._ready:  # data messages the reader parsed ahead: no reaction needed
            return self._ready.pop()
        reader = self._reader
        if reader is not None:  # a RECEIVING phase
            try:
                event = reader.next_event()
            except RemoteProtocolError as exc:
                self._fail(exc.code, exc.reason)
                return self._events.pop(0)
            if event is not None:
                if isinstance(event, Ping):
                    self._answer_ping(event)
                elif isinstance(event, CloseReceived):
                    self._answer_close(event)
                return event
            if self._eof:
                # §7.1.5: the transport closed; without a close frame that is an abnormal closure (1006)
                self._move(Trigger.TRANSPORT_CLOSED, CloseCode.ABNORMAL, "connection lost")
        return self._events.pop(0) if self._events else None

    def events(self) -> Iterator[Event]:
        """Iterate over the events available now."""
        queued, next_event = self._events, self.next_event
        while True:
            ready = self._ready  # data messages parsed ahead: hand them out without further checks
            while ready and not queued:
                yield ready.pop()
            event = next_event()
            if event is None:
                return
            yield event

    def _answer_ping(self, ping: Ping) -> None:
        # §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in response"
        # (unless it already sent a close, §5.5.1).
        if self.config.auto_pong and self._phase in SENDING:
            self._writer.frame(OP_PONG, ping.payload)

    def _answer_close(self, close: CloseReceived) -> None:
        self.close_received = (close.code, close.reason)
        if self._phase is Phase.OPEN:
            # §5.5.1: reply with a close frame, typically echoing the status code received
            self._send_close(None if close.code == CloseCode.NO_STATUS else close.code, "")
        # §5.5.1: nothing the peer sends after its close matters; the handshake is complete (§7.1.3)
        self._move(Trigger.RECEIVE_CLOSE, close.code, close.reason)

    def _fail(self, code: int, reason: str) -> None:
        """§7.1.7 _Fail the WebSocket Connection_: send a close with ``code`` (if we can) and stop."""
        if self._phase is Phase.OPEN:
            self._send_close(code, fit_close_reason(reason))
            self.close_sent = (int(code), reason)  # the whole reason, for the application
        self._move(Trigger.FAIL, code, reason)

    def abort(self) -> None:
        """The transport is gone or given up on (e.g. a close timer fired): the connection is CLOSED."""
        self._eof = True
        self._move(Trigger.TRANSPORT_CLOSED, CloseCode.ABNORMAL, "connection aborted")

    # -- output ----------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the wire, in order; the queue is emptied."""
        out = self._writer.out
        if not out:
            return b""
        data = b"".join(out) if len(out) > 1 else out[0]
        out.clear()
        return data

    def buffers_to_send(self) -> list[bytes]:
        """Like :meth:`data_to_send` without copying payloads: a list of buffers for ``sendmsg``/writev.

        Every payload of at least ``COPY_LIMIT`` (8 KiB) bytes is the very object that was sent (the
        ``bytes`` given to :meth:`send_binary`, the encoded text, the masked or compressed payload),
        never copied into its frame; the frame headers and small frames around it are joined.
        """
        return self._writer.take()

    data_to_send_list = buffers_to_send  # the earlier name

    def _check_open(self) -> None:
        if self._phase not in SENDING:
            raise LocalProtocolError(f"cannot send in state {self.state.name}")

    def send_text(self, data: str, *, fin: bool = True, compress: bool | None = None) -> None:
        """Send a text message, or with ``fin=False`` a fragment of one."""
        if not isinstance(data, str):
            raise LocalProtocolError(f"send_text needs str, not {type(data).__name__}")
        if self._phase not in SENDING:
            self._check_open()
        self._writer.data(OP_TEXT, data.encode(), fin, compress)  # UTF-8

    def message_frame(self, data: str | bytes) -> bytes | None:
        """The frame of a whole small message (``str``: text, ``bytes``: binary) for the caller to write at
        once, instead of queuing it with :meth:`send_text` / :meth:`send_binary` and taking it back with
        :meth:`buffers_to_send`: the same bytes, one call.  Only while OPEN (§5.5.1), with nothing queued
        or being sent in fragments ahead of it (§5.4: frames leave in order), no extension to apply and
        under 8 KiB; otherwise None, and nothing was sent (queue it as usual)."""
        if not self.can_send or len(data) >= COPY_LIMIT:
            return None
        if type(data) is str:
            return self._writer.whole_frame(OP_TEXT, data.encode())  # UTF-8
        if type(data) is bytes:
            return self._writer.whole_frame(OP_BINARY, data)
        return None

    def send_binary(
        self, data: bytes | bytearray | memoryview, *, fin: bool = True, compress: bool | None = None
    ) -> None:
        """Send a binary message, or with ``fin=False`` a fragment of one.

        ``bytes`` are not copied (see :meth:`buffers_to_send`); a ``bytearray`` or ``memoryview`` is, once,
        since its content may change before it is written.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"send_binary needs bytes, not {type(data).__name__}")
        if self._phase not in SENDING:
            self._check_open()
        payload = data if type(data) is bytes else bytes(data)  # bytes(data) would cost a call for nothing
        self._writer.data(OP_BINARY, payload, fin, compress)

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
        if self._phase is not Phase.OPEN:
            raise LocalProtocolError(f"cannot close in state {self.state.name}")
        self._send_close(code, reason)
        self._move(Trigger.SEND_CLOSE)

    def _send_close(self, code: int | None, reason: str) -> None:
        """Queue our close frame (the phase is the caller's move: it depends on why we close)."""
        self._writer.frame(OP_CLOSE, build_close_payload(code, reason))
        self.close_sent = (int(CloseCode.NO_STATUS if code is None else code), reason)

    def send_prepared(self, message: PreparedMessage) -> None:
        """Queue a frame built by :func:`prepare_message` (server role only)."""
        if not self.is_server:
            raise LocalProtocolError("prepared messages are unmasked server frames; clients must mask (§5.3)")
        self._check_open()
        self._writer.prepared(message.frame)

    def consents_to_direct(self) -> bool:
        """May a prepared frame bypass this connection's queue and go to the socket now (fan-out)?

        The consent of :meth:`send_prepared` (server role, OPEN: §5.5.1 nothing after our close; no
        fragmented message under way: §5.4 its fragments may not be interleaved), and nothing queued
        here ahead of it, so that writing it straight to the socket keeps the order of the frames.
        """
        return self._phase in SENDING and self.is_server and self._writer.idle

    # -- opening handshake -----------------------------------------------------------------------

    def _open(self, extensions: Sequence[Extension]) -> None:
        """The handshake succeeded: set up the frame layer and parse what followed the head."""
        self.extensions = tuple(extensions)
        self._writer.use_extensions(self.extensions)
        self._reader = MessageReader(self.config, expect_masked=self.is_server, extensions=self.extensions)
        self._ready = self._reader.ready
        self._move(Trigger.HANDSHAKE_DONE)
        for chunk in self._after_head:
            self._reader.feed(chunk)
        self._after_head = ()

    def _keep_after_head(self, data: bytes) -> None:
        after = self._after_head
        if not isinstance(after, list):  # () once the reader exists (or the buffers are released)
            after = self._after_head = []
        after.append(data)

    def _handshake_failed(self, failure: HandshakeFailure) -> None:
        raise NotImplementedError

    def _handshake_eof(self) -> None:
        self._move(Trigger.TRANSPORT_CLOSED, CloseCode.ABNORMAL, "connection closed during the handshake")

    def _receive_handshake_data(self, data: bytes) -> None:
        raise NotImplementedError


class ServerConnection(Connection):
    """The server side: waits for the client's upgrade request, then ``accept()`` or ``reject()``."""

    is_server = True

    def __init__(self, config: Config | None = None, extensions: Sequence[ExtensionFactory] = ()) -> None:
        super().__init__(config, extensions, None)
        self._request: HTTPRequest | None = None  # the request waiting for accept() or reject()
        self._plain: HTTPRequest | None = None  # a plain HTTP request whose body is still arriving
        self._body_parts: list[bytes] | tuple[()] = ()  # a plain request's body so far (a list once one is)
        self._body_left = 0
        self._key = ""
        self._offers: Sequence[tuple[str, list[tuple[str, str | None]]]] = ()

    def _receive_handshake_data(self, data: bytes) -> None:
        if self._head is not None:
            self._receive_request_head(self._head, data)
            return
        if self._plain is not None:
            self._receive_request_body(data)
            return
        # The request is in; the application has not answered it yet.
        self._keep_after_head(data)
        if sum(map(len, self._after_head)) > self.config.max_handshake_size:
            # §4.1: a client must wait for the server's answer before sending frames; one that
            # floods us while the handshake is pending is not a WebSocket client.
            self._handshake_failed(HandshakeFailure("data sent before the handshake completed"))

    def _receive_request_head(self, head_reader: HeadReader, data: bytes) -> None:
        try:
            done = head_reader.feed(data)
            if done is None:
                return
            head, rest = done
            self._head = None
            self._after_head = [rest] if rest else []
            method, target, version, headers = parse_request_head(head, self.config.max_headers)
        except HTTPError as exc:
            self._handshake_failed(HandshakeFailure(exc.reason, exc.status))
            return
        index = header_index(headers)  # one pass over the head for every lookup below
        if not is_upgrade_request(headers, index):
            # Not a WebSocket handshake: the application answers it like any HTTP request, once its
            # body (if any) is in.
            try:
                self._body_left = request_body_length(headers, self.config.max_http_body)
            except HTTPError as exc:
                self._handshake_failed(HandshakeFailure(exc.reason, exc.status))
                return
            self._plain = HTTPRequest(method, target, headers)
            rest, self._after_head = b"".join(self._after_head), []
            self._receive_request_body(rest)
            return
        else:
            try:
                self._key = validate_upgrade_request(method, version, headers, index)
                offers = index.get("sec-websocket-extensions", [])
                self._offers = parse_extension_header(offers)
            except HandshakeFailure as exc:
                self._handshake_failed(exc)
                return
            except ValueError as exc:
                self._handshake_failed(HandshakeFailure(f"malformed Sec-WebSocket-Extensions: {exc}"))
                return
            self._request = Request(
                method,
                target,
                headers,
                subprotocols=tuple(split_tokens(index.get("sec-websocket-protocol", []))),
                extensions=tuple(offers),
            )
        self._events.append(self._request)

    def _receive_request_body(self, data: bytes) -> None:
        """Collect a plain request's body; hand out the request once it is complete."""
        plain = self._plain
        assert plain is not None
        take = min(len(data), self._body_left)
        if take:
            parts = self._body_parts
            if not isinstance(parts, list):
                parts = self._body_parts = []
            parts.append(data[:take])
            self._body_left -= take
        if self._body_left:
            return
        if len(data) > take:
            self._keep_after_head(data[take:])  # a pipelined request: ignored, bounded like any early data
        body, self._body_parts, self._plain = b"".join(self._body_parts), (), None
        self._request = HTTPRequest(plain.method, plain.target, plain.headers, body)
        self._events.append(self._request)

    def _release(self) -> None:
        super()._release()
        self._plain, self._body_parts = None, ()

    def _handshake_failed(self, failure: HandshakeFailure) -> None:
        """Answer a bad request with an HTTP error ourselves (§4.2.1: "an HTTP error code (such as 400)")."""
        self._writer.raw(self._error_response(failure))
        self._move(Trigger.HANDSHAKE_FAILED, CloseCode.ABNORMAL, f"handshake failed: {failure.reason}")

    def _error_response(self, failure: HandshakeFailure) -> bytes:
        """The error response, worded by ``config.http_error_body`` if set (and usable), else plain text."""
        render = self.config.http_error_body
        if render is not None:
            try:
                content_type, body = render(failure.status, failure.reason)
                if isinstance(content_type, str) and isinstance(body, bytes):
                    headers = [*failure.headers, ("Content-Type", content_type)]
                    return build_response(failure.status, headers, body)
            except Exception:  # noqa: BLE001 - the application's hook failed: our own wording instead
                pass
        body = f"{failure.reason}\n".encode()
        return build_response(failure.status, [*failure.headers, ("Content-Type", "text/plain")], body)

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
        responses, extensions = self._negotiate_extensions()
        if responses:
            headers.append(("Sec-WebSocket-Extensions", ", ".join(responses)))
        headers.extend(extra_headers)
        self._writer.raw(build_response(101, headers))
        self.subprotocol = subprotocol
        self._request = None
        self._offers = ()
        self._open(extensions)

    def _negotiate_extensions(self) -> tuple[list[str], list[Extension]]:
        """Each factory in our order, given the client's offers for it (§9.1): response values, extensions."""
        responses: list[str] = []
        extensions: list[Extension] = []
        for factory in self._factories:
            offers = [params for name, params in self._offers if name == factory.name]
            negotiated = factory.negotiate(offers) if offers else None
            if negotiated is not None:
                responses.append(negotiated[0])
                extensions.append(negotiated[1])
        return responses, extensions

    def reject(self, status: int = 403, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> None:
        """Refuse the handshake, or answer a plain HTTP request, with an ordinary HTTP response."""
        self._pending_request()
        if not 200 <= status <= 599 or status == 101:
            raise LocalProtocolError(f"cannot answer with status {status}")
        self._writer.raw(build_response(status, list(headers), body))
        self._request = None
        self._move(Trigger.HANDSHAKE_FAILED, CloseCode.ABNORMAL, f"HTTP {status} sent")


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
        self._refusal: tuple[int, str, Headers] | None = None  # a non-101 head, while its body arrives
        self._body = bytearray()
        self._body_length: int | None = None
        offers = [factory.offer() for factory in self._factories]
        self._writer.raw(build_request(host, target, self._key, self._subprotocols, offers, extra_headers))

    def _receive_handshake_data(self, data: bytes) -> None:
        if self._refusal is not None:
            self._receive_body(data)
        elif self._head is not None:
            self._receive_response_head(self._head, data)

    def _receive_response_head(self, head_reader: HeadReader, data: bytes) -> None:
        try:
            done = head_reader.feed(data)
            if done is None:
                return
            head, rest = done
            status, phrase, headers = parse_response_head(head, self.config.max_headers)
        except HTTPError as exc:
            self._handshake_failed(HandshakeFailure(f"bad response from the server: {exc.reason}", 0))
            return
        self._head = None
        if status != 101:
            # §4.1: any status other than 101 is handled per HTTP; the handshake did not happen
            self._refusal = (status, phrase, headers)
            lengths = header_values(headers, "Content-Length")
            self._body_length = int(lengths[0]) if lengths and lengths[0].isdigit() else None
            self._receive_body(rest)
            return
        try:
            subprotocol, accepted = validate_response(headers, self._key, self._subprotocols, self._factories)
            by_name = {factory.name: factory for factory in self._factories}
            extensions = [by_name[name].accept_response(params) for name, params in accepted]
        except HandshakeFailure as exc:
            self._handshake_failed(exc, headers)
            return
        except RemoteProtocolError as exc:  # an extension refused the server's parameters
            self._handshake_failed(HandshakeFailure(exc.reason, 101), headers)
            return
        self.subprotocol = subprotocol
        self._after_head = [rest] if rest else []
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
            self._refused()

    def _refused(self) -> None:
        """The server answered with another status than 101, and its body is in (or cut at the limit)."""
        assert self._refusal is not None
        status, phrase, headers = self._refusal
        self._refusal = None
        self._handshake_failed(
            HandshakeFailure(phrase or f"HTTP {status}", status), headers, bytes(self._body)
        )

    def _handshake_eof(self) -> None:
        if self._refusal is not None:
            self._refused()
        else:
            super()._handshake_eof()

    def _handshake_failed(self, failure: HandshakeFailure, headers: Headers = (), body: bytes = b"") -> None:
        self._events.append(Rejected(failure.status, headers, body, failure.reason))
        self._move(Trigger.HANDSHAKE_FAILED, CloseCode.ABNORMAL, f"handshake failed: {failure.reason}")

    def _release(self) -> None:
        super()._release()
        self._body = bytearray()
