"""Stand-in echo server on ``websockets`` with the same options as ``python -m server echo``.

    python -m conformance.standin.echo_server --host 127.0.0.1 --port 9001 \
        --max-message-size 67108864 [--no-compression]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def echo(ws: ServerConnection) -> None:
    """Send every message back with the same type."""
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def serve_forever(host: str, port: int, max_size: int, compression: bool) -> None:
    """Serve until SIGTERM / SIGINT."""
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        echo,
        host,
        port,
        max_size=max_size,
        ping_interval=None,
        compression="deflate" if compression else None,
    ):
        print(f"websockets echo server on ws://{host}:{port}", flush=True)
        await stop


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-message-size", type=int, default=64 * 2**20)
    ap.add_argument("--no-compression", action="store_true")
    a = ap.parse_args(argv)
    asyncio.run(serve_forever(a.host, a.port, a.max_message_size, not a.no_compression))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
