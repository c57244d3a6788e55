"""A running hub: the WebSocket server, the hub handler, the browser demo over plain HTTP, shutdown; the HTTP
API and ``/metrics`` on the same port or, with ``internal_port``, on an internal address of their own."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

from wsproto_lite import HTTPRequest

from ..server.handler import Handler, HTTPResponse, Reject
from ..server.loop import EventLoop
from ..server.options import Options
from ..server.tls import server_context
from ..server.ws_server import WebSocketServer
from .auth import Authenticator
from .config import ConfigError, HubConfig, load_config
from .engine import Engine
from .hook_http import http_hooks
from .http_api import HubHTTP, core_error_body
from .hub import Authenticate, Hub
from .memory import MemoryEngine
from .protocol import DisconnectCode

__all__ = ["HubServer", "StaticFiles", "hub_of", "io_options"]

logger = logging.getLogger("wsproto_lite.hub")

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}


class StaticFiles:
    """``GET /`` -> the chat page, ``/app.js``, ``/health``; files read once, at start.

    ``/health`` is 200 ``ok`` or, while the engine is degraded (its backend unreachable), 503 with
    the engine's report as JSON.
    """

    def __init__(self, health: Callable[[], dict[str, Any]] | None = None) -> None:
        self.health = health
        self.files: dict[str, tuple[str, bytes]] = {}
        static = resources.files(__package__).joinpath("static")
        for item in static.iterdir():
            suffix = "." + item.name.rpartition(".")[2]
            if suffix in _TYPES:
                self.files["/" + item.name] = (_TYPES[suffix], item.read_bytes())
        self.files["/"] = self.files["/index.html"]

    def __call__(self, request: HTTPRequest) -> HTTPResponse:
        if request.method not in ("GET", "HEAD"):
            return HTTPResponse(405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")], b"GET only\n")
        if request.path == "/health":
            report = self.health() if self.health is not None else {"ok": True}
            if report.get("ok", True):
                return HTTPResponse(200, [("Content-Type", "text/plain")], b"ok\n")
            body = json.dumps(report).encode() + b"\n"
            return HTTPResponse(503, [("Content-Type", "application/json")], body)
        found = self.files.get(request.path)
        if found is None:
            return HTTPResponse(404, [("Content-Type", "text/plain")], b"not found\n")
        content_type, body = found
        return HTTPResponse(200, [("Content-Type", content_type), ("Cache-Control", "no-cache")], body)


def _not_found(request: HTTPRequest) -> HTTPResponse:
    return HTTPResponse(404, [("Content-Type", "text/plain")], b"not found\n")


class _NoWebSocket(Handler):
    """The internal address serves plain HTTP only: every upgrade is refused."""

    def handshake(self, conn: Any, request: Any) -> Reject:
        return Reject(404, body=b"no WebSocket here: the hub's WebSocket is on its public port\n")


def hub_of(config: HubConfig, engine: Engine | None = None, authenticate: Authenticate | None = None) -> Hub:
    """The hub a config describes (on the in-memory engine unless ``engine`` is given), not started."""
    if engine is None:
        engine = MemoryEngine(max_history_bytes=config.max_history_bytes, max_streams=config.max_streams)
    return Hub(
        config.namespaces,
        engine=engine,
        limits=config.limits,
        authenticate=authenticate,
        auth=Authenticator(config.auth.with_environment()),
        rate_limits=config.rate_limits,
        webhooks=config.webhooks,
        hooks=http_hooks(config.hooks),
    )


def io_options(config: HubConfig) -> Options:
    """The connection options of a hub's transport (our server, ``asgi.py``): limits, keepalive, origins,
    and the bounds of what is queued per connection."""
    limits = config.limits
    return Options(
        max_message_size=config.frame_limit(),
        compression=config.compression,
        ping_interval=limits.ping_interval,
        ping_timeout=limits.ping_interval,
        # over queue_limit the I/O layer stops reading (and running) the connection's commands;
        # the hub disconnects one that stays over it, or would go past twice it (bound.py), with
        # a push that says why: the I/O layer's own limit sits above, for the push and the close
        write_high_water=max(limits.queue_limit, 64 * 1024),
        write_hard_limit=2 * limits.queue_limit + config.frame_limit(),
        max_connections=config.max_connections,
        allowed_origins=set(config.allowed_origins) if config.allowed_origins is not None else None,
        same_origin=config.checks_origin(),  # the origin rule (config.py): 403 at the upgrade
        http_error_body=core_error_body,  # a body over the core's limit: the API's JSON error too
    )


class HubServer:
    """``HubServer(config).serve_forever()``; in tests ``HubServer(config, loop=loop)`` on port 0."""

    def __init__(
        self,
        config: HubConfig | None = None,
        *,
        loop: EventLoop | None = None,
        engine: Engine | None = None,
        authenticate: Authenticate | None = None,
        reuse_port: bool = False,
    ) -> None:
        """``reuse_port``: several processes listen on the same port (``SO_REUSEPORT``: the kernel
        spreads the connections over them); the supervisor's workers use it."""
        self.config = config = config or HubConfig()
        self.hub = hub_of(config, engine, authenticate)
        self.engine = self.hub.engine
        self.server = self._public_server(config, loop, reuse_port)
        self.loop = self.server.loop
        self.internal: WebSocketServer | None = None
        """The internal address's server (``internal_port``): the HTTP API and ``/metrics``."""
        if config.internal_port is not None:
            try:
                self.internal = self._internal_server(config, config.internal_port, reuse_port)
            except BaseException:
                self.server.close()
                raise
        self.hub.start(self.loop)

    def _public_server(self, config: HubConfig, loop: EventLoop | None, reuse_port: bool) -> WebSocketServer:
        """The WebSocket port: the hub, static files, and (without an internal address) the HTTP API."""
        return WebSocketServer(
            self.hub,
            host=config.host or None,
            port=config.port,
            options=io_options(config),
            http_handler=HubHTTP(
                self.hub,
                StaticFiles(self.engine.health),
                serve_api=config.internal_port is None,
                metrics_public=config.metrics_public,
            ),
            loop=loop,
            reuse_port=reuse_port,
            ssl_context=server_context(config.certfile, config.keyfile) if config.certfile else None,
        )

    def _internal_server(self, config: HubConfig, port: int, reuse_port: bool) -> WebSocketServer:
        """The internal address (on the same loop): the HTTP API and ``/metrics`` only, no WebSocket."""
        return WebSocketServer(
            _NoWebSocket(),
            host=config.internal_host or None,
            port=port,
            options=Options(
                compression=False,
                max_connections=config.max_connections,
                http_error_body=core_error_body,
            ),
            http_handler=HubHTTP(self.hub, _not_found, metrics_public=config.metrics_public),
            loop=self.loop,
            reuse_port=reuse_port,
        )

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def internal_port(self) -> int | None:
        """The internal address's port (the HTTP API and ``/metrics``), None without one."""
        return self.internal.port if self.internal is not None else None

    def shutdown(self, timeout: float = 5.0, on_done: Callable[[], None] | None = None) -> None:
        """Loop thread: every client gets ``disconnect`` 4000 (reconnect and recover), then the server stops.

        ``on_done()`` runs once every connection is gone (at most ``timeout`` s later).
        """
        self.hub.disconnect_all(DisconnectCode.SHUTDOWN, "shutdown")
        if self.internal is not None:
            self.internal.close()

        def stop() -> None:
            self.hub.stop()
            if on_done is not None:
                on_done()

        def done() -> None:  # the closed connections' webhook events decided (Redis), then stop
            if self.hub.webhooks is not None:
                self.hub.webhooks.after_decisions(self.loop, stop)
            else:
                stop()

        self.server.shutdown(timeout, code=DisconnectCode.SHUTDOWN, reason="shutdown", on_done=done)

    def reload_api_keys(self) -> int:
        """SIGHUP: API keys from the config file again plus ``WSPROTO_HUB_API_KEYS``; connections made
        with a key no longer listed are disconnected.  Returns how many were."""
        auth = self.config.auth
        if self.config.path is not None:
            try:
                auth = load_config(self.config.path).auth
            except ConfigError as exc:
                logger.error("SIGHUP: %s (API keys unchanged)", exc)
                return 0
        keys = auth.with_environment().api_keys
        revoked = self.hub.control.revoke_api_keys(keys)
        logger.info("SIGHUP: %d API keys, %d connections with revoked keys closed", len(set(keys)), revoked)
        return revoked

    def close(self) -> None:
        """Drop everything at once (tests)."""
        self.hub.stop()
        self.server.close()
        if self.internal is not None:
            self.internal.close()

    def serve_forever(self) -> None:
        """Run until SIGINT/SIGTERM (then :meth:`shutdown`; a second signal stops at once)."""
        import signal

        signals = {"count": 0}

        def on_signal() -> None:
            signals["count"] += 1
            if signals["count"] == 1:
                logger.info("signal: disconnecting %d clients", len(self.hub.sessions))
                self.shutdown()
            else:
                self.loop.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(signum, on_signal)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload_api_keys)
        try:
            self.server.serve_forever(handle_signals=False)
            webhooks = self.hub.webhooks
            if signals["count"] == 1 and webhooks is not None and webhooks.deciding:
                # the shutdown closed connections whose webhook events Redis is deciding: the loop
                # runs until they are (and the hub stopped, its events sent), 2 s at most
                webhooks.after_decisions(self.loop, self.loop.stop)
                self.loop.run_forever()
        finally:
            self.loop.remove_signal_handlers()
