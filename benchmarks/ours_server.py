"""Our broadcast server for the scale benchmark, on the public API of ``server/``.

``python -m benchmarks.ours_server --port P``: every message received is sent to every connected
client (sender included) with ``WebSocketServer.broadcast`` (frame built once with
``prepare_message``). Same settings as the peer servers: no compression, no keepalive pings.
This is the pluggable part of ``scale``: adapt it here if the server API changes.
"""

from __future__ import annotations

import argparse
import sys

from .servers import BACKLOG, MAX, raise_nofile


def main(argv: list[str] | None = None) -> None:
    from wsproto_lite.server import Handler, WebSocketServer
    from wsproto_lite.server.options import Options

    ap = argparse.ArgumentParser(prog="python -m benchmarks.ours_server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    raise_nofile()

    class Broadcast(Handler):
        server: WebSocketServer

        def on_message(self, conn: object, message: str | bytes) -> None:
            self.server.broadcast(message)

    handler = Broadcast()
    options = Options(max_message_size=MAX, compression=False, ping_interval=None)
    handler.server = WebSocketServer(
        handler, host=args.host, port=args.port, options=options, backlog=BACKLOG
    )
    handler.server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
