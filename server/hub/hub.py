"""The hub: a Handler that ties connections, subscriptions and the engine together.

Per connection the hub keeps a :class:`Session` (who it is, what it subscribed to) in a dict keyed by the
WebSocket, removed in ``on_close``; per channel, the local subscribers.  Presence, history and the
pub/sub between nodes are the engine's.  Nothing here refers back from a subscription to its session, so
a closed connection's objects are freed by reference counting alone.

Fan-out: a publication's frame is built once (``prepare_message``) and queued on every subscriber with
``send_prepared``.  A subscriber whose unsent bytes are over ``queue_limit`` is not waited for: it gets a
``disconnect`` push (4001 "slow", reconnect and recover) and is closed, and the drop is counted.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wsproto_lite import PreparedMessage, prepare_message

from ..handler import Accept, Handler, Reject
from .engine import ClientInfo, Engine, Publication
from .memory import MemoryEngine
from .namespaces import Channel, Namespaces, namespace_of
from .protocol import (
    NO_ID,
    Command,
    DisconnectCode,
    ErrorCode,
    HubError,
    command_id_of,
    disconnect_push_frame,
    dumps,
    error_frame,
    get_bool,
    get_channel,
    get_int,
    get_position,
    get_str,
    parse_command,
    presence_push_frame,
    pub_push_frame,
    reply_frame,
    unsubscribe_push_frame,
)

if TYPE_CHECKING:
    from wsproto_lite import Request

    from ..loop import EventLoop, TimerHandle
    from ..websocket import WebSocket

__all__ = ["Hub", "HubLimits", "HubStats", "Session", "Subscription", "Authenticate", "WEBSOCKET_PATHS"]

logger = logging.getLogger("server.hub")

#: Where the hub accepts WebSocket upgrades.
WEBSOCKET_PATHS = frozenset({"/connection/websocket", "/ws"})

#: ``authenticate(token, request) -> user id`` (``""`` for anonymous); raises ``HubError(101)`` to refuse.
Authenticate = Callable[[str, "Request | None"], str]


@dataclass(frozen=True)
class HubLimits:
    """Bounds on what one connection may make the hub hold or do."""

    max_command_size: int = 64 * 1024
    """Characters in one command frame; over it: error 106 (the core closes frames over the I/O limit)."""
    max_channels_per_connection: int = 128
    queue_limit: int = 1 << 20
    """Unsent bytes a subscriber may have before a fan-out disconnects it as slow."""
    connect_timeout: float = 10.0
    """Seconds from the WebSocket opening to the ``connect`` command, else disconnect 4500."""
    max_name_length: int = 64
    max_history_limit: int = 1000
    """Most publications one ``history`` reply carries."""
    ping_interval: float = 25.0
    """Reported in the ``connect`` result: the hub's keepalive period."""


@dataclass
class HubStats:
    """Counters for the operations issue's metrics."""

    connections: int = 0
    commands: int = 0
    errors: int = 0
    publications: int = 0
    deliveries: int = 0
    slow_disconnects: int = 0


class Subscription:
    """One connection's subscription to one channel or pattern (no reference to the session)."""

    __slots__ = ("channel", "conn", "__weakref__")

    def __init__(self, channel: Channel, conn: WebSocket) -> None:
        self.channel = channel
        self.conn = conn


class Session:
    """The hub's state for one connection."""

    __slots__ = ("conn", "info", "info_json", "subscriptions", "deadline", "closed", "__weakref__")

    def __init__(self, conn: WebSocket, deadline: float) -> None:
        self.conn = conn
        self.info: ClientInfo | None = None
        """Set by ``connect``."""
        self.info_json: str | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.deadline = deadline
        self.closed = False


def _anonymous(token: str, request: Request | None) -> str:
    if token:
        raise HubError(ErrorCode.UNAUTHORIZED, "this hub verifies no tokens (connect without one)")
    return ""


class _Subscribers:
    """The local subscribers of one channel or pattern: connection -> subscription."""

    __slots__ = ("by_conn", "prefix")

    def __init__(self, prefix: str | None) -> None:
        self.by_conn: dict[WebSocket, Subscription] = {}
        self.prefix = prefix


Result = dict[str, Any] | str  # a result object, or its JSON text already built


class Hub(Handler):
    def __init__(
        self,
        namespaces: Namespaces | None = None,
        *,
        engine: Engine | None = None,
        limits: HubLimits | None = None,
        authenticate: Authenticate | None = None,
    ) -> None:
        self.namespaces = namespaces or Namespaces()
        self.engine = engine or MemoryEngine()
        self.limits = limits or HubLimits()
        self.authenticate = authenticate or _anonymous
        self.stats = HubStats()
        self.sessions: dict[WebSocket, Session] = {}
        self._clients: dict[str, WebSocket] = {}  # client id -> connection, for the server-side API
        self._channels: dict[str, _Subscribers] = {}  # exact channel -> subscribers
        self._patterns: dict[str, dict[str, _Subscribers]] = {}  # namespace -> pattern -> subscribers
        self._loop: EventLoop | None = None
        self._tick_timer: TimerHandle | None = None
        self._ticks = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, loop: EventLoop) -> None:
        """Begin: engine delivery and the once-a-second housekeeping (connect timeouts, TTLs)."""
        self._loop = loop
        self.engine.start(self._deliver)
        self._tick_timer = loop.call_later(1.0, self._tick)

    def stop(self) -> None:
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        self.engine.close()

    def disconnect_all(self, code: int = DisconnectCode.SHUTDOWN, reason: str = "shutdown") -> None:
        """Tell every client to go (with ``code``'s reconnect advice) and close them."""
        for conn in list(self.sessions):
            self.disconnect(conn, code, reason)

    def _tick(self) -> None:
        assert self._loop is not None
        self._tick_timer = self._loop.call_later(1.0, self._tick)
        now = self._loop.time()
        late = [s.conn for s in self.sessions.values() if s.info is None and s.deadline <= now]
        for conn in late:
            self.disconnect(conn, DisconnectCode.CONNECT_TIMEOUT, "connect timeout")
        self._ticks += 1
        if self._ticks % 5 == 0:
            self.engine.expire()

    # -- Handler callbacks -------------------------------------------------------------------------

    def handshake(self, conn: WebSocket, request: Request) -> Accept | Reject | None:
        if request.path not in WEBSOCKET_PATHS:
            return Reject(404, body=b"the hub's WebSocket endpoint is /connection/websocket\n")
        return None

    def on_open(self, conn: WebSocket) -> None:
        now = self._loop.time() if self._loop is not None else 0.0
        self.sessions[conn] = Session(conn, now + self.limits.connect_timeout)
        self.stats.connections += 1

    def on_close(self, conn: WebSocket, code: int, reason: str) -> None:
        session = self.sessions.pop(conn, None)
        if session is not None:
            self._end(session)
            if session.info is not None:
                self._clients.pop(session.info.client, None)

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        session = self.sessions.get(conn)
        if session is None or session.closed:
            return
        if not isinstance(message, str):
            # RFC 6455 §7.4.1: 1003, "received a type of data it cannot accept"
            self._end(session)
            conn.close(1003, "the hub speaks JSON text frames")
            return
        self.stats.commands += 1
        if len(message) > self.limits.max_command_size:
            self._send_error(conn, NO_ID, HubError(ErrorCode.LIMIT_EXCEEDED, "command too large"))
            return
        try:
            command = parse_command(message)
        except HubError as exc:
            self._send_error(conn, command_id_of(exc), exc)
            return
        self._run(session, command)

    def _run(self, session: Session, command: Command) -> None:
        conn = session.conn
        try:
            if command.method == "connect":
                result: Result = self._connect(session, command.params)
            elif session.info is None:
                raise HubError(ErrorCode.BAD_REQUEST, "the first command must be connect")
            else:
                result = _COMMANDS[command.method](self, session, command.params)
        except HubError as exc:
            self._send_error(conn, command.id, exc)
            return
        except Exception:
            logger.exception("command %s failed", command.method)
            self._send_error(conn, command.id, HubError(ErrorCode.INTERNAL, "internal error", temporary=True))
            return
        if isinstance(result, str):
            conn.send(f'{{"id":{command.id},"result":{result}}}')
        else:
            conn.send(reply_frame(command.id, result))

    def _send_error(self, conn: WebSocket, command_id: int, error: HubError) -> None:
        self.stats.errors += 1
        conn.send(error_frame(command_id, error))

    # -- commands ----------------------------------------------------------------------------------

    def _connect(self, session: Session, params: dict[str, Any]) -> Result:
        if session.info is not None:
            raise HubError(ErrorCode.BAD_REQUEST, "already connected")
        token = get_str(params, "token", required=False, max_length=8192)
        name = get_str(params, "name", required=False, max_length=self.limits.max_name_length)
        user = self.authenticate(token, session.conn.request)
        session.info = ClientInfo(secrets.token_urlsafe(12), user, name)
        self._clients[session.info.client] = session.conn
        session.info_json = dumps({"client": session.info.client, "user": user})
        return {"client": session.info.client, "user": user, "ping": self.limits.ping_interval}

    def _subscribe(self, session: Session, params: dict[str, Any]) -> Result:
        channel = self.namespaces.resolve(get_channel(params), pattern_ok=True)
        options = channel.options
        if not options.allow_subscribe:
            raise HubError(ErrorCode.PERMISSION_DENIED, "subscribing is not allowed in this namespace")
        if channel.name in session.subscriptions:
            raise HubError(ErrorCode.ALREADY_SUBSCRIBED, "already subscribed")
        if len(session.subscriptions) >= self.limits.max_channels_per_connection:
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "too many subscriptions on this connection")
        recover = get_position(params, "recover")
        if recover is not None and channel.is_pattern:
            raise HubError(ErrorCode.BAD_REQUEST, "wildcard subscriptions have no history to recover")
        assert session.info is not None
        subscription = Subscription(channel, session.conn)
        session.subscriptions[channel.name] = subscription
        self._local_add(subscription)
        presence = options.presence and not channel.is_pattern
        if presence:
            self.engine.add_presence(channel.name, session.info)
            if options.join_leave:
                self._presence_push("join", channel.name, session)
        result: dict[str, Any] = {
            "recoverable": options.history and not channel.is_pattern,
            "presence": presence,
        }
        if recover is None:
            position = self.engine.position(channel.name, options) if not channel.is_pattern else None
            result["epoch"] = position.epoch if position else ""
            result["offset"] = position.offset if position else 0
            return result
        recovery = self.engine.recover(channel.name, options, recover)
        result["epoch"] = recovery.position.epoch
        result["offset"] = recovery.position.offset
        result["recovered"] = recovery.recovered
        return _with_publications(result, recovery.publications)

    def _unsubscribe(self, session: Session, params: dict[str, Any]) -> Result:
        name = get_channel(params)
        subscription = session.subscriptions.pop(name, None)
        if subscription is None:
            raise HubError(ErrorCode.NOT_SUBSCRIBED, "not subscribed")
        self._drop_subscription(session, subscription)
        return {}

    def _publish(self, session: Session, params: dict[str, Any]) -> Result:
        channel = self.namespaces.resolve(get_channel(params))
        if not channel.options.allow_publish:
            raise HubError(ErrorCode.PERMISSION_DENIED, "clients may not publish in this namespace")
        if "data" not in params:
            raise HubError(ErrorCode.BAD_REQUEST, "'data' is missing")
        try:
            data_json = dumps(params["data"])
        except (ValueError, RecursionError):
            raise HubError(ErrorCode.BAD_REQUEST, "'data' cannot be encoded as JSON") from None
        publication = self.engine.publish(channel.name, data_json, session.info_json, channel.options)
        if publication.offset is None:
            return {}
        return {"offset": publication.offset, "epoch": publication.epoch}

    def _presence_channel(self, params: dict[str, Any]) -> Channel:
        channel = self.namespaces.resolve(get_channel(params))
        if not channel.options.presence:
            raise HubError(ErrorCode.NOT_AVAILABLE, "presence is off in this namespace")
        return channel

    def _presence(self, session: Session, params: dict[str, Any]) -> Result:
        channel = self._presence_channel(params)
        clients = {i.client: {"user": i.user, "name": i.name} for i in self.engine.presence(channel.name)}
        return {"clients": clients}

    def _presence_stats(self, session: Session, params: dict[str, Any]) -> Result:
        channel = self._presence_channel(params)
        clients, users = self.engine.presence_stats(channel.name)
        return {"clients": clients, "users": users}

    def _history(self, session: Session, params: dict[str, Any]) -> Result:
        channel = self.namespaces.resolve(get_channel(params))
        if not channel.options.history:
            raise HubError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")
        cap = self.limits.max_history_limit
        limit = min(get_int(params, "limit", cap), cap)
        since = get_position(params, "since")
        reverse = get_bool(params, "reverse")
        history = self.engine.history(
            channel.name, channel.options, since=since, limit=limit, reverse=reverse
        )
        result = {"epoch": history.position.epoch, "offset": history.position.offset}
        return _with_publications(result, history.publications)

    def _ping(self, session: Session, params: dict[str, Any]) -> Result:
        return {}

    # -- subscriptions -----------------------------------------------------------------------------

    def _subscribers(self, channel: Channel, create: bool) -> _Subscribers | None:
        if channel.prefix is None:
            table = self._channels
        else:
            table = self._patterns.get(channel.namespace)  # type: ignore[assignment]
            if table is None:
                if not create:
                    return None
                table = self._patterns[channel.namespace] = {}
        subscribers = table.get(channel.name)
        if subscribers is None and create:
            subscribers = table[channel.name] = _Subscribers(channel.prefix)
            self.engine.node_subscribe(channel.name)
        return subscribers

    def _local_add(self, subscription: Subscription) -> None:
        subscribers = self._subscribers(subscription.channel, create=True)
        assert subscribers is not None
        subscribers.by_conn[subscription.conn] = subscription

    def _local_remove(self, subscription: Subscription) -> None:
        channel = subscription.channel
        subscribers = self._subscribers(channel, create=False)
        if subscribers is None:
            return
        subscribers.by_conn.pop(subscription.conn, None)
        if not subscribers.by_conn:
            if channel.prefix is None:
                del self._channels[channel.name]
            else:
                patterns = self._patterns[channel.namespace]
                del patterns[channel.name]
                if not patterns:
                    del self._patterns[channel.namespace]
            self.engine.node_unsubscribe(channel.name)

    def _drop_subscription(self, session: Session, subscription: Subscription) -> None:
        self._local_remove(subscription)
        channel = subscription.channel
        if channel.options.presence and not channel.is_pattern and session.info is not None:
            self.engine.remove_presence(channel.name, session.info.client)
            if channel.options.join_leave:
                self._presence_push("leave", channel.name, session)

    def _end(self, session: Session) -> None:
        """Forget a connection's subscriptions and presence (idempotent)."""
        if session.closed:
            return
        session.closed = True
        subscriptions, session.subscriptions = session.subscriptions, {}
        for subscription in subscriptions.values():
            self._drop_subscription(session, subscription)

    # -- the server-side API (the HTTP API of the operations issue calls these) ----------------------

    def connection_of(self, client: str) -> WebSocket | None:
        """The connection of a client id (from ``connect``), if it is still here."""
        return self._clients.get(client)

    def publish(self, channel: str, data: Any) -> Publication:
        """Publish from the server: no ``info``; namespace rules on client publishing do not apply.

        Raises ``HubError`` (102/107) for a bad channel or data that is not JSON.
        """
        resolved = self.namespaces.resolve(channel)
        try:
            data_json = dumps(data)
        except (TypeError, ValueError, RecursionError):
            raise HubError(ErrorCode.BAD_REQUEST, "data cannot be encoded as JSON") from None
        return self.engine.publish(resolved.name, data_json, None, resolved.options)

    def unsubscribe(self, conn: WebSocket, channel: str, code: int = 2000, reason: str = "server") -> bool:
        """End a client's subscription from the server side, with an ``unsubscribe`` push."""
        session = self.sessions.get(conn)
        if session is None or session.closed:
            return False
        subscription = session.subscriptions.pop(channel, None)
        if subscription is None:
            return False
        self._drop_subscription(session, subscription)
        conn.send(unsubscribe_push_frame(channel, code, reason))
        return True

    def disconnect(self, conn: WebSocket, code: int, reason: str) -> None:
        """Send a ``disconnect`` push and close the connection with the same code."""
        session = self.sessions.get(conn)
        if session is not None:
            self._end(session)
        conn.send(disconnect_push_frame(code, reason))
        conn.close(code, reason)

    # -- fan-out -----------------------------------------------------------------------------------

    def _presence_push(self, kind: str, channel: str, session: Session) -> None:
        subscribers = self._channels.get(channel)
        if subscribers is None or session.info is None:
            return
        frame = prepare_message(presence_push_frame(kind, channel, session.info.as_dict()))
        self._send_all(subscribers.by_conn, frame, exclude=session.conn)

    def _deliver(self, publication: Publication) -> None:
        """The engine's callback: every publication to a channel this node has subscribers on."""
        self.stats.publications += 1
        channel = publication.channel
        subscribers = self._channels.get(channel)
        if subscribers is not None:
            self._send_all(subscribers.by_conn, prepare_message(pub_push_frame(publication.json)))
        patterns = self._patterns.get(namespace_of(channel))
        if patterns is not None:
            for pattern, matching in list(patterns.items()):
                if channel.startswith(matching.prefix):  # type: ignore[arg-type]
                    frame = prepare_message(pub_push_frame(publication.json, pattern))
                    self._send_all(matching.by_conn, frame)

    def _send_all(
        self, conns: dict[WebSocket, Subscription], frame: PreparedMessage, exclude: object = None
    ) -> None:
        limit = self.limits.queue_limit
        slow: list[WebSocket] | None = None
        targets = list(conns)  # a send may close a connection, which edits `conns`
        for conn in targets:
            if conn.buffered_amount > limit:
                if slow is None:
                    slow = []
                slow.append(conn)
            elif conn is not exclude:
                conn.send_prepared(frame)
        self.stats.deliveries += len(targets)
        if slow is not None:
            self._drop_slow(slow)

    def _drop_slow(self, conns: Iterable[WebSocket]) -> None:
        for conn in conns:
            if conn in self.sessions and not self.sessions[conn].closed:
                self.stats.slow_disconnects += 1
                logger.info(
                    "%s: slow subscriber (%d bytes unsent), disconnecting",
                    conn.remote_address,
                    conn.buffered_amount,
                )
                self.disconnect(conn, DisconnectCode.SLOW, "slow")


#: Method name -> handler (plain functions: a table of bound methods would be a reference cycle).
_COMMANDS: dict[str, Callable[[Hub, Session, dict[str, Any]], Result]] = {
    "subscribe": Hub._subscribe,
    "unsubscribe": Hub._unsubscribe,
    "publish": Hub._publish,
    "presence": Hub._presence,
    "presence_stats": Hub._presence_stats,
    "history": Hub._history,
    "ping": Hub._ping,
}


def _with_publications(result: dict[str, Any], publications: list[Publication]) -> str:
    """``result`` plus ``"publications": [...]`` spliced in from the publications' stored JSON."""
    head = dumps(result)[:-1]
    items = ",".join(p.json for p in publications)
    return f'{head}{"," if len(head) > 1 else ""}"publications":[{items}]}}'
