"""Command line: ``wsproto-lite echo`` (an echo server), ``wsproto-lite client URL`` and ``wsproto-lite hub``.

The same parser answers as ``python -m wsproto_lite`` and, from a checkout, ``python -m server``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeAlias

from wsproto_lite import DEFAULT_MAX_MESSAGE_SIZE, CloseCode, Config, HTTPRequest

from .async_client import connect_async
from .errors import HandshakeError, InvalidURL
from .handler import UPGRADE_REQUIRED, Handler, HTTPResponse
from .loop import EventLoop
from .options import Options
from .tls import client_context, server_context
from .websocket import WebSocket
from .ws_server import WebSocketServer

__all__ = ["main", "EchoHandler", "health_check"]

logger = logging.getLogger("wsproto_lite.server.cli")


class EchoHandler(Handler):
    """Sends every message back, with the same type."""

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        conn.send(message)


def health_check(request: HTTPRequest) -> HTTPResponse:
    """``GET /health`` answers 200 "ok"; any other plain HTTP request 426 (this is a WebSocket server)."""
    if request.method in ("GET", "HEAD") and request.path == "/health":
        return HTTPResponse(200, [("Content-Type", "text/plain")], b"ok\n")
    return UPGRADE_REQUIRED


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


#: The subcommands of the parser (what ``add_subparsers`` returns; generic for type checkers only).
_Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="wsproto-lite WebSocket server and client.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = p.add_subparsers(dest="command", required=True)
    _add_echo_parser(sub)
    from ..hub.cli import add_parser as add_hub_parser

    add_hub_parser(sub)
    _add_client_parser(sub)
    return p


def _add_echo_parser(sub: _Subcommands) -> None:
    """``echo``: the echo server's options."""
    e = sub.add_parser(
        "echo", help="run an echo server", description="Echo every message back to its sender."
    )
    e.add_argument("--host", default="127.0.0.1", help="address to listen on ('' = every IPv4 and IPv6 one)")
    e.add_argument("--port", type=int, default=8765)
    e.add_argument("--tls-cert", help="PEM certificate chain: serve wss://")
    e.add_argument("--tls-key", help="PEM private key (if not inside --tls-cert)")
    e.add_argument(
        "--max-message-size",
        type=int,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="bytes; larger messages get close 1009",
    )
    e.add_argument(
        "--max-fragments",
        type=int,
        default=Config.max_fragments,
        help="frames per message; more get close 1009",
    )
    e.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="negotiate permessage-deflate (default: on)",
    )
    e.add_argument("--max-connections", type=int, default=None, help="beyond this: HTTP 503")
    e.add_argument("--ping-interval", type=float, default=20.0, help="keepalive ping period, 0 = off")
    e.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT (several processes, one port)")
    e.add_argument("--trace", action="store_true", help="print every frame on stderr, annotated")


def _add_client_parser(sub: _Subcommands) -> None:
    """``client``: the interactive client's options."""
    c = sub.add_parser(
        "client",
        help="interactive client (like wscat)",
        description="Send each stdin line as a text message; print every message received.",
    )
    c.add_argument("url", help="ws://host:port/path or wss://...")
    c.add_argument("--subprotocol", action="append", default=[], help="offer a subprotocol (repeatable)")
    c.add_argument("--header", action="append", default=[], help="extra request header 'Name: value'")
    c.add_argument("--ca-file", help="trust this CA (PEM) for wss://")
    c.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    c.add_argument("--compression", action=argparse.BooleanOptionalAction, default=True)
    c.add_argument("--timeout", type=float, default=10.0, help="connect + handshake timeout, seconds")
    c.add_argument("--trace", action="store_true", help="print every frame on stderr, annotated")


def main(argv: Sequence[str] | None = None, prog: str = "wsproto-lite") -> int:
    """Entry point; returns the exit status."""
    args = _parser(prog).parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "echo":
            return _echo(args)
        if args.command == "hub":
            return int(args.run(args))
        return _client(args)
    except KeyboardInterrupt:
        return 130


def _echo(args: argparse.Namespace) -> int:
    options = Options(
        max_message_size=args.max_message_size,
        max_fragments=args.max_fragments,
        compression=args.compression,
        max_connections=args.max_connections,
        ping_interval=args.ping_interval or None,
    )
    ctx: ssl.SSLContext | None = None
    if args.tls_cert:
        try:
            ctx = server_context(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            _stderr(f"error: cannot load the TLS certificate/key ({args.tls_cert}): {exc}")
            return 1
    try:
        server = WebSocketServer(
            EchoHandler(),
            host=args.host or None,
            port=args.port,
            ssl_context=ctx,
            options=options,
            http_handler=health_check,
            reuse_port=args.reuse_port,
            trace=_stderr if args.trace else None,
        )
    except OSError as exc:
        _stderr(f"error: cannot listen on {args.host or '*'}:{args.port}: {exc.strerror or exc}")
        return 1
    scheme = "wss" if ctx else "ws"
    for host, port in server.addresses:
        shown = f"[{host}]" if ":" in host else host
        print(f"echo server listening on {scheme}://{shown}:{port}", flush=True)
    server.serve_forever()
    server.loop.close()
    return 0


class _Interactive(Handler):
    """Prints what arrives; remembers how the connection ended."""

    def __init__(self, loop: EventLoop, on_ready: Callable[[], None]) -> None:
        self.loop = loop
        self.on_ready = on_ready
        self.status = 0

    def on_open(self, conn: WebSocket) -> None:
        proto = f" (subprotocol {conn.subprotocol})" if conn.subprotocol else ""
        _stderr(f"connected{proto}; type messages, Ctrl-D to close")
        self.on_ready()  # read stdin only once open, so lines typed early are not lost

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        if isinstance(message, str):
            print(f"< {message}", flush=True)
        else:
            print(f"< (binary, {len(message)} bytes) {message[:64].hex(' ')}", flush=True)

    def on_close(self, conn: WebSocket, code: int, reason: str) -> None:
        _stderr(f"closed: {code}" + (f" {reason}" if reason else ""))
        self.status = 0 if code in (CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.NO_STATUS) else 1
        self.loop.stop()

    def on_connect_error(self, conn: WebSocket, error: BaseException) -> None:
        if isinstance(error, HandshakeError):
            _stderr(f"error: the server refused the WebSocket handshake: HTTP {error.status} {error.reason}")
        elif isinstance(error, ssl.SSLCertVerificationError):
            _stderr(f"error: TLS certificate verification failed: {error.verify_message}")
        else:
            _stderr(f"error: cannot connect: {error}")
        self.status = 1
        self.loop.stop()


def _client(args: argparse.Namespace) -> int:
    headers = _parse_headers(args.header)
    if headers is None:
        return 2
    loop = EventLoop()
    stdin = _StdinLines(loop)
    handler = _Interactive(loop, stdin.start)
    try:
        ctx = client_context(args.ca_file, verify=not args.insecure) if args.url.startswith("wss:") else None
        conn = connect_async(
            loop,
            args.url,
            handler,
            subprotocols=args.subprotocol,
            headers=headers,
            options=Options(compression=args.compression, handshake_timeout=args.timeout, ping_interval=None),
            ssl_context=ctx,
            trace=_stderr if args.trace else None,
        )
    except (InvalidURL, OSError, ssl.SSLError) as exc:
        _stderr(f"error: {exc}")
        return 2
    stdin.conn = conn
    loop.add_signal_handler(signal.SIGINT, stdin.interrupted)
    try:
        loop.run_forever()
    finally:
        loop.remove_signal_handlers()
        conn.abort()  # a no-op once it is closed and its socket too
        loop.close()
    return handler.status


def _parse_headers(items: list[str]) -> list[tuple[str, str]] | None:
    headers = []
    for item in items:
        name, sep, value = item.partition(":")
        if not sep:
            _stderr(f"error: --header needs 'Name: value', got {item!r}")
            return None
        headers.append((name.strip(), value.strip()))
    return headers


class _StdinLines:
    """Sends each line typed (or piped) on stdin; closes the connection when stdin ends."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.conn: WebSocket | None = None

    def start(self) -> None:  # a thread: stdin may be a tty, a pipe or a file
        threading.Thread(target=self._read, name="stdin", daemon=True).start()

    def _read(self) -> None:
        for raw in sys.stdin:
            self.loop.call_soon_threadsafe(self._line, raw.rstrip("\r\n"))
        self.loop.call_soon_threadsafe(self._line, None)

    def _line(self, line: str | None) -> None:
        if self.conn is None:
            return
        if line is not None:
            self.conn.send(line)
        else:
            self.conn.close(CloseCode.NORMAL)  # stdin ended: close; messages still in flight are printed

    def interrupted(self) -> None:
        if self.conn is not None and self.conn.is_open:
            self.conn.close(CloseCode.NORMAL)
        else:
            self.loop.stop()
