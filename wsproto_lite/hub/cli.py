"""``python -m server hub``: start the hub (options on the command line override the config file).

``--engine redis://host:port/db`` shares channels, presence and history with every hub using the same
Redis (several URLs, comma-separated, shard the channels); ``--workers N`` runs N processes on the
port through the supervisor (``supervisor.py``), which needs such a shared engine.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from .allocator import fix_malloc_thresholds
from .collector import full_every, young_only
from .config import ConfigError, HubConfig, load_config
from .hooks import HOOKS
from .report import exposure
from .supervisor import Supervisor, say, worker_argv

if TYPE_CHECKING:
    from .app import HubServer
    from .engine import Engine

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Register the ``hub`` subcommand on ``python -m server``'s parser."""
    p = subparsers.add_parser(
        "hub",
        help="run the real-time hub (channels, presence, history; chat demo at /)",
        description="A real-time hub: JSON commands over WebSocket at /connection/websocket (also /ws), "
        "channels in namespaces, presence, history and recovery; the chat demo at GET /. "
        "Protocol: wsproto_lite/hub/PROTOCOL.md.",
    )
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; '' = every one)")
    p.add_argument("--port", type=int, default=None, help="default 8000")
    p.add_argument("--config", metavar="FILE", help="a .toml or .json file (see wsproto_lite/hub/config.py)")
    p.add_argument("--max-connections", type=int, default=None, help="beyond this: HTTP 503")
    p.add_argument(
        "--internal-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve the HTTP API and /metrics on this port instead of the public one (plain HTTP)",
    )
    p.add_argument(
        "--internal-host",
        default=None,
        metavar="HOST",
        help="the internal port's address (default 127.0.0.1; keep it on loopback or a private network)",
    )
    p.add_argument(
        "--engine",
        default=None,
        metavar="URL",
        help="'memory' (default: one process) or redis://host:port/db (rediss:// for TLS, password in the "
        "URL; several URLs separated by commas shard the channels; ?presence_ttl=SECONDS)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes sharing the port (SO_REUSEPORT), restarted if they die; default: one per core "
        "with a Redis engine, 1 without (several workers need a shared engine)",
    )
    p.add_argument(
        "--reuse-port", action="store_true", help="bind with SO_REUSEPORT (what the supervisor's workers do)"
    )
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # the supervisor's
    _add_backend_options(p)
    p.add_argument("--certfile", default=None, help="TLS certificate chain (PEM): serve wss:// and https://")
    p.add_argument("--keyfile", default=None, help="TLS private key (PEM), if not in --certfile")
    p.set_defaults(run=run)


def _add_backend_options(p: Any) -> None:
    """Where the hub asks the application (``--hook``) and tells it (``--webhook-url``)."""
    hooks = "connect, refresh, subscribe, sub_refresh, publish, rpc or send"
    p.add_argument("--hook", action="append", default=[], metavar="NAME=URL", help=f"POST {hooks} to URL")
    p.add_argument(
        "--webhook-url",
        action="append",
        default=None,
        metavar="URL",
        help="POST signed event webhooks here (repeatable; replaces the config file's webhooks.url); the "
        "secret from the config file or WSPROTO_HUB_WEBHOOK_SECRET",
    )


def _watch_parent(hub: HubServer, parent: int) -> None:
    """A worker whose supervisor is gone (killed without forwarding a signal) stops as on SIGTERM."""

    def check() -> None:
        if os.getppid() != parent:
            say("hub: the supervisor is gone, stopping", sys.stderr)
            hub.shutdown()
        else:
            hub.loop.call_later(1.0, check)

    hub.loop.call_later(1.0, check)


def make_engine(spec: str | None, config: HubConfig) -> Engine | None:
    """The engine an ``--engine`` value names (None: the default in-memory engine)."""
    if spec is None or spec == "memory":
        return None
    from .redis_engine import RedisEngine

    return RedisEngine(spec)


def _supervise(args: argparse.Namespace, workers: int, port: int) -> int:
    passed = ["--workers", "1", "--reuse-port", "--port", str(port), "--parent-pid", str(os.getpid())]
    for option, value in (
        ("--host", args.host),
        ("--config", args.config),
        ("--max-connections", args.max_connections),
        ("--internal-port", args.internal_port),
        ("--internal-host", args.internal_host),
        ("--engine", args.engine),
        ("--certfile", args.certfile),
        ("--keyfile", args.keyfile),
    ):
        if value is not None:
            passed += [option, str(value)]
    for url in args.webhook_url or ():
        passed += ["--webhook-url", url]
    say(f"supervisor: {workers} workers on port {port}, engine {args.engine}")
    return Supervisor(worker_argv(passed), workers).run()


class _Refused(Exception):
    """A command-line problem already worded for the user; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
        workers = _worker_count(args, config)
        if workers > 1:
            return _supervise(args, workers, config.port)
        hub = _start(args, config)
    except _Refused as exc:
        say(f"error: {exc}", sys.stderr)
        return exc.status
    fix_malloc_thresholds()  # a long-running process: RSS that comes back down (allocator.py)
    young_only()  # and no full-collection pauses: its objects are freed by reference counting (collector.py)
    full_every(hub.loop)  # but one an hour, the safety net for old cycles
    _announce(hub, config)
    if args.parent_pid is not None:
        _watch_parent(hub, args.parent_pid)
    hub.serve_forever()
    hub.loop.close()
    return 0


def _config(args: argparse.Namespace) -> HubConfig:
    """The config file (or the defaults), with the command line's options on top."""
    try:
        config = load_config(args.config) if args.config else HubConfig()
    except ConfigError as exc:
        raise _Refused(str(exc)) from None
    if args.host is not None:
        config.host = args.host
    if args.port is not None:
        config.port = args.port
    if args.max_connections is not None:
        config.max_connections = args.max_connections
    if args.internal_port is not None:
        config.internal_port = args.internal_port
    if args.internal_host is not None:
        config.internal_host = args.internal_host
    if args.certfile is not None:
        config.certfile = args.certfile
        config.keyfile = args.keyfile
    _backend_options(args, config)
    return config


def _backend_options(args: argparse.Namespace, config: HubConfig) -> None:
    """``--webhook-url`` and ``--hook NAME=URL``: where the hub tells and asks the application."""
    if args.webhook_url:
        config.webhooks.urls = list(args.webhook_url)
        try:
            config.webhooks.with_environment().check()
        except ValueError as exc:
            raise _Refused(str(exc)) from None
    for spec in args.hook:
        name, _, url = spec.partition("=")
        if name not in HOOKS:
            raise _Refused(f"--hook: unknown hook {name!r} (hooks: {', '.join(HOOKS)})")
        try:
            config.hooks.set_url(name, url)
        except ValueError as exc:
            raise _Refused(f"--hook: {exc}") from None


def _worker_count(args: argparse.Namespace, config: HubConfig) -> int:
    shared = args.engine is not None and args.engine != "memory"
    workers: int = args.workers if args.workers is not None else (os.cpu_count() or 1) if shared else 1
    if workers < 1:
        raise _Refused("--workers must be at least 1")
    if workers > 1 and not shared:
        raise _Refused(
            f"--workers {workers} needs an engine all workers share: add --engine redis://HOST:PORT/DB "
            "(the in-memory engine keeps channels, presence and history inside one process)"
        )
    if workers > 1 and (config.port == 0 or config.internal_port == 0):
        raise _Refused("--workers needs fixed ports (every worker binds the same ones)")
    return workers


def _start(args: argparse.Namespace, config: HubConfig) -> HubServer:
    """The engine and the hub's server, listening; the engine is closed again if the server fails."""
    from .app import HubServer
    from .auth import MissingExtra

    try:
        engine = make_engine(args.engine, config)
    except (ValueError, RuntimeError) as exc:
        raise _Refused(f"--engine: {exc}") from None
    try:
        return HubServer(config, engine=engine, reuse_port=args.reuse_port)
    except (MissingExtra, ValueError) as exc:
        failure = _Refused(str(exc))
    except OSError as exc:
        failure = _Refused(f"cannot listen on {config.host or '*'}:{config.port}: {exc.strerror or exc}", 1)
    if engine is not None:
        engine.close()
    raise failure


def _announce(hub: HubServer, config: HubConfig) -> None:
    secure = "s" if config.certfile else ""
    for host, port in hub.server.addresses:
        shown = f"[{host}]" if ":" in host else host
        say(
            f"hub listening: chat page http{secure}://{shown}:{port}/  "
            f"WebSocket ws{secure}://{shown}:{port}/connection/websocket"
        )
    namespaces = ", ".join(repr(n) if n else "(default)" for n in config.namespaces.namespaces)
    say(f"namespaces: {namespaces}; engine: {hub.engine.kind}")
    for line in exposure(hub):  # what is open: who gets in, who publishes where, origins, the API
        say(line)
