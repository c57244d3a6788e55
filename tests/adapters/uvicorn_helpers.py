"""Run an ASGI app on a real uvicorn server (our WebSocket class) inside the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import uvicorn

from wsproto_lite.adapters.uvicorn import WSProtoLiteProtocol

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@asynccontextmanager
async def uvicorn_server(app: Any, **options: Any) -> AsyncIterator[uvicorn.Server]:
    """uvicorn on 127.0.0.1 and a free port (``server.port``), stopped (by shutdown) on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    options = {"lifespan": "off", "log_level": "warning", "ws": WSProtoLiteProtocol, **options}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    server.port = sock.getsockname()[1]  # type: ignore[attr-defined]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await task
        sock.close()
