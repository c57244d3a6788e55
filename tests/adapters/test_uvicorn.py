"""adapters.uvicorn.WSProtoLiteProtocol on a real uvicorn server: the ASGI messages an app sees."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

pytest.importorskip("uvicorn")
websockets_client = pytest.importorskip("websockets.asyncio.client")

from tests.adapters.uvicorn_helpers import run, uvicorn_server  # noqa: E402
from wsproto_lite.adapters.asyncio import connect  # noqa: E402
from wsproto_lite.adapters.uvicorn import WSProtoLiteProtocol  # noqa: E402

Scope = dict[str, Any]


class Recorder:
    """An ASGI app that accepts, echoes, and records every message it receives and every send error."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.send_errors: list[type[BaseException]] = []  # types: a traceback would keep the connection
        self.done = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            while True:
                message = await receive()
                self.received.append(message)
                if message["type"] == "websocket.connect":
                    await send({"type": "websocket.accept"})
                elif message["type"] == "websocket.receive":
                    if message.get("text") == "close me":
                        await send({"type": "websocket.close", "code": 4000, "reason": "asked"})
                    else:
                        await send(
                            {"type": "websocket.send", **{k: v for k, v in message.items() if k != "type"}}
                        )
                else:
                    try:
                        await send({"type": "websocket.send", "text": "after the disconnect"})
                    except OSError as exc:
                        self.send_errors.append(type(exc))
                    return
        finally:
            self.done.set()


def disconnects(app: Recorder) -> list[dict[str, Any]]:
    return [m for m in app.received if m["type"] == "websocket.disconnect"]


def test_peer_close_code_and_reason_reach_the_app_and_send_after_it_raises_oserror() -> None:
    app = Recorder()

    async def main() -> None:
        async with uvicorn_server(app) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/") as ws:  # type: ignore[attr-defined]
                await ws.send("a")
                assert await ws.recv() == "a"
                await ws.close(4100, "done here")
            await app.done.wait()

    run(main())
    assert disconnects(app) == [{"type": "websocket.disconnect", "code": 4100, "reason": "done here"}]
    assert len(app.send_errors) == 1


def test_app_close_reason_reaches_the_peer() -> None:
    app = Recorder()

    async def main() -> None:
        async with uvicorn_server(app) as server:
            async with websockets_client.connect(f"ws://127.0.0.1:{server.port}/") as peer:  # type: ignore[attr-defined]
                await peer.send("close me")
                with pytest.raises(Exception):  # noqa: B017 - websockets' ConnectionClosed
                    await peer.recv()
                assert (peer.close_code, peer.close_reason) == (4000, "asked")

    run(main())


def test_lost_connection_is_1006_too_big_is_1009_and_shutdown_is_1012() -> None:
    lost, big, shut = Recorder(), Recorder(), Recorder()

    async def main() -> None:
        async with uvicorn_server(lost) as server:
            ws = await connect(f"ws://127.0.0.1:{server.port}/")  # type: ignore[attr-defined]
            ws.transport.abort()
            await lost.done.wait()
        async with uvicorn_server(big, ws_max_size=100) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws:  # type: ignore[attr-defined]
                await ws.send(b"x" * 101)
                with pytest.raises(Exception):  # noqa: B017
                    await ws.recv()
                assert ws.close_code == 1009
            await big.done.wait()
        async with uvicorn_server(shut) as server:
            ws = await connect(f"ws://127.0.0.1:{server.port}/")  # type: ignore[attr-defined]
            await ws.send("x")
            assert await ws.recv() == "x"
        # leaving the block shut uvicorn down while the client was connected
        assert ws.close_code == 1012

    run(main())
    assert disconnects(lost) == [{"type": "websocket.disconnect", "code": 1006}]
    [too_big] = disconnects(big)
    assert too_big["code"] == 1009 and too_big["reason"]
    assert disconnects(shut) == [{"type": "websocket.disconnect", "code": 1012}]


def test_uvicorn_settings_deflate_off_and_keepalive_pings() -> None:
    app = Recorder()

    async def main() -> None:
        async with uvicorn_server(app, ws_per_message_deflate=False, ws_ping_interval=0.05) as server:
            url = f"ws://127.0.0.1:{server.port}/"  # type: ignore[attr-defined]
            async with websockets_client.connect(url, ping_interval=None) as peer:
                assert peer.protocol.extensions == []
                [protocol] = list(server.server_state.connections)
                assert isinstance(protocol, WSProtoLiteProtocol)
                while protocol.ping_sent_at == 0.0:  # uvicorn has no event for "a ping went out"
                    await asyncio.sleep(0.01)
                await peer.send("still here")
                assert await peer.recv() == "still here"

    run(main())


def test_protocol_objects_are_freed_by_reference_counting() -> None:
    """With the cyclic collector off, every WSProtoLiteProtocol is gone once its connection closed."""
    app = Recorder()
    refs: list[weakref.ref[Any]] = []

    async def main() -> None:
        async with uvicorn_server(app, ws_ping_interval=None) as server:
            for _ in range(3):
                async with connect(f"ws://127.0.0.1:{server.port}/") as ws:  # type: ignore[attr-defined]
                    refs.extend(weakref.ref(p) for p in server.server_state.connections)
                    await ws.send("x")
                    await ws.recv()
                while server.server_state.connections or server.server_state.tasks:
                    await asyncio.sleep(0.01)

    gc.collect()
    gc.disable()
    try:
        run(main())
        assert len(refs) == 3
        assert [r() for r in refs] == [None] * 3
    finally:
        gc.enable()
