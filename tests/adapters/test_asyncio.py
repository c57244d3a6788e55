"""adapters.asyncio: our server and client against each other and against websockets, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import ssl
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from wsproto_lite.adapters.asyncio import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
    Server,
    WebSocket,
    connect,
    serve,
)

websockets_client = pytest.importorskip("websockets.asyncio.client")
websockets_server = pytest.importorskip("websockets.asyncio.server")
T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def port_of(server: Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def test_echo_text_binary_and_large_messages_with_our_client() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{port_of(server)}/") as ws:
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                await ws.send(b"\x00\xff")
                assert await ws.recv() == b"\x00\xff"
                big = bytes(range(256)) * 2048  # 512 KiB, through permessage-deflate
                await ws.send(big)
                assert await ws.recv() == big
            assert ws.close_code == 1000

    run(main())


def test_async_for_ends_on_a_normal_close_and_pipelined_messages_keep_their_order() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_queue=4) as server:
            async with websockets_client.connect(f"ws://127.0.0.1:{port_of(server)}") as peer:
                for i in range(500):  # more than max_queue: the server stops reading and catches up
                    await peer.send(str(i))
                assert [await peer.recv() for _ in range(500)] == [str(i) for i in range(500)]

            received: list[Any] = []

            async def client() -> None:
                async with connect(f"ws://127.0.0.1:{port_of(server)}") as ws:
                    await ws.send("one")
                    async for message in ws:
                        received.append(message)
                        await ws.close()

            await client()
            assert received == ["one"]

    run(main())


def test_subprotocols_extra_headers_and_request_details() -> None:
    seen: list[dict[str, Any]] = []

    async def handler(ws: WebSocket) -> None:
        assert ws.request is not None
        seen.append(dict(path=ws.request.path, query=ws.request.query, token=ws.request.header("x-token")))
        await ws.send(ws.subprotocol or "")

    async def main() -> None:
        async with serve(
            handler, "127.0.0.1", 0, subprotocols=["v2", "v1"], extra_headers=[("X-Server", "lite")]
        ) as server:
            url = f"ws://127.0.0.1:{port_of(server)}/room?id=7"
            async with connect(url, subprotocols=["v1", "v2"], extra_headers=[("X-Token", "t")]) as ws:
                assert ws.subprotocol == "v2"  # the server's preference
                assert ("X-Server", "lite") in ws.response_headers
                assert await ws.recv() == "v2"
            async with websockets_client.connect(url, subprotocols=["v1"]) as peer:  # type: ignore[list-item]
                assert peer.subprotocol == "v1"

    run(main())
    assert seen[0] == {"path": "/room", "query": "id=7", "token": "t"}


def test_process_request_answers_with_an_http_response() -> None:
    def auth(request: Any) -> tuple[int, list[tuple[str, str]], bytes] | None:
        if request.header("Authorization") == "Bearer ok":
            return None
        return 401, [("Content-Type", "text/plain")], b"who are you?"

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, process_request=auth) as server:
            url = f"ws://127.0.0.1:{port_of(server)}/"
            with pytest.raises(InvalidStatus) as info:
                await connect(url)
            assert (info.value.status, info.value.body) == (401, b"who are you?")
            async with connect(url, extra_headers=[("Authorization", "Bearer ok")]) as ws:
                await ws.send("in")
                assert await ws.recv() == "in"
        async with serve(echo, "127.0.0.1", 0, process_request=lambda request: 1 / 0) as server:
            with pytest.raises(InvalidStatus) as info:  # a failing hook is a 500, not a dead server
                await connect(f"ws://127.0.0.1:{port_of(server)}/")
            assert info.value.status == 500

    run(main())


def test_tls_with_a_private_ca() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ssl=server_ctx) as server:
            async with connect(f"wss://127.0.0.1:{port_of(server)}/", ssl=client_ctx) as ws:
                await ws.send("secret")
                assert await ws.recv() == "secret"
            async with websockets_client.connect(f"wss://127.0.0.1:{port_of(server)}/", ssl=client_ctx) as p:
                await p.send(b"x" * 70000)
                assert await p.recv() == b"x" * 70000

    run(main())


def test_permessage_deflate_is_negotiated_with_websockets_and_can_be_off() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with websockets_client.connect(f"ws://127.0.0.1:{port_of(server)}") as peer:
                assert [e.name for e in peer.protocol.extensions] == ["permessage-deflate"]
                await peer.send("z" * 10000)
                assert await peer.recv() == "z" * 10000
        async with serve(echo, "127.0.0.1", 0, compression=None) as server:
            async with websockets_client.connect(f"ws://127.0.0.1:{port_of(server)}") as peer:
                assert peer.protocol.extensions == []

    run(main())


def test_size_limit_closes_with_1009() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_size=1000) as server:
            async with websockets_client.connect(f"ws://127.0.0.1:{port_of(server)}", compression=None) as p:
                await p.send(b"x" * 1000)
                assert await p.recv() == b"x" * 1000
                await p.send(b"x" * 1001)
                with pytest.raises(Exception):  # noqa: B017 - websockets' ConnectionClosedError
                    await p.recv()
                assert p.close_code == 1009

    run(main())


def test_our_client_against_a_websockets_server_and_errors_surface_as_connection_closed() -> None:
    async def closer(ws: Any) -> None:
        await ws.send(await ws.recv())
        await ws.close(4000, "bye")

    async def main() -> None:
        async with websockets_server.serve(closer, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.send("ping")
                assert await ws.recv() == "ping"
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert (info.value.code, info.value.reason) == (4000, "bye")
                with pytest.raises(ConnectionClosedError):
                    await ws.send("too late")

    run(main())


def test_ping_resolves_with_the_round_trip_time() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{port_of(server)}") as ws:
                pong = await ws.ping(b"abc")
                assert await pong >= 0.0

    run(main())


async def silent_peer(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that completes the handshake by hand and then never answers anything."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


def test_keepalive_fails_a_silent_peer_with_1011() -> None:
    closed: list[tuple[int | None, str]] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.recv()
        except ConnectionClosedError:
            closed.append((ws.close_code, ws.close_reason))

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=0.05) as server:
            reader, writer = await silent_peer(port_of(server))
            data = await reader.read()  # the ping, then the 1011 close, then EOF
            writer.close()
            assert b"\x88" in data and b"keepalive ping timeout" in data

    run(main())
    assert closed and closed[0][0] == 1006


def test_close_timeout_bounds_the_wait_for_a_peer_that_never_replies() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.close(1000)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, close_timeout=0.1, ping_interval=None) as server:
            reader, writer = await silent_peer(port_of(server))
            data = await reader.read()  # our close frame, then EOF when the timer gives up on the peer
            writer.close()
            assert data.startswith(b"\x88\x02\x03\xe8")

    run(main())


def test_send_waits_while_the_peer_does_not_read() -> None:
    """Send backpressure: the transport pauses writing, send() blocks instead of buffering without bound."""
    progress: list[int] = []
    blocked = asyncio.Event

    async def main() -> None:
        stop = blocked()
        waiting = blocked()

        async def flood(ws: WebSocket) -> None:
            drain = ws.drain

            async def observed_drain() -> None:
                waiting.set()  # send() found the transport full: it waits here
                await drain()

            ws.drain = observed_drain  # type: ignore[method-assign]
            for i in range(10_000):
                await ws.send(b"x" * 65536)
                progress.append(i)
            await stop.wait()

        async with serve(flood, "127.0.0.1", 0, compression=None) as server:
            reader, writer = await silent_peer(port_of(server))  # never reads
            await asyncio.wait_for(waiting.wait(), 10)  # the socket buffers are full: send() waits
            for _ in range(100):  # and goes on waiting, however often the loop runs
                await asyncio.sleep(0)
            assert len(progress) < 1000  # 64 MiB would be sent without backpressure
            sent = len(progress)
            for _ in range(100):
                await asyncio.sleep(0)
            assert len(progress) == sent
            stop.set()
            writer.transport.abort()

    run(main())


def test_server_close_sends_1001_and_waits_for_handlers() -> None:
    async def main() -> None:
        server = await serve(echo, "127.0.0.1", 0)
        async with connect(f"ws://127.0.0.1:{port_of(server)}") as ws:
            server.close()
            with pytest.raises(ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.code == 1001
        await server.wait_closed()
        assert not server.connections and not server.tasks

    run(main())


def test_connections_are_freed_by_reference_counting() -> None:
    """With the cyclic collector off, no WebSocket (either role) outlives its connection."""
    refs: list[weakref.ref[WebSocket]] = []

    async def handler(ws: WebSocket) -> None:
        refs.append(weakref.ref(ws))
        await echo(ws)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            for _ in range(3):
                async with connect(f"ws://127.0.0.1:{port_of(server)}") as ws:
                    await ws.send("x")
                    await ws.recv()
                refs.append(weakref.ref(ws))
                del ws
            await asyncio.sleep(0)  # let the handler tasks finish

    gc.collect()
    gc.disable()
    try:
        run(main())
        assert len(refs) == 6
        assert [r() for r in refs] == [None] * 6
    finally:
        gc.enable()


def test_bad_handshakes_are_answered_by_the_core() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            for request in (
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # plain HTTP: 426
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",  # no key
                b"\x16\x03\x01 junk\r\n\r\n",
            ):
                reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
                writer.write(request)
                answer = await reader.read()
                writer.close()
                assert answer.startswith(b"HTTP/1.1 4")

    run(main())
