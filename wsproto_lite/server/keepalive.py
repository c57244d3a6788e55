"""The keepalive and close-timer policy of every transport: the selectors layer (``websocket.py``) and the
asyncio, uvicorn and trio adapters.

Sans-IO: no clock, no socket. Each transport arms its own timers with these numbers and does what this
module says when one fires:

- ``ping_interval`` seconds after the connection opened (and after each answered ping): send a ping whose
  payload comes from :meth:`PingTracker.ping`, unless the last one is still unanswered.
- no pong carrying that payload within ``ping_timeout``: send a close with :data:`KEEPALIVE_CLOSE_CODE`
  (1011) and :data:`KEEPALIVE_CLOSE_REASON`, and close the transport right after writing it, without
  waiting for a reply (a peer that does not answer pings will not answer the close either); the
  application sees the end as 1006 (no close frame received).
- our close frame is out (for any other reason): abort the transport when the peer neither answers it
  nor closes TCP within ``close_timeout`` (RFC 6455 §7.1.1).

The defaults below are the one declaration of these timers; every layer's settings refer to them.
"""

from __future__ import annotations

import os
from typing import Final

from wsproto_lite import CloseCode

__all__ = [
    "CLOSE_TIMEOUT",
    "KEEPALIVE_CLOSE_CODE",
    "KEEPALIVE_CLOSE_REASON",
    "PING_INTERVAL",
    "PING_TIMEOUT",
    "PingTracker",
]

PING_INTERVAL: Final = 20.0
"""Seconds between keepalive pings (``None`` in a layer's settings: no keepalive)."""
PING_TIMEOUT: Final = 20.0
"""Seconds a keepalive ping waits for its pong before the connection is failed (``None``: forever)."""
CLOSE_TIMEOUT: Final = 10.0
"""Seconds the peer has to answer our close frame (or close TCP) before the transport is aborted."""
KEEPALIVE_CLOSE_CODE: Final = CloseCode.INTERNAL_ERROR
"""Close code when a keepalive pong is missing (§7.4.1: a condition that prevents fulfilling requests)."""
KEEPALIVE_CLOSE_REASON: Final = "keepalive ping timeout"


class PingTracker:
    """The payload of the keepalive ping in flight, and the round-trip time of the last answered one.

    A random payload tells our ping's pong from the peer's unsolicited pongs (§5.5.3).
    """

    __slots__ = ("_payload", "sent_at", "latency")

    def __init__(self) -> None:
        self._payload: bytes | None = None
        self.sent_at = 0.0
        """When the last keepalive ping was sent (0.0: none yet)."""
        self.latency = 0.0
        """Seconds between the last answered keepalive ping and its pong."""

    @property
    def waiting(self) -> bool:
        """A keepalive ping is out and unanswered."""
        return self._payload is not None

    def ping(self, now: float) -> bytes:
        """The payload of a new keepalive ping sent at ``now`` (the previous one is forgotten)."""
        self._payload = os.urandom(4)
        self.sent_at = now
        return self._payload

    def pong(self, payload: bytes, now: float) -> bool:
        """A pong arrived at ``now``: True if it answers the keepalive ping in flight."""
        if self._payload is None or payload != self._payload:
            return False
        self._payload = None
        self.latency = now - self.sent_at
        return True

    def forget(self) -> None:
        """No ping is in flight any more (the connection is closing)."""
        self._payload = None
