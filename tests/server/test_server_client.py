"""server.client (blocking) against a real third-party server: websockets' sync server, over loopback."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed as WSClosed
from websockets.http11 import Response
from websockets.sync.server import Server, ServerConnection, serve

from tests.ports import unused_port
from wsproto_lite._frames import apply_mask
from wsproto_lite._handshake import accept_key
from wsproto_lite.server.client import ConnectionClosedError, HandshakeError, InvalidURL, _send_all, connect

SIZES = [0, 125, 126, 65535, 65536, 1 << 20, 16 << 20]


def _echo(ws: ServerConnection) -> None:
    try:
        for message in ws:
            if message == "close please":
                ws.close(4003, "closing as asked")
                return
            if message == "fragments please":
                ws.send(["one ", "two ", "three"])
                continue
            ws.send(message)
    except WSClosed:
        pass


def _select_subprotocol(ws: ServerConnection, offered: Any) -> Any:
    return "b.v1" if "b.v1" in offered else None


def _auth(ws: ServerConnection, request: Any) -> Response | None:
    if request.path.startswith("/private"):
        return ws.respond(403, "no entry\n")
    return None


class WSServer:
    """A websockets sync server in a thread."""

    def __init__(self, handler: Callable[[ServerConnection], None] = _echo, **kw: Any) -> None:
        self.server: Server = serve(
            handler,
            "127.0.0.1",
            0,
            max_size=None,
            ping_interval=None,
            select_subprotocol=_select_subprotocol,
            process_request=_auth,
            **kw,
        )
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def ws_server() -> Iterator[WSServer]:
    s = WSServer()
    yield s
    s.stop()


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "plain"])
def test_sizes_text_and_binary(ws_server: WSServer, compression: bool) -> None:
    url = f"ws://127.0.0.1:{ws_server.port}/"
    with connect(url, compression=compression, max_message_size=32 << 20, timeout=10) as ws:
        extensions = dict((k.lower(), v) for k, v in ws.response_headers).get("sec-websocket-extensions", "")
        assert ("permessage-deflate" in extensions) is compression
        for size in SIZES:
            text = "ü" * (size // 2) + "z" * (size % 2)
            ws.send(text)
            assert ws.recv(timeout=30) == text
            data = os.urandom(size) if size <= 1 << 20 else bytes(range(256)) * (size // 256)
            ws.send(data)
            assert ws.recv(timeout=30) == data


def test_fragments_both_ways(ws_server: WSServer) -> None:
    with connect(f"ws://127.0.0.1:{ws_server.port}/", timeout=10) as ws:
        ws.send("abc", fin=False)
        ws.send("def", fin=False)
        ws.send("ghi")
        assert ws.recv(timeout=10) == "abcdefghi"
        ws.send(b"\x01" * 70000, fin=False)
        ws.send(b"\x02")
        assert ws.recv(timeout=10) == b"\x01" * 70000 + b"\x02"
        ws.send("fragments please")
        assert ws.recv(timeout=10) == "one two three"


def test_ping_pong_and_iteration(ws_server: WSServer) -> None:
    with connect(f"ws://127.0.0.1:{ws_server.port}/", timeout=10) as ws:
        ws.send("before ping")
        ws.ping(b"hello?", timeout=10)  # the message that arrives meanwhile is kept
        assert ws.recv(timeout=10) == "before ping"
        ws.send("a")
        ws.send("b")
        ws.send("close please")
        assert list(ws) == ["a", "b"]
        assert ws.close_code == 4003 and ws.close_reason == "closing as asked"


def test_close_code_reaches_the_server() -> None:
    seen: list[tuple[int, str]] = []
    done = threading.Event()

    def handler(ws: ServerConnection) -> None:
        try:
            for _ in ws:
                pass
        except WSClosed as exc:
            if exc.rcvd is not None:
                seen.append((exc.rcvd.code, exc.rcvd.reason))
        finally:
            done.set()

    srv = WSServer(handler)
    try:
        ws = connect(f"ws://127.0.0.1:{srv.port}/", timeout=10)
        ws.close(4321, "client says bye")
        assert done.wait(10)
        assert seen == [(4321, "client says bye")]
        with pytest.raises(ConnectionClosedError):
            ws.send("after close")
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=1)
    finally:
        srv.stop()


def test_server_close_raises_connection_closed_with_code(ws_server: WSServer) -> None:
    with connect(f"ws://127.0.0.1:{ws_server.port}/", timeout=10) as ws:
        ws.send("close please")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=10)
        assert (info.value.code, info.value.reason) == (4003, "closing as asked")


def test_subprotocol_selection(ws_server: WSServer) -> None:
    with connect(f"ws://127.0.0.1:{ws_server.port}/", subprotocols=["a.v1", "b.v1"], timeout=10) as ws:
        assert ws.subprotocol == "b.v1"
    with connect(f"ws://127.0.0.1:{ws_server.port}/", subprotocols=["zzz"], timeout=10) as ws:
        assert ws.subprotocol is None


def test_handshake_error_carries_status(ws_server: WSServer) -> None:
    with pytest.raises(HandshakeError) as info:
        connect(f"ws://127.0.0.1:{ws_server.port}/private", timeout=10)
    assert info.value.status == 403
    assert b"no entry" in info.value.body


def test_connection_refused_and_bad_url() -> None:
    port = unused_port()  # nothing listens there
    with pytest.raises(ConnectionRefusedError):
        connect(f"ws://127.0.0.1:{port}/", timeout=5)
    with pytest.raises(InvalidURL):
        connect("http://127.0.0.1/")


def test_recv_timeout_then_still_usable(ws_server: WSServer) -> None:
    with connect(f"ws://127.0.0.1:{ws_server.port}/", timeout=10) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.05)
        ws.send("late")
        assert ws.recv(timeout=10) == "late"


def test_handshake_timeout_against_silent_server() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", timeout=0.2)
    finally:
        listener.close()


def test_tls_client_verifies_certificates(
    server_ssl_context: ssl.SSLContext, cert_files: tuple[str, str, str]
) -> None:
    srv = WSServer(ssl=server_ssl_context)
    try:
        url = f"wss://localhost:{srv.port}/"
        with connect(url, ca_file=cert_files[2], timeout=10) as ws:
            ws.send(b"secret" * 100000)
            assert ws.recv(timeout=10) == b"secret" * 100000
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(url, timeout=10)  # the test CA is not trusted by default
    finally:
        srv.stop()


def test_message_before_a_bad_frame_can_be_answered() -> None:
    """A message and a broken frame in one TCP segment: recv() returns the message, send() still works,
    and only the next recv() reports the failure (Autobahn 3.2-style strictness)."""
    import base64
    import hashlib

    listener = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key")
            )
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + b"\x81\x05hello" + b"\xa1\x05hello"
            )  # then RSV2 set: a protocol error
            conn.settimeout(10)
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got.append(chunk)

    t = threading.Thread(target=serve_one, daemon=True)
    t.start()
    try:
        ws = connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", compression=False, timeout=10)
        assert ws.recv(timeout=10) == "hello"
        ws.send("hello")  # the echo leaves before the core looks at the broken frame
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=10)
        assert info.value.code == 1002
        ws.close()
        t.join(10)
    finally:
        listener.close()
    data = b"".join(got)
    assert data[0] == 0x81 and data[1] == 0x85  # our masked echo first ...
    assert data[11] == 0x88  # ... then our close


class Sink:
    """A one-connection WebSocket server in a thread: answers the handshake (optionally under TLS), then
    counts what arrives, read into one reused buffer, so that it allocates next to nothing
    while the client sends (tracemalloc then sees the client's allocations)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.ssl_context = ssl_context
        self.received = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        if self.ssl_context is not None:
            conn = self.ssl_context.wrap_socket(conn, server_side=True)
        with conn:
            conn.settimeout(20)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = next(
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key")
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
            )
            buffer = bytearray(1 << 16)
            while count := conn.recv_into(buffer):
                self.received += count

    def join(self) -> None:
        self.thread.join(20)
        assert not self.thread.is_alive()
        self.listener.close()


@pytest.mark.parametrize("secure", [False, True], ids=["tcp", "tls"])
def test_a_large_send_allocates_only_the_masked_copy(
    secure: bool, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    """16 MiB from the blocking client: masking makes one payload-sized copy (§5.3, inherent); the frame's
    header and that copy are written as they are, not joined into a second one. The masking's own peak
    is measured first (the pure-Python masking allocates more than its result while it works)."""
    payload = bytes(range(256)) * (16 << 12)
    tracemalloc.start()
    try:
        apply_mask(payload, b"abcd")
        _, mask_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    sink = Sink(server_ssl_context if secure else None)
    scheme = "wss" if secure else "ws"
    ws = connect(
        f"{scheme}://127.0.0.1:{sink.port}/", compression=False, timeout=10, ssl_context=client_ssl_context
    )
    tracemalloc.start()
    try:
        ws.send(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    ws.sock.close()
    sink.join()
    assert sink.received == 14 + len(payload)  # 2 + 8 (64-bit length) + 4 (masking key) header bytes
    assert peak < mask_peak + len(payload) // 2, f"{peak / 2**20:.1f} MiB for a 16 MiB send"


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 300_000), min_size=1, max_size=12), read_size=st.integers(1, 70_000))
def test_pieces_are_sent_in_order_through_partial_writes(sizes: list[int], read_size: int) -> None:
    """_send_all on a socket whose kernel buffer is small (a timeout makes each sendmsg take what fits
    now): every piece arrives once, in order, however the writes were cut."""
    pieces = [bytes([index % 251]) * size for index, size in enumerate(sizes)]
    sender, receiver = socket.socketpair()
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sender.settimeout(20)
    received = bytearray()

    def read() -> None:
        while chunk := receiver.recv(read_size):
            received.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _send_all(sender, pieces)
    finally:
        sender.close()
    reader.join(20)
    receiver.close()
    assert received == b"".join(pieces)
