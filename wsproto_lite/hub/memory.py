"""The in-memory engine: one process, bounded memory.

History: each channel with history has a stream (epoch, latest offset, a deque of publications).  Bounds:
``history_size`` and ``history_ttl`` per namespace, ``max_history_bytes`` over all streams (past it the
oldest publications of the least recently published streams go first), ``max_streams`` streams (past it
the least recently published stream is dropped whole; if the channel comes back it starts a new epoch).
Nothing is dropped silently: a client asking for a gap that is no longer held is told so.

Every :class:`~wsproto_lite.hub.engine.Reply` it returns is already resolved: one process needs no waiting.

Reading never creates state: a channel nobody published to has no stream, only the engine's current
epoch (random per process, with a generation number bumped whenever any stream is dropped), so a client
can subscribe to a thousand empty channels without costing memory or evicting anyone's history.  A stream
takes the current epoch when its first publication arrives; a dropped and re-created stream therefore
gets another epoch, and a restarted process never continues an old numbering.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from .engine import (
    IDEMPOTENCY_WINDOW,
    ClientInfo,
    Deliver,
    Engine,
    HistoryResult,
    JoinLeave,
    Lost,
    Publication,
    RecoveryResult,
    Reply,
    select_history,
    select_recovery,
)
from .namespaces import NamespaceOptions
from .protocol import HubError, Position

__all__ = ["MemoryEngine"]

_NO_HISTORY = Position("", 0)
_DONE: Reply[None] = Reply.of(None)


class _Stream:
    __slots__ = ("epoch", "top", "items", "size", "last_publish")

    def __init__(self, epoch: str, now: float) -> None:
        self.epoch = epoch
        self.top = 0  # offset of the latest publication (0: none yet)
        self.items: deque[Publication] = deque()
        self.size = 0
        self.last_publish = now

    def first_held(self) -> int:
        """Offset of the oldest publication held (top + 1 when none is)."""
        return self.items[0].offset if self.items else self.top + 1  # type: ignore[return-value]


class _Presence:
    __slots__ = ("clients", "users")

    def __init__(self) -> None:
        self.clients: dict[str, ClientInfo] = {}
        self.users: dict[str, int] = {}  # user key -> connections of that user on the channel


def _user_key(info: ClientInfo) -> str:
    # anonymous connections are distinct people as far as we know: one key each
    return "u:" + info.user if info.user else "c:" + info.client


class MemoryEngine(Engine):
    kind = "memory"

    def __init__(
        self,
        *,
        max_history_bytes: int = 64 << 20,
        max_streams: int = 100_000,
        stream_meta_ttl: float = 3600.0,
        max_idempotency_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_history_bytes = max_history_bytes
        self.max_streams = max_streams
        self.stream_meta_ttl = stream_meta_ttl
        """An empty stream keeps its epoch and offset this long after its last publication."""
        self.clock = clock
        self._deliver: Deliver | None = None
        self._join_leave: JoinLeave | None = None
        self._streams: OrderedDict[str, _Stream] = OrderedDict()  # least recently published first
        self._history_bytes = 0
        self._presence: dict[str, _Presence] = {}
        self._boot = secrets.token_hex(4)
        self._generation = 0
        self.max_idempotency_keys = max_idempotency_keys
        """Idempotency keys remembered at most (past it the oldest are forgotten early)."""
        self._idempotent: OrderedDict[tuple[str, str], tuple[float, Publication]] = OrderedDict()
        self.evicted = 0
        """Publications dropped before their TTL to stay within ``max_history_bytes``."""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, deliver: Deliver, join_leave: JoinLeave | None = None, lost: Lost | None = None) -> None:
        self._deliver = deliver
        self._join_leave = join_leave

    def close(self) -> None:
        self._deliver = None
        self._join_leave = None

    # -- pub/sub: one process, so every publication is of interest ------------------------------

    def node_subscribe(self, channel: str) -> Reply[None]:
        return _DONE

    def node_unsubscribe(self, channel: str) -> None:
        pass

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
        if not idempotency_key:
            return Reply.of(self.publish_now(channel, data_json, info_json, options, tags_json))
        now = self.clock()
        self._expire_idempotency(now)
        seen = self._idempotent.get((channel, idempotency_key))
        if seen is not None:
            return Reply.of(seen[1])
        publication = self.publish_now(channel, data_json, info_json, options, tags_json)
        self._idempotent[(channel, idempotency_key)] = (now + IDEMPOTENCY_WINDOW, publication)
        while len(self._idempotent) > self.max_idempotency_keys:
            self._idempotent.popitem(last=False)
        return Reply.of(publication)

    def _expire_idempotency(self, now: float) -> None:
        keys = self._idempotent
        while keys:
            expires, _ = next(iter(keys.values()))
            if expires > now:
                return
            keys.popitem(last=False)

    def publish_now(
        self,
        channel: str,
        data_json: str,
        info_json: str | None,
        options: NamespaceOptions,
        tags_json: str | None = None,
    ) -> Publication:
        if options.history:
            now = self.clock()
            stream = self._stream(channel, now)
            stream.top += 1
            stream.last_publish = now
            self._streams.move_to_end(channel)
            publication = Publication(
                channel,
                stream.top,
                data_json,
                info_json,
                epoch=stream.epoch,
                expires=now + options.history_ttl,
                tags_json=tags_json,
            )
            stream.items.append(publication)
            stream.size += publication.size
            self._history_bytes += publication.size
            while len(stream.items) > options.history_size:
                self._pop_oldest(stream)
            self._prune(stream, now)
            self._enforce_global_bounds()
        else:
            publication = Publication(channel, None, data_json, info_json, tags_json=tags_json)
        if self._deliver is not None:
            self._deliver(publication)
        return publication

    def join_leave(self, kind: str, channel: str, info: ClientInfo) -> None:
        if self._join_leave is not None:
            self._join_leave(kind, channel, info)

    # -- history ---------------------------------------------------------------------------------

    @property
    def current_epoch(self) -> str:
        """The epoch of a stream created now (and of every channel without a stream)."""
        return f"{self._boot}-{self._generation}"

    def _stream(self, channel: str, now: float) -> _Stream:
        stream = self._streams.get(channel)
        if stream is None:
            stream = self._streams[channel] = _Stream(self.current_epoch, now)
            if len(self._streams) > self.max_streams:
                self._drop_stream(next(iter(self._streams)))
        return stream

    def _pop_oldest(self, stream: _Stream) -> None:
        publication = stream.items.popleft()
        stream.size -= publication.size
        self._history_bytes -= publication.size

    def _prune(self, stream: _Stream, now: float) -> None:
        items = stream.items
        while items and items[0].expires <= now:
            self._pop_oldest(stream)

    def _drop_stream(self, channel: str) -> None:
        stream = self._streams.pop(channel)
        self._history_bytes -= stream.size
        self._generation += 1  # the channel may come back: it must not reuse the epoch it had

    def _enforce_global_bounds(self) -> None:
        if self._history_bytes <= self.max_history_bytes:
            return
        for stream in list(self._streams.values()):  # least recently published first
            while stream.items and self._history_bytes > self.max_history_bytes:
                self._pop_oldest(stream)
                self.evicted += 1
            if self._history_bytes <= self.max_history_bytes:
                return

    def position(self, channel: str, options: NamespaceOptions) -> Reply[Position]:
        return Reply.of(self.position_now(channel, options))

    def position_now(self, channel: str, options: NamespaceOptions) -> Position:
        if not options.history:
            return _NO_HISTORY
        stream = self._streams.get(channel)
        return Position(self.current_epoch, 0) if stream is None else Position(stream.epoch, stream.top)

    def _held(self, channel: str, options: NamespaceOptions) -> _Stream | None:
        """The channel's stream, pruned; a transient empty one if it has none (nothing is stored)."""
        if not options.history:
            return None
        now = self.clock()
        stream = self._streams.get(channel)
        if stream is None:
            return _Stream(self.current_epoch, now)
        self._prune(stream, now)
        return stream

    def history(
        self,
        channel: str,
        options: NamespaceOptions,
        *,
        since: Position | None,
        limit: int | None,
        reverse: bool,
    ) -> Reply[HistoryResult]:
        stream = self._held(channel, options)
        if stream is None:
            return Reply.of(HistoryResult([], _NO_HISTORY))
        try:
            selected = select_history(
                stream.epoch, stream.top, list(stream.items), since=since, limit=limit, reverse=reverse
            )
        except HubError as exc:
            return Reply.failed(exc)
        return Reply.of(HistoryResult(selected, Position(stream.epoch, stream.top)))

    def recover(self, channel: str, options: NamespaceOptions, since: Position) -> Reply[RecoveryResult]:
        stream = self._held(channel, options)
        if stream is None:
            return Reply.of(RecoveryResult([], _NO_HISTORY, False))
        return Reply.of(select_recovery(stream.epoch, stream.top, list(stream.items), since))

    def remove_history(self, channel: str) -> Reply[None]:
        stream = self._streams.get(channel)
        while stream is not None and stream.items:
            self._pop_oldest(stream)
        return _DONE

    # -- presence --------------------------------------------------------------------------------

    def add_presence(self, channel: str, info: ClientInfo) -> None:
        entry = self._presence.get(channel)
        if entry is None:
            entry = self._presence[channel] = _Presence()
        if info.client in entry.clients:
            return
        entry.clients[info.client] = info
        key = _user_key(info)
        entry.users[key] = entry.users.get(key, 0) + 1

    def remove_presence(self, channel: str, client: str) -> None:
        entry = self._presence.get(channel)
        if entry is None:
            return
        info = entry.clients.pop(client, None)
        if info is None:
            return
        key = _user_key(info)
        left = entry.users[key] - 1
        if left:
            entry.users[key] = left
        else:
            del entry.users[key]
        if not entry.clients:
            del self._presence[channel]

    def presence(self, channel: str) -> Reply[list[ClientInfo]]:
        entry = self._presence.get(channel)
        return Reply.of([] if entry is None else list(entry.clients.values()))

    def presence_stats(self, channel: str) -> Reply[tuple[int, int]]:
        entry = self._presence.get(channel)
        return Reply.of((0, 0) if entry is None else (len(entry.clients), len(entry.users)))

    # -- housekeeping ----------------------------------------------------------------------------

    def expire(self) -> None:
        now = self.clock()
        self._expire_idempotency(now)
        for channel, stream in list(self._streams.items()):
            self._prune(stream, now)
            if not stream.items and now - stream.last_publish > self.stream_meta_ttl:
                self._drop_stream(channel)

    # -- introspection (tests, metrics) ----------------------------------------------------------

    @property
    def history_bytes(self) -> int:
        return self._history_bytes

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    @property
    def presence_channel_count(self) -> int:
        return len(self._presence)
