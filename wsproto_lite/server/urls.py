"""Parsing ws:// and wss:// URLs."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import InvalidURL

__all__ = ["WSURL", "host_header", "parse_url"]


@dataclass(frozen=True)
class WSURL:
    """The parts of a WebSocket URL the client needs."""

    secure: bool
    host: str
    port: int
    target: str
    """Path and query: the request target."""

    @property
    def host_header(self) -> str:
        """Value of the ``Host`` header (port omitted when it is the default)."""
        return host_header(self.host, self.port, self.secure)


def host_header(host: str, port: int, secure: bool) -> str:
    """The ``Host`` header for ``host:port`` (IPv6 literals bracketed, the scheme's default port omitted)."""
    host = f"[{host}]" if ":" in host else host
    return host if port == (443 if secure else 80) else f"{host}:{port}"


def parse_url(url: str) -> WSURL:
    """Split ``ws[s]://host[:port]/path?query`` (RFC 6455 §3); fragments are refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise InvalidURL(f"not a ws:// or wss:// URL: {url!r}")
    if parts.fragment or "#" in url:
        raise InvalidURL(f"a WebSocket URL has no fragment: {url!r}")
    if not parts.hostname:
        raise InvalidURL(f"no host in {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"bad port in {url!r}") from exc
    secure = parts.scheme == "wss"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WSURL(secure, parts.hostname, port or (443 if secure else 80), target)
