"""A finished connection is freed by reference counting alone: no reference cycles, collector disabled.

Every scenario runs with ``gc.disable()``: each object of ours that a connection created (the WebSocket,
its transport, its core, client objects) is tracked with a weak reference whose callback counts it as
freed, and the test waits for that count. A reference cycle would keep the objects (and whatever they
buffer: here a megabyte of an unfinished message per connection) alive until a cyclic collection, so the
wait would time out. After each scenario, a collection with ``DEBUG_SAVEALL`` must find no object of
ours either. The standing rule for every new kind of per-connection object: add it to these tests.
"""

from __future__ import annotations

import gc
import socket
import ssl
import threading
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from srvtest_util import ServerThread, raw_connect, raw_handshake, read_until_closed

from tests.ports import unused_port
from wsproto_lite import Request
from wsproto_lite._frames import encode_frame
from wsproto_lite.server.async_client import connect_async
from wsproto_lite.server.client import ClientWebSocket, connect
from wsproto_lite.server.errors import HandshakeError
from wsproto_lite.server.handler import Accept, Handler, Reject
from wsproto_lite.server.loop import EventLoop
from wsproto_lite.server.options import Options
from wsproto_lite.server.websocket import WebSocket

OURS = ("server", "wsproto_lite")
N = 5  # connections per scenario
MIB = 1 << 20


@contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cyclic_garbage_of_ours() -> list[str]:
    """The types of our objects that only the cyclic collector would have freed."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sorted({type(o).__qualname__ for o in gc.garbage if type(o).__module__.split(".")[0] in OURS})
    finally:
        gc.garbage.clear()
        gc.set_debug(0)


class Freed:
    """Counts tracked objects as they are freed (weakref callbacks), and waits for all of them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._refs: list[weakref.ref[Any]] = []
        self._names: dict[int, str] = {}

    def track(self, *objects: object) -> None:
        with self._cond:
            for obj in objects:
                if obj is not None:
                    ref = weakref.ref(obj, self._on_freed)
                    self._refs.append(ref)
                    self._names[id(ref)] = type(obj).__qualname__

    def _on_freed(self, ref: weakref.ref[Any]) -> None:
        with self._cond:
            self._names.pop(id(ref), None)
            self._cond.notify_all()

    @property
    def tracked(self) -> int:
        return len(self._refs)

    def wait_all(self, timeout: float = 10.0) -> list[str]:
        """Wait until every tracked object is freed; return the names of those still alive."""
        with self._cond:
            self._cond.wait_for(lambda: not self._names, timeout)
            return sorted(self._names.values())


class Tracking(Handler):
    """Tracks each server-side connection, its core and its transport; optionally rejects or closes."""

    def __init__(self, freed: Freed, decision: Accept | Reject | None = None, close_on_open: bool = False):
        self.freed = freed
        self.decision = decision
        self.close_on_open = close_on_open

    def handshake(self, conn: WebSocket, request: Request) -> Accept | Reject | None:
        self.freed.track(conn, conn.core, conn.transport)
        return self.decision

    def on_open(self, conn: WebSocket) -> None:
        if self.close_on_open:
            conn.close(1000, "bye")

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        conn.send(message)


def partial_message(size: int = MIB, piece: int = 64 * 1024) -> bytes:
    """A fragmented text message that never ends: ``size`` bytes in ``piece``-sized frames, no FIN."""
    frames = [encode_frame(0x1, b"x" * piece, fin=False, mask=b"abcd")]
    frames += [encode_frame(0x0, b"x" * piece, fin=False, mask=b"abcd") for _ in range(size // piece - 1)]
    return b"".join(frames)


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed or hostile client would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    sock.close()


def run_server_scenario(client: Callable[[int], None], **server_kwargs: Any) -> tuple[Freed, list[str]]:
    """Run ``client(port)`` N times against a tracking server; wait for everything to be freed."""
    freed = Freed()
    decision = server_kwargs.pop("decision", None)
    close_on_open = server_kwargs.pop("close_on_open", False)
    options = server_kwargs.pop("options", Options(ping_interval=None))
    with collector_off():
        with ServerThread(Tracking(freed, decision, close_on_open), options=options, **server_kwargs) as st:
            for _ in range(N):
                client(st.port)
            assert st.wait_connections(0)
            alive = freed.wait_all()
            garbage = cyclic_garbage_of_ours()
    assert freed.tracked >= N
    return freed, alive + garbage


# -- server side ---------------------------------------------------------------------------------------


def test_reset_during_an_unfinished_message_frees_the_connection() -> None:
    data = partial_message()

    def client(port: int) -> None:
        sock = raw_connect(port)
        raw_handshake(sock)
        sock.sendall(data)
        reset(sock)

    _, leftovers = run_server_scenario(client)
    assert leftovers == []


def test_eof_during_an_unfinished_message_frees_the_connection() -> None:
    data = partial_message()

    def client(port: int) -> None:
        sock = raw_connect(port)
        raw_handshake(sock)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        read_until_closed(sock)
        sock.close()

    _, leftovers = run_server_scenario(client)
    assert leftovers == []


def test_clean_close_by_the_client_frees_the_connection() -> None:
    def client(port: int) -> None:
        with connect(f"ws://127.0.0.1:{port}/", timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"

    _, leftovers = run_server_scenario(client)
    assert leftovers == []


def test_close_by_the_server_frees_the_connection() -> None:
    def client(port: int) -> None:
        with connect(f"ws://127.0.0.1:{port}/", timeout=10) as ws:
            with pytest.raises(Exception, match="1000"):
                ws.recv(timeout=10)

    _, leftovers = run_server_scenario(client, close_on_open=True)
    assert leftovers == []


def test_rejected_handshake_frees_the_connection() -> None:
    def client(port: int) -> None:
        assert refused_status(f"ws://127.0.0.1:{port}/") == 403

    _, leftovers = run_server_scenario(client, decision=Reject(403))
    assert leftovers == []


def test_plain_http_and_handshake_timeout_free_the_connection() -> None:
    """Connections that never reach the handshake hook are tracked through the server's set."""
    freed = Freed()
    options = Options(ping_interval=None, handshake_timeout=600)  # fires when the test moves the clock
    with collector_off():
        with ServerThread(Tracking(freed), options=options) as st:
            socks = [raw_connect(st.port) for _ in range(N)]  # silent: the handshake timer fires
            http = raw_connect(st.port)
            http.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP: answered 426
            assert read_until_closed(http).startswith(b"HTTP/1.1 426")
            http.close()

            def track_all() -> int:
                freed.track(*st.server.connections, *(c.transport for c in st.server.connections))
                return len(st.server.connections)

            assert st.call(track_all) == N
            st.loop.advance(600)
            for sock in socks:
                assert read_until_closed(sock) == b""
                sock.close()
            assert st.wait_connections(0)
            alive = freed.wait_all()
            garbage = cyclic_garbage_of_ours()
    assert alive + garbage == []


def test_tls_connections_are_freed(server_ssl_context: ssl.SSLContext, ca: Any) -> None:
    data = partial_message(256 * 1024)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    def client(port: int) -> None:
        with connect(f"wss://127.0.0.1:{port}/", timeout=10, ssl_context=client_ctx) as ws:
            ws.sock.sendall(data)  # raw frames under TLS, then the client closes

    _, leftovers = run_server_scenario(client, ssl_context=server_ssl_context)
    assert leftovers == []


FLOOD_CHUNK = b"z" * 65536
FLOOD_CAP = 1024  # chunks: 64 MiB, far more than any kernel buffers for a peer that never reads


class Flooding(Tracking):
    """Sends to every client from the moment it is open until ``send`` refuses (over the hard limit).

    A fixed amount is not enough: the kernel's socket buffers grow on demand (tcp_wmem up to several
    MiB), and a flood that all fits in them leaves nothing unsent, so the server rightly sees no slow
    consumer.  Sending until refused makes the unsent data pass ``write_hard_limit`` on any machine.
    """

    def on_open(self, conn: WebSocket) -> None:
        self.on_writable(conn)

    def on_writable(self, conn: WebSocket) -> None:
        for _ in range(FLOOD_CAP):
            if not conn.send(FLOOD_CHUNK):
                return


def _silent_client(port: int, context: ssl.SSLContext | None = None) -> socket.socket:
    """A client that handshakes (over TLS with ``context``) and never reads again, with a small window."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(10.0)
    sock.connect(("127.0.0.1", port))
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    raw_handshake(sock)
    return sock


def test_slow_consumer_and_close_timeout_free_the_connection() -> None:
    """Peers that stop reading: cut off as slow consumers (1008), or never answering our close."""
    options = Options(
        ping_interval=None,
        write_high_water=64 * 1024,
        write_hard_limit=256 * 1024,
        slow_consumer_timeout=0.1,
        close_timeout=0.1,
    )
    silent: list[socket.socket] = []

    def client(port: int) -> None:
        silent.append(_silent_client(port))

    freed = Freed()
    with collector_off():
        with ServerThread(Flooding(freed), options=options) as st:
            for _ in range(N):
                client(st.port)
            assert st.wait_connections(0)
            with ServerThread(Tracking(freed, close_on_open=True), options=options) as quiet:
                for _ in range(N):
                    client(quiet.port)
                assert quiet.wait_connections(0)
            for sock in silent:
                sock.close()
            alive = freed.wait_all()
            garbage = cyclic_garbage_of_ours()
    assert freed.tracked >= 2 * N
    assert alive + garbage == []


class TLSFlooding(Flooding):
    """:class:`Flooding` over TLS, tracking the plaintext queue the transport holds once ``send`` refuses."""

    queues = 0

    def on_writable(self, conn: WebSocket) -> None:
        super().on_writable(conn)
        queue = getattr(conn.transport, "_plain", None)
        if queue:  # the plaintext not yet encrypted: the payloads, by reference
            self.freed.track(queue)
            TLSFlooding.queues += 1


def test_tls_slow_consumer_frees_the_connection_and_its_queued_plaintext(
    server_ssl_context: ssl.SSLContext, ca: Any
) -> None:
    """A TLS peer that stops reading: the server's transport queues the plaintext by reference (lazy
    encryption); the slow-consumer close frees the connection and that queue."""
    options = Options(
        ping_interval=None, write_high_water=64 * 1024, write_hard_limit=256 * 1024, slow_consumer_timeout=0.1
    )
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    silent: list[socket.socket] = []

    def client(port: int) -> None:
        silent.append(_silent_client(port, client_ctx))

    freed = Freed()
    TLSFlooding.queues = 0
    with collector_off():
        with ServerThread(TLSFlooding(freed), options=options, ssl_context=server_ssl_context) as st:
            for _ in range(N):
                client(st.port)
            assert st.wait_connections(0)
            for sock in silent:
                sock.close()
            alive = freed.wait_all()
            garbage = cyclic_garbage_of_ours()
    assert TLSFlooding.queues >= N and freed.tracked >= 4 * N
    assert alive + garbage == []


def test_unfinished_messages_do_not_outlive_their_connections() -> None:
    """The buffered megabytes go with the connection (tracemalloc), not at the next collection."""
    data = partial_message()
    freed = Freed()
    with collector_off():
        with ServerThread(Tracking(freed), options=Options(ping_interval=None)) as st:
            warm = raw_connect(st.port)  # first connection: loop and allocator warm-up
            raw_handshake(warm)
            reset(warm)
            assert st.wait_connections(0)
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for _ in range(N):
                    sock = raw_connect(st.port)
                    raw_handshake(sock)
                    sock.sendall(data)
                    reset(sock)
                assert st.wait_connections(0)
                assert freed.wait_all() == []
                after = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
    assert after - before < MIB // 2, f"{(after - before) / MIB:.1f} MiB still held after {N} x 1 MiB"


# -- the loop client -----------------------------------------------------------------------------------


class ClientTracker(Handler):
    def __init__(self, freed: Freed, close_on_open: bool = True) -> None:
        self.freed = freed
        self.close_on_open = close_on_open
        self.finished = 0

    def on_open(self, conn: WebSocket) -> None:
        self.freed.track(conn.transport)
        if self.close_on_open:
            conn.close(1000, "done")

    def on_close(self, conn: WebSocket, code: int, reason: str) -> None:
        self.finished += 1

    def on_connect_error(self, conn: WebSocket, error: BaseException) -> None:
        self.finished += 1


def run_loop_clients(url: str, handler_freed: Freed, **kwargs: Any) -> list[str]:
    loop = EventLoop()
    handler = ClientTracker(handler_freed)
    try:
        for _ in range(N):
            conn = connect_async(loop, url, handler, **kwargs)
            handler_freed.track(conn, conn.core)
            del conn
        assert loop.run_until(lambda: handler.finished == N, 15)
        # the client waits for the server's TCP close (§7.1.1): run the loop until every object is freed
        assert loop.run_until(lambda: not handler_freed._names, 15), handler_freed._names
    finally:
        loop.close()
    return handler_freed.wait_all(0) + cyclic_garbage_of_ours()


def test_loop_client_clean_close_frees_the_connection() -> None:
    with collector_off(), ServerThread(options=Options(ping_interval=None)) as st:
        assert run_loop_clients(st.url, Freed(), options=Options(ping_interval=None)) == []


def test_loop_client_rejected_and_refused_free_the_connection() -> None:
    with collector_off(), ServerThread(Tracking(Freed(), Reject(401))) as st:
        assert run_loop_clients(st.url, Freed()) == []
    port = unused_port()  # nothing listens there: connection refused
    with collector_off():
        assert run_loop_clients(f"ws://127.0.0.1:{port}/", Freed()) == []


def test_loop_client_handshake_timeout_frees_the_connection() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never answers the upgrade
    try:
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}/"
        with collector_off():
            leftovers = run_loop_clients(url, Freed(), options=Options(handshake_timeout=0.2))
    finally:
        silent.close()
    assert leftovers == []


def test_loop_client_tls_frees_the_connection(server_ssl_context: ssl.SSLContext, ca: Any) -> None:
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    quiet = Options(ping_interval=None)
    with collector_off(), ServerThread(ssl_context=server_ssl_context, options=quiet) as st:
        leftovers = run_loop_clients(st.url, Freed(), ssl_context=client_ctx, options=quiet)
    assert leftovers == []


# -- the blocking client -------------------------------------------------------------------------------


def refused_status(url: str) -> int | None:
    """The status of a refused handshake (caught here: a kept traceback would hold the client's frames)."""
    try:
        connect(url, timeout=10).close()
    except HandshakeError as exc:
        return exc.status
    return None


def test_blocking_client_is_freed_after_close_reset_and_rejection() -> None:
    freed = Freed()
    with collector_off():
        with ServerThread(options=Options(ping_interval=None)) as st:
            for _ in range(N):
                ws: ClientWebSocket = connect(st.url, timeout=10)
                freed.track(ws, ws.core)
                ws.send("x" * 100_000)
                assert ws.recv(timeout=10) == "x" * 100_000
                ws.close()
                del ws
            ws = connect(st.url, timeout=10)  # the server drops it mid-message: 1006 on our side
            freed.track(ws, ws.core)
            st.call(lambda: [c.abort() for c in list(st.server.connections)])
            with pytest.raises(Exception, match="1006"):
                ws.recv(timeout=10)
            ws.close()
            del ws
        with ServerThread(Tracking(Freed(), Reject(403))) as st:
            assert [refused_status(st.url) for _ in range(N)] == [403] * N
        alive = freed.wait_all(0)
        garbage = cyclic_garbage_of_ours()
    assert alive + garbage == []
