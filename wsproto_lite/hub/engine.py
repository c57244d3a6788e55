"""The Engine interface: pub/sub between hub nodes, presence, history with epoch + offset.

The hub (``hub.py``) keeps only local state (which connection subscribed to what); everything a second
hub node would need to share goes through an Engine.  ``memory.py`` is the in-memory engine (one
process); ``redis_engine.py`` shares channels, presence and history between processes and machines.

Every method is called in the hub's loop thread and returns at once.  What needs an answer returns a
:class:`Reply`: a tiny future that is resolved in the loop thread, either already (the in-memory engine)
or later (a networked engine, whose I/O thread hands the result to the loop with its
``call_soon_threadsafe``: our ``EventLoop`` or an asyncio loop, see ``transport.HubLoop``).  A networked
engine's failure resolves the reply with a ``HubError`` (temporary), never by blocking the loop.

Delivery: the hub calls :meth:`Engine.start` once with its callbacks; the engine calls ``deliver`` once
per publication to a channel this node showed interest in (:meth:`Engine.node_subscribe`), whichever
node published it, in the channel's offset order; ``join_leave`` for presence pushes from any node;
``lost`` with channels whose stream this node may have missed part of (the link to the backend broke):
their local subscribers must resubscribe and recover.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .namespaces import NamespaceOptions
from .protocol import ErrorCode, HubError, Position, client_info_json, dumps, publication_json

if TYPE_CHECKING:
    from .transport import HubLoop

__all__ = [
    "Engine",
    "Publication",
    "ClientInfo",
    "HistoryResult",
    "RecoveryResult",
    "Deliver",
    "JoinLeave",
    "Lost",
    "ControlReceiver",
    "Reply",
    "select_history",
    "select_recovery",
]

T = TypeVar("T")

IDEMPOTENCY_WINDOW = 300.0
"""Seconds an idempotency key of a publish is remembered (Centrifugo's default: 5 minutes)."""
MAX_IDEMPOTENCY_KEY = 256
"""Characters of one idempotency key."""
U = TypeVar("U")


class Reply(Generic[T]):
    """An engine's answer, now or later; resolved and observed in the hub's loop thread only.

    ``reply.then(fn)`` runs ``fn(value)`` once resolved (at once if it already is) and returns the reply
    of its result (``fn`` may return a plain value or another Reply); an error skips ``fn`` and passes
    through.  ``reply.observe(cb)`` calls ``cb(reply)`` on completion either way.
    """

    __slots__ = ("_done", "_value", "_error", "_callbacks")

    def __init__(self) -> None:
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Reply[T]], object]] | None = None

    @classmethod
    def of(cls, value: T) -> Reply[T]:
        reply: Reply[T] = cls()
        reply.resolve(value)
        return reply

    @classmethod
    def failed(cls, error: BaseException) -> Reply[T]:
        reply: Reply[T] = cls()
        reply.fail(error)
        return reply

    @property
    def done(self) -> bool:
        return self._done

    def resolve(self, value: T) -> None:
        if self._done:
            return
        self._done, self._value = True, value
        self._run_callbacks()

    def fail(self, error: BaseException) -> None:
        if self._done:
            return
        self._done, self._error = True, error.with_traceback(None)  # no frames kept alive
        self._run_callbacks()

    def result(self) -> T:
        """The value (raises the error); only once :attr:`done`."""
        if not self._done:
            raise RuntimeError("the reply is not resolved yet")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    @property
    def error(self) -> BaseException | None:
        return self._error

    def observe(self, callback: Callable[[Reply[T]], object]) -> None:
        if self._done:
            callback(self)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def then(self, fn: Callable[[T], U | Reply[U]]) -> Reply[U]:
        if self._done and self._error is None:  # the in-memory engine's path: no new objects
            try:
                value = fn(self._value)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - carried to whoever observes the reply
                return Reply.failed(exc)
            return value if isinstance(value, Reply) else Reply.of(value)
        chained: Reply[U] = Reply()

        def step(done: Reply[T]) -> None:
            if done._error is not None:
                chained.fail(done._error)
                return
            try:
                value = fn(done._value)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001
                chained.fail(exc)
                return
            if isinstance(value, Reply):
                value.observe(lambda inner: _settle(chained, inner))
            else:
                chained.resolve(value)

        self.observe(step)
        return chained

    def _run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            callback(self)

    def __repr__(self) -> str:
        state = "pending" if not self._done else f"error {self._error!r}" if self._error else "done"
        return f"<Reply {state}>"


def _settle(target: Reply[Any], source: Reply[Any]) -> None:
    if source.error is not None:
        target.fail(source.error)
    else:
        target.resolve(source.result())


def unavailable(message: str = "the engine is unavailable (retry later)") -> HubError:
    """The error of every command the engine cannot serve right now (its backend is unreachable)."""
    return HubError(ErrorCode.NOT_AVAILABLE, message, temporary=True)


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
        tags_json: str | None = None,
    ) -> None:
        self.channel = channel
        self.offset = offset
        self.epoch = epoch
        self.json = publication_json(offset, data_json, info_json, tags_json)
        self.expires = expires
        self.size = len(self.json) + 120  # bytes held: the text plus this object, roughly

    def __repr__(self) -> str:
        return f"Publication({self.json})"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who a connection is, as presence, join/leave and publications show it (Centrifugo's ``ClientInfo``)."""

    client: str
    user: str
    conn_info: str = ""
    """JSON text of the connection token's ``info`` claim (``""``: none)."""
    chan_info: str = ""
    """JSON text of the subscription token's ``info`` claim (``""``: none)."""

    def as_json(self) -> str:
        return client_info_json(self.client, self.user, self.conn_info, self.chan_info)

    def as_dict(self) -> dict[str, Any]:
        """``{"user", "client", "conn_info"?, "chan_info"?}`` with the infos decoded."""
        value: dict[str, Any] = {"user": self.user, "client": self.client}
        if self.conn_info:
            value["conn_info"] = json.loads(self.conn_info)
        if self.chan_info:
            value["chan_info"] = json.loads(self.chan_info)
        return value

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ClientInfo:
        """The inverse of :meth:`as_dict` (what an engine stored)."""
        conn_info, chan_info = value.get("conn_info"), value.get("chan_info")
        return cls(
            str(value["client"]),
            str(value["user"]),
            "" if conn_info is None else dumps(conn_info),
            "" if chan_info is None else dumps(chan_info),
        )


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
#: ``join_leave(kind, channel, info)``: a ``join``/``leave`` from any node, for the local subscribers.
JoinLeave = Callable[[str, str, ClientInfo], None]
#: ``lost(channels)``: this node may have missed publications on these channels (or patterns).
Lost = Callable[[Iterable[str]], None]
#: ``receive(payload)``: a message of the node-to-node control channel (``control.py``).
ControlReceiver = Callable[[str], None]


def select_history(
    epoch: str,
    top: int,
    held: list[Publication],
    *,
    since: Position | None,
    limit: int | None,
    reverse: bool,
) -> list[Publication]:
    """The ``history`` rule over a stream's held publications (oldest first, ending at ``top``).

    Raises ``HubError(112)`` for a position in another epoch or one whose successors are gone.
    """
    if since is not None:
        if since.epoch != epoch or since.offset > top:
            raise HubError(ErrorCode.UNRECOVERABLE_POSITION, "that position is not in this epoch")
        first = held[0].offset if held else top + 1
        if reverse:  # older than `since`, newest first
            selected = [p for p in reversed(held) if p.offset < since.offset]  # type: ignore[operator]
        else:
            if since.offset + 1 < first:  # type: ignore[operator]
                raise HubError(
                    ErrorCode.UNRECOVERABLE_POSITION, "publications after that position are no longer held"
                )
            selected = held[since.offset + 1 - first :]  # type: ignore[operator]
    else:
        # Centrifugo's rule (centrifuge internal/memstream Get): from the oldest held (newest first with
        # ``reverse``), at most ``limit``
        selected = list(reversed(held)) if reverse else list(held)
    return selected[:limit] if limit is not None else selected


def select_recovery(epoch: str, top: int, held: list[Publication], since: Position) -> RecoveryResult:
    """The ``recover`` rule: what is held after ``since``, and whether that is everything missed."""
    position = Position(epoch, top)
    if since.epoch != epoch or since.offset > top:
        return RecoveryResult([], position, False)
    first: int = held[0].offset if held else top + 1  # type: ignore[assignment]
    return RecoveryResult(held[max(0, since.offset + 1 - first) :], position, since.offset + 1 >= first)


class Engine(ABC):
    """Pub/sub, presence and history, shared by every hub node that uses the same backend."""

    #: A name for logs and health reports.
    kind = "engine"

    def attach(self, loop: HubLoop) -> None:
        """The hub's loop (before :meth:`start`): a networked engine resolves its replies there."""
        return None  # the in-memory engine answers at once and needs no loop

    @abstractmethod
    def start(self, deliver: Deliver, join_leave: JoinLeave | None = None, lost: Lost | None = None) -> None:
        """Begin delivering publications to ``deliver`` (and presence pushes, lost channels)."""

    @abstractmethod
    def close(self) -> None:
        """Stop delivering; drop references to the hub; stop any thread the engine runs."""

    def health(self) -> dict[str, Any]:
        """``{"ok": bool, ...}`` for health checks and metrics; ``ok`` False while degraded."""
        return {"engine": self.kind, "ok": True}

    # -- the control channel (``control.py``) ------------------------------------------------------

    def start_control(self, receive: ControlReceiver) -> Reply[None]:
        """Give ``receive`` every control message another node sends (after :meth:`start`); resolved
        once listening.  One process has no other nodes: nothing to listen to (the default)."""
        return Reply.of(None)

    def publish_control(self, payload: str) -> None:
        """Send ``payload`` to every node's control receiver (a node ignores its own messages).
        One process: nobody else to tell (the default)."""
        return None

    # -- pub/sub -------------------------------------------------------------------------------

    @abstractmethod
    def node_subscribe(self, channel: str) -> Reply[None]:
        """This node has subscribers on ``channel`` (or on the wildcard pattern ``ns:prefix*``).

        Resolved once publications to it are being delivered (a read of the channel's position made
        after that sees every publication that ``deliver`` will not get).
        """

    @abstractmethod
    def node_unsubscribe(self, channel: str) -> None:
        """This node's last subscriber of ``channel`` left."""

    @abstractmethod
    def publish(
        self,
        channel: str,
        data_json: str,
        info_json: str | None,
        options: NamespaceOptions,
        *,
        idempotency_key: str = "",
        tags_json: str | None = None,
    ) -> Reply[Publication]:
        """Store (when ``options.history``) and deliver; resolves to the publication (offset assigned).
        ``tags_json`` (a JSON object of strings) rides in the publication: pushes, history, recovery.

        With an ``idempotency_key``, a second publish to the channel with the same key within
        ``IDEMPOTENCY_WINDOW`` seconds (on any node sharing the backend) is not stored nor delivered: it
        resolves to the first one's publication (its offset and epoch).
        """

    @abstractmethod
    def join_leave(self, kind: str, channel: str, info: ClientInfo) -> None:
        """Send a ``join``/``leave`` to every node's ``join_leave`` callback (this node's included)."""

    # -- history -------------------------------------------------------------------------------

    @abstractmethod
    def position(self, channel: str, options: NamespaceOptions) -> Reply[Position]:
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
    ) -> Reply[HistoryResult]:
        """Held publications: after ``since`` (or before it with ``reverse``), at most ``limit``.

        Fails with ``HubError(112)`` when ``since`` is in another epoch or when publications right
        after it are no longer held (never a silent gap).
        """

    @abstractmethod
    def recover(self, channel: str, options: NamespaceOptions, since: Position) -> Reply[RecoveryResult]:
        """Publications missed since ``since``; ``recovered`` False when some are no longer held."""

    @abstractmethod
    def remove_history(self, channel: str) -> Reply[None]:
        """Drop the channel's kept publications; its position (epoch, top offset) stays, so the next
        publication continues the numbering (centrifuge's brokers: ``Clear`` of the memory stream, ``DEL``
        of the Redis stream key alone, the meta key kept)."""

    # -- presence ------------------------------------------------------------------------------

    @abstractmethod
    def add_presence(self, channel: str, info: ClientInfo) -> None:
        """``info.client`` is subscribed to ``channel`` (idempotent); kept alive while this node is."""

    @abstractmethod
    def remove_presence(self, channel: str, client: str) -> None:
        """``client`` left ``channel`` (idempotent)."""

    @abstractmethod
    def presence(self, channel: str) -> Reply[list[ClientInfo]]:
        """Every client subscribed to ``channel``, on every node."""

    @abstractmethod
    def presence_stats(self, channel: str) -> Reply[tuple[int, int]]:
        """(clients, distinct users) on ``channel``; a user on several connections counts once,
        anonymous connections (user ``""``) count one each.  Cheap on big channels."""

    # -- housekeeping --------------------------------------------------------------------------

    @abstractmethod
    def expire(self) -> None:
        """Drop what outlived its TTL (the hub calls this every few seconds)."""
