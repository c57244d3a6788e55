"""FastAPI, Starlette and Django Channels served by uvicorn with our class, driven by real clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
websockets_client = pytest.importorskip("websockets.asyncio.client")
websockets_exceptions = pytest.importorskip("websockets.exceptions")

from tests.adapters import apps  # noqa: E402
from tests.adapters.uvicorn_helpers import run, uvicorn_server  # noqa: E402
from tests.ports import unused_port  # noqa: E402
from wsproto_lite.adapters.asyncio import ConnectionClosedError, InvalidStatus, connect  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_fastapi_endpoint_with_websockets_and_our_client() -> None:
    async def main() -> None:
        apps.disconnects.clear()
        async with uvicorn_server(apps.fastapi_app) as server:
            base = f"ws://127.0.0.1:{server.port}/chat"  # type: ignore[attr-defined]
            async with websockets_client.connect(
                f"{base}/ann?token=s3cret",
                subprotocols=["chat.v1"],  # type: ignore[list-item]
            ) as peer:
                assert peer.subprotocol == "chat.v1"
                await peer.send(json.dumps({"n": 1}))
                assert json.loads(await peer.recv()) == {"from": "ann", "echo": {"n": 1}}
                await peer.close(4002, "leaving")
            async with connect(f"{base}/bob?token=s3cret") as ws:
                await ws.send(json.dumps([1, 2]))
                assert json.loads(await ws.recv()) == {"from": "bob", "echo": [1, 2]}
            with pytest.raises(InvalidStatus) as info:  # WebSocketException before accept -> HTTP 403
                await connect(f"{base}/eve?token=wrong")
            assert info.value.status == 403
        # uvicorn's shutdown waited for the endpoints' tasks: both have seen their client leave
        assert ("fastapi", 4002, "leaving") in apps.disconnects
        assert ("fastapi", 1000, "") in apps.disconnects

    run(main())


def test_starlette_denial_response_headers_and_close_reason() -> None:
    async def main() -> None:
        async with uvicorn_server(apps.starlette_app) as server:
            url = f"ws://127.0.0.1:{server.port}/reverse"  # type: ignore[attr-defined]
            with pytest.raises(websockets_exceptions.InvalidStatus) as denied:
                await websockets_client.connect(url)
            assert denied.value.response.status_code == 401
            assert denied.value.response.body == b"no entry"
            auth = [("Authorization", "Bearer ok")]
            async with connect(url, extra_headers=auth) as ws:
                assert ("x-served-by", "starlette") in [(k.lower(), v) for k, v in ws.response_headers]
                await ws.send(b"abc")
                assert await ws.recv() == b"cba"
                await ws.send(b"bye")
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert (info.value.code, info.value.reason) == (4001, "as you wish")

    run(main())


def test_django_channels_group_messages_over_the_in_memory_layer() -> None:
    pytest.importorskip("channels")
    from tests.adapters.channels_project import application

    async def main() -> None:
        async with uvicorn_server(application()) as server:
            base = f"ws://127.0.0.1:{server.port}/ws/chat"  # type: ignore[attr-defined]
            async with (
                connect(f"{base}/lobby/") as alice,
                websockets_client.connect(f"{base}/lobby/") as bob,
                connect(f"{base}/other/") as carol,
            ):
                await alice.send("hi all")
                assert await alice.recv() == "hi all"  # group_send reaches every member
                assert await bob.recv() == "hi all"
                await carol.send("elsewhere")
                assert await carol.recv() == "elsewhere"
                await bob.send("hello alice")
                assert await alice.recv() == "hello alice"  # not "elsewhere": rooms are separate

    run(main())


def test_the_uvicorn_command_line_with_our_class() -> None:
    """``uvicorn module:app --ws wsproto_lite.adapters.uvicorn:WSProtoLiteProtocol``, as a user types it."""
    port = unused_port()
    argv = [sys.executable, "-m", "uvicorn", "tests.adapters.apps:fastapi_app"]
    argv += [
        "--ws",
        "wsproto_lite.adapters.uvicorn:WSProtoLiteProtocol",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))

    async def main() -> None:
        # until uvicorn listens (connection refused before): importing FastAPI takes seconds on a loaded
        # machine, so the bound is the process's own life and a generous deadline, not a count of tries
        deadline = asyncio.get_running_loop().time() + 120
        while asyncio.get_running_loop().time() < deadline and proc.poll() is None:
            try:
                async with connect(f"ws://127.0.0.1:{port}/chat/cli?token=s3cret") as ws:
                    await ws.send('"ok"')
                    assert json.loads(await ws.recv()) == {"from": "cli", "echo": "ok"}
                    return
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError(f"uvicorn did not start (exit status {proc.poll()})")

    try:
        run(main())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
