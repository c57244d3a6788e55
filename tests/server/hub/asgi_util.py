"""The hub as an ASGI app on a real uvicorn, in its own asyncio loop thread: the same face as ``HubThread``.

``AsgiHubThread(config, authenticate, engine)`` serves :class:`wsproto_lite.hub.asgi.HubASGI` on 127.0.0.1
and a free port (``ws`` picks uvicorn's WebSocket implementation: our ``WSProtoLiteProtocol`` by default);
``call(fn)`` runs in the loop thread; ``restart()`` is a fresh hub (new epochs) on the same port.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import uvicorn
from srvtest_util import call_in_loop

from wsproto_lite.adapters.uvicorn import WSProtoLiteProtocol
from wsproto_lite.hub.asgi import HubASGI
from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.engine import Engine
from wsproto_lite.hub.hub import Authenticate, Hub

T = TypeVar("T")

App = Callable[[Any, Any, Any], Awaitable[None]]


class LoopThread:
    """An asyncio loop running in a daemon thread; ``run(coro)`` waits for a coroutine's result there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="asgi-hub", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 20.0) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(coro, timeout)

        return asyncio.run_coroutine_threadsafe(bounded(), self.loop).result(timeout + 1)

    def call(self, fn: Any, *args: Any, timeout: float = 10.0) -> Any:
        return call_in_loop(self.loop, fn, *args, timeout=timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.loop.close()


class Uvicorn:
    """uvicorn serving ``app`` on a bound socket, inside ``loop_thread``'s loop."""

    def __init__(self, loop_thread: LoopThread, app: App, port: int = 0, **options: Any) -> None:
        self.loop_thread = loop_thread
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port: int = self.sock.getsockname()[1]
        settings = {
            "lifespan": "off",
            "log_level": "warning",
            "ws": WSProtoLiteProtocol,
            "interface": "asgi3",
        }
        settings.update(options)
        self.server = uvicorn.Server(uvicorn.Config(app, **settings))
        self.task: asyncio.Task[None] = loop_thread.run(self._start())

    async def _start(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)  # uvicorn has no "started" event to await
        return task

    def stop(self) -> None:
        async def stop() -> None:
            self.server.should_exit = True
            await self.task

        self.loop_thread.run(stop())
        self.sock.close()


class AsgiHubThread:
    """HubASGI on uvicorn with ``HubThread``'s face: ``url``, ``port``, ``hub``, ``call``, ``restart``..."""

    def __init__(
        self,
        config: HubConfig | None = None,
        authenticate: Authenticate | None = None,
        engine: Callable[[], Engine] | None = None,
        ws: Any = None,
        mount: str = "",
        http: bool = False,
    ) -> None:
        """``ws``: uvicorn's WebSocket class (None: ours); ``mount="/hub"``: mounted there in a FastAPI app
        (``app.mount``); ``http``: its HTTP side too."""
        self.config = config or HubConfig(port=0)
        self.authenticate = authenticate
        self.engine = engine
        self.mount = mount
        self.http = http
        self.closed = threading.Condition()
        self.loop_thread = LoopThread()
        self.loop = self.loop_thread.loop
        self.app = self.loop_thread.run(self._new_app())
        limits = self.config.limits
        self.uvicorn = Uvicorn(
            self.loop_thread,
            self._outer_app(),
            ws=ws or WSProtoLiteProtocol,
            ws_max_size=self.config.frame_limit(),
            ws_ping_interval=limits.ping_interval,
            ws_ping_timeout=limits.ping_interval,
            ws_per_message_deflate=self.config.compression,
        )

    async def _new_app(self) -> HubASGI:
        from wsproto_lite.hub.app import hub_of

        engine = self.engine() if self.engine is not None else None
        app = HubASGI(hub_of(self.config, engine, self.authenticate), config=self.config, http=self.http)
        app.start()
        hub = app.hub
        original = hub.on_close

        def on_close(conn: Any, code: int, reason: str) -> None:
            original(conn, code, reason)
            with self.closed:
                self.closed.notify_all()

        hub.on_close = on_close  # type: ignore[method-assign]
        return app

    async def _dispatch(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)  # restart() swaps the app behind the same server

    def _outer_app(self) -> App:
        if not self.mount:
            return self._dispatch
        from fastapi import FastAPI

        outer = FastAPI()
        outer.mount(self.mount, self._dispatch)
        return outer

    @property
    def hub(self) -> Hub:
        return self.app.hub

    @property
    def port(self) -> int:
        return self.uvicorn.port

    @property
    def base(self) -> str:
        """The hub's HTTP address, below the mount point, with a trailing slash (its chat page)."""
        return f"http://127.0.0.1:{self.port}{self.mount}/"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.mount}/connection/websocket"

    def call(self, fn: Any, *args: Any, timeout: float = 10.0) -> Any:
        return self.loop_thread.call(fn, *args, timeout=timeout)

    def wait_sessions(self, at_most: int, timeout: float = 10.0) -> bool:
        with self.closed:
            return self.closed.wait_for(lambda: len(self.hub.sessions) <= at_most, timeout)

    def restart(self) -> None:
        """Stop the hub (disconnect pushes, closes) and serve a new one, with new epochs, on the same port."""
        self.loop_thread.run(self.app.shutdown(2.0))
        self.app = self.loop_thread.run(self._new_app())

    def stop(self) -> None:
        if self.loop_thread.thread.is_alive():
            self.uvicorn.stop()
            self.call(self.app.hub.stop)
            self.loop_thread.close()
