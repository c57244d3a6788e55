"""Parsing ws:// and wss:// URLs."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import InvalidURL

__all__ = ["WSURL", "parse_url"]


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
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


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
