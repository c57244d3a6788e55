"""Peer echo/broadcast servers, each run in its own process by the loopback benchmarks.

``python -m benchmarks.servers {websockets,aiohttp,picows} {echo,broadcast} --port P``

All servers: no compression, no keepalive pings, no message-size limit that a 16 MiB echo would
hit, a listen backlog of 4096. ``echo`` sends every message back to its sender; ``broadcast`` sends
every message it receives to *all* connected clients (sender included). Prints ``READY`` once
listening.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
from typing import Any

BACKLOG = 4096
MAX = 2**26


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


async def run_websockets(host: str, port: int, mode: str) -> None:
    from websockets.asyncio.server import broadcast, serve

    clients: set[Any] = set()

    async def echo(ws: Any) -> None:
        async for msg in ws:
            await ws.send(msg)

    async def bcast(ws: Any) -> None:
        clients.add(ws)
        try:
            async for msg in ws:
                broadcast(clients, msg)
        finally:
            clients.discard(ws)

    async with serve(
        echo if mode == "echo" else bcast,
        host,
        port,
        compression=None,
        max_size=MAX,
        ping_interval=None,
        backlog=BACKLOG,
    ):
        print("READY", flush=True)
        await asyncio.Future()


async def run_aiohttp(host: str, port: int, mode: str) -> None:
    from aiohttp import WSMsgType, web

    clients: set[web.WebSocketResponse] = set()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=0, heartbeat=None)
        await ws.prepare(request)
        clients.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if mode == "echo":
                        await ws.send_str(msg.data)
                    else:
                        for c in list(clients):
                            if not c.closed:
                                await c.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    if mode == "echo":
                        await ws.send_bytes(msg.data)
                    else:
                        for c in list(clients):
                            if not c.closed:
                                await c.send_bytes(msg.data)
        finally:
            clients.discard(ws)
        return ws

    await start_aiohttp(handler, host, port, backlog=BACKLOG)
    print("READY", flush=True)
    await asyncio.Future()


async def start_aiohttp(handler: Any, host: str, port: int, **site_options: Any) -> None:
    """An aiohttp application serving ``handler`` at ``/``, listening (no access log)."""
    from aiohttp import web

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, **site_options).start()


async def run_picows(host: str, port: int, mode: str) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    clients: set[WSTransport] = set()
    TEXT, BINARY, CLOSE = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE

    class Listener(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            clients.add(transport)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            clients.discard(transport)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            # Unfragmented messages only (what the benchmark client sends). Text is decoded, as
            # the other servers hand the application a str.
            op = frame.msg_type
            if op is TEXT:
                data: Any = frame.get_payload_as_utf8_text()
            elif op is BINARY:
                data = frame.get_payload_as_bytes()
            elif op is CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
                return
            else:
                return
            if mode == "echo":
                transport.send(op, data)
            else:
                wire = data.encode() if isinstance(data, str) else data  # encode once for everyone
                for t in clients:
                    t.send(op, wire)

    await ws_create_server(lambda _request: Listener(), host, port, max_frame_size=MAX, backlog=BACKLOG)
    print("READY", flush=True)
    await asyncio.Future()


async def run_asyncio_adapter(host: str, port: int, mode: str) -> None:
    """Our asyncio adapter (wsproto_lite/adapters/asyncio/), configured like the websockets server above."""
    from wsproto_lite.adapters.asyncio import WebSocket, serve

    if mode != "echo":
        raise SystemExit("the asyncio adapter server only echoes")

    async def echo(ws: WebSocket) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with serve(echo, host, port, compression=None, max_size=MAX, ping_interval=None, backlog=BACKLOG):
        print("READY", flush=True)
        await asyncio.Future()


SERVERS = {
    "websockets": run_websockets,
    "aiohttp": run_aiohttp,
    "picows": run_picows,
    "asyncio-adapter": run_asyncio_adapter,
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.servers")
    ap.add_argument("impl", choices=sorted(SERVERS))
    ap.add_argument("mode", choices=("echo", "broadcast"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    raise_nofile()
    try:
        asyncio.run(SERVERS[args.impl](args.host, args.port, args.mode))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
