"""One bound on everything queued for a connection: replies, pushes and fan-out alike.

``limit`` (``HubLimits.queue_limit``) is the bound: what a connection has queued (the bytes its socket
has not taken, plus replies waiting in its outbox for an earlier one).  Over it the connection is *over*:
the I/O layer stops reading it and leaves the commands already read unparsed (its high watermark is the
same bound), and a connection that stays over for ``timeout`` seconds is disconnected as slow.  Nothing is
queued beyond ``hard`` (twice the bound): a frame that would go past it disconnects the connection at
once.  A reply is at most ``limit`` characters, so one that fits when the connection is under the bound
always fits under ``hard``; larger ones are refused (error 106) or trimmed, never queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .engine import Publication

__all__ = ["QueueBound", "publications_size", "newest_within"]


@dataclass(frozen=True, slots=True)
class QueueBound:
    limit: int
    """Bytes queued for a connection over which it is slow (reading stops, the slow timer runs)."""
    timeout: float
    """Seconds a connection may stay over ``limit`` before it is disconnected as slow."""

    @property
    def hard(self) -> int:
        """Never queued beyond this: a frame that would go past it disconnects the connection at once."""
        return 2 * self.limit

    def admits(self, queued: int, size: int) -> bool:
        """True when ``size`` more bytes may be queued on a connection that has ``queued``."""
        return queued + size <= self.hard

    def over(self, queued: int) -> bool:
        return queued > self.limit

    @property
    def max_reply(self) -> int:
        """Characters of one reply at most (the bound itself)."""
        return self.limit


def publications_size(publications: Sequence[Publication]) -> int:
    """Characters the publications take in a reply's ``"publications"`` list (with their commas)."""
    return sum(len(p.json) + 1 for p in publications)


def newest_within(publications: Sequence[Publication], budget: int) -> Sequence[Publication]:
    """The newest publications (a list oldest first) whose JSON fits in ``budget`` characters."""
    total = 0
    start = len(publications)
    while start > 0:
        size = len(publications[start - 1].json) + 1
        if total + size > budget:
            break
        total += size
        start -= 1
    return publications[start:]
