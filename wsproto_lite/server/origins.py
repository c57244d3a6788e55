"""Which pages may open a WebSocket: the upgrade's ``Origin`` against an allow-list and the server's own.

A browser sends ``Origin`` with every WebSocket upgrade, and a page cannot change it (RFC 6455 §4.1 step 8,
§10.2): it is what tells a page of the server's own site from a page of another site that makes the
visitor's browser connect with the visitor's cookies (cross-site WebSocket hijacking). A client that is
not a browser sends no ``Origin`` (or any it likes): it has no visitor's cookies to abuse, so an upgrade
without one is not refused here. ``Origin: null`` (sandboxed frames, ``file:`` pages) matches nothing.

Origins are compared as RFC 6454 tuples: scheme and host lowercased, the default port made explicit.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

__all__ = ["Origin", "parse_origin", "origin_allowed"]

Origin = tuple[str, str, int]
"""(scheme, host, port): ``("https", "app.example.com", 443)``."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(text: str) -> Origin | None:
    """``scheme://host[:port]`` as a tuple; None for ``null`` and anything that is not an http(s) origin."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username is not None:
        return None
    return (scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS[scheme])


def _own_origin(host_header: str, secure: bool) -> Origin | None:
    """The origin of a page served by this server: the ``Host`` header and the connection's scheme."""
    scheme = "https" if secure else "http"
    return parse_origin(f"{scheme}://{host_header}") if host_header else None


def origin_allowed(
    origin: str | None,
    *,
    allowed: Collection[str] | None,
    same_origin: bool,
    host: str,
    secure: bool,
) -> bool:
    """Whether an upgrade with this ``Origin`` header may proceed.

    ``allowed`` None and ``same_origin`` False: every origin (no check). Otherwise the origin must be one
    of ``allowed`` or, with ``same_origin``, the server's own (``host``: the request's ``Host`` header;
    ``secure``: the connection is TLS). An upgrade without ``Origin`` is always allowed (see above).
    """
    if origin is None or (allowed is None and not same_origin):
        return True
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    if same_origin and parsed == _own_origin(host, secure):
        return True
    return allowed is not None and any(parsed == parse_origin(a) for a in allowed)
