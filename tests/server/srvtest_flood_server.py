"""A server process for the slow-consumer test: "flood N" makes it send N MiB, ignoring backpressure.

Prints "listening PORT", then "closed CODE" for each connection that ends; SIGTERM: graceful exit;
SIGUSR1: every thread's stack to stderr (what the test shows when the exit does not come).
"""

from __future__ import annotations

import faulthandler
import signal
import sys

from wsproto_lite.server import Handler, Options, WebSocket, WebSocketServer

CHUNK = b"\xab" * 65536


class Flood(Handler):
    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith("flood "):
            for i in range(int(message.split()[1]) * 16):  # 16 x 64 KiB per MiB
                # a distinct object each time, as real data would be (the core does not copy payloads);
                # a careless app: send() drops it (returns False) once over the hard limit
                conn.send(CHUNK[:-1] + bytes([i & 0xFF]))
        else:
            conn.send(message)

    def on_close(self, conn: WebSocket, code: int, reason: str) -> None:
        print(f"closed {code} {conn.core.close_sent}", flush=True)


def main() -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    options = Options(write_hard_limit=16 << 20, slow_consumer_timeout=float(sys.argv[1]), compression=False)
    server = WebSocketServer(Flood(), host="127.0.0.1", port=0, options=options)
    print(f"listening {server.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
