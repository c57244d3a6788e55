"""connect_async: the loop-native client, against our server; 1 000 concurrent connections."""

from __future__ import annotations

import ssl

from srvtest_util import Echo, ServerThread, assert_echo_works

from tests.ports import unused_port
from wsproto_lite.server.async_client import connect_async
from wsproto_lite.server.errors import HandshakeError
from wsproto_lite.server.handler import Handler, Reject
from wsproto_lite.server.loop import EventLoop
from wsproto_lite.server.options import Options
from wsproto_lite.server.websocket import WebSocket


class Counter(Handler):
    """Each connection sends one message on open and counts the echo."""

    def __init__(self, payload: str = "hello") -> None:
        self.payload = payload
        self.opened = 0
        self.echoed = 0
        self.closed: list[tuple[int, str]] = []
        self.errors: list[BaseException] = []

    def on_open(self, conn: WebSocket) -> None:
        self.opened += 1
        conn.send(self.payload)

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        assert message == self.payload
        self.echoed += 1

    def on_close(self, conn: WebSocket, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    def on_connect_error(self, conn: WebSocket, error: BaseException) -> None:
        self.errors.append(error)


def test_one_thousand_concurrent_connections(loop: EventLoop) -> None:
    n = 1000
    with ServerThread(options=Options(ping_interval=None)) as st:
        handler = Counter()
        opts = Options(ping_interval=None, handshake_timeout=30)
        conns = [connect_async(loop, st.url, handler, options=opts) for _ in range(n)]
        assert loop.run_until(lambda: handler.echoed + len(handler.errors) >= n, 60), (
            handler.echoed,
            handler.errors[:3],
        )
        assert handler.errors == [] and handler.echoed == n
        assert st.call(lambda: len(st.server.open_connections())) == n  # all open at once
        assert_echo_works(st.url)
        for c in conns:
            c.close(1000, "done")
        assert loop.run_until(lambda: len(handler.closed) == n, 60)
        assert set(handler.closed) == {(1000, "")}  # the peer's reply echoes the code
        assert st.wait_connections(0, 30)


def test_connect_errors_are_reported(loop: EventLoop) -> None:
    port = unused_port()  # nothing listens there
    handler = Counter()
    connect_async(loop, f"ws://127.0.0.1:{port}/", handler)
    assert loop.run_until(lambda: bool(handler.errors), 10)
    assert isinstance(handler.errors[0], ConnectionRefusedError)

    class No(Echo):
        def handshake(self, conn: WebSocket, request: object) -> Reject:
            return Reject(418)

    with ServerThread(No()) as st:
        handler = Counter()
        connect_async(loop, st.url, handler)
        assert loop.run_until(lambda: bool(handler.errors), 10)
        assert isinstance(handler.errors[0], HandshakeError) and handler.errors[0].status == 418
        assert handler.opened == 0 and handler.closed == []


def test_tls_both_roles_on_our_stack(
    loop: EventLoop, server_ssl_context: ssl.SSLContext, cert_files: tuple[str, str, str]
) -> None:
    with ServerThread(ssl_context=server_ssl_context) as st:
        handler = Counter("x" * 100_000)
        conn = connect_async(loop, f"wss://localhost:{st.port}/", handler, ca_file=cert_files[2])
        assert loop.run_until(lambda: handler.echoed == 1, 10), handler.errors
        assert conn.transport is not None and conn.transport.get_extra_info("ssl_object") is not None
        conn.close()
        assert loop.run_until(lambda: bool(handler.closed), 10)
        bad = Counter()
        connect_async(loop, f"wss://localhost:{st.port}/", bad)  # default trust store: refused
        assert loop.run_until(lambda: bool(bad.errors), 10)
        assert isinstance(bad.errors[0], ssl.SSLCertVerificationError)


def test_client_keepalive_and_server_close(loop: EventLoop) -> None:
    class CloseSoon(Echo):
        def on_message(self, conn: WebSocket, message: str | bytes) -> None:
            conn.close(4000, "bye")

    with ServerThread(CloseSoon()) as st:
        handler = Counter()
        connect_async(loop, st.url, handler, options=Options(ping_interval=0.01, ping_timeout=5))
        assert loop.run_until(lambda: bool(handler.closed), 10)
        assert handler.closed == [(4000, "bye")]
