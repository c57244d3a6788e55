"""WebSocketServer against real third-party clients (websockets, websocket-client) over loopback."""

from __future__ import annotations

import gc
import os
import socket
import ssl
import threading
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import websocket  # websocket-client
from srvtest_util import (
    Echo,
    ServerThread,
    assert_echo_works,
    close_frame_of,
    raw_connect,
    raw_handshake,
    read_until_closed,
)
from websockets.exceptions import ConnectionClosed as WSClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from wsproto_lite.server.handler import Accept, DeferredResponse, Handler, HTTPResponse, Reject
from wsproto_lite.server.options import Options
from wsproto_lite.server.websocket import WebSocket

SIZES = [0, 125, 126, 65535, 65536, 1 << 20, 16 << 20]
BIG = Options(max_message_size=32 << 20)


def _client(url: str, compression: bool = True, **kw: Any) -> Any:
    return ws_connect(
        url,
        compression="deflate" if compression else None,
        max_size=None,
        proxy=None,
        open_timeout=10,
        close_timeout=10,
        ping_interval=None,
        **kw,
    )


@pytest.fixture(scope="module")
def echo_server() -> Iterator[ServerThread]:
    with ServerThread(options=BIG) as st:
        yield st


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "plain"])
def test_websockets_client_text_and_binary_sizes(echo_server: ServerThread, compression: bool) -> None:
    with _client(echo_server.url, compression) as ws:
        assert (
            "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        ) is compression
        for size in SIZES:
            text = "é" * (size // 2) + "a" * (size % 2)  # multi-byte UTF-8, exactly `size` bytes
            ws.send(text)
            assert ws.recv(timeout=30) == text
            data = os.urandom(size) if size <= 1 << 20 else bytes(range(256)) * (size // 256)
            ws.send(data)
            assert ws.recv(timeout=30) == data


def test_websocket_client_library_sizes(echo_server: ServerThread) -> None:
    ws = websocket.create_connection(echo_server.url, timeout=30)  # websocket-client never offers deflate
    try:
        for size in SIZES[:-1]:
            ws.send("x" * size)
            assert ws.recv() == "x" * size
            data = os.urandom(size)
            ws.send_binary(data)
            assert ws.recv() == data
    finally:
        ws.close()


def test_fragmented_messages_are_reassembled(echo_server: ServerThread) -> None:
    with _client(echo_server.url) as ws:
        ws.send(["frag", "mented ", "text"])
        assert ws.recv(timeout=10) == "fragmented text"
        ws.send([b"\x00" * 70000, b"\x01" * 10, b""])
        assert ws.recv(timeout=10) == b"\x00" * 70000 + b"\x01" * 10
    ws2 = websocket.create_connection(echo_server.url, timeout=10)
    try:
        ws2.send_frame(websocket.ABNF.create_frame("abc", websocket.ABNF.OPCODE_TEXT, fin=0))
        ws2.send_frame(websocket.ABNF.create_frame("def", websocket.ABNF.OPCODE_CONT, fin=1))
        assert ws2.recv() == "abcdef"
    finally:
        ws2.close()


def test_ping_pong_both_ways(echo_server: ServerThread) -> None:
    with _client(echo_server.url) as ws:
        assert ws.ping(b"are you there").wait(10)

    class Pinger(Handler):
        def __init__(self) -> None:
            self.pongs: list[bytes] = []
            self.got = threading.Event()

        def on_open(self, conn: WebSocket) -> None:
            conn.ping(b"server ping")

        def on_pong(self, conn: WebSocket, payload: bytes) -> None:
            self.pongs.append(payload)
            self.got.set()

    handler = Pinger()
    with ServerThread(handler) as st, _client(st.url):  # its background thread answers the ping
        assert handler.got.wait(10)
        assert handler.pongs == [b"server ping"]


def test_close_codes_and_reasons_both_directions() -> None:
    class Closer(Echo):
        def on_message(self, conn: WebSocket, message: str | bytes) -> None:
            if message == "close me":
                conn.close(4001, "as you wish")
            else:
                conn.send(message)

    handler = Closer()
    with ServerThread(handler) as st:
        with _client(st.url) as ws:
            ws.send("close me")
            with pytest.raises(WSClosed) as info:
                ws.recv(timeout=10)
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "as you wish")
        assert handler.closed.wait(10)
        assert handler.closes[-1] == (4001, "as you wish")
        handler.closed.clear()
        with _client(st.url) as ws:
            ws.close(4002, "bye from client")
        assert handler.closed.wait(10)
        assert handler.closes[-1] == (4002, "bye from client")


class Picky(Echo):
    """Handshake hook: auth by cookie, subprotocol choice, request details recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, str | None, dict[str, str]]] = []

    def handshake(self, conn: WebSocket, request: Any) -> Accept | Reject | None:
        self.seen.append((request.path, request.query, request.header("X-Thing"), request.cookies))
        if request.cookies.get("token") != "s3cret":
            return Reject(401, [("WWW-Authenticate", "Cookie")], b"who are you?\n")
        for proto in ("chat.v2", "chat.v1"):
            if proto in request.subprotocols:
                return Accept(subprotocol=proto, headers=[("X-Welcome", "yes")])
        return Accept()


def test_handshake_hook_sees_request_and_chooses_subprotocol() -> None:
    handler = Picky()
    with ServerThread(handler) as st:
        cookie = {"Cookie": "token=s3cret; theme=dark", "X-Thing": "42"}
        with _client(
            st.url + "room/7?user=ann", additional_headers=cookie, subprotocols=["chat.v1", "chat.v2"]
        ) as ws:
            assert ws.subprotocol == "chat.v2"
            assert ws.response.headers["X-Welcome"] == "yes"
            ws.send("hi")
            assert ws.recv(timeout=10) == "hi"
        assert handler.seen[-1] == ("/room/7", "user=ann", "42", {"token": "s3cret", "theme": "dark"})
        with _client(st.url, additional_headers={"Cookie": "token=s3cret"}, subprotocols=["other"]) as ws:
            assert ws.subprotocol is None
        with pytest.raises(InvalidStatus) as info:
            _client(st.url)
        assert info.value.response.status_code == 401
        assert info.value.response.body == b"who are you?\n"


def test_origin_allow_list() -> None:
    with ServerThread(options=Options(allowed_origins={"https://good.example"})) as st:
        with _client(st.url, origin="https://good.example") as ws:
            ws.send("ok")
            assert ws.recv(timeout=10) == "ok"
        with pytest.raises(InvalidStatus) as info:
            _client(st.url, origin="https://evil.example")
        assert info.value.response.status_code == 403


def test_same_origin_and_the_allow_list() -> None:
    options = Options(same_origin=True, allowed_origins={"https://app.example"})
    with ServerThread(options=options) as st:
        own = f"http://127.0.0.1:{st.port}"
        for origin in (own, "https://app.example", None):  # None: not a browser, no Origin header
            with _client(st.url, origin=origin) as ws:
                ws.send("ok")
                assert ws.recv(timeout=10) == "ok"
        for origin in (f"http://127.0.0.1:{st.port + 1}", f"https://127.0.0.1:{st.port}", "null"):
            with pytest.raises(InvalidStatus) as info:
                _client(st.url, origin=origin)
            assert info.value.response.status_code == 403


def test_max_connections_answers_503() -> None:
    with ServerThread(options=Options(max_connections=2)) as st:
        with _client(st.url), _client(st.url):
            with pytest.raises(InvalidStatus) as info:
                _client(st.url)
            assert info.value.response.status_code == 503
        assert_echo_works(st.url)


def test_plain_http_goes_to_http_handler_else_426() -> None:
    with ServerThread() as st:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{st.port}/", timeout=10)
        assert info.value.code == 426
    health = ServerThread(
        http_handler=lambda req: HTTPResponse(200, [("Content-Type", "text/plain")], b"ok\n")
    )
    with health as st:
        assert urllib.request.urlopen(f"http://127.0.0.1:{st.port}/health", timeout=10).read() == b"ok\n"
        assert_echo_works(st.url)


class Later:
    """An http_handler that answers later: each request gets a DeferredResponse the test resolves."""

    def __init__(self) -> None:
        self.pending: list[DeferredResponse] = []
        self.arrived = threading.Event()

    def __call__(self, request: Any) -> DeferredResponse:
        deferred = DeferredResponse()
        if request.path == "/at-once":
            deferred.resolve(HTTPResponse(200, [("Content-Type", "text/plain")], b"at once\n"))
        self.pending.append(deferred)
        self.arrived.set()
        return deferred


_GET = b"GET /later HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def test_a_deferred_http_response_is_sent_when_resolved() -> None:
    later = Later()
    with ServerThread(http_handler=later) as st:
        sock = raw_connect(st.port)
        sock.sendall(_GET)
        assert later.arrived.wait(10)
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)  # nothing yet: the response is not known
        sock.setblocking(True)
        st.call(later.pending[0].resolve, HTTPResponse(202, [("Content-Type", "text/plain")], b"later\n"))
        answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 202") and answer.endswith(b"\r\n\r\nlater\n")
        sock.close()
        # one already resolved when returned is sent at once
        assert (
            urllib.request.urlopen(f"http://127.0.0.1:{st.port}/at-once", timeout=10).read() == b"at once\n"
        )
        st.call(later.pending[0].resolve, HTTPResponse(500))  # a second resolve is ignored
        assert_echo_works(st.url)


def test_a_deferred_response_never_resolved_times_out_and_a_late_one_is_dropped() -> None:
    later = Later()
    with ServerThread(http_handler=later, options=Options(handshake_timeout=600)) as st:
        sock = raw_connect(st.port)
        sock.sendall(_GET)
        assert later.arrived.wait(10)
        st.loop.advance(600)
        assert read_until_closed(sock) == b""  # aborted by the handshake timeout, no response
        sock.close()
        assert st.wait_connections(0)
        st.call(later.pending[0].resolve, HTTPResponse(200))  # the connection is gone: nothing happens
        assert_echo_works(st.url)


def test_a_connection_waiting_for_a_deferred_response_is_freed_once_it_is_resolved() -> None:
    later = Later()
    gc.disable()
    try:
        with ServerThread(http_handler=later) as st:
            sock = raw_connect(st.port)
            sock.sendall(_GET)
            assert later.arrived.wait(10)
            (ref,) = st.call(lambda: [weakref.ref(c) for c in st.server.connections])
            sock.close()  # the client gives up before the answer
            assert st.wait_connections(0)
            st.call(later.pending[0].resolve, HTTPResponse(200))
            assert later.pending[0]._callback is None  # the deferred let go of the connection
            assert ref() is None
    finally:
        gc.enable()


def test_ipv6_listener() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        st = ServerThread(host="::1")
    except OSError:
        pytest.skip("::1 not available")
    with st:
        with _client(f"ws://[::1]:{st.port}/") as ws:
            ws.send("v6")
            assert ws.recv(timeout=10) == "v6"


class Flooder(Echo):
    """On "flood": sends until the connection is over its high watermark."""

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        if message == "flood":
            while conn.writable:
                conn.send(b"x" * 65536)
        else:
            conn.send(message)


def test_broadcast_skips_congested_connections() -> None:
    with ServerThread(Flooder(), options=Options(write_high_water=256 * 1024)) as st, ExitStack() as stack:
        clients = [stack.enter_context(_client(st.url)) for _ in range(4)]
        slow = raw_connect(st.port)
        stack.callback(slow.close)
        raw_handshake(slow)
        slow.sendall(b"\x81\x85abcd" + bytes(c ^ b"abcd"[i % 4] for i, c in enumerate(b"flood")))
        assert st.call(lambda: len(st.server.open_connections())) == 5
        for _ in range(100):  # wait until the server noticed the flood (no sleep: ask the loop)
            if st.call(lambda: sum(not c.writable for c in st.server.open_connections())) == 1:
                break
            assert clients[0].ping().wait(5)
        assert st.call(lambda: st.server.broadcast("news")) == 4
        for ws in clients:
            assert ws.recv(timeout=10) == "news"
        only_two = st.call(
            lambda: st.server.broadcast(b"subset", sorted(st.server.open_connections(), key=id)[:2])
        )
        assert only_two in (1, 2)


def test_keepalive_pong_timeout_closes_1011() -> None:
    with ServerThread(options=Options(ping_interval=0.05, ping_timeout=0.2, close_timeout=0.5)) as st:
        sock = raw_connect(st.port)
        try:
            data = raw_handshake(sock)  # then never answer the pings
            data += read_until_closed(sock)
        finally:
            sock.close()
        # the pings before it carry random payloads (a 0x88 byte among them once failed a byte search)
        assert close_frame_of(data)[0] == 1011


def test_keepalive_pong_timeout_drops_the_socket_without_waiting_for_a_close_reply() -> None:
    """The keepalive policy (``server.keepalive``): after the 1011 close the socket is closed at once, not
    after ``close_timeout`` (disabled here: before, the server kept the silent peer forever)."""
    with ServerThread(options=Options(ping_interval=0.05, ping_timeout=0.2, close_timeout=None)) as st:
        sock = raw_connect(st.port)  # its recv() times out (and the test fails) after 10 s
        try:
            data = raw_handshake(sock) + read_until_closed(sock)
        finally:
            sock.close()
        assert close_frame_of(data) == (1011, "keepalive ping timeout"), data


def test_handshake_timeout_drops_silent_peer() -> None:
    with ServerThread(options=Options(handshake_timeout=0.2)) as st:
        sock = raw_connect(st.port)
        try:
            sock.sendall(b"GET / HTTP/1.1\r\n")
            assert read_until_closed(sock) == b""
        finally:
            sock.close()
        assert_echo_works(st.url)


def test_graceful_shutdown_sends_1001() -> None:
    handler = Echo()
    st = ServerThread(handler)
    try:
        stack = ExitStack()
        clients = [stack.enter_context(_client(st.url)) for _ in range(3)]
        done = threading.Event()
        st.call(lambda: st.server.shutdown(timeout=5, on_done=done.set))
        for ws in clients:
            with pytest.raises(WSClosed) as info:
                ws.recv(timeout=10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert done.wait(10)
        assert st.connection_count() == 0
        with pytest.raises(OSError):
            raw_connect(st.port, timeout=2)
        stack.close()
    finally:
        st.stop()


def test_tls_server_with_websockets_client(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    with ServerThread(ssl_context=server_ssl_context, options=BIG) as st:
        assert st.url.startswith("wss://")
        with _client(st.url.replace("127.0.0.1", "localhost"), ssl=client_ssl_context) as ws:
            for size in (0, 126, 65536, 4 << 20):
                ws.send(b"t" * size)
                assert ws.recv(timeout=20) == b"t" * size
        with pytest.raises(ssl.SSLCertVerificationError):
            _client(st.url, ssl=ssl.create_default_context())
        with _client(st.url, ssl=client_ssl_context) as ws:
            ws.send("after a failed handshake")
            assert ws.recv(timeout=10) == "after a failed handshake"


def test_graceful_shutdown_gives_up_on_silent_peers() -> None:
    st = ServerThread()
    try:
        sock = raw_connect(st.port)
        raw_handshake(sock)  # then never answer the server's close
        done = threading.Event()
        st.call(lambda: st.server.shutdown(timeout=0.3, on_done=done.set))
        assert done.wait(10)
        assert st.connection_count() == 0
        sock.close()
    finally:
        st.stop()


def test_tuned_deflate_factory_is_used() -> None:
    from wsproto_lite import PerMessageDeflate

    with ServerThread(options=Options(deflate=PerMessageDeflate(server_max_window_bits=12))) as st:
        with _client(st.url) as ws:
            assert "server_max_window_bits=12" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
            ws.send("a" * 5000)
            assert ws.recv(timeout=10) == "a" * 5000


def test_handshake_timeout_covers_a_stalled_tls_handshake(server_ssl_context: ssl.SSLContext) -> None:
    with ServerThread(ssl_context=server_ssl_context, options=Options(handshake_timeout=0.2)) as st:
        sock = raw_connect(st.port)
        try:
            sock.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
            assert read_until_closed(sock) == b""  # dropped by the handshake timer
        finally:
            sock.close()
        assert st.wait_connections(0)


def test_serve_forever_in_a_thread_and_shutdown_stops_it() -> None:
    from wsproto_lite.server.loop import EventLoop
    from wsproto_lite.server.ws_server import WebSocketServer

    loop = EventLoop()
    server = WebSocketServer(Echo(), host="127.0.0.1", port=0, loop=loop)
    t = threading.Thread(target=server.serve_forever)  # not the main thread: no signal handlers
    t.start()
    try:
        assert_echo_works(f"ws://127.0.0.1:{server.port}/")
    finally:
        loop.call_soon_threadsafe(server.shutdown)
        t.join(10)
    assert not t.is_alive()
    loop.close()


def test_the_accepted_connection_knows_its_peer_address(echo_server: ServerThread) -> None:
    """The address ``accept()`` returned is the connection's (no ``getpeername()`` of its own), and the
    accepted socket is built like ``socket.accept()`` would build it."""
    with _client(echo_server.url, False) as ws:
        ws.send("x")
        assert ws.recv(timeout=10) == "x"
        mine = ws.socket.getsockname()

        def seen() -> list[tuple[Any, Any, Any, bool]]:
            return [
                (
                    c.remote_address,
                    c.transport.peername,
                    c.transport.sock.family,
                    c.transport.sock.getblocking(),
                )
                for c in echo_server.server.connections
                if c.transport is not None
            ]

        assert (mine, mine, socket.AF_INET, False) in echo_server.call(seen)
