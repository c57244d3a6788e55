"""``python -m server hub``: start the hub (options on the command line override the config file)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .config import ConfigError, HubConfig, load_config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Register the ``hub`` subcommand on ``python -m server``'s parser."""
    p = subparsers.add_parser(
        "hub",
        help="run the real-time hub (channels, presence, history; chat demo at /)",
        description="A real-time hub: JSON commands over WebSocket at /connection/websocket (also /ws), "
        "channels in namespaces, presence, history and recovery; the chat demo at GET /. "
        "Protocol: server/hub/PROTOCOL.md.",
    )
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; '' = every one)")
    p.add_argument("--port", type=int, default=None, help="default 8000")
    p.add_argument("--config", metavar="FILE", help="a .toml or .json file (see server/hub/config.py)")
    p.add_argument("--max-connections", type=int, default=None, help="beyond this: HTTP 503")
    p.add_argument("--certfile", default=None, help="TLS certificate chain (PEM): serve wss:// and https://")
    p.add_argument("--keyfile", default=None, help="TLS private key (PEM), if not in --certfile")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .app import HubServer
    from .auth import MissingExtra

    try:
        config = load_config(args.config) if args.config else HubConfig()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.host is not None:
        config.host = args.host
    if args.port is not None:
        config.port = args.port
    if args.max_connections is not None:
        config.max_connections = args.max_connections
    if args.certfile is not None:
        config.certfile = args.certfile
        config.keyfile = args.keyfile
    try:
        hub = HubServer(config)
    except (MissingExtra, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"error: cannot listen on {config.host or '*'}:{config.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    secure = "s" if config.certfile else ""
    for host, port in hub.server.addresses:
        shown = f"[{host}]" if ":" in host else host
        print(
            f"hub listening: chat page http{secure}://{shown}:{port}/  "
            f"WebSocket ws{secure}://{shown}:{port}/connection/websocket",
            flush=True,
        )
    namespaces = ", ".join(repr(n) if n else "(default)" for n in config.namespaces.namespaces)
    print(f"namespaces: {namespaces}", flush=True)
    hub.serve_forever()
    hub.loop.close()
    return 0
