"""A broadcast to every connection (``server.broadcast(message)``) through ``fanout.DirectSockets``: the
server keeps its open connections sorted into ready (the C loop writes to their sockets, no Python step) and
unsure (asked first), so these tests pin down each way a ready connection stops being one: frames it
queued during its own batch, a fragmented message under way, a short direct write, a closed socket whose
number a new connection reuses.  Each runs with the C loop and with its pure-Python reference.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from srvtest_util import UPGRADE, Echo, ServerThread, raw_handshake
from test_server_memory import Freed, Tracking, collector_off, cyclic_garbage_of_ours, reset

from wsproto_lite import prepare_message
from wsproto_lite.server import fanout
from wsproto_lite.server.options import Options
from wsproto_lite.server.websocket import WebSocket
from wsproto_lite.server.ws_server import WebSocketServer

TINY = 4096  # bytes of kernel buffer on both sides of a slow peer: partial writes after a few KiB
OPTIONS = Options(ping_interval=None, write_high_water=8 << 20)


@pytest.fixture(params=["c", "python"])
def send_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The C fan-out loop, or its pure-Python reference (as with ``WSPROTO_LITE_NO_SPEEDUPS=1``)."""
    if request.param == "c":
        compiled = fanout._load()
        if compiled is None:
            pytest.skip("the C fan-out loop is not built (or WSPROTO_LITE_NO_SPEEDUPS=1)")
        monkeypatch.setattr(fanout, "send_many", compiled)
    else:
        monkeypatch.setattr(fanout, "send_many", fanout.send_many_py)
    return str(request.param)


def frame(message: bytes | str) -> bytes:
    return prepare_message(message).frame


def client_frame(text: str, opcode: int = 0x1) -> bytes:
    """A masked final frame, as a client sends it (payload < 126 bytes)."""
    payload = text.encode()
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + masked


def read_exactly(sock: socket.socket, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        assert chunk, f"the server closed after {len(out)} of {size} bytes"
        out += chunk
    return bytes(out)


def peers(st: ServerThread, stack: ExitStack, count: int, *, slow: bool = False) -> Iterator[socket.socket]:
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if slow:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", st.port))
        stack.callback(sock.close)
        raw_handshake(sock)
        yield sock


def server_side(st: ServerThread, sock: socket.socket) -> WebSocket:
    address = sock.getsockname()[:2]
    return st.call(lambda: next(c for c in st.server.open_connections() if c.remote_address[:2] == address))


class SendBetweenBroadcasts(Echo):
    """On "go": broadcast, answer the sender, broadcast again (all inside the sender's event batch)."""

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        if message == "go":
            self.server.broadcast("first")
            conn.send("answer")  # queued in its core until the batch ends
            self.server.broadcast("second")


def test_what_a_connection_queued_in_its_batch_goes_out_before_the_next_broadcast(send_loop: str) -> None:
    handler = SendBetweenBroadcasts()
    with ServerThread(handler, options=OPTIONS) as st, ExitStack() as stack:
        handler.server = st.server  # type: ignore[attr-defined]
        sender, other = peers(st, stack, 2)
        st.call(lambda: st.server.broadcast("warm"))  # both known ready from now on
        sender.sendall(client_frame("go"))
        warm_then = frame("warm") + frame("first")
        assert read_exactly(sender, len(warm_then + frame("answer") + frame("second"))) == (
            warm_then + frame("answer") + frame("second")
        )
        assert read_exactly(other, len(warm_then + frame("second"))) == warm_then + frame("second")


def test_a_pong_the_core_queued_on_reading_goes_out_before_a_broadcast_of_the_same_batch(
    send_loop: str,
) -> None:
    handler = SendBetweenBroadcasts()
    with ServerThread(handler, options=OPTIONS) as st, ExitStack() as stack:
        handler.server = st.server  # type: ignore[attr-defined]
        (sender,) = peers(st, stack, 1)
        st.call(lambda: st.server.broadcast("warm"))
        sender.sendall(client_frame("are you there", opcode=0x9) + client_frame("go"))  # one read: ping, "go"
        pong = b"\x8a\x0dare you there"  # §5.5.3: answered with the ping's payload, before what follows
        expected = frame("warm") + pong + frame("first") + frame("answer") + frame("second")
        assert read_exactly(sender, len(expected)) == expected


def test_a_fragmented_message_under_way_is_not_interleaved_with_a_broadcast(send_loop: str) -> None:
    with ServerThread(Echo(), options=OPTIONS) as st, ExitStack() as stack:
        busy_sock, other = peers(st, stack, 2)
        busy = server_side(st, busy_sock)
        assert st.call(lambda: st.server.broadcast("warm")) == 2
        assert st.call(lambda: busy.send("frag", fin=False))
        assert st.call(lambda: st.server.broadcast("skipped")) == 1  # §5.4: not between its fragments
        assert st.call(lambda: busy.send("ment"))
        assert st.call(lambda: st.server.broadcast("after")) == 2
        expected = frame("warm") + b"\x01\x04frag" + b"\x80\x04ment" + frame("after")
        assert read_exactly(busy_sock, len(expected)) == expected
        expected_other = frame("warm") + frame("skipped") + frame("after")
        assert read_exactly(other, len(expected_other)) == expected_other


def test_after_a_short_direct_write_the_rest_goes_out_first(send_loop: str) -> None:
    messages = [f"{i:05d}:".encode() + bytes([i % 251]) * 3001 for i in range(40)]
    with ServerThread(Echo(), options=OPTIONS) as st, ExitStack() as stack:
        (slow_sock,) = peers(st, stack, 1, slow=True)
        (reader,) = peers(st, stack, 1)
        slow = server_side(st, slow_sock)
        st.call(lambda: slow.transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TINY))
        got = bytearray()
        for message in messages:

            def read_some_then_broadcast(m: bytes = message) -> int:
                # in the loop thread: the transport cannot write what it holds before the broadcast runs
                slow_sock.setblocking(False)
                try:
                    got.extend(slow_sock.recv(1 << 16))
                except BlockingIOError:
                    pass
                finally:
                    slow_sock.setblocking(True)
                    slow_sock.settimeout(10)
                return st.server.broadcast(m)

            assert st.call(read_some_then_broadcast) == 2
            assert read_exactly(reader, len(frame(message))) == frame(message)
        expected = b"".join(frame(m) for m in messages)
        got += read_exactly(slow_sock, len(expected) - len(got))
        assert bytes(got) == expected


def test_a_closed_connection_leaves_and_a_new_socket_on_its_number_gets_nothing(send_loop: str) -> None:
    with ServerThread(Echo(), options=OPTIONS) as st, ExitStack() as stack:
        (gone,) = peers(st, stack, 1)
        old_fd = server_side(st, gone).transport._fd
        assert st.call(lambda: st.server.broadcast("warm")) == 1
        reset(gone)
        assert st.wait_connections(0)
        assert st.call(lambda: (dict(st.server._direct.ready), set(st.server._direct.unsure))) == ({}, set())
        fresh = socket.create_connection(("127.0.0.1", st.port), timeout=10)
        stack.callback(fresh.close)
        fresh.sendall(UPGRADE[:3])  # a request under way: the server has accepted it
        assert st.call(lambda: any(c.transport._fd == old_fd for c in st.server.connections))  # reused
        assert st.call(lambda: st.server.broadcast("not for you")) == 0
        fresh.sendall(UPGRADE[3:])
        assert read_exactly(fresh, 12) == b"HTTP/1.1 101"  # the first bytes it gets: nothing before


def test_traced_connections_get_a_broadcast_to_all_through_the_python_path(send_loop: str) -> None:
    lines: list[str] = []
    with ServerThread(Echo(), options=OPTIONS, trace=lines.append) as st, ExitStack() as stack:
        socks = list(peers(st, stack, 3))
        assert st.call(lambda: st.server.broadcast("traced")) == 3
        assert st.call(lambda: len(st.server._direct.ready)) == 0
        for sock in socks:
            assert read_exactly(sock, len(frame("traced"))) == frame("traced")


def test_a_broadcast_to_all_writes_the_ready_ones_without_asking_them(
    send_loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ServerThread(Echo(), options=OPTIONS) as st, ExitStack() as stack:
        socks = list(peers(st, stack, 4))
        assert st.call(lambda: st.server.broadcast("one")) == 4
        asked: list[WebSocket] = []
        real = WebSocket.direct_fd

        def counting(conn: WebSocket) -> int:
            asked.append(conn)
            return real(conn)

        monkeypatch.setattr(WebSocket, "direct_fd", counting)
        assert st.call(lambda: st.server.broadcast("two")) == 4
        assert asked == []
        for sock in socks:
            assert read_exactly(sock, len(frame("one") + frame("two"))) == frame("one") + frame("two")


def test_nothing_is_kept_until_a_broadcast_to_all_then_later_connections_join(send_loop: str) -> None:
    with ServerThread(Echo(), options=OPTIONS) as st, ExitStack() as stack:
        early = list(peers(st, stack, 2))
        conns = [server_side(st, sock) for sock in early]
        assert st.call(lambda: st.server.broadcast("listed", conns)) == 2  # a list: asked, nothing kept
        direct = st.server._direct
        assert st.call(lambda: (direct.active, dict(direct.ready), set(direct.unsure))) == (False, {}, set())
        assert st.call(lambda: st.server.broadcast("to all")) == 2
        late = list(peers(st, stack, 1))
        assert st.call(lambda: st.server.broadcast("again")) == 3
        assert st.call(lambda: len(direct.ready)) == 3
        for sock in early:
            expected = frame("listed") + frame("to all") + frame("again")
            assert read_exactly(sock, len(expected)) == expected
        assert read_exactly(late[0], len(frame("again"))) == frame("again")


class BroadcastOnClose(Tracking):
    """Tells everyone who left: the first broadcast to all runs while a connection's socket is gone."""

    server: WebSocketServer

    def on_close(self, conn: WebSocket, code: int, reason: str) -> None:
        self.server.broadcast("someone left")


def test_a_broadcast_to_all_from_on_close_keeps_no_closed_connection(send_loop: str) -> None:
    freed = Freed()
    handler = BroadcastOnClose(freed)
    with collector_off():
        with ServerThread(handler, options=OPTIONS) as st, ExitStack() as stack:
            handler.server = st.server
            socks = list(peers(st, stack, 3))
            reset(socks[0])  # its on_close makes the first broadcast to all
            expected = frame("someone left")
            assert read_exactly(socks[1], len(expected)) == expected
            assert st.call(lambda: len(st.server._direct.ready) + len(st.server._direct.unsure)) == 2
            for sock in socks[1:]:
                reset(sock)
            assert st.wait_connections(0)
            assert st.call(lambda: (dict(st.server._direct.ready), set(st.server._direct.unsure))) == (
                {},
                set(),
            )
            assert freed.wait_all() == []
            assert cyclic_garbage_of_ours() == []
    assert freed.tracked >= 3 * len(socks)
