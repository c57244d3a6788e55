"""``python -m wsproto_lite.adapters.trio``: an echo server (the README's one-command start)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import trio

from wsproto_lite import DEFAULT_MAX_MESSAGE_SIZE

from .server import WebSocketRequest, serve_websocket


async def _echo(request: WebSocketRequest) -> None:
    ws = await request.accept(subprotocol=request.subprotocols[0] if request.subprotocols else None)
    async for message in ws:
        await ws.send_message(message)


async def _serve_echo(host: str, port: int, max_message_size: int) -> None:
    async with trio.open_nursery() as nursery:
        serve = partial(serve_websocket, _echo, host, port, None, max_message_size=max_message_size)
        await nursery.start(serve)
        print(f"echo server on ws://{host}:{port}/ (trio)", flush=True)  # once listening


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m wsproto_lite.adapters.trio [--host H] [--port P]``: an echo server, until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m wsproto_lite.adapters.trio", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE)
    args = parser.parse_args(argv)
    try:
        trio.run(_serve_echo, args.host, args.port, args.max_message_size)
    except KeyboardInterrupt:
        pass
