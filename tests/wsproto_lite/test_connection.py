"""Connections end to end, both roles: handshake, messages, control frames, closing, failures."""

from __future__ import annotations

import gc
import os
import tracemalloc
import weakref
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsproto_lite import (
    Accepted,
    BinaryMessage,
    ClientConnection,
    CloseReceived,
    Config,
    Connection,
    ConnectionClosed,
    ConnectionState,
    Event,
    HTTPRequest,
    LocalProtocolError,
    PerMessageDeflate,
    Ping,
    Pong,
    Rejected,
    Request,
    ServerConnection,
    TextMessage,
    prepare_message,
)
from wsproto_lite._frames import parse_header

from . import wire
from .wire import close, frame, text

REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\nOrigin: http://example.com\r\nCookie: a=1; b=2\r\n\r\n"
)


def server(config: Config | None = None, data: bytes = b"") -> ServerConnection:
    """An OPEN server connection (handshake done and drained), fed ``data``."""
    conn = ServerConnection(config)
    conn.receive_data(REQUEST + data)
    assert isinstance(conn.next_event(), Request)
    conn.accept()
    assert conn.data_to_send().startswith(b"HTTP/1.1 101 ")
    return conn


def pair(config: Config | None = None) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection("example.com", "/", config=config)
    srv = ServerConnection(config)
    srv.receive_data(client.data_to_send())
    assert isinstance(srv.next_event(), Request)
    srv.accept()
    client.receive_data(srv.data_to_send())
    assert isinstance(client.next_event(), Accepted)
    return client, srv


def frames_of(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of unmasked frames."""
    out, pos = [], 0
    while pos < len(data):
        header = parse_header(data, pos)
        assert header is not None and header.mask is None
        start = pos + header.header_size
        out.append((header.opcode, data[start : start + header.length]))
        pos = start + header.length
    return out


# -- opening handshake, server role -----------------------------------------------------------------


def test_request_event_and_accept() -> None:
    conn = ServerConnection()
    conn.receive_data(REQUEST)
    request = conn.next_event()
    assert isinstance(request, Request)
    assert (request.path, request.query, request.host) == ("/chat", "room=1", "example.com")
    assert request.subprotocols == ("chat", "superchat")
    assert request.origin == "http://example.com"
    assert request.cookies == {"a": "1", "b": "2"}
    assert request.header("sec-websocket-version") == "13"
    assert conn.state is ConnectionState.CONNECTING
    conn.accept("superchat", extra_headers=[("X-Server", "lite")])
    response = conn.data_to_send()
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert b"Sec-WebSocket-Protocol: superchat\r\n" in response
    assert b"X-Server: lite\r\n" in response
    assert conn.state is ConnectionState.OPEN and conn.subprotocol == "superchat"


def test_accept_refuses_a_subprotocol_not_offered() -> None:
    conn = ServerConnection()
    conn.receive_data(REQUEST)
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.accept("other")


def test_frames_in_the_same_chunk_as_the_request_are_kept() -> None:
    conn = server(data=text("early"))
    assert conn.next_event() == TextMessage("early")


def test_request_byte_by_byte() -> None:
    conn = ServerConnection()
    for i in range(len(REQUEST)):
        assert conn.next_event() is None
        conn.receive_data(REQUEST[i : i + 1])
    assert isinstance(conn.next_event(), Request)


def test_reject() -> None:
    conn = ServerConnection()
    conn.receive_data(REQUEST)
    conn.next_event()
    conn.reject(401, [("WWW-Authenticate", "Bearer")], b"who are you?")
    assert conn.data_to_send() == (
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 12\r\n"
        b"Connection: close\r\n\r\nwho are you?"
    )
    assert conn.next_event() == ConnectionClosed(1006, "HTTP 401 sent")
    assert conn.state is ConnectionState.CLOSED and conn.should_close_transport
    with pytest.raises(LocalProtocolError):
        conn.accept()


def test_plain_http_request() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET /health?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    request = conn.next_event()
    assert type(request) is HTTPRequest and request.path == "/health" and request.query == "x=1"
    assert request.header("HOST") == "h" and request.header("missing") is None
    with pytest.raises(LocalProtocolError):
        conn.accept()
    conn.reject(200, [("Content-Type", "text/plain")], b"ok")
    assert conn.data_to_send().endswith(b"\r\n\r\nok")
    assert conn.should_close_transport


POST = b"POST /api/publish HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"


@settings(deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(POST) + 11), max_size=6))
def test_plain_request_body_in_any_chunking(cuts: list[int]) -> None:
    data = POST + b'{"a": "bc"}' + b"GET / HTTP/1.1\r\n"  # a pipelined request after it is ignored
    bounds = [0, *sorted(set(cuts)), len(data)]
    conn = ServerConnection()
    for start, end in zip(bounds, bounds[1:], strict=False):
        conn.receive_data(data[start:end])
    request = conn.next_event()
    assert type(request) is HTTPRequest and request.method == "POST" and request.body == b'{"a": "bc"}'
    conn.reject(200)
    assert conn.should_close_transport


def test_plain_request_without_content_length_has_no_body() -> None:
    conn = ServerConnection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n")
    request = conn.next_event()
    assert isinstance(request, HTTPRequest) and request.body == b""


def test_eof_before_the_body_is_complete() -> None:
    conn = ServerConnection()
    conn.receive_data(POST + b"{}")
    assert conn.next_event() is None
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(1006, "connection closed during the handshake")


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (POST.replace(b"11", b"65537"), 413),
        (POST.replace(b"11", b"1x"), 400),
        (POST.replace(b"Content-Length: 11", b"Content-Length: 1\r\nContent-Length: 2"), 400),
        (POST.replace(b"Content-Length: 11", b"Transfer-Encoding: chunked"), 501),
        (REQUEST.replace(b"Version: 13", b"Version: 8"), 426),
        (REQUEST.replace(b"GET", b"PUT", 1), 405),
        (REQUEST.replace(b"Connection: Upgrade", b"Connection: close"), 400),
        (REQUEST.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short"), 400),
        (REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"), 400),
        (REQUEST.replace(b"Host:", b"Ho st:"), 400),
        (REQUEST.replace(b"Origin", b"Sec-WebSocket-Extensions: a;;\r\nOrigin"), 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS on a plain port
    ],
)
def test_bad_requests_get_an_http_error(request_bytes: bytes, status: int) -> None:
    conn = ServerConnection()
    conn.receive_data(request_bytes)
    event = conn.next_event()
    assert isinstance(event, ConnectionClosed) and event.code == 1006
    assert conn.data_to_send().startswith(f"HTTP/1.1 {status} ".encode())
    assert conn.should_close_transport
    conn.receive_data(b"more")  # ignored
    assert conn.next_event() is None


def test_the_application_words_the_errors_the_core_answers() -> None:
    def json_error(status: int, reason: str) -> tuple[str, bytes]:
        return "application/json", b'{"status": %d}' % status

    conn = ServerConnection(Config(http_error_body=json_error))
    conn.receive_data(POST.replace(b"11", b"104857600"))  # 100 MiB announced: refused before any body
    assert isinstance(conn.next_event(), ConnectionClosed)
    head, _, body = conn.data_to_send().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"Content-Type: application/json" in head
    assert body == b'{"status": 413}'


@pytest.mark.parametrize(
    "hook",
    [lambda s, r: 1 / 0, lambda s, r: ("text/x\r\nSet-Cookie: a=b", b""), lambda s, r: ("t", "not bytes")],
    ids=["raises", "header-injection", "wrong-types"],
)
def test_a_failing_error_hook_falls_back_to_plain_text(hook: object) -> None:
    conn = ServerConnection(Config(http_error_body=hook))  # type: ignore[arg-type]
    conn.receive_data(POST.replace(b"11", b"65537"))
    assert isinstance(conn.next_event(), ConnectionClosed)
    response = conn.data_to_send()
    assert response.startswith(b"HTTP/1.1 413 ") and b"Content-Type: text/plain" in response
    assert b"Set-Cookie" not in response


def test_426_names_the_version() -> None:
    conn = ServerConnection()
    conn.receive_data(REQUEST.replace(b"Version: 13", b"Version: 8"))
    assert b"Sec-WebSocket-Version: 13\r\n" in conn.data_to_send()


def test_data_flood_before_accept_is_refused() -> None:
    conn = ServerConnection(Config(max_handshake_size=1000))
    conn.receive_data(REQUEST)
    assert isinstance(conn.next_event(), Request)
    conn.receive_data(b"x" * 1001)
    assert isinstance(conn.next_event(), ConnectionClosed)
    assert conn.data_to_send().startswith(b"HTTP/1.1 400 ")


def test_eof_during_the_handshake() -> None:
    conn = ServerConnection()
    conn.receive_data(REQUEST[:20])
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(1006, "connection closed during the handshake")
    assert conn.state is ConnectionState.CLOSED


# -- opening handshake, client role -----------------------------------------------------------------


def test_client_request_and_accepted() -> None:
    keys = iter([b"k" * 16, b"mask"])
    client = ClientConnection(
        "h:8", "/p?q", ["chat"], extra_headers=[("Origin", "http://o")], mask_key=lambda n: next(keys)
    )
    request = client.data_to_send()
    assert request.startswith(b"GET /p?q HTTP/1.1\r\nHost: h:8\r\n")
    assert b"Sec-WebSocket-Key: a2tra2tra2tra2tra2traw==\r\n" in request
    srv = ServerConnection()
    srv.receive_data(request)
    assert srv.next_event().origin == "http://o"  # type: ignore[union-attr]
    srv.accept("chat")
    srv.send_text("after")
    client.receive_data(srv.data_to_send())  # the 101 and a frame in one chunk
    accepted = client.next_event()
    assert isinstance(accepted, Accepted) and accepted.subprotocol == "chat"
    assert client.next_event() == TextMessage("after")
    client.send_binary(b"abc")
    assert client.data_to_send() == frame(0x2, b"abc", mask=b"mask")  # the injected key was used


def test_client_rejected_with_a_body() -> None:
    client = ClientConnection("h")
    client.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nno")
    assert client.next_event() is None
    client.receive_data(b" way")
    assert client.next_event() == Rejected(403, (("Content-Length", "5"),), b"no wa", "Forbidden")
    assert isinstance(client.next_event(), ConnectionClosed)
    assert client.should_close_transport


def test_client_rejected_body_until_eof() -> None:
    client = ClientConnection("h")
    client.receive_data(b"HTTP/1.1 500 Oops\r\n\r\npartial")
    client.receive_data(b"")
    rejected = client.next_event()
    assert isinstance(rejected, Rejected) and (rejected.status, rejected.body) == (500, b"partial")


def test_client_rejects_a_bad_101() -> None:
    client = ClientConnection("h")
    client.receive_data(
        b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
    )
    rejected = client.next_event()
    assert isinstance(rejected, Rejected) and rejected.status == 101 and "Accept" in rejected.reason
    assert isinstance(client.next_event(), ConnectionClosed)


def test_client_rejects_garbage() -> None:
    client = ClientConnection("h")
    client.receive_data(b"SSH-2.0\r\n\r\n")
    rejected = client.next_event()
    assert isinstance(rejected, Rejected) and rejected.status == 0


# -- messages and control frames --------------------------------------------------------------------


def test_round_trip_both_ways() -> None:
    client, srv = pair()
    client.send_text("héllo")
    client.send_binary(b"\x00" * 70000)
    srv.receive_data(client.data_to_send())
    assert list(srv.events()) == [TextMessage("héllo"), BinaryMessage(b"\x00" * 70000)]
    srv.send_text("a", fin=False)
    srv.send_text("b", fin=False)
    srv.send_text("c")
    srv.send_prepared(prepare_message(b"shared"))
    client.receive_data(srv.data_to_send())
    assert list(client.events()) == [TextMessage("abc"), BinaryMessage(b"shared")]


def test_auto_pong_and_pong_events() -> None:
    conn = server(data=frame(0x9, b"ping!") + frame(0xA, b"unsolicited"))
    assert list(conn.events()) == [Ping(b"ping!"), Pong(b"unsolicited")]
    assert frames_of(conn.data_to_send()) == [(0xA, b"ping!")]  # §5.5.2: same payload


def test_auto_pong_can_be_turned_off() -> None:
    conn = server(Config(auto_pong=False), frame(0x9, b"x"))
    assert list(conn.events()) == [Ping(b"x")]
    assert conn.data_to_send() == b""


def test_buffers_to_send_hand_out_the_callers_payload_and_join_the_rest() -> None:
    """A large unmasked payload reaches the I/O layer as the very object sent; the headers and small
    frames around it are one buffer each side; a mutable buffer is copied (it may change later)."""
    conn = server()
    payload = bytes(range(256)) * 4096  # 1 MiB
    conn.send_text("a")
    conn.send_binary(payload)
    conn.send_text("b")
    conn.send_ping(b"p")
    buffers = conn.buffers_to_send()
    assert len(buffers) == 3 and buffers[1] is payload
    assert b"".join(buffers) == text("a", mask=None) + frame(0x2, payload, mask=None) + text(
        "b", mask=None
    ) + frame(0x9, b"p", mask=None)
    mutable = bytearray(payload)
    conn.send_binary(mutable)
    mutable[0] ^= 0xFF
    assert b"".join(conn.buffers_to_send()) == frame(0x2, payload, mask=None)
    conn.send_pong(b"x")
    assert frames_of(conn.data_to_send()) == [(0xA, b"x")]


def test_send_ping() -> None:
    conn = server()
    conn.send_ping(b"1234")
    assert frames_of(conn.data_to_send()) == [(0x9, b"1234")]
    with pytest.raises(LocalProtocolError):
        conn.send_ping(b"x" * 126)


# -- closing ----------------------------------------------------------------------------------------


def test_peer_initiated_close() -> None:
    conn = server(data=close(1001, b"going") + text("ignored"))
    assert list(conn.events()) == [CloseReceived(1001, "going"), ConnectionClosed(1001, "going", True)]
    assert frames_of(conn.data_to_send()) == [(0x8, b"\x03\xe9")]  # §5.5.1: echo the code
    assert conn.state is ConnectionState.CLOSED
    assert conn.should_close_transport and not conn.close_expected  # §7.1.1: the server closes TCP
    assert conn.close_received == (1001, "going") and conn.close_sent == (1001, "")


def test_close_without_code_is_answered_without_code() -> None:
    conn = server(data=close(None))
    assert next(conn.events()) == CloseReceived(1005, "")
    assert frames_of(conn.data_to_send()) == [(0x8, b"")]


def test_local_close_then_peer_close() -> None:
    client, srv = pair()
    srv.close(4000, "done")
    assert srv.state is ConnectionState.CLOSING and srv.close_expected and not srv.can_send
    with pytest.raises(LocalProtocolError):
        srv.send_text("too late")
    with pytest.raises(LocalProtocolError):
        srv.close()
    client.send_text("in flight")
    client.receive_data(srv.data_to_send())
    assert list(client.events()) == [CloseReceived(4000, "done"), ConnectionClosed(4000, "done", True)]
    # §7.1.1: the client waits for the server to close TCP
    assert (
        client.state is ConnectionState.CLOSED and client.close_expected and not client.should_close_transport
    )
    srv.receive_data(client.data_to_send())
    assert list(srv.events()) == [
        TextMessage("in flight"),
        CloseReceived(4000, ""),
        ConnectionClosed(4000, "", True),
    ]
    assert srv.should_close_transport
    client.receive_data(b"")
    assert client.should_close_transport and not client.close_expected
    assert client.next_event() is None


def test_close_inside_a_fragmented_message_is_a_normal_close() -> None:
    # Autobahn 7.1.5
    conn = server(data=frame(0x1, b"frag", fin=False) + close(1000) + frame(0x0, b"ment"))
    assert list(conn.events()) == [CloseReceived(1000, ""), ConnectionClosed(1000, "", True)]
    assert frames_of(conn.data_to_send()) == [(0x8, b"\x03\xe8")]


@pytest.mark.parametrize(
    "data, code",
    [(frame(0x1, b"x", rsv=0x40), 1002), (frame(0x1, b"\xff"), 1007), (text("x" * 11), 1009)],
)
def test_peer_errors_fail_the_connection_with_a_close(data: bytes, code: int) -> None:
    conn = server(Config(max_message_size=10), data + text("after"))
    event = conn.next_event()
    assert isinstance(event, ConnectionClosed) and event.code == code and not event.clean
    sent = frames_of(conn.data_to_send())
    assert len(sent) == 1 and sent[0][0] == 0x8 and int.from_bytes(sent[0][1][:2], "big") == code
    assert conn.state is ConnectionState.CLOSED and conn.should_close_transport
    assert conn.next_event() is None


def test_echo_of_earlier_messages_goes_out_before_the_failing_close() -> None:
    # Autobahn 5.15 and friends: an I/O loop echoing as it pulls events
    conn = server(data=text("one") + text("two") + frame(0x0, b"bad"))
    for event in conn.events():
        if isinstance(event, TextMessage):
            conn.send_text(event.data)
    assert frames_of(conn.data_to_send()) == [
        (0x1, b"one"),
        (0x1, b"two"),
        (0x8, b"\x03\xeacontinuation frame without a message to continue"),
    ]


def test_protocol_error_while_closing_sends_no_second_close() -> None:
    conn = server()
    conn.close()
    conn.data_to_send()
    conn.receive_data(frame(0x3))
    event = conn.next_event()
    assert isinstance(event, ConnectionClosed) and event.code == 1002
    assert conn.data_to_send() == b""


def test_no_pong_after_our_close() -> None:
    conn = server()
    conn.close()
    conn.data_to_send()
    conn.receive_data(frame(0x9, b"late"))
    assert conn.next_event() == Ping(b"late")
    assert conn.data_to_send() == b""


def test_eof_without_close_is_1006() -> None:
    conn = server(data=text("last"))
    conn.receive_data(b"")
    assert list(conn.events()) == [TextMessage("last"), ConnectionClosed(1006, "connection lost")]
    assert conn.should_close_transport


def test_abort() -> None:
    conn = server()
    conn.close()
    conn.abort()
    assert conn.next_event() == ConnectionClosed(1006, "connection aborted")
    assert conn.state is ConnectionState.CLOSED and not conn.close_expected
    conn.abort()
    assert conn.next_event() is None


# -- misuse -----------------------------------------------------------------------------------------


def test_local_misuse_raises() -> None:
    client, srv = pair()
    with pytest.raises(LocalProtocolError):
        srv.send_text(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        srv.send_binary("text")  # type: ignore[arg-type]
    srv.send_text("a", fin=False)
    with pytest.raises(LocalProtocolError):
        srv.send_binary(b"b")  # another message while one is being fragmented
    with pytest.raises(LocalProtocolError):
        srv.send_prepared(prepare_message("x"))
    with pytest.raises(LocalProtocolError):
        client.send_prepared(prepare_message("x"))  # clients must mask
    with pytest.raises(LocalProtocolError):
        ClientConnection("h").send_text("not open yet")
    with pytest.raises(LocalProtocolError):
        srv.close(1006)
    with pytest.raises(LocalProtocolError):
        ServerConnection().reject(404)  # no request yet


def test_data_to_send_list() -> None:
    conn = server()
    conn.send_binary(b"x" * 200)
    conn.send_binary(b"y" * 9000)
    parts = conn.data_to_send_list()  # the earlier name of buffers_to_send()
    assert len(parts) == 2 and b"".join(parts) == frame(0x2, b"x" * 200, mask=None) + frame(
        0x2, b"y" * 9000, mask=None
    )
    assert conn.data_to_send() == b""


# -- properties -------------------------------------------------------------------------------------

STREAM = (
    text("hello")
    + frame(0x2, bytes(range(256)) * 300)
    + frame(0x1, "κόσ".encode(), fin=False)
    + frame(0x9, b"ping")
    + frame(0x0, "με".encode())
    + frame(0xA, b"")
    + close(1000, b"bye")
)


def pull_all(conn: ServerConnection, chunks: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        events.extend(conn.events())
    return events


@given(st.lists(st.integers(1, len(STREAM) - 1), max_size=30))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    reference = server()
    expected = pull_all(reference, [STREAM])
    conn = server()
    assert pull_all(conn, chunks) == expected
    assert conn.data_to_send() == reference.data_to_send()


@settings(max_examples=300)
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_never_raise(data: bytes, as_client: bool) -> None:
    if as_client:
        conn: ClientConnection | ServerConnection = pair()[0]
    else:
        conn = server()
    conn.receive_data(data)
    conn.receive_data(b"")
    events = list(conn.events())
    assert isinstance(events[-1], ConnectionClosed)
    assert conn.state is ConnectionState.CLOSED


@settings(max_examples=200)
@given(st.binary(max_size=500))
def test_random_bytes_as_a_handshake_never_raise(data: bytes) -> None:
    for conn in (ServerConnection(), ClientConnection("h")):
        conn.receive_data(data)
        conn.receive_data(b"")
        events = list(conn.events())
        assert isinstance(events[-1], ConnectionClosed)


def test_next_event_hands_out_messages_parsed_ahead_in_order() -> None:
    conn = server(data=text("a") + text("b"))
    assert [conn.next_event(), conn.next_event(), conn.next_event()] == [
        TextMessage("a"),
        TextMessage("b"),
        None,
    ]


def test_nothing_is_sent_after_our_close() -> None:
    conn = server()
    conn.close()
    for send in (lambda: conn.send_binary(b"x"), lambda: conn.send_text("x"), conn.send_ping):
        with pytest.raises(LocalProtocolError):
            send()
    assert not conn.can_send and conn.state is ConnectionState.CLOSING and conn.close_expected


def test_abort_drops_messages_parsed_ahead_so_closed_stays_last() -> None:
    conn = server(data=text("a") + text("b") + text("c"))
    assert conn.next_event() == TextMessage("a")  # "b" and "c" were parsed ahead by the fast case
    conn.abort()
    assert list(conn.events()) == [ConnectionClosed(1006, "connection aborted", False)]


# -- memory: a closed connection keeps nothing it buffered (issue 9), and holds no cycles -------------

FRAGMENT = 64 * 1024
FRAGMENTS = 15  # of a 1 MiB message: the 16th never comes


def handshaken(deflate: bool) -> tuple[ClientConnection, ServerConnection]:
    extensions = [PerMessageDeflate()] if deflate else []
    client = ClientConnection("example.com", "/", extensions=extensions)
    srv = ServerConnection(extensions=extensions)
    srv.receive_data(client.data_to_send())
    assert isinstance(srv.next_event(), Request)
    srv.accept()
    client.receive_data(srv.data_to_send())
    assert isinstance(client.next_event(), Accepted)
    assert len(client.extensions) == len(srv.extensions) == int(deflate)
    return client, srv


def fragments_from(sender: Connection) -> list[bytes]:
    """Most of a large binary message, one 64 KiB fragment per chunk (random bytes: deflate can't shrink)."""
    chunks = []
    for _ in range(FRAGMENTS):
        sender.send_binary(os.urandom(FRAGMENT), fin=False)
        chunks.append(sender.data_to_send())
    return chunks


def traced() -> int:
    return tracemalloc.get_traced_memory()[0]


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """Only reference counting frees memory during the test (the project's rule for closed connections)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@pytest.fixture
def tracing() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


@pytest.mark.usefixtures("no_cyclic_gc", "tracing")
@pytest.mark.parametrize("ending", ["eof", "abort", "protocol error", "close"])
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("role", ["server", "client"])
def test_closing_releases_what_was_buffered(role: str, deflate: bool, ending: str) -> None:
    client, srv = handshaken(deflate)
    receiver, sender = (srv, client) if role == "server" else (client, srv)
    baseline = traced()
    chunks = fragments_from(sender)
    if ending == "close":
        sender.close(1001, "bye")  # §5.5.1: a close may arrive in the middle of a fragmented message
        last = sender.data_to_send()
    else:  # §5.4: a new data frame inside a fragmented message is a protocol error
        last = frame(0x1, b"x", mask=wire.MASK if role == "server" else None)
    del sender, client, srv  # the bytes on the wire are all that is left of the sender
    for chunk in chunks[: FRAGMENTS // 2]:  # half of it parsed into the message being assembled...
        receiver.receive_data(chunk)
        assert list(receiver.events()) == []
    for chunk in chunks[FRAGMENTS // 2 :]:  # ...half of it received, not parsed yet (parsing is lazy)
        receiver.receive_data(chunk)
    del chunk, chunks
    assert traced() - baseline > FRAGMENTS * FRAGMENT * 0.9
    if ending == "eof":
        receiver.receive_data(b"")
    elif ending == "abort":
        receiver.abort()
    else:
        receiver.receive_data(last)
    events = list(receiver.events())
    assert isinstance(events[-1], ConnectionClosed) and receiver.state is ConnectionState.CLOSED
    code = events[-1].code
    assert code == {"eof": 1006, "abort": 1006, "protocol error": 1002, "close": 1001}[ending]
    del events
    # The connection is still referenced (``receiver``), but what it buffered is gone.
    # Nothing is left of it at all: not the message parts, the unparsed input, the decompressor (~40 KiB
    # with a 32 KiB window) or the handshake buffers; the few bytes left are our close frame and events.
    assert traced() - baseline < 8 * 1024
    assert receiver.close_expected or receiver.should_close_transport


@pytest.mark.usefixtures("no_cyclic_gc")
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("closed", [True, False], ids=["closed", "dropped open"])
def test_connections_are_freed_by_reference_counting(deflate: bool, closed: bool) -> None:
    client, srv = handshaken(deflate)
    for sender, receiver in ((client, srv), (srv, client)):
        sender.send_text("hello " * 50)
        sender.send_binary(b"a" * 1000, fin=False)
        sender.send_binary(b"b" * 1000)
        sender.send_ping(b"p")
        receiver.receive_data(sender.data_to_send())
        kinds = [type(event) for event in receiver.events()]
        assert kinds[-3:] == [TextMessage, BinaryMessage, Ping]  # after the pong of the first round
    if closed:
        client.close()
        srv.receive_data(client.data_to_send())
        list(srv.events())
        client.receive_data(srv.data_to_send())
        list(client.events())
        assert client.state is srv.state is ConnectionState.CLOSED
    parts = [*client.extensions, *srv.extensions, client._reader, srv._reader, client._writer, srv._writer]
    refs = [weakref.ref(obj) for obj in (client, srv, *parts) if obj is not None]
    del client, srv, sender, receiver, parts
    assert [ref() for ref in refs] == [None] * len(refs)


# -- receive_message: one whole message handed over at once ------------------------------------------


def test_receive_message_hands_one_whole_message_over_at_once() -> None:
    conn = server()
    assert conn.receive_message(text("hi")) == TextMessage("hi")
    assert list(conn.events()) == []
    assert conn.receive_message(frame(0x2, b"\x00\xff")) == BinaryMessage(b"\x00\xff")
    # anything else goes through events(), in order: two messages in one read, a ping, a frame in halves
    assert conn.receive_message(text("a") + text("b")) is None
    assert list(conn.events()) == [TextMessage("a"), TextMessage("b")]
    assert conn.receive_message(frame(0x9, b"p")) is None
    assert list(conn.events()) == [Ping(b"p")]
    later = text("later")
    assert conn.receive_message(later[:3]) is None
    assert list(conn.events()) == []
    assert conn.receive_message(later[3:]) is None  # its head came first: the general path ends it
    assert list(conn.events()) == [TextMessage("later")]
    assert conn.receive_message(text("next")) == TextMessage("next")
    assert conn.data_to_send() == frame(0xA, b"p", mask=None)  # the ping was answered all the same


def test_receive_message_refuses_what_receive_data_refuses() -> None:
    conn = server()
    assert conn.receive_message(frame(0x1, b"\xff")) is None  # not UTF-8 (§8.1)
    assert [type(e) for e in conn.events()] == [ConnectionClosed]
    assert parse_header(conn.data_to_send(), 0) is not None  # the close frame went out
    assert conn.receive_message(text("after")) is None  # CLOSED: nothing more
    assert list(conn.events()) == []


_WIRE = st.one_of(wire.FRAMES, st.just(close(1000)))


@given(
    frames=st.lists(_WIRE, max_size=10),
    cuts=st.lists(st.integers(0, 3000), max_size=10),
    limit=st.sampled_from([100, 1000, None]),
    eof=st.booleans(),
)
def test_receive_message_gives_the_events_and_answers_of_receive_data(
    frames: list[bytes], cuts: list[int], limit: int | None, eof: bool
) -> None:
    data = b"".join(frames)
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a] + ([b""] if eof else [])
    config = Config(max_message_size=limit)
    plain, direct = server(config), server(config)
    expected: list[Event] = []
    got: list[Event] = []
    for chunk in chunks:
        plain.receive_data(chunk)
        expected.extend(plain.events())
        message = direct.receive_message(chunk)
        if message is not None:
            got.append(message)
        got.extend(direct.events())
        assert got == expected
        assert direct.data_to_send() == plain.data_to_send()  # pongs and close replies alike
        assert direct.state is plain.state


# -- message_frame: a whole small message's frame, to write at once --------------------------------


@given(
    message=st.one_of(st.text(max_size=3000), st.binary(max_size=9000)),
    is_server=st.booleans(),
)
def test_message_frame_is_the_frame_send_would_queue(message: str | bytes, is_server: bool) -> None:
    """The same bytes as ``send_text``/``send_binary`` then ``buffers_to_send`` (a client's masked with a
    fresh key: read back by the server), or None from 8 KiB on; nothing is queued either way."""
    client, srv = pair()
    sender, receiver = (srv, client) if is_server else (client, srv)
    got = sender.message_frame(message)
    encoded = message.encode() if isinstance(message, str) else message
    if len(message) >= 8192 or len(encoded) >= 8192:
        assert got is None
        return
    assert got is not None
    assert sender.data_to_send() == b""  # nothing queued
    if is_server:
        twin = pair()[1]
        twin.send_text(message) if isinstance(message, str) else twin.send_binary(message)
        assert got == twin.data_to_send()
    receiver.receive_data(got)
    expected = TextMessage(message) if isinstance(message, str) else BinaryMessage(message)
    assert list(receiver.events()) == [expected]


def test_message_frame_only_when_the_frame_may_leave_first() -> None:
    """None (nothing sent) while anything is queued, a fragmented message is under way (§5.4), an
    extension would encode it (permessage-deflate), or after our close (§5.5.1)."""
    srv = server()
    srv.send_text("queued")
    assert srv.message_frame("next") is None
    assert frames_of(srv.data_to_send()) == [(0x1, b"queued")]
    assert srv.message_frame("now") == frame(0x1, b"now", mask=None)
    srv.send_binary(b"part", fin=False)
    srv.data_to_send()
    assert srv.message_frame(b"whole") is None
    srv.send_binary(b"end")
    srv.data_to_send()
    assert srv.message_frame(b"whole") == frame(0x2, b"whole", mask=None)
    srv.send_ping(b"p")
    assert srv.message_frame(b"behind the ping") is None
    srv.data_to_send()
    assert srv.message_frame(bytearray(b"not bytes")) is None  # type: ignore[arg-type]
    srv.close(1000)
    srv.data_to_send()
    assert srv.message_frame("after the close") is None
    _, deflating = handshaken(deflate=True)
    assert deflating.message_frame("compressed by the extension") is None


def test_can_send_follows_the_phase() -> None:
    client = ClientConnection("example.com", "/")
    assert not client.can_send  # CONNECTING
    client, srv = pair()
    assert client.can_send and srv.can_send
    srv.close(1000)
    assert not srv.can_send  # §5.5.1: nothing after our close
    client.receive_data(srv.data_to_send())
    list(client.events())
    assert not client.can_send  # the close was answered
