"""What a Python user would pick instead of the hub, and the hub inside an ASGI app, for the hub benchmark.

``python -m benchmarks.hub_peers {socketio,socketio-redis,websockets,hub-asgi} [--host H] --port P
[--redis URL]``

- ``socketio``: python-socketio ``AsyncServer`` as an ASGI app on uvicorn (one process). Event
  ``subscribe`` (with an ack) enters the room it names; event ``publish`` emits ``pub`` with the same
  data to room ``bench``.
- ``socketio-redis``: the same server with its Redis manager (``AsyncRedisManager(--redis URL)``), so that
  several processes share rooms (the scale profile, ``hub_profile.py``); ``publish`` emits ``pub`` to the
  room named by the data's ``room`` key.
- ``websockets``: a websockets asyncio server. The text ``subscribe`` adds the connection to a set
  (answered ``subscribed``); any other message is sent to that set with ``websockets.broadcast``.
- ``hub-asgi``: the hub (``wsproto_lite.hub.asgi.HubASGI``) mounted at ``/hub`` in a Starlette app on
  uvicorn with our WebSocket class (``wsproto_lite.adapters.uvicorn.WSProtoLiteProtocol``), the config of
  the standalone hub's run (``benchmarks/hub/unlimited.toml``).

All without compression (the load generator offers none) and without keepalive pings of the
WebSocket layer; Engine.IO keeps its own pings (the clients answer them).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .servers import BACKLOG, raise_nofile

ROOM = "bench"


def run_socketio(host: str, port: int, redis_url: str | None = None) -> None:
    try:
        import socketio  # type: ignore[import-untyped]
        import uvicorn
    except ImportError as exc:
        raise SystemExit(f"{exc.name} missing: pip install -r benchmarks/requirements.txt") from None

    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(
        async_mode="asgi", cors_allowed_origins="*", transports=["websocket"], client_manager=manager
    )

    @sio.event  # type: ignore[untyped-decorator]
    async def subscribe(sid: str, room: str) -> str:
        await sio.enter_room(sid, room)
        return "ok"

    @sio.event  # type: ignore[untyped-decorator]
    async def publish(sid: str, data: Any) -> None:
        room = data.get("room", ROOM) if redis_url and isinstance(data, dict) else ROOM
        await sio.emit("pub", data, room=room)

    app = socketio.ASGIApp(sio)
    uvicorn.run(
        app,
        host=host,
        port=port,
        backlog=BACKLOG,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws_ping_interval=None,
        ws_per_message_deflate=False,
    )


def run_hub_asgi(host: str, port: int) -> None:
    try:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Mount
    except ImportError as exc:
        raise SystemExit(f"{exc.name} missing: pip install -r benchmarks/requirements.txt") from None
    from wsproto_lite.adapters.uvicorn import WSProtoLiteProtocol
    from wsproto_lite.hub.asgi import HubASGI
    from wsproto_lite.hub.config import load_config

    config = load_config("benchmarks/hub/unlimited.toml")
    app = Starlette(routes=[Mount("/hub", HubASGI(config=config))])
    uvicorn.run(
        app,
        host=host,
        port=port,
        backlog=BACKLOG,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws=WSProtoLiteProtocol,
        ws_max_size=config.frame_limit(),
        ws_ping_interval=config.limits.ping_interval,  # the standalone hub's keepalive
        ws_per_message_deflate=False,
    )


async def serve_websockets(host: str, port: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.exceptions import ConnectionClosed

    subscribers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        try:
            async for msg in ws:
                if msg == "subscribe":
                    subscribers.add(ws)
                    await ws.send("subscribed")
                else:
                    broadcast(subscribers, msg)
        except ConnectionClosed:
            pass  # the benchmark aborts idle subscribers with a TCP reset: not worth a traceback
        finally:
            subscribers.discard(ws)

    async with serve(handler, host, port, compression=None, ping_interval=None, backlog=BACKLOG):
        await asyncio.Future()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hub_peers")
    ap.add_argument("impl", choices=("socketio", "socketio-redis", "websockets", "hub-asgi"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--redis", default=None, help="socketio-redis: the AsyncRedisManager's URL")
    args = ap.parse_args(argv)
    raise_nofile()
    try:
        if args.impl == "socketio":
            run_socketio(args.host, args.port)
        elif args.impl == "socketio-redis":
            if not args.redis:
                ap.error("socketio-redis needs --redis URL")
            run_socketio(args.host, args.port, args.redis)
        elif args.impl == "hub-asgi":
            run_hub_asgi(args.host, args.port)
        else:
            asyncio.run(serve_websockets(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
