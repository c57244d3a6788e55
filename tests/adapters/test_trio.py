"""adapters.trio: real sockets on 127.0.0.1, our client and server, and the websockets library as a peer."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import socket
import ssl
import subprocess
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trio")  # the trio extra
pytest.importorskip("pytest_trio")

import trio  # noqa: E402
import trio.testing  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.ports import unused_port
from wsproto_lite import Accepted, ClientConnection, CloseReceived, LocalProtocolError  # noqa: E402
from wsproto_lite.adapters.trio import (  # noqa: E402
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    Endpoint,
    HandshakeError,
    Settings,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
    connect_websocket_url,
    open_websocket,
    open_websocket_url,
    serve_websocket,
)
from wsproto_lite.server.errors import InvalidURL  # noqa: E402

Handler = Callable[[WebSocketRequest], Awaitable[None]]


async def echo(request: WebSocketRequest) -> None:
    ws = await request.accept()
    async for message in ws:
        await ws.send_message(message)


async def start_server(nursery: trio.Nursery, handler: Handler = echo, **options: Any) -> WebSocketServer:
    server: WebSocketServer = await nursery.start(
        partial(serve_websocket, handler, "127.0.0.1", 0, None, **options)
    )
    return server


def url(server: WebSocketServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def raw_client(
    port: int, receive_buffer: int | None = None, path: str = "/"
) -> tuple[trio.SocketStream, ClientConnection]:
    """A peer that does the opening handshake and then only what the test makes it do."""
    sock = trio.socket.socket()
    if receive_buffer is not None:  # before connect(), so the TCP window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    core = ClientConnection(f"127.0.0.1:{port}", path)
    await stream.send_all(core.data_to_send())
    while True:
        core.receive_data(await stream.receive_some(65536))
        for event in core.events():
            assert isinstance(event, Accepted), event
            return stream, core


async def raw_http(port: int, request: bytes) -> bytes:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(request)
        response = b""
        while chunk := await stream.receive_some(65536):
            response += chunk
        return response


# -- messages --------------------------------------------------------------------------------------

SIZES = [0, 125, 126, 65536, 2**20]


@pytest.mark.trio
@pytest.mark.parametrize("compression", [True, False])
async def test_echo_text_and_binary_of_every_length_class(nursery: trio.Nursery, compression: bool) -> None:
    server = await start_server(nursery, max_message_size=2**21, compression=compression)
    async with open_websocket_url(url(server), max_message_size=2**21, compression=compression) as ws:
        for size in SIZES:
            for message in (
                "é" * (size // 2) + "a" * (size % 2),
                bytes(range(256)) * (size // 256) + b"x" * (size % 256),
            ):
                await ws.send_message(message)
                assert await ws.get_message() == message
        assert ws.is_client and ws.subprotocol is None
    assert ws.closed == CloseReason(1000, None)


@settings(max_examples=25)
@given(st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300)), max_size=8), st.booleans())
def test_any_messages_round_trip_in_order(messages: list[str | bytes], compression: bool) -> None:
    async def main() -> list[str | bytes]:
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, compression=compression)
            async with open_websocket_url(url(server), compression=compression, message_queue_size=16) as ws:
                for message in messages:
                    await ws.send_message(message)
                received = [await ws.get_message() for _ in messages]
            nursery.cancel_scope.cancel()
        return received

    assert trio.run(main) == messages


@settings(max_examples=25)
@given(st.binary(min_size=1, max_size=2000))
def test_junk_after_the_handshake_ends_one_connection_not_the_server(junk: bytes) -> None:
    """Whatever bytes a peer sends, its connection ends (a close frame or a dropped transport), the handler
    sees the end as ConnectionClosed, and the next client is served."""

    async def main() -> CloseReason | None:
        ended: list[CloseReason | None] = []
        first_ended = trio.Event()

        async def handler(request: WebSocketRequest) -> None:
            ws = await request.accept()
            try:
                async for message in ws:
                    await ws.send_message(message)
            finally:
                ended.append(ws.closed)
                first_ended.set()

        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, handler, disconnect_timeout=1)
            stream, _ = await raw_client(server.port)
            with trio.fail_after(10):
                await stream.send_all(junk)
                await stream.aclose()
                await first_ended.wait()
                async with open_websocket_url(url(server)) as ws:
                    await ws.send_message("still serving")
                    assert await ws.get_message() == "still serving"
            nursery.cancel_scope.cancel()
        return ended[0]

    reason = trio.run(main)
    assert reason is not None and 1000 <= reason.code < 5000  # junk may hold a valid close frame


@pytest.mark.trio
async def test_messages_are_iterated_until_the_close(nursery: trio.Nursery) -> None:
    async def three_then_close(request: WebSocketRequest) -> None:
        ws = await request.accept()
        for message in ("a", b"b", "c"):
            await ws.send_message(message)
        await ws.aclose(4000, "done")

    server = await start_server(nursery, three_then_close)
    async with open_websocket_url(url(server), message_queue_size=4) as ws:
        assert [message async for message in ws] == ["a", b"b", "c"]
        assert ws.closed == CloseReason(4000, "done")
        assert ws.closed.name == "PRIVATE"
        with pytest.raises(ConnectionClosed) as raised:
            await ws.send_message("late")
        assert raised.value.reason.code == 4000


@pytest.mark.trio
async def test_send_message_refuses_other_types(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with open_websocket_url(url(server)) as ws:
        with pytest.raises(TypeError):
            await ws.send_message(42)  # type: ignore[arg-type]
        await ws.send_message("still open")
        assert await ws.get_message() == "still open"


# -- handshake -------------------------------------------------------------------------------------


@pytest.mark.trio
async def test_subprotocol_headers_and_path_reach_the_other_side(nursery: trio.Nursery) -> None:
    seen: list[WebSocketRequest] = []

    async def pick(request: WebSocketRequest) -> None:
        seen.append(request)
        chosen = next(p for p in request.subprotocols if p in ("v2", "v3"))
        ws = await request.accept(subprotocol=chosen, extra_headers=[("X-Server", "trio")])
        assert ws.subprotocol == chosen and ws.is_server and ws.path == "/chat?room=1"
        await ws.send_message(ws.subprotocol)
        await ws.get_message()

    server = await start_server(nursery, pick)
    async with open_websocket_url(
        url(server, "/chat?room=1"), subprotocols=["v1", "v2", "v3"], extra_headers=[("X-Client", "42")]
    ) as ws:
        assert ws.subprotocol == "v2"
        assert await ws.get_message() == "v2"
        assert ("X-Server", "trio") in ws.handshake_headers
        assert ws.remote is not None and ws.remote.port == server.port
    (request,) = seen
    assert request.path == "/chat?room=1"
    assert request.subprotocols == ("v1", "v2", "v3")
    assert ("X-Client", "42") in request.headers
    assert request.remote == ws.local


@pytest.mark.trio
async def test_accepting_a_subprotocol_not_offered_is_refused_by_the_core(nursery: trio.Nursery) -> None:
    errors: list[BaseException] = []

    async def wrong(request: WebSocketRequest) -> None:
        try:
            await request.accept(subprotocol="never-offered")
        except LocalProtocolError as exc:
            errors.append(exc)
            raise

    server = await start_server(nursery, wrong)
    with pytest.raises(ConnectionRejected) as raised:
        async with open_websocket_url(url(server), subprotocols=["v1"]):
            pass
    assert raised.value.status_code == 500
    assert len(errors) == 1


@pytest.mark.trio
async def test_reject_with_status_headers_and_body(nursery: trio.Nursery) -> None:
    async def deny(request: WebSocketRequest) -> None:
        await request.reject(401, extra_headers=[("WWW-Authenticate", "Bearer")], body=b"who are you?")

    server = await start_server(nursery, deny)
    with pytest.raises(ConnectionRejected) as raised:
        async with open_websocket_url(url(server)):
            pass
    assert raised.value.status_code == 401
    assert ("WWW-Authenticate", "Bearer") in raised.value.headers
    assert raised.value.body == b"who are you?"


@pytest.mark.trio
async def test_a_handler_that_does_not_answer_rejects_with_403(nursery: trio.Nursery) -> None:
    async def silent(request: WebSocketRequest) -> None:
        pass

    server = await start_server(nursery, silent)
    with pytest.raises(ConnectionRejected) as raised:
        async with open_websocket_url(url(server)):
            pass
    assert raised.value.status_code == 403


@pytest.mark.trio
async def test_plain_http_gets_426_and_a_bad_upgrade_the_cores_400(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    plain = await raw_http(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert plain.startswith(b"HTTP/1.1 426 ") and b"\r\nUpgrade: websocket\r\n" in plain
    bad = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"  # no key
    assert (await raw_http(server.port, bad)).startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 426 "))


@pytest.mark.trio
async def test_connect_timeout(nursery: trio.Nursery) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")  # accepts TCP, never answers
    port = listeners[0].socket.getsockname()[1]
    with pytest.raises(ConnectionTimeout):
        async with open_websocket("127.0.0.1", port, "/", use_ssl=False, connect_timeout=0.2):
            pass
    await listeners[0].aclose()


@pytest.mark.trio
async def test_the_server_drops_a_peer_that_never_sends_its_request(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, connect_timeout=0.2)
    async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
        with trio.fail_after(10):
            assert await stream.receive_some(100) == b""  # closed, with no answer


@pytest.mark.trio
async def test_a_refused_connection_raises_oserror_itself() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()  # nobody listens there now
    with pytest.raises(OSError):  # not wrapped in an ExceptionGroup
        async with open_websocket("127.0.0.1", port, "/", use_ssl=False):
            pass


@pytest.mark.trio
async def test_an_invalid_101_is_a_handshake_error(nursery: trio.Nursery) -> None:
    async def bad_server(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        no_accept_key = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        await stream.send_all(no_accept_key)
        await stream.receive_some(65536)

    (listener,) = await nursery.start(partial(trio.serve_tcp, bad_server, 0, host="127.0.0.1"))
    with pytest.raises(HandshakeError) as raised:
        await connect_websocket_url(nursery, f"ws://127.0.0.1:{listener.socket.getsockname()[1]}/")
    assert not isinstance(raised.value, ConnectionRejected)


@pytest.mark.trio
async def test_an_answered_request_cannot_be_answered_again(nursery: trio.Nursery) -> None:
    errors: list[BaseException] = []

    async def twice(request: WebSocketRequest) -> None:
        await request.accept()
        try:
            await request.reject(400)
        except RuntimeError as exc:
            errors.append(exc)

    server = await start_server(nursery, twice)
    async with open_websocket_url(url(server)) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.get_message()  # the handler returned: closed with 1000
    assert len(errors) == 1 and ws.closed == CloseReason(1000, None)


def test_urls_settings_and_names_are_checked() -> None:
    with pytest.raises(ValueError):
        open_websocket_url("http://127.0.0.1/")
    with pytest.raises(ValueError):
        open_websocket_url("ws://127.0.0.1/", ssl.create_default_context())
    with pytest.raises(ValueError):
        Settings(message_queue_size=0)
    names = [CloseReason(code, None).name for code in (1000, 1009, 3000, 4999, 2000)]
    assert names == ["NORMAL", "MESSAGE_TOO_BIG", "REGISTERED", "PRIVATE", "UNKNOWN"]
    assert Endpoint("::1", 443, True).url == "wss://[::1]"
    assert Endpoint("127.0.0.1", 8000, False).url == "ws://127.0.0.1:8000"


# -- closing ---------------------------------------------------------------------------------------


@pytest.mark.trio
async def test_close_codes_and_reasons_both_ways(nursery: trio.Nursery) -> None:
    server_saw: list[CloseReason] = []

    async def record(request: WebSocketRequest) -> None:
        ws = await request.accept()
        if request.path == "/server-closes":
            await ws.aclose(4002, "server says bye")
            return
        with pytest.raises(ConnectionClosed) as raised:
            await ws.get_message()
        server_saw.append(raised.value.reason)

    server = await start_server(nursery, record)
    async with open_websocket_url(url(server, "/client-closes")) as ws:
        await ws.aclose(4001, "client says bye")
        assert ws.closed is not None and ws.closed.code == 4001
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
    async with open_websocket_url(url(server, "/server-closes")) as ws:
        with pytest.raises(ConnectionClosed) as raised:
            await ws.get_message()
        assert raised.value.reason == CloseReason(4002, "server says bye")
    await trio.testing.wait_all_tasks_blocked()
    assert server_saw == [CloseReason(4001, "client says bye")]


@pytest.mark.trio
@pytest.mark.parametrize("when", ["at once", "once quiet", "once quiet, 8 MiB unwritten"])
async def test_close_timeout_aborts_when_the_peer_never_answers(nursery: trio.Nursery, when: str) -> None:
    """§7.1.1: the application closes and the raw peer answers nothing (and reads nothing): the connection
    is aborted ``disconnect_timeout`` later, whether the close comes at once or when all is quiet (the
    reader waiting for bytes, the writer perhaps for the peer to read megabytes)."""
    closed = trio.Event()
    reasons: list[CloseReason | None] = []

    async def close(request: WebSocketRequest) -> None:
        ws = await request.accept()
        if when.endswith("unwritten"):
            await ws.send_message(b"x" * (8 << 20))
        if when != "at once":
            await trio.testing.wait_all_tasks_blocked()
        await ws.aclose()
        reasons.append(ws.closed)
        closed.set()

    server = await start_server(nursery, close, disconnect_timeout=0.2)
    stream, _ = await raw_client(server.port)
    with trio.fail_after(10):
        await closed.wait()
    assert reasons == [CloseReason(1006, "connection aborted")]
    await stream.aclose()


@pytest.mark.trio
async def test_message_too_big_closes_with_1009(nursery: trio.Nursery) -> None:
    server_saw: list[CloseReason] = []

    async def small(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with pytest.raises(ConnectionClosed) as raised:
            await ws.get_message()
        server_saw.append(raised.value.reason)

    server = await start_server(nursery, small, max_message_size=1000)
    async with open_websocket_url(url(server)) as ws:
        await ws.send_message(b"x" * 1001)
        with pytest.raises(ConnectionClosed) as raised:
            await ws.get_message()
        assert raised.value.reason.code == 1009
    await trio.testing.wait_all_tasks_blocked()
    assert [reason.code for reason in server_saw] == [1009]


@pytest.mark.trio
async def test_an_echo_goes_out_before_the_close_for_a_later_bad_frame(nursery: trio.Nursery) -> None:
    """Autobahn 3.x/4.x strictness: the reader parses no further while the queue is full, so the handler
    answers "hi" before the core reaches the reserved opcode and fails the connection (1002)."""
    server = await start_server(nursery)
    stream, core = await raw_client(server.port)
    hi = b"\x81\x82\x00\x00\x00\x00hi"  # masked text "hi" (zero mask key)
    await stream.send_all(hi + b"\x83\x80\x00\x00\x00\x00")  # then opcode 3: reserved (RFC 6455 §5.2)
    events: list[Any] = []
    with trio.fail_after(10):
        while not any(type(e).__name__ == "ConnectionClosed" for e in events):
            core.receive_data(await stream.receive_some(65536))
            events.extend(core.events())
    assert [type(e).__name__ for e in events] == ["TextMessage", "CloseReceived", "ConnectionClosed"]
    assert events[0].data == "hi" and events[1].code == 1002
    await stream.aclose()


# -- ping, pong, keepalive -------------------------------------------------------------------------


@pytest.mark.trio
async def test_ping_waits_for_its_pong_both_ways(nursery: trio.Nursery) -> None:
    async def pinger(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.ping(b"from-server")
        await ws.send_message("ponged")
        await ws.get_message()

    server = await start_server(nursery, pinger)
    async with open_websocket_url(url(server)) as ws:
        assert await ws.get_message() == "ponged"
        await ws.ping(b"from-client")
        await ws.ping()  # a random payload
        await ws.pong(b"unsolicited")
        with pytest.raises(LocalProtocolError):  # the core's §5.5 limit
            await ws.ping(b"x" * 126)


@pytest.mark.trio
async def test_ping_to_a_peer_that_never_pongs_raises_once_closed(nursery: trio.Nursery) -> None:
    got: list[BaseException] = []
    done = trio.Event()

    async def ping_then_wait(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.ping(b"p")
        except ConnectionClosed as exc:
            got.append(exc)
        done.set()

    server = await start_server(nursery, ping_then_wait)
    stream, _ = await raw_client(server.port)
    await trio.testing.wait_all_tasks_blocked()
    await stream.aclose()  # never read the ping: the transport goes away
    with trio.fail_after(10):
        await done.wait()
    assert isinstance(got[0], ConnectionClosed) and got[0].reason.code == 1006


@pytest.mark.trio
async def test_a_pong_answers_its_ping_and_the_earlier_ones(nursery: trio.Nursery) -> None:
    answered: list[bytes] = []
    both_sent, both_answered = trio.Event(), trio.Event()

    async def two_pings(request: WebSocketRequest) -> None:
        ws = await request.accept()

        async def ping(payload: bytes) -> None:
            await ws.ping(payload)
            answered.append(payload)
            if len(answered) == 2:
                both_answered.set()

        async with trio.open_nursery() as pings:
            pings.start_soon(ping, b"1")
            await trio.testing.wait_all_tasks_blocked()
            pings.start_soon(ping, b"2")
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(ValueError):  # its pong would be ambiguous
                await ws.ping(b"2")
            both_sent.set()
        await ws.get_message()

    server = await start_server(nursery, two_pings)
    stream, core = await raw_client(server.port)
    with trio.fail_after(10):
        await both_sent.wait()
        core.send_pong(b"2")  # answers only the later ping (RFC 6455 §5.5.3 allows it)
        await stream.send_all(core.data_to_send())
        await both_answered.wait()
    assert sorted(answered) == [b"1", b"2"]
    await stream.aclose()


@pytest.mark.trio
async def test_keepalive_aborts_a_peer_that_does_not_pong(nursery: trio.Nursery) -> None:
    reasons: list[CloseReason] = []
    done = trio.Event()

    async def wait(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with pytest.raises(ConnectionClosed) as raised:
            await ws.get_message()
        reasons.append(raised.value.reason)
        done.set()

    server = await start_server(nursery, wait, ping_interval=0.05, ping_timeout=0.1)
    stream, _ = await raw_client(server.port)  # reads nothing, so answers no ping
    with trio.fail_after(10):
        await done.wait()
    assert [reason.code for reason in reasons] == [1006]
    await stream.aclose()


@pytest.mark.trio
async def test_keepalive_sends_1011_before_aborting(nursery: trio.Nursery) -> None:
    """The keepalive policy shared with the other transports: a missing pong gets a close 1011 with the
    reason "keepalive ping timeout" (before: the stream was aborted without a close frame)."""

    async def wait_for_close(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with pytest.raises(ConnectionClosed):
            await ws.get_message()

    server = await start_server(nursery, wait_for_close, ping_interval=0.05, ping_timeout=0.1)
    stream, core = await raw_client(server.port)  # never hands the server's ping to its core: no pong
    received = b""
    with trio.fail_after(10):
        while chunk := await stream.receive_some(65536):
            received += chunk
    core.receive_data(received)
    closes = [event for event in core.events() if isinstance(event, CloseReceived)]
    assert [(event.code, event.reason) for event in closes] == [(1011, "keepalive ping timeout")]
    await stream.aclose()


@pytest.mark.trio
async def test_a_peer_that_pings_and_never_reads_is_read_no_more(nursery: trio.Nursery) -> None:
    """12 MiB of pings from a peer that reads nothing: the server stops reading once its unwritten pongs
    pass the write limit (the kernel's buffers then stop the peer), instead of queueing 12 MiB of pongs."""
    connections: list[WebSocketConnection] = []

    async def hold(request: WebSocketRequest) -> None:
        ws = await request.accept()
        connections.append(ws)
        await ws.get_message()

    server = await start_server(nursery, hold)
    stream, _ = await raw_client(server.port, receive_buffer=8192)
    ping = b"\x89\xfd\x00\x00\x00\x00" + b"p" * 125  # a masked 125-byte ping (zero mask key)
    flood = trio.CancelScope()

    async def send_flood() -> None:
        with flood:
            await stream.send_all(ping * (12 * 2**20 // len(ping)))

    with trio.fail_after(20):
        async with trio.open_nursery() as inner:
            inner.start_soon(send_flood)
            await trio.testing.wait_all_tasks_blocked()  # the server parked, the kernel buffers full
            flood.cancel()
    assert flood.cancelled_caught, "the whole flood was read"
    (ws,) = connections
    assert ws._outbox_size <= 2**16 + 2**16  # the write limit, plus the pongs of one receive_some()
    await stream.aclose()


@pytest.mark.trio
async def test_both_sides_writing_hard_while_reading_do_not_deadlock(nursery: trio.Nursery) -> None:
    """Reading never waits for our own writes: two peers that each send 8 MiB while reading finish."""
    count, payload = 128, b"d" * 2**16

    async def send_all(ws: WebSocketConnection) -> None:
        for _ in range(count):
            await ws.send_message(payload)

    async def send_and_receive(ws: WebSocketConnection) -> int:
        received = 0
        async with trio.open_nursery() as both:
            both.start_soon(send_all, ws)
            for _ in range(count):
                received += len(await ws.get_message())
        return received

    totals: list[int] = []

    async def duplex(request: WebSocketRequest) -> None:
        ws = await request.accept()
        totals.append(await send_and_receive(ws))

    server = await start_server(nursery, duplex)
    with trio.fail_after(30):
        async with open_websocket_url(url(server), compression=False) as ws:
            totals.append(await send_and_receive(ws))
    assert totals == [count * len(payload)] * 2


# -- cancellation ----------------------------------------------------------------------------------


@pytest.mark.trio
async def test_cancelled_get_message_loses_nothing(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with open_websocket_url(url(server)) as ws, trio.open_nursery() as inner:
        scope = trio.CancelScope()

        async def wait_for_message() -> None:
            with scope:
                await ws.get_message()

        inner.start_soon(wait_for_message)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        await ws.send_message("after the cancel")
        assert await ws.get_message() == "after the cancel"


@pytest.mark.trio
async def test_backpressure_and_a_cancelled_send_message_is_all_or_nothing(nursery: trio.Nursery) -> None:
    """A peer that does not read blocks our sender (nothing buffers without bound); the blocked send is
    cancelled: its message is not sent, and the connection carries on with every message whose send
    returned, in order."""
    server_ready, client_may_read, last_received = trio.Event(), trio.Event(), trio.Event()
    received: list[bytes] = []

    async def slow_reader(request: WebSocketRequest) -> None:
        ws = await request.accept()
        server_ready.set()
        await client_may_read.wait()
        async for message in ws:
            assert isinstance(message, bytes)
            received.append(message)
            if message == b"last":
                last_received.set()

    server = await start_server(nursery, slow_reader, max_message_size=2**17)
    sent: list[bytes] = []
    async with open_websocket_url(url(server), compression=False, write_limit=2**16) as ws:
        await server_ready.wait()
        flood = trio.CancelScope()

        async def send_until_blocked() -> None:
            with flood:
                for n in range(2000):  # 125 MiB: far more than the kernel's socket buffers
                    message = n.to_bytes(4, "big") * 2**14  # 64 KiB
                    await ws.send_message(message)
                    sent.append(message)

        with trio.fail_after(20):
            async with trio.open_nursery() as inner:
                inner.start_soon(send_until_blocked)
                await trio.testing.wait_all_tasks_blocked()  # only once the sender waits for room
                flood.cancel()
        assert flood.cancelled_caught, "the sender never blocked"
        assert 0 < len(sent) < 2000
        assert ws._outbox_size <= 2**16 + 2**16 + 16  # bounded: the limit plus one message
        client_may_read.set()
        await ws.send_message(b"last")
        sent.append(b"last")
        with trio.fail_after(20):
            await last_received.wait()
    assert received == sent


@pytest.mark.trio
async def test_cancelling_open_websocket_aborts_the_connection(nursery: trio.Nursery) -> None:
    server_saw: list[CloseReason] = []
    done = trio.Event()

    async def wait(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with pytest.raises(ConnectionClosed) as raised:
            await ws.get_message()
        server_saw.append(raised.value.reason)
        done.set()

    server = await start_server(nursery, wait)
    with trio.CancelScope() as scope:
        async with open_websocket_url(url(server)) as ws:
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert ws.closed == CloseReason(1006, "connection aborted")
    with trio.fail_after(10):
        await done.wait()
    assert server_saw[0].code == 1006


@pytest.mark.trio
async def test_a_cancelled_aclose_aborts(nursery: trio.Nursery) -> None:
    reasons: list[CloseReason | None] = []
    done = trio.Event()

    async def close_impatiently(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with trio.CancelScope() as scope:
            scope.cancel()
            await ws.aclose()  # the raw peer would never answer; cancelled, aclose gives up at once
        await ws.aclose()  # waits for the abort to finish
        reasons.append(ws.closed)
        done.set()

    server = await start_server(nursery, close_impatiently)
    stream, _ = await raw_client(server.port)
    with trio.fail_after(10):
        await done.wait()
    assert reasons == [CloseReason(1006, "connection aborted")]
    await stream.aclose()


@pytest.mark.trio
async def test_an_error_inside_open_websocket_comes_out_as_itself(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    with pytest.raises(KeyError):  # not an ExceptionGroup
        async with open_websocket_url(url(server)) as ws:
            raise KeyError("mine")
    assert ws.closed is not None and ws.closed.code == 1000


@pytest.mark.trio
async def test_connect_websocket_runs_in_the_callers_nursery(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    ws = await connect_websocket_url(nursery, url(server))
    await ws.send_message("x")
    assert await ws.get_message() == "x"
    await ws.aclose()
    await ws.aclose()  # idempotent
    assert ws.closed == CloseReason(1000, None)


# -- the server keeps serving ----------------------------------------------------------------------


@pytest.mark.trio
async def test_a_handler_exception_closes_its_connection_with_1011_only(nursery: trio.Nursery) -> None:
    async def flaky(request: WebSocketRequest) -> None:
        ws = await request.accept()
        message = await ws.get_message()
        if message == "boom":
            raise RuntimeError("handler bug")
        await ws.send_message(message)
        await ws.get_message()

    server = await start_server(nursery, flaky)
    async with open_websocket_url(url(server)) as healthy:
        async with open_websocket_url(url(server)) as doomed:
            await doomed.send_message("boom")
            with pytest.raises(ConnectionClosed) as raised:
                await doomed.get_message()
            assert raised.value.reason == CloseReason(1011, "internal error")
        await healthy.send_message("fine")
        assert await healthy.get_message() == "fine"


# -- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


@pytest.mark.trio
async def test_tls_echo(nursery: trio.Nursery, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_context, client_context = tls_contexts
    server: WebSocketServer = await nursery.start(serve_websocket, echo, "127.0.0.1", 0, server_context)
    assert server.listeners[0].is_ssl  # type: ignore[union-attr]
    async with open_websocket_url(f"wss://localhost:{server.port}/", client_context) as ws:
        for message in ("secret", b"\x00" * 100_000):
            await ws.send_message(message)
            assert await ws.get_message() == message
        assert ws.local is not None and ws.local.is_ssl
    assert ws.closed == CloseReason(1000, None)


@pytest.mark.trio
async def test_tls_with_an_untrusted_certificate_fails_the_handshake(
    nursery: trio.Nursery, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server: WebSocketServer = await nursery.start(serve_websocket, echo, "127.0.0.1", 0, tls_contexts[0])
    with pytest.raises(HandshakeError) as raised:  # the default context does not trust our test CA
        async with open_websocket_url(f"wss://localhost:{server.port}/"):
            pass
    assert isinstance(raised.value.__cause__.__cause__, ssl.SSLCertVerificationError)  # type: ignore[union-attr]


# -- interoperability with the websockets library --------------------------------------------------


@pytest.mark.trio
async def test_websockets_asyncio_client_against_our_server(nursery: trio.Nursery) -> None:
    async def negotiate(request: WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="chat" if "chat" in request.subprotocols else None)
        async for message in ws:
            await ws.send_message(message)

    server = await start_server(nursery, negotiate, max_message_size=2**21)

    async def client() -> tuple[list[str | bytes], str | None, str, int | None]:
        from websockets.asyncio.client import connect

        async with connect(url(server), subprotocols=["chat"], max_size=2**21) as ws:  # type: ignore[list-item]
            replies = []
            for message in ("hello", b"\x01\x02", "z" * 70_000, b"b" * 2**20):
                await ws.send(message)
                replies.append(await ws.recv())
            await ws.close(4005, "done")
            return (
                replies,
                ws.subprotocol,
                ws.response.headers.get("Sec-WebSocket-Extensions", ""),
                ws.close_code,
            )

    replies, subprotocol, extensions, close_code = await trio.to_thread.run_sync(
        lambda: asyncio.run(client())
    )
    assert replies == ["hello", b"\x01\x02", "z" * 70_000, b"b" * 2**20]
    assert subprotocol == "chat"
    assert "permessage-deflate" in extensions
    assert close_code == 4005


@pytest.fixture
def websockets_server() -> Iterator[tuple[int, list[Any]]]:
    """websockets' threaded server (echo, subprotocol "chat", closes with 4006 on "bye") in a thread."""
    from websockets.sync.server import serve

    seen: list[Any] = []

    def handler(ws: Any) -> None:
        seen.append(ws.request.headers)
        for message in ws:
            if message == "bye":
                ws.close(4006, "as asked")
                return
            ws.send(message)

    server = serve(handler, "127.0.0.1", 0, subprotocols=["chat"], max_size=2**21)  # type: ignore[list-item]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.socket.getsockname()[1], seen
    server.shutdown()
    thread.join(10)
    assert not thread.is_alive()


@pytest.mark.trio
async def test_our_client_against_websockets_server(websockets_server: tuple[int, list[Any]]) -> None:
    port, seen = websockets_server
    async with open_websocket(
        "127.0.0.1",
        port,
        "/x",
        use_ssl=False,
        subprotocols=["chat"],
        extra_headers=[("X-Us", "trio")],
        max_message_size=2**21,
    ) as ws:
        assert ws.subprotocol == "chat"
        assert any(
            value.startswith("permessage-deflate")
            for name, value in ws.handshake_headers
            if name.lower() == "sec-websocket-extensions"
        )
        for message in ("hello", b"\x00\xff", "q" * 70_000, b"r" * 2**20):
            await ws.send_message(message)
            assert await ws.get_message() == message
        await ws.ping(b"are you there")
        await ws.send_message("bye")
        with pytest.raises(ConnectionClosed) as raised:
            await ws.get_message()
        assert raised.value.reason == CloseReason(4006, "as asked")
    assert seen[0]["X-Us"] == "trio"


# -- memory: per-connection objects die with their connection, gc disabled --------------------------


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.trio
async def test_connections_are_freed_by_reference_counting(
    nursery: trio.Nursery,
    no_gc: None,
    monkeypatch: pytest.MonkeyPatch,
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """Clean closes, client aborts, handler errors, protocol errors, close timeouts and TLS: none of our
    per-connection objects (request, connection, core, stream) outlive their connection, gc disabled."""
    monkeypatch.setattr(
        logging.getLogger("wsproto_lite.adapters.trio"), "disabled", True
    )  # records keep tracebacks
    alive: list[weakref.ref[Any]] = []

    def track(*objects: object) -> None:
        alive.extend(weakref.ref(o) for o in objects)

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        track(request, ws, ws._core)  # not the stream: trio's serve_listeners holds the last one accepted
        if request.path == "/timeout":
            await ws.aclose()  # the raw peer never answers: the close timer aborts
            return
        message = await ws.get_message()
        if message == "boom":
            raise RuntimeError("handler bug")
        await ws.send_message(message)
        await ws.get_message()

    server = await start_server(nursery, handler, disconnect_timeout=0.05)
    tls_server: WebSocketServer = await nursery.start(
        serve_websocket, handler, "127.0.0.1", 0, tls_contexts[0]
    )
    tracked = 0
    trio_cycles: list[weakref.ref[Any]] = []
    for kind in ("clean", "abort", "error", "garbage", "timeout", "tls") * 3:
        if kind in ("garbage", "timeout"):
            stream, core = await raw_client(server.port, path="/" + kind)
            if kind == "garbage":
                await stream.send_all(b"\x8f\x80\x00\x00\x00\x00")  # reserved opcode: 1002 from the core
            while await stream.receive_some(100):  # until the server closes
                pass
            await stream.aclose()
            del stream, core
        else:
            address = f"wss://localhost:{tls_server.port}/" if kind == "tls" else url(server)
            with trio.CancelScope() as scope:
                async with open_websocket_url(address, tls_contexts[1] if kind == "tls" else None) as ws:
                    if kind == "tls":  # trio.SSLStream is in a cycle of its own: _Once(self._do_handshake)
                        track(ws, ws._core)
                        trio_cycles.append(weakref.ref(ws._stream))
                    else:
                        track(ws, ws._core, ws._stream)
                    await ws.send_message("boom" if kind == "error" else "hi")
                    if kind == "abort":
                        scope.cancel()
                        await trio.sleep_forever()
                    try:
                        await ws.get_message()
                    except ConnectionClosed:
                        pass
            del ws
        await trio.testing.wait_all_tasks_blocked()  # the server is done with it too
        assert len(alive) > tracked, kind
        tracked = len(alive)
        assert [ref() for ref in alive if ref() is not None] == [], kind
    gc.collect()  # what trio's own cycle kept: nothing of ours is in it
    assert len(trio_cycles) == 3 and all(ref() is None for ref in trio_cycles)


@pytest.fixture
async def server_in_nursery(nursery: trio.Nursery) -> AsyncIterator[WebSocketServer]:
    yield await start_server(nursery)


@pytest.mark.trio
async def test_connection_object_repr(server_in_nursery: WebSocketServer) -> None:
    async with open_websocket_url(url(server_in_nursery, "/r")) as ws:
        assert isinstance(ws, WebSocketConnection)
        assert repr(ws) == "<WebSocketConnection client '/r' OPEN>"


def test_readme_trio_snippet_runs(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (code,) = re.findall(r"```python\n(import trio\n.*?)```", readme, re.S)
    exec(compile(code.replace('"127.0.0.1", 8000', '"127.0.0.1", 0'), "README.md", "exec"), {})
    assert capsys.readouterr().out == "hello\n"


def test_python_m_adapters_trio_serves_an_echo() -> None:
    """The README's one-command start, ``python -m wsproto_lite.adapters.trio --port P``, stopped by PID."""
    from websockets.sync.client import connect

    port = unused_port()
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "wsproto_lite.adapters.trio", "--port", str(port)]
    server = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert server.stdout is not None
        assert (
            server.stdout.readline() == f"echo server on ws://127.0.0.1:{port}/ (trio)\n".encode()
        )  # listening
        client = connect(f"ws://127.0.0.1:{port}/", subprotocols=["chat"], open_timeout=5)  # type: ignore[list-item]
        with client:
            client.send("hello")
            assert client.recv(timeout=5) == "hello"
            assert client.subprotocol == "chat"
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()  # type: ignore[union-attr]


@pytest.mark.trio
@pytest.mark.parametrize(
    "bad", ["http://127.0.0.1/", "ws:///nohost", "ws://127.0.0.1/#frag", "ws://127.0.0.1:99999/"]
)
async def test_urls_are_parsed_by_the_io_layer(bad: str) -> None:
    """One URL parser (``server.urls``): the trio client refuses what the I/O layer's client refuses, with
    the same exception (``InvalidURL``, a ValueError), before any connection is tried."""
    with pytest.raises(InvalidURL):
        async with open_websocket_url(bad):
            pass  # pragma: no cover - never reached
