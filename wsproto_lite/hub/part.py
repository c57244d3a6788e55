"""What every room of the hub shares: a weak reference back to the :class:`~wsproto_lite.hub.hub.Hub`.

The hub owns its rooms (the channel registry, the connections' sending and closing, the replies, the
commands, the control channel); a room reaches the hub through a weak reference, so the two never form a
reference cycle and a stopped hub is freed by reference counting alone.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["HubPart"]


class HubPart:
    """A part of the hub that refers back to it weakly."""

    def __init__(self, hub: Hub) -> None:
        self._hub = weakref.ref(hub)

    @property
    def hub(self) -> Hub:
        hub = self._hub()
        if hub is None:  # pragma: no cover - the hub owns its parts
            raise RuntimeError("the hub is gone")
        return hub
