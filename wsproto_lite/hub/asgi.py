"""The hub as an ASGI application: under uvicorn, hypercorn or daphne, alone or mounted inside an app.

::

    from fastapi import FastAPI
    from wsproto_lite.hub.asgi import HubASGI

    hub = HubASGI(identify=lambda scope: scope["session"].get("user"))  # the app's own session
    app = FastAPI()
    app.mount("/hub", hub)  # ws://host/hub/connection/websocket (and /hub/ws)

    @app.post("/say")
    async def say(text: str) -> dict:
        await hub.publish("chat:lobby", {"text": text})  # in-process: no HTTP API, no API key
        return {}

The WebSocket paths are the hub's (``/connection/websocket``, ``/ws``) below wherever the app is mounted:
Starlette's ``Mount`` (``root_path``), Django Channels' ``URLRouter`` (``path_remaining``) and a server's
``--root-path`` are all understood.  Each connection is an :class:`~wsproto_lite.hub.aio.AsyncConnection`: the
frames the hub builds go out through ``websocket.send`` (text), its closes through ``websocket.close`` with
code and reason, and what is queued per connection is bounded as on the hub's own server (``aio.py``).

``identify(scope)`` (plain or ``async``) authenticates a connection from the application's session:
it returns the user id (``""``: anonymous), an :class:`~wsproto_lite.hub.auth.Identity` (grants, expiry), or
None to refuse the connection (403).  Sessions ride on cookies, which a browser sends from any page: with
``identify`` set and no ``allowed_origins`` in the config, only same-origin pages (``Origin`` matching
``Host``) and clients that send no ``Origin`` may connect.  The hub's own credentials (a JWT in the
``connect`` command, an API key) keep working next to it.

The hub starts on the first event loop that uses it (the ASGI ``lifespan`` startup, or the first
connection or publish when mounted: Starlette and Channels do not pass ``lifespan`` to mounted apps) and
stays on that loop; ``await hub.shutdown()`` in the application's own shutdown gives every client the
``disconnect`` push 4000 (reconnect and recover).  ``http=True`` also serves the hub's HTTP side below the
mount point: ``/api/*`` (API key), ``/metrics``, ``/healthz`` and the chat demo page.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from wsproto_lite import CloseCode, HTTPRequest, Request

from ..server.handler import Accept, DeferredResponse, HTTPResponse, Reject
from ..server.origins import origin_allowed
from .aio import AsyncConnection, PeerClosed, PreparedTexts
from .app import StaticFiles, hub_of, io_options
from .auth import ANONYMOUS, Identity
from .config import HubConfig
from .engine import Engine, Publication, Reply
from .http_api import HubHTTP
from .hub import Hub
from .protocol import DisconnectCode

__all__ = ["HubASGI", "Identify", "route_path", "upgrade_request"]

logger = logging.getLogger("wsproto_lite.hub.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

IdentityLike = str | Identity | None
#: ``identify(scope)``: the connection's user from the application's session, or None to refuse it.
Identify = Callable[[Scope], "IdentityLike | Awaitable[IdentityLike]"]

_REFUSED = Reject(403, [("Content-Type", "text/plain")], b"forbidden\n")
_STOPPED = Reject(503, [("Content-Type", "text/plain"), ("Retry-After", "5")], b"the hub is stopping\n")


def route_path(scope: Scope) -> str:
    """The request's path below the mount point: what the hub routes on."""
    remaining = scope.get("path_remaining")
    if remaining is not None:  # Django Channels' URLRouter matched a prefix: the rest, without its "/"
        return "/" + str(remaining).lstrip("/")
    path = str(scope.get("path") or "/")
    root = str(scope.get("root_path") or "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        path = path[len(root) :] or "/"  # Starlette's Mount, a server's --root-path: the full path stays
    return path


def _headers(scope: Scope) -> tuple[tuple[str, str], ...]:
    return tuple(
        (bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in scope.get("headers", ())
    )


def _target(scope: Scope) -> str:
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    path = route_path(scope)
    return f"{path}?{query}" if query else path


def upgrade_request(scope: Scope) -> Request:
    """The core's record of an upgrade request (what the hub reads: path, query, headers, cookies)."""
    return Request(
        method="GET",
        target=_target(scope),
        headers=_headers(scope),
        subprotocols=tuple(scope.get("subprotocols", ())),
    )


def _address(client: Any) -> tuple[Any, ...] | None:
    return tuple(client) if client else None  # daphne gives a list, uvicorn a tuple


class HubASGI:
    """An ASGI application serving the hub's WebSocket paths (and, with ``http=True``, its HTTP side)."""

    #: Django Channels' ``URLRouter``: route on a prefix (``path("hub/", hub)``), not the whole path.
    _path_routing = True

    def __init__(
        self,
        hub: Hub | None = None,
        *,
        config: HubConfig | None = None,
        engine: Engine | None = None,
        identify: Identify | None = None,
        http: bool = False,
    ) -> None:
        """``hub``: a hub built elsewhere (else one from ``config``, on ``engine`` or in memory)."""
        if config is None:
            config = HubConfig() if hub is None else HubConfig(limits=hub.limits)  # its queue bounds
        self.config = config
        self.hub = hub if hub is not None else hub_of(config, engine)
        self.options = io_options(config)
        self.identify = identify
        static = StaticFiles(self.hub.engine.health)
        self.http = HubHTTP(self.hub, static, metrics_public=config.metrics_public) if http else None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._texts = PreparedTexts()
        self._stopping = False
        self._live = 0  # connections inside run()
        self._gone: list[asyncio.Future[None]] = []  # shutdown() waiting for the last one to end

    # -- the application's side ------------------------------------------------------------------

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the hub on the running loop (once; the lifespan or the first use does it)."""
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
            self.hub.start(loop)
        elif self.loop is not loop:
            raise RuntimeError("this HubASGI runs on another event loop: one hub per loop")
        return loop

    async def publish(self, channel: str, data: Any) -> Publication:
        """Publish from the application (an async endpoint): to every subscriber, on every node.

        Raises ``HubError`` (102/107) for a bad channel or data that is not JSON, (108) when the engine
        is unavailable; returns the publication (its offset and epoch in a channel with history).
        """
        self.start()
        return await _settled(self.hub.publish(channel, data))

    def publish_threadsafe(self, channel: str, data: Any) -> concurrent.futures.Future[Publication]:
        """:meth:`publish` from another thread (a sync view in a thread pool), once the hub has started."""
        if self.loop is None:
            raise RuntimeError("the hub has not started yet (no lifespan, connection or publish so far)")
        return asyncio.run_coroutine_threadsafe(self.publish(channel, data), self.loop)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Every client gets the ``disconnect`` push 4000 (reconnect and recover) and is closed; once they
        are gone (``timeout`` at most) the hub stops.  New connections are refused from now on."""
        if self.loop is None or self._stopping:
            self._stopping = True
            return
        self._stopping = True
        self.hub.disconnect_all(DisconnectCode.SHUTDOWN, "shutdown")
        if self._live:
            gone = self.loop.create_future()
            self._gone.append(gone)
            try:
                await asyncio.wait_for(gone, timeout)
            except TimeoutError:
                logger.warning("shutdown: %d connections still open after %ss", self._live, timeout)
        if self.hub.webhooks is not None:  # the closed connections' events decided (Redis), then stop
            decided: asyncio.Future[None] = self.loop.create_future()
            self.hub.webhooks.after_decisions(self.loop, lambda: decided.set_result(None))  # called once
            await decided
        self.hub.stop()

    # -- ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- WebSocket -------------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = self.start()
        if (await receive())["type"] != "websocket.connect":
            return
        request = upgrade_request(scope)
        send_text, send_close = _text_sender(send), _closer(send)
        conn = AsyncConnection(
            self.hub,
            self.options,
            request,
            _address(scope.get("client")),
            send_text=send_text,
            send_close=send_close,
            texts=self._texts,
            loop=loop,
        )
        opened = False
        try:
            decision = await self._admit(conn, request, scope)
            if isinstance(decision, Reject):
                await _deny(scope, send, decision)
                return
            await _accept(send, decision)
            opened = True
            self._live += 1
            try:
                await conn.run(_reader(receive))
            finally:
                self._connection_gone()
        finally:
            if not opened:  # what the hub kept from the handshake (verified credentials) goes now
                self.hub.on_close(conn, CloseCode.ABNORMAL, "")

    async def _admit(self, conn: AsyncConnection, request: Request, scope: Scope) -> Accept | Reject:
        """The hub's own handshake rules, then the application's ``identify``."""
        if self._stopping:
            return _STOPPED
        if not self._origin_allowed(request, scope):
            return Reject(403, [("Content-Type", "text/plain")], b"origin not allowed\n")
        limit = self.options.max_connections
        if limit is not None and len(self.hub.sessions) >= limit:
            return Reject(503, [("Retry-After", "5")], b"too many connections\n")
        try:
            decision = self.hub.handshake(conn, request)
        except Exception:
            logger.exception("handshake hook raised")
            return Reject(500)
        if isinstance(decision, Reject):
            return decision
        if self.identify is not None:
            try:
                identity = await _identity(self.identify(scope))
            except Exception:
                logger.exception("identify(scope) raised: connection refused")
                return Reject(500)
            if identity is None:
                return _REFUSED
            self.hub.identify(conn, identity)
        return Accept() if decision is None else decision

    def _origin_allowed(self, request: Request, scope: Scope) -> bool:
        """The hub's origin rule (``server/origins.py``); with ``identify`` always same-origin at least: a
        session rides on cookies, which a browser sends from any site's page."""
        return origin_allowed(
            request.origin,
            allowed=self.options.allowed_origins,
            same_origin=self.options.same_origin or self.identify is not None,
            host=request.host,
            secure=scope.get("scheme") in ("wss", "https"),
        )

    def _connection_gone(self) -> None:
        self._live -= 1
        if not self._live:
            waiting, self._gone = self._gone, []
            for gone in waiting:
                if not gone.done():
                    gone.set_result(None)

    # -- HTTP ------------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.http
        if handler is None:
            await _respond(send, HTTPResponse(404, body=b"not found\n"))
            return
        self.start()
        body = await _read_body(receive, handler.max_request + 1)  # more is refused (413) anyway
        if body is None:
            return  # the client left
        method = str(scope.get("method", "GET"))
        request = HTTPRequest(method, _target(scope), _headers(scope), body)
        try:
            response = handler(request)
        except Exception:
            logger.exception("HTTP handler raised")
            response = HTTPResponse(500, body=b"internal error\n")
        if isinstance(response, DeferredResponse):
            response = await _answered(response, self.options.handshake_timeout)
        await _respond(send, response, head=method == "HEAD")


async def _identity(value: IdentityLike | Awaitable[IdentityLike]) -> Identity | None:
    if inspect.isawaitable(value):
        value = await value
    if value is None or isinstance(value, Identity):
        return value
    if not isinstance(value, str):
        raise TypeError(f"identify(scope) returned {type(value).__name__}, not a user id, Identity or None")
    return Identity(user=value, anonymous=False) if value else ANONYMOUS


async def _settled(reply: Reply[Publication]) -> Publication:
    """The reply's value (or its error raised), once the engine has answered."""
    if not reply.done:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        reply.observe(lambda _: _set(waiter, None))
        await waiter
    return reply.result()


def _set(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # cancelled: the awaiting request or publish is gone
        future.set_result(value)


async def _deny(scope: Scope, send: Send, decision: Reject) -> None:
    """An HTTP response instead of the upgrade, where the server can send one; else a plain 403."""
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in decision.headers]
        await send({"type": "websocket.http.response.start", "status": decision.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": decision.body})
    else:
        await send({"type": "websocket.close"})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or its first ``limit`` bytes and more; None when the client disconnected."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = bytes(message.get("body", b""))
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit or not message.get("more_body", False):
            return b"".join(chunks)


async def _answered(deferred: DeferredResponse, timeout: float | None) -> HTTPResponse:
    waiter: asyncio.Future[HTTPResponse] = asyncio.get_running_loop().create_future()
    deferred.then(lambda response: _set(waiter, response))
    try:
        return await asyncio.wait_for(waiter, timeout)
    except TimeoutError:
        return HTTPResponse(
            503, [("Content-Type", "text/plain"), ("Retry-After", "1")], b"no answer in time\n"
        )


async def _respond(send: Send, response: HTTPResponse, head: bool = False) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else response.body})


def _text_sender(send: Send) -> Callable[[str | bytes], Awaitable[None]]:
    """``send_text`` for the connection: a text or binary ``websocket.send``."""

    async def send_text(message: str | bytes) -> None:
        if isinstance(message, str):
            await send({"type": "websocket.send", "text": message})
        else:
            await send({"type": "websocket.send", "bytes": message})

    return send_text


def _closer(send: Send) -> Callable[[int, str], Awaitable[None]]:
    """``send_close`` for the connection: ``websocket.close`` with the code, or 1000 where refused."""

    async def send_close(code: int, reason: str) -> None:
        # a plain int: the hub's codes are IntEnum members, which daphne (autobahn) refuses
        try:
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
        except Exception:
            if code == CloseCode.NORMAL:
                raise
            # a server that takes only some codes (daphne: 1000 and 3000-4999): closed all the same
            logger.debug("the ASGI server refused close code %d: closing with 1000", code)
            await send({"type": "websocket.close", "code": int(CloseCode.NORMAL), "reason": reason})

    return send_close


def _reader(receive: Receive) -> Callable[[], Awaitable[str | bytes | PeerClosed]]:
    """The connection's next message, or ``PeerClosed`` once the peer went (other events skipped)."""

    async def next_message() -> str | bytes | PeerClosed:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                return text if text is not None else bytes(message.get("bytes") or b"")
            if kind == "websocket.disconnect":
                code = int(message.get("code") or CloseCode.NO_STATUS)
                return PeerClosed(code, str(message.get("reason") or ""))

    return next_message


async def _accept(send: Send, decision: Accept) -> None:
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": decision.subprotocol,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in decision.headers],
        }
    )
