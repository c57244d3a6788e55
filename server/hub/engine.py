"""The Engine interface: pub/sub between hub nodes, presence, history with epoch + offset.

The hub (``hub.py``) keeps only local state (which connection subscribed to what); everything a second
hub node would need to share goes through an Engine.  ``memory.py`` is the in-memory engine (one
process); a Redis engine (the scale-out issue) implements the same methods.

Delivery: the hub calls :meth:`Engine.start` once with its fan-out function; the engine calls it for
every publication to a channel this node showed interest in (:meth:`Engine.node_subscribe`), whichever
node published it.  The in-memory engine calls it synchronously from :meth:`Engine.publish`.

All methods run in the hub's loop thread and return at once.  (A networked engine answers from its own
buffers or cache and replicates in the background; its calls must not block the loop.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from .namespaces import NamespaceOptions
from .protocol import Position, publication_json

__all__ = ["Engine", "Publication", "ClientInfo", "HistoryResult", "RecoveryResult", "Deliver"]


class Publication:
    """One message published to a channel, encoded once.

    ``json`` is the publication object of the wire protocol; ``offset`` is None when the channel's
    namespace keeps no history.
    """

    __slots__ = ("channel", "offset", "epoch", "json", "expires", "size")

    def __init__(
        self,
        channel: str,
        offset: int | None,
        data_json: str,
        info_json: str | None,
        *,
        epoch: str = "",
        expires: float = 0.0,
    ) -> None:
        self.channel = channel
        self.offset = offset
        self.epoch = epoch
        self.json = publication_json(channel, offset, data_json, info_json)
        self.expires = expires
        self.size = len(self.json) + 120  # bytes held: the text plus this object, roughly

    def __repr__(self) -> str:
        return f"Publication({self.json})"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who a connection is, as presence and publications show it."""

    client: str
    user: str
    name: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"client": self.client, "user": self.user, "name": self.name}


@dataclass(frozen=True, slots=True)
class HistoryResult:
    publications: list[Publication]
    position: Position


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    publications: list[Publication]
    position: Position
    recovered: bool
    """True when every publication after the client's position is in ``publications``."""


#: The hub's fan-out: called with every publication to a channel of interest.
Deliver = Callable[[Publication], None]


class Engine(ABC):
    """Pub/sub, presence and history, shared by every hub node that uses the same backend."""

    @abstractmethod
    def start(self, deliver: Deliver) -> None:
        """Begin delivering publications to ``deliver``."""

    @abstractmethod
    def close(self) -> None:
        """Stop delivering; drop references to the hub."""

    # -- pub/sub -------------------------------------------------------------------------------

    @abstractmethod
    def node_subscribe(self, channel: str) -> None:
        """This node has subscribers on ``channel`` (or on the wildcard pattern ``ns:prefix*``)."""

    @abstractmethod
    def node_unsubscribe(self, channel: str) -> None:
        """This node's last subscriber of ``channel`` left."""

    @abstractmethod
    def publish(
        self, channel: str, data_json: str, info_json: str | None, options: NamespaceOptions
    ) -> Publication:
        """Store (when ``options.history``) and deliver; returns the publication (offset assigned)."""

    # -- history -------------------------------------------------------------------------------

    @abstractmethod
    def position(self, channel: str, options: NamespaceOptions) -> Position:
        """The channel's epoch and latest offset (``Position("", 0)`` without history)."""

    @abstractmethod
    def history(
        self,
        channel: str,
        options: NamespaceOptions,
        *,
        since: Position | None,
        limit: int | None,
        reverse: bool,
    ) -> HistoryResult:
        """Held publications: after ``since`` (or before it with ``reverse``), at most ``limit``.

        Raises ``HubError(112)`` when ``since`` is in another epoch or when publications right after
        it are no longer held (never a silent gap).
        """

    @abstractmethod
    def recover(self, channel: str, options: NamespaceOptions, since: Position) -> RecoveryResult:
        """Publications missed since ``since``; ``recovered`` False when some are no longer held."""

    # -- presence ------------------------------------------------------------------------------

    @abstractmethod
    def add_presence(self, channel: str, info: ClientInfo) -> None:
        """``info.client`` is subscribed to ``channel`` (idempotent)."""

    @abstractmethod
    def remove_presence(self, channel: str, client: str) -> None:
        """``client`` left ``channel`` (idempotent)."""

    @abstractmethod
    def presence(self, channel: str) -> list[ClientInfo]:
        """Every client subscribed to ``channel``."""

    @abstractmethod
    def presence_stats(self, channel: str) -> tuple[int, int]:
        """(clients, distinct users) on ``channel``; a user on several connections counts once,
        anonymous connections (user ``""``) count one each.  Cheap on big channels."""

    # -- housekeeping --------------------------------------------------------------------------

    @abstractmethod
    def expire(self) -> None:
        """Drop what outlived its TTL (the hub calls this every few seconds)."""
