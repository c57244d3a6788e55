"""A plain ASGI echo app on uvicorn, with our WebSocket protocol class or one of uvicorn's own.

    python -m conformance.uvicorn_echo --ws ours --host 127.0.0.1 --port 9311 \
        --max-message-size 67108864 [--no-compression]

``--ws``: ``ours`` (wsproto_lite.adapters.uvicorn:WSProtoLiteProtocol), ``wsproto`` or ``websockets-sansio``
(uvicorn's
built-in classes). Keepalive pings are off, uvicorn's logging is quiet, and ``READY`` is printed once the
server listens. The Autobahn runner (``python -m conformance server --impl uvicorn-ours``) and the
benchmarks (``python -m benchmarks --only uvicorn``) start it.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

WS_CLASSES = {
    "ours": "wsproto_lite.adapters.uvicorn:WSProtoLiteProtocol",
    "wsproto": "uvicorn.protocols.websockets.wsproto_impl:WSProtocol",
    "websockets-sansio": "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol",
}

Receive = Any
Send = Any


async def echo_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Accept every WebSocket and send each message back with the same type."""
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.receive":
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message["text"]})
        else:  # websocket.disconnect
            return


async def serve(host: str, port: int, ws: str, max_size: int, compression: bool) -> None:
    """Run uvicorn until it is told to stop (SIGINT / SIGTERM)."""
    import uvicorn

    config = uvicorn.Config(
        echo_app,
        host=host,
        port=port,
        ws=WS_CLASSES[ws],
        ws_max_size=max_size,
        ws_ping_interval=None,
        ws_per_message_deflate=compression,
        lifespan="off",
        log_level="warning",
        backlog=4096,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    print("READY", flush=True)
    await task


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ws", choices=sorted(WS_CLASSES), default="ours")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-message-size", type=int, default=64 * 2**20)
    ap.add_argument("--no-compression", action="store_true")
    a = ap.parse_args(argv)
    asyncio.run(serve(a.host, a.port, a.ws, a.max_message_size, not a.no_compression))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
