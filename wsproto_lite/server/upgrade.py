"""The server's answer to an opening request: capacity, origin, the handshake hook; or to plain HTTP.

Decisions only: the connection (:mod:`.websocket`) hands them to its core, which writes the response.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wsproto_lite import HTTPRequest, Request

from .handler import UPGRADE_REQUIRED, Accept, DeferredResponse, HTTPHandler, HTTPResponse, Reject
from .origins import origin_allowed

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["http_answer", "upgrade_decision"]

logger = logging.getLogger("wsproto_lite.server.upgrade")


def upgrade_decision(conn: WebSocket, request: Request, *, over_capacity: bool) -> Accept | Reject:
    """Accept or refuse ``conn``'s upgrade ``request``: 503 over capacity, 403 for a foreign origin, else
    the handler's ``handshake`` hook (500 if it raises; accepted when it answers None)."""
    if over_capacity:
        return Reject(503, [("Retry-After", "5")], b"too many connections\n")
    if not _origin_allowed(conn, request):
        return Reject(403, body=b"origin not allowed\n")
    try:
        decision = conn.handler.handshake(conn, request)
    except Exception:
        logger.exception("handshake hook raised")
        return Reject(500)
    return Accept() if decision is None else decision


def _origin_allowed(conn: WebSocket, request: Request) -> bool:
    options = conn.options
    secure = conn.transport is not None and conn.transport.get_extra_info("ssl_object") is not None
    return origin_allowed(
        request.origin,
        allowed=options.allowed_origins,
        same_origin=options.same_origin,
        host=request.host,
        secure=secure,
    )


def http_answer(
    request: HTTPRequest, *, over_capacity: bool, http_handler: HTTPHandler | None
) -> HTTPResponse | DeferredResponse:
    """The answer to a plain HTTP request: 503 over capacity, 426 without an HTTP handler, else the
    handler's (500 if it raises)."""
    if over_capacity:
        return HTTPResponse(503, [("Retry-After", "5")], b"too many connections\n")
    if http_handler is None:
        return UPGRADE_REQUIRED
    try:
        return http_handler(request)
    except Exception:
        logger.exception("http handler raised")
        return HTTPResponse(500, body=b"internal error\n")
