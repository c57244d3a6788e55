"""The hub: a Handler that ties connections, subscriptions and the engine together.

Per connection the hub keeps a :class:`Session` (who it is, what it subscribed to) in a dict keyed by the
connection, removed in ``on_close``; per channel, the local subscribers.  Presence, history and the
pub/sub between nodes are the engine's.  Nothing here refers back from a subscription to its session, so
a closed connection's objects are freed by reference counting alone.

Fan-out: a publication's frame is built once (``prepare_message``) and queued on every subscriber with
``send_prepared``.

One bound on what is queued for a connection, replies, pushes and fan-out alike (``bound.py``): over
``queue_limit`` the I/O layer stops reading the connection (and leaves the commands it already read
unparsed); one that stays over it for ``slow_timeout`` (checked by the once-a-second tick), or that a frame
would take past twice the bound, gets a ``disconnect`` push (4001 "slow", reconnect and recover) and is
closed, and the drop is counted.  No reply is larger than the bound: a ``history`` that would be gets
error 106, a recovery that would be carries only the newest publications (``recovered: false``).

A subscription lasts as long as its permission: one allowed by a subscription token ends when the token
expires (``_expiring``, checked by the once-a-second tick, freed with the subscription), one allowed by
the identity when a ``refresh`` no longer grants it; either way with an ``unsubscribe`` push.  Server-side
operations (disconnect, unsubscribe, shutdown...) never stop at one connection nor leave one half-closed:
a failure on a connection is logged, counted (``stats.aborts``) and that connection aborted.

The engine may answer later (a :class:`~wsproto_lite.hub.engine.Reply`): replies still go out in command
order (a session's ``outbox`` holds the ones waiting for an earlier answer).  A subscription is
*pending* from the command until its reply is sent: publications that arrive meanwhile are kept and
delivered after the reply, without those the reply already carried (same epoch, offset <= the reply's);
a later duplicate of those is skipped too (``floors``), so nothing is missed or doubled in between.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from wsproto_lite import CloseCode, PreparedMessage, fit_close_reason, prepare_message

from ..server.handler import Accept, Handler, Reject
from .auth import ANONYMOUS, Authenticator, AuthFailure, Identity, SubscriptionGrant, credentials_of
from .authz import Authorizer
from .bound import QueueBound, publications_size
from .control import ClusterControl, Target
from .engine import ClientInfo, Engine, HistoryResult, Publication, Reply
from .limits import IpLimiter, RateLimits, TokenBucket, UserConnections
from .memory import MemoryEngine
from .namespaces import Channel, Namespaces, namespace_of
from .protocol import (
    PING_FRAME,
    PONG,
    SEND,
    BadFrame,
    Command,
    DisconnectCode,
    ErrorCode,
    HubError,
    Position,
    UnsubscribeCode,
    dumps,
    error_frame,
    get_bool,
    get_channel,
    get_display_str,
    get_int,
    get_position,
    get_str,
    parse_frame,
    presence_push_frame,
    pub_push_frame,
    reply_frame,
    unsubscribe_push_frame,
)

if TYPE_CHECKING:
    from wsproto_lite import Request

    from .transport import Cancellable, HubConnection, HubLoop

__all__ = ["Hub", "HubLimits", "HubStats", "Session", "Subscription", "Authenticate", "WEBSOCKET_PATHS"]

logger = logging.getLogger("wsproto_lite.hub")

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
    """Bytes queued for a connection (replies, pushes, fan-out) over which the hub stops reading its
    commands; it is disconnected as slow after ``slow_timeout`` over it, or at once past twice this.
    Also the largest reply (in characters)."""
    slow_timeout: float = 10.0
    """Seconds a connection may stay over ``queue_limit`` before it is disconnected as slow (4001)."""
    connect_timeout: float = 10.0
    """Seconds from the WebSocket opening to the ``connect`` command, else disconnect 3502 (stale)."""
    max_name_length: int = 64
    max_history_limit: int = 1000
    """Most publications one ``history`` reply carries."""
    ping_interval: float = 25.0
    """Seconds between the hub's app-level pings (``{}``; the ``ping`` of the ``connect`` result)."""
    pong_timeout: float = 10.0
    """Seconds a client has to answer a ping with ``{}`` before it is disconnected (3012 no pong)."""
    expired_close_delay: float = 25.0
    """Seconds past its token's expiry before a connection is closed (3005): the SDKs refresh at the
    ``ttl`` the hub reported, so they need a moment (Centrifugo's ``client.expired_close_delay``)."""
    expired_sub_close_delay: float = 25.0
    """The same for a subscription made with a subscription token (``sub_refresh``, then 2501)."""
    max_commands_in_flight: int = 1000
    """Commands of one connection waiting for the engine (or for an earlier reply); over it the
    connection is disconnected as slow (3008)."""


@dataclass
class HubStats:
    """Counters (plain ints, bumped where things happen), rendered by ``metrics.py`` on ``GET /metrics``."""

    connections: int = 0
    commands: int = 0
    errors: int = 0
    publications: int = 0
    deliveries: int = 0
    slow_disconnects: int = 0
    messages_in: int = 0
    bytes_in: int = 0
    """Characters of text frames received (JSON: bytes for ASCII)."""
    messages_out: int = 0
    bytes_out: int = 0
    """Characters of replies and bytes of fan-out frames queued."""
    auth_failures: int = 0
    recoveries: int = 0
    recovery_failures: int = 0
    aborts: int = 0
    """Connections aborted because a server-side operation (disconnect, unsubscribe, ...) failed on them."""
    limit_trips: dict[str, int] = field(default_factory=dict)
    """Limit name -> times it refused something."""

    def trip(self, limit: str) -> None:
        self.limit_trips[limit] = self.limit_trips.get(limit, 0) + 1


class Subscription:
    """One connection's subscription to one channel or pattern (no reference to the session)."""

    __slots__ = ("channel", "conn", "presence", "by_token", "server_side", "chan_info", "__weakref__")

    def __init__(
        self,
        channel: Channel,
        conn: HubConnection,
        by_token: bool = False,
        *,
        server_side: bool = False,
        chan_info: str = "",
    ) -> None:
        self.channel = channel
        self.conn = conn
        self.presence = False
        """True once this subscription is in the engine's presence."""
        self.by_token = by_token
        """Allowed by a subscription token (it lasts as long as the token), not by the identity."""
        self.server_side = server_side
        """Made by the server (the token's ``channels``/``subs``, ``Hub.subscribe_user``)."""
        self.chan_info = chan_info
        """JSON text of the subscription token's ``info`` (``chan_info`` in presence), or ``""``."""


class Session:
    """The hub's state for one connection."""

    __slots__ = (
        "conn",
        "info",
        "info_json",
        "subscriptions",
        "deadline",
        "closed",
        "outbox",
        "outbox_bytes",
        "over_since",
        "identity",
        "expires",
        "command_bucket",
        "byte_bucket",
        "trip_bucket",
        "ping_due",
        "pong_due",
        "__weakref__",
    )

    def __init__(
        self, conn: HubConnection, now: float, deadline: float, identity: Identity, limits: RateLimits
    ) -> None:
        self.conn = conn
        self.info: ClientInfo | None = None
        """Set by ``connect``."""
        self.info_json: str | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.deadline = deadline
        self.closed = False
        self.outbox: deque[_Slot] = deque()
        """Replies in command order, from the first one still waiting for the engine."""
        self.outbox_bytes = 0
        """Characters of the replies built in ``outbox`` (waiting for an earlier one)."""
        self.over_since: float | None = None
        """Loop time the tick first saw the connection over the queue bound (None: under it)."""
        self.identity = identity
        """From the upgrade request's credentials, then from ``connect`` / ``refresh``."""
        self.expires: float | None = None
        """Loop time when the token expires (the tick disconnects with 4003 unless refreshed)."""
        self.command_bucket = TokenBucket(limits.commands_per_second, limits.commands_burst, now)
        self.byte_bucket = TokenBucket(limits.bytes_per_second, limits.bytes_burst, now)
        self.trip_bucket = TokenBucket(limits.abuse_trips_per_second, limits.abuse_burst, now)
        self.ping_due = 0.0
        """Loop time of the next app-level ping (set by ``connect``)."""
        self.pong_due: float | None = None
        """Loop time by which the pong to the last ping must arrive; None when none is awaited."""


class _Slot:
    """One reply's place in a session's outbox; ``after`` runs right after the frame is sent."""

    __slots__ = ("frame", "after")

    def __init__(self) -> None:
        self.frame: str | None = None
        self.after: Callable[[], None] | None = None


class _ConnectRefused(HubError):
    """A ``connect`` refused for a limit: the error reply, then a close with this code."""

    def __init__(self, code: int, message: str, disconnect_code: int) -> None:
        super().__init__(code, message)
        self.disconnect_code = disconnect_code


class _Subscribers:
    """The local subscribers of one channel or pattern: connection -> subscription.

    ``pending``: subscriptions whose reply is not sent yet, with the publications that arrived meanwhile;
    ``floors``: just activated subscriptions that must skip publications up to the position their reply
    gave (a networked engine may deliver those after the reply); ``ready``: the engine's node
    subscription.
    """

    __slots__ = ("by_conn", "prefix", "pending", "floors", "ready")

    def __init__(self, prefix: str | None, ready: Reply[None]) -> None:
        self.by_conn: dict[HubConnection, Subscription] = {}
        self.prefix = prefix
        self.pending: dict[HubConnection, list[Publication]] = {}
        self.floors: dict[HubConnection, Position] = {}
        self.ready = ready


class _Then:
    """A result and what to do right after its reply is sent (activate a subscription)."""

    __slots__ = ("result", "after")

    def __init__(self, result: dict[str, Any] | str, after: Callable[[], None]) -> None:
        self.result = result
        self.after = after


Result = dict[str, Any] | str | _Then  # a result object, its JSON text already built, or either + after
Answer = Result | Reply[Result]


class Hub(Handler):
    def __init__(
        self,
        namespaces: Namespaces | None = None,
        *,
        engine: Engine | None = None,
        limits: HubLimits | None = None,
        authenticate: Authenticate | None = None,
        auth: Authenticator | None = None,
        rate_limits: RateLimits | None = None,
    ) -> None:
        self.namespaces = namespaces or Namespaces()
        self.engine = engine or MemoryEngine()
        self.limits = limits or HubLimits()
        self.authenticate = authenticate
        """The former hook ``fn(token, request) -> user`` for ``connect`` tokens (``auth`` is the new one)."""
        self.auth = auth or Authenticator()
        self.authz = Authorizer(self.auth, self.namespaces)
        self.rate_limits = rate_limits or RateLimits()
        self.ip_limiter = IpLimiter(self.rate_limits)
        self.users = UserConnections()
        self._pending: dict[HubConnection, Identity] = {}  # verified at the upgrade, until on_open
        self.stats = HubStats()
        self.bound = QueueBound(self.limits.queue_limit, self.limits.slow_timeout)
        self._behind: dict[HubConnection, Session] = {}  # went over the bound: timed by the tick
        self.sessions: dict[HubConnection, Session] = {}
        self._clients: dict[str, HubConnection] = {}  # client id -> connection, for the server-side API
        self._channels: dict[str, _Subscribers] = {}  # exact channel -> subscribers
        self._patterns: dict[str, dict[str, _Subscribers]] = {}  # namespace -> pattern -> subscribers
        self._expiring: dict[Subscription, float] = {}  # subscription -> loop time its token expires
        self._loop: HubLoop | None = None
        self._tick_timer: Cancellable | None = None
        self._ticks = 0
        self.control = ClusterControl(self)
        """Server-side operations on every node (``control.py``)."""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, loop: HubLoop) -> None:
        """Begin: engine delivery and the once-a-second housekeeping (connect timeouts, TTLs)."""
        self._loop = loop
        self.engine.attach(loop)
        self.engine.start(self._deliver, self._on_join_leave, self._on_lost)
        self.control.start(loop)
        self._tick_timer = loop.call_later(1.0, self._tick)

    def stop(self) -> None:
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        self.control.stop()
        self.engine.close()

    def disconnect_all(self, code: int = DisconnectCode.SHUTDOWN, reason: str = "shutdown") -> None:
        """Tell every client to go (with ``code``'s reconnect advice) and close them."""
        for conn in list(self.sessions):
            self.disconnect(conn, code, reason)

    def expire_subscriptions(self, now: float) -> int:
        """End the subscriptions whose subscription token expired by loop time ``now`` (the tick calls
        this every second): an ``unsubscribe`` push 2501, resubscribe with a fresh token.  How many."""
        due = [subscription for subscription, expires in self._expiring.items() if expires <= now]
        for subscription in due:
            session = self.sessions.get(subscription.conn)
            name = subscription.channel.name
            if session is None or session.subscriptions.get(name) is not subscription:
                self._expiring.pop(subscription, None)  # not reachable: _drop_subscription forgets it
                continue
            del session.subscriptions[name]
            self._end_subscription(session, subscription, UnsubscribeCode.EXPIRED, "subscription expired")
        return len(due)

    def _send_pings(self, now: float) -> None:
        """App-level pings (``{}``) to connected clients, every ``ping_interval``; a client that did not
        answer the previous one within ``pong_timeout`` is disconnected (3012 no pong), as Centrifugo does."""
        mute: list[HubConnection] = []
        for session in self.sessions.values():
            if session.info is None or session.closed:
                continue
            if session.pong_due is not None and session.pong_due <= now:
                mute.append(session.conn)
            elif session.ping_due <= now:
                session.ping_due = now + self.limits.ping_interval
                if session.pong_due is None:
                    session.pong_due = now + self.limits.pong_timeout
                self._send_frame(session, PING_FRAME)
        for conn in mute:
            self.disconnect(conn, DisconnectCode.NO_PONG, "no pong")

    def _tick(self) -> None:
        assert self._loop is not None
        self._tick_timer = self._loop.call_later(1.0, self._tick)
        now = self._loop.time()
        late = [s.conn for s in self.sessions.values() if s.info is None and s.deadline <= now]
        for conn in late:
            self.disconnect(conn, DisconnectCode.CONNECT_TIMEOUT, "connect timeout")
        expired = [s.conn for s in self.sessions.values() if s.expires is not None and s.expires <= now]
        for conn in expired:
            self.disconnect(conn, DisconnectCode.TOKEN_EXPIRED, "connection expired")
        self.expire_subscriptions(now)
        self._drop_slow(self._stayed_over(now))
        self._send_pings(now)
        self._ticks += 1
        if self._ticks % 5 == 0:
            self.engine.expire()
            self.ip_limiter.expire(now)

    def _stayed_over(self, now: float) -> list[HubConnection]:
        """The connections that went over the queue bound ``slow_timeout`` ago and are still behind:
        over it, or with reading still paused (until the I/O layer's low watermark).  Only those that
        went over are looked at, not every session."""
        slow: list[HubConnection] = []
        bound = self.bound
        for conn, session in list(self._behind.items()):
            if session.closed:
                del self._behind[conn]
            elif bound.over(self._queued(session)) or (conn.is_open and not conn.writable):
                if session.over_since is None:  # drained in between (on_writable), then behind again
                    session.over_since = now
                elif now - session.over_since >= bound.timeout:
                    slow.append(conn)
            else:
                session.over_since = None
                del self._behind[conn]
        return slow

    def _behind_if_over(self, session: Session) -> None:
        """Mark a connection that something just queued took over the bound (the tick times it)."""
        if session.conn not in self._behind and self.bound.over(self._queued(session)):
            self._behind[session.conn] = session
            session.over_since = self._now()

    # -- Handler callbacks -------------------------------------------------------------------------

    def handshake(self, conn: HubConnection, request: Request) -> Accept | Reject | None:
        if request.path not in WEBSOCKET_PATHS:
            return Reject(404, body=b"the hub's WebSocket endpoint is /connection/websocket\n")
        address = conn.remote_address
        ip = str(address[0]) if isinstance(address, tuple) and address else ""
        if not self.ip_limiter.allow(ip, self._now()):
            self.stats.trip("connections_per_ip")
            return Reject(429, [("Retry-After", "1")], b"too many connections from this address\n")
        credentials = credentials_of(request)
        if credentials is not None:
            try:
                identity = self.auth.verify(credentials)
            except AuthFailure:
                # nothing about why (no oracle): the status and a fixed body
                self.stats.auth_failures += 1
                return Reject(401, [("WWW-Authenticate", "Bearer")], b"unauthorized\n")
            self._pending[conn] = identity
        return None

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else time.monotonic()

    def identify(self, conn: HubConnection, identity: Identity) -> None:
        """Between ``handshake`` and ``on_open``: the transport authenticated ``conn`` itself (an
        application's session, see ``asgi.py``); ``connect`` without a token takes this identity."""
        self._pending[conn] = identity

    def on_open(self, conn: HubConnection) -> None:
        now = self._now()
        identity = self._pending.pop(conn, ANONYMOUS)
        self.sessions[conn] = Session(
            conn, now, now + self.limits.connect_timeout, identity, self.rate_limits
        )
        self.stats.connections += 1

    def on_close(self, conn: HubConnection, code: int, reason: str) -> None:
        self._pending.pop(conn, None)
        self._behind.pop(conn, None)
        session = self.sessions.pop(conn, None)
        if session is not None:
            self._end(session)
            if session.info is not None:
                self._clients.pop(session.info.client, None)
                self.users.remove(session.info.user, conn)

    def on_writable(self, conn: HubConnection) -> None:
        """Drained under the I/O layer's low watermark: no longer over the bound."""
        session = self.sessions.get(conn)
        if session is not None:
            session.over_since = None

    def on_message(self, conn: HubConnection, message: str | bytes) -> None:
        session = self.sessions.get(conn)
        if session is None or session.closed:
            return
        if not isinstance(message, str):
            # RFC 6455 §7.4.1: 1003, "received a type of data it cannot accept"
            self._end(session)
            self._close(conn, CloseCode.UNSUPPORTED_DATA, "the hub speaks JSON text frames")
            return
        self.stats.messages_in += 1
        self.stats.bytes_in += len(message)
        try:
            commands = parse_frame(message)
        except BadFrame as exc:
            # nothing to answer (no id to repeat): Centrifugo closes with 3501 bad request
            self.stats.errors += 1
            self.disconnect(conn, DisconnectCode.BAD_REQUEST, str(exc))
            return
        refusal: HubError | None = None
        limit = ""
        now = self._now()
        if len(message) > self.limits.max_command_size:
            refusal, limit = HubError(ErrorCode.LIMIT_EXCEEDED, "command too large"), "command_size"
        elif not session.identity.trusted and not session.byte_bucket.take(now, len(message)):
            refusal = HubError(ErrorCode.TOO_MANY_REQUESTS, "too many requests", temporary=True)
            limit = "bytes_per_connection"
        if refusal is not None and self._tripped(session, limit):
            return
        for command in commands:
            if session.closed:
                return
            if isinstance(command, tuple):
                self.stats.commands += 1
                self._send_error(session, command[0], command[1])
            elif command.method == PONG:
                session.pong_due = None
            elif command.method == SEND:
                self.stats.commands += 1  # no handler for asynchronous messages: dropped, as without a proxy
            else:
                self.stats.commands += 1
                if refusal is not None:
                    self._send_error(session, command.id, refusal)
                elif not session.identity.trusted and not session.command_bucket.take(now):
                    # an API-key client (the operator's own server) is not limited
                    if self._tripped(session, "commands_per_connection"):
                        return
                    error = HubError(ErrorCode.TOO_MANY_REQUESTS, "too many requests", temporary=True)
                    self._send_error(session, command.id, error)
                else:
                    self._run(session, command)

    def _tripped(self, session: Session, limit: str) -> bool:
        """Count a trip of ``limit`` (any per-connection limit: rates, sizes, subscriptions, channels).

        A connection that keeps tripping limits, faster than ``rate_limits.abuse_trips_per_second`` for
        longer than ``abuse_burst`` trips, is closed with 1008 (RFC 6455 §7.4.1: a message "that violates
        its policy"); True then.  API-key clients (the operator's own servers) are never closed for it.
        """
        self.stats.trip(limit)
        if session.identity.trusted or session.trip_bucket.take(self._now()):
            return False
        self.stats.trip("abuse_close")
        self._end(session)
        session.conn.close(CloseCode.POLICY_VIOLATION, "policy violation")
        return True

    def _run(self, session: Session, command: Command) -> None:
        try:
            if command.method == "connect":
                answer: Answer = self._connect(session, command.params)
            elif session.info is None:
                raise HubError(ErrorCode.BAD_REQUEST, "the first command must be connect")
            else:
                answer = _COMMANDS[command.method](self, session, command.params)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
            answer = Reply.failed(exc)
        if not isinstance(answer, Reply):
            answer = Reply.of(answer)
        if answer.done and not session.outbox:  # the usual path: answered at once, nothing before it
            self._send_answer(session, command, answer)
            return
        if len(session.outbox) >= self.limits.max_commands_in_flight:
            self._drop_slow((session.conn,))
            return
        slot = _Slot()
        session.outbox.append(slot)
        answer.observe(lambda done: self._fill(session, command, slot, done))

    def _answer_frame(
        self, session: Session, command: Command, answer: Reply[Result]
    ) -> tuple[str, Callable[[], None] | None]:
        error = answer.error
        if error is None:
            value = answer.result()
            after = None
            if isinstance(value, _Then):
                result, after = value.result, value.after
            else:
                result = value
            frame = reply_frame(command.id, command.method, result)
            if len(frame) <= self.bound.max_reply or after is not None:
                return frame, after
            # a reply over the bound is not queued (commands that can build one check before they do)
            self.stats.trip("reply_size")
            error = HubError(ErrorCode.LIMIT_EXCEEDED, "reply too large")
        if not isinstance(error, HubError):
            logger.error("command %s failed", command.method, exc_info=error)
            error = HubError(ErrorCode.INTERNAL, "internal error", temporary=True)
        self.stats.errors += 1
        after = None
        if isinstance(error, AuthFailure):
            self.stats.auth_failures += 1
        if (
            command.method == "connect"
            and isinstance(error, AuthFailure | _ConnectRefused)
            and error.code != ErrorCode.TOKEN_EXPIRED  # the SDKs get a new token and reconnect themselves
        ):
            # the error reply says why; then the close, whose code carries the reconnect advice
            code, reason = error.disconnect_code, error.message
            after = lambda: self.disconnect(session.conn, code, reason)  # noqa: E731
        return error_frame(command.id, error), after

    def _queued(self, session: Session) -> int:
        """What is queued for the connection: unsent bytes and the replies waiting in its outbox."""
        return session.conn.buffered_amount + session.outbox_bytes

    def _room(self, session: Session, size: int) -> bool:
        """True when ``size`` more fit under the hard bound; otherwise the connection is dropped as slow."""
        if self.bound.admits(self._queued(session), size):
            return True
        self._drop_slow((session.conn,))
        return False

    def _send_frame(self, session: Session, frame: str) -> bool:
        """Queue a reply or a push; False (and the connection dropped as slow) when it does not fit."""
        if not self._room(session, len(frame)):
            return False
        self.stats.messages_out += 1
        self.stats.bytes_out += len(frame)
        if not session.conn.send(frame):  # past the I/O layer's own hard limit: dropped
            self._drop_slow((session.conn,))
            return False
        self._behind_if_over(session)
        return True

    def _send_answer(self, session: Session, command: Command, answer: Reply[Result]) -> None:
        frame, after = self._answer_frame(session, command, answer)
        if self._send_frame(session, frame) and after is not None:
            after()

    def _fill(self, session: Session, command: Command, slot: _Slot, answer: Reply[Result]) -> None:
        """A waited-for answer arrived: send it and every answer behind it that is ready."""
        if session.closed:  # nothing goes out any more: do not build it
            session.outbox.clear()
            session.outbox_bytes = 0
            return
        frame, slot.after = self._answer_frame(session, command, answer)
        self._hold(session, slot, frame)
        outbox = session.outbox
        while outbox and outbox[0].frame is not None and not session.closed:
            ready = outbox.popleft()
            session.outbox_bytes -= len(ready.frame)  # type: ignore[arg-type]
            if self._send_frame(session, ready.frame) and ready.after is not None:  # type: ignore[arg-type]
                ready.after()

    def _hold(self, session: Session, slot: _Slot, frame: str) -> None:
        """Keep a built reply in its outbox slot (counted in the queue bound; dropped if over it)."""
        if self._room(session, len(frame)):
            slot.frame = frame
            session.outbox_bytes += len(frame)
            self._behind_if_over(session)

    def _send_error(self, session: Session, command_id: int, error: HubError) -> None:
        """The reply to a frame that is not a command (behind any reply still waiting)."""
        self.stats.errors += 1
        frame = error_frame(command_id, error)
        if session.outbox:
            slot = _Slot()
            session.outbox.append(slot)
            self._hold(session, slot, frame)
        else:
            self._send_frame(session, frame)

    # -- commands ----------------------------------------------------------------------------------

    def _connect(self, session: Session, params: dict[str, Any]) -> Answer:
        if session.info is not None:
            raise HubError(ErrorCode.BAD_REQUEST, "already connected")
        token = get_str(params, "token", required=False, max_length=8192)
        get_str(params, "name", required=False, max_length=self.limits.max_name_length)  # the SDK's name
        get_str(params, "version", required=False, max_length=self.limits.max_name_length)
        display = _display_name(params.get("data"), self.limits.max_name_length)
        recover = _connect_subs(params.get("subs"))
        identity = self._identify(session, token)
        user = identity.user
        if user and not identity.trusted:
            if self.users.count(user) >= self.rate_limits.max_connections_per_user:
                self.stats.trip("connections_per_user")
                raise _ConnectRefused(
                    ErrorCode.LIMIT_EXCEEDED, "connection limit", DisconnectCode.CONNECTION_LIMIT
                )
        session.identity = identity
        conn_info = identity.info or (dumps({"name": display}) if display else "")
        session.info = ClientInfo(secrets.token_urlsafe(12), user, conn_info)
        self._clients[session.info.client] = session.conn
        if user:
            self.users.add(user, session.conn)
        session.info_json = session.info.as_json()
        now = self._now()
        session.ping_due = now + self.limits.ping_interval
        result: dict[str, Any] = {
            "client": session.info.client,
            "version": _VERSION,
            "ping": int(self.limits.ping_interval),
            "pong": True,
        }
        self._set_expiry(session, result)
        channels = [c for c in identity.server_channels if c not in session.subscriptions]
        if not channels:
            return result
        opened = [self._server_subscription(session, name, recover.get(name)) for name in channels]
        return _gather([reply for reply in opened if reply is not None]).then(
            lambda subscribed: _with_subs(result, subscribed)
        )

    def _identify(self, session: Session, token: str) -> Identity:
        """The identity ``connect`` establishes: its token, else the upgrade's credentials, else anonymous."""
        if token:
            if self.authenticate is not None:  # the former hook
                user = self.authenticate(token, session.conn.request)
                return Identity(user=user, anonymous=not user)
            identity = self.auth.verify_token(token)
            if identity.anonymous and not self.authz.anonymous_connections:
                raise AuthFailure()  # a token without ``sub`` is anonymous: allowed only where they are
            return identity
        if session.identity is not ANONYMOUS:
            return session.identity
        if self.authz.anonymous_connections:
            return ANONYMOUS
        raise AuthFailure()

    def _set_expiry(self, session: Session, result: dict[str, Any]) -> dict[str, Any]:
        expires = session.identity.expires
        if expires is None:
            session.expires = None
            return result
        ttl = max(0.0, expires - time.time())
        session.expires = self._now() + ttl + self.limits.expired_close_delay
        result["expires"] = True
        result["ttl"] = int(ttl)
        return result

    def _refresh(self, session: Session, params: dict[str, Any]) -> Result:
        """A new token for a live connection: same user, new expiry (and grants)."""
        identity = self.auth.verify_token(get_str(params, "token", max_length=8192))
        if identity.user != session.identity.user:
            raise AuthFailure()
        session.identity = identity
        self._recheck_subscriptions(session)
        assert session.info is not None
        return self._set_expiry(session, {"client": session.info.client, "version": _VERSION})

    def _recheck_subscriptions(self, session: Session) -> None:
        """After a ``refresh``: end (push 2001) the subscriptions the new identity no longer grants.

        Those allowed by a subscription token are the token's (they end when it expires), not the
        identity's; server-side ones are the server's.
        """
        for name, subscription in list(session.subscriptions.items()):
            if subscription.by_token or subscription.server_side:
                continue
            try:
                self.authz.check_read(session.identity, subscription.channel)
            except HubError:
                del session.subscriptions[name]
                self._end_subscription(
                    session, subscription, UnsubscribeCode.PERMISSION_REVOKED, "permission revoked"
                )

    def _admit(
        self, session: Session, params: dict[str, Any]
    ) -> tuple[Channel, Position | None, SubscriptionGrant | None]:
        """What a subscribe must pass before the engine hears of it: authorization, limits, arguments.

        Returns the channel, the position to recover from, if any, and the subscription token's grant
        when that token is what allowed it.
        """
        channel = self.namespaces.resolve(get_channel(params), pattern_ok=True)
        subscription_token = get_str(params, "token", required=False, max_length=8192)
        assert session.info is not None
        grant = self.authz.check_read(
            session.identity, channel, subscription_token=subscription_token, client=session.info.client
        )
        self._check_room(session, channel)
        recover = None
        if get_bool(params, "recover"):
            epoch = get_str(params, "epoch", required=False, max_length=64)
            recover = Position(epoch, get_int(params, "offset", 0))
            if channel.is_pattern:
                raise HubError(ErrorCode.BAD_REQUEST, "wildcard subscriptions have no history to recover")
        return channel, recover, grant

    def _check_room(self, session: Session, channel: Channel) -> None:
        """105 when already subscribed; 106 over the connection's or the hub's channel limits."""
        if channel.name in session.subscriptions:
            raise HubError(ErrorCode.ALREADY_SUBSCRIBED, "already subscribed")
        if len(session.subscriptions) >= self.limits.max_channels_per_connection:
            self._tripped(session, "subscriptions_per_connection")  # the reply is moot if this closes
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "too many subscriptions on this connection")
        if self._channel_count() >= self.rate_limits.max_channels and not self._has_subscribers(channel):
            self._tripped(session, "channels")
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "too many channels on this hub", temporary=True)

    def _subscribe(self, session: Session, params: dict[str, Any]) -> Answer:
        channel, recover, grant = self._admit(session, params)
        flag = get_int(params, "flag", 0, maximum=2**32 - 1)
        asked = {name for name in ("recoverable", "positioned", "join_leave") if get_bool(params, name)}
        subscription = Subscription(
            channel,
            session.conn,
            by_token=grant is not None,
            chan_info=grant.info if grant is not None else "",
        )
        expires = grant.expires if grant is not None else None
        return self._open(session, subscription, recover, asked, expires, reject_unrecovered=bool(flag & 2))

    def _open(
        self,
        session: Session,
        subscription: Subscription,
        recover: Position | None,
        asked: set[str],
        expires: float | None,
        *,
        reject_unrecovered: bool = False,
    ) -> Reply[Result]:
        """Start a subscription: the reply resolves to its ``SubscribeResult`` (JSON text) and, right
        after that is sent, the subscription goes live (``_Then``).  ``asked``: the request's
        ``recoverable``/``positioned`` flags, echoed when the namespace keeps history."""
        channel = subscription.channel
        options = channel.options
        assert session.info is not None
        session.subscriptions[channel.name] = subscription
        ready = self._local_add(subscription)
        presence = options.presence and not channel.is_pattern
        history = options.history and not channel.is_pattern
        result: dict[str, Any] = {}
        if history:
            if "recoverable" in asked or recover is not None:
                result["recoverable"] = True
            if asked & {"recoverable", "positioned"} or recover is not None:
                result["positioned"] = True
        if expires is not None:
            ttl = max(0.0, expires - time.time())
            self._expiring[subscription] = self._now() + ttl + self.limits.expired_sub_close_delay
            result["expires"], result["ttl"] = True, int(ttl)

        def subscribed(_: None) -> Answer:
            # the node receives the channel now: a position read from here on misses nothing
            current = session.subscriptions.get(channel.name) is subscription
            if presence and current and session.info is not None:
                info = self._presence_info(session.info, subscription)
                self.engine.add_presence(channel.name, info)
                subscription.presence = True
                if options.join_leave:
                    self.engine.join_leave("join", channel.name, info)
            if not history:
                return _Then(dumps(result), lambda: self._activate(subscription, None))
            if recover is None:
                return self.engine.position(channel.name, options).then(positioned)
            return self.engine.recover(channel.name, options, recover).then(recovered)

        def positioned(position: Position) -> Result:
            result["epoch"], result["offset"] = position.epoch, position.offset
            return _Then(dumps(result), lambda: self._activate(subscription, position))

        def recovered(recovery: Any) -> Result:
            position = recovery.position
            result["was_recovering"] = True
            result["epoch"], result["offset"] = position.epoch, position.offset
            complete = recovery.recovered
            if complete and publications_size(recovery.publications) > self.bound.max_reply - _REPLY_HEAD:
                self.stats.trip("reply_size")  # the reply would be over the bound: not recovered
                complete = False
            if not complete:
                self.stats.recovery_failures += 1
                if reject_unrecovered:  # flag 2: the client wants 112 rather than a gap
                    raise HubError(ErrorCode.UNRECOVERABLE_POSITION, "unrecoverable position")
                return _Then(dumps(result), lambda: self._activate(subscription, position))
            self.stats.recoveries += 1
            result["recovered"] = True
            after = recovery.publications[-1].offset if recovery.publications else None
            floor = Position(position.epoch, max(position.offset, after or 0))
            text = _with_publications(result, recovery.publications)
            return _Then(text, lambda: self._activate(subscription, floor))

        answer: Reply[Result] = ready.then(subscribed)

        def failed(done: Reply[Result]) -> None:
            if done.error is not None:
                self._abandon(session, subscription)

        answer.observe(failed)
        return answer

    def _presence_info(self, info: ClientInfo, subscription: Subscription) -> ClientInfo:
        if not subscription.chan_info:
            return info
        return ClientInfo(info.client, info.user, info.conn_info, subscription.chan_info)

    def _server_subscription(
        self, session: Session, name: str, recover: Position | None
    ) -> Reply[tuple[str, str, Callable[[], None]]] | None:
        """A server-side subscription of ``session`` to ``name`` (no client authorization: the token or
        the server's API made it); its reply resolves to (channel, SubscribeResult JSON, activate).
        None when it cannot be made (a bad channel name, a limit): logged, the connection lives on."""
        try:
            channel = self.namespaces.resolve(name, pattern_ok=True)
            self._check_room(session, channel)
        except HubError as exc:
            logger.info("%s: server-side subscription to %r refused: %s", session.conn, name, exc.message)
            return None
        if channel.is_pattern:
            recover = None
        subscription = Subscription(channel, session.conn, server_side=True)
        asked = {"recoverable", "positioned"}
        return self._open(session, subscription, recover, asked, None).then(_opened(name))

    def _abandon(self, session: Session, subscription: Subscription) -> None:
        """A subscribe that failed (the engine could not serve it): forget the subscription."""
        name = subscription.channel.name
        if session.subscriptions.get(name) is subscription:
            del session.subscriptions[name]
            self._drop_subscription(session, subscription)

    def _unsubscribe(self, session: Session, params: dict[str, Any]) -> Result:
        """Succeeds when not subscribed too (Centrifugo; centrifuge-js reconnects on an error here)."""
        name = get_channel(params)
        subscription = session.subscriptions.pop(name, None)
        if subscription is not None:
            self._drop_subscription(session, subscription)
        return {}

    def _sub_refresh(self, session: Session, params: dict[str, Any]) -> Result:
        """A fresh subscription token for a subscription allowed by one: it now lasts until the new expiry."""
        name = get_channel(params)
        token = get_str(params, "token", max_length=8192)
        subscription = session.subscriptions.get(name)
        if subscription is None or not subscription.by_token or session.info is None:
            raise HubError(ErrorCode.BAD_REQUEST, "no subscription by token to this channel")
        grant = self.auth.verify_subscription_token(token, session.identity.user, name, session.info.client)
        if grant is None:
            raise HubError(ErrorCode.PERMISSION_DENIED, "permission denied")
        if grant.expires is None:
            self._expiring.pop(subscription, None)
            return {}
        ttl = max(0.0, grant.expires - time.time())
        self._expiring[subscription] = self._now() + ttl + self.limits.expired_sub_close_delay
        return {"expires": True, "ttl": int(ttl)}

    def _publish(self, session: Session, params: dict[str, Any]) -> Answer:
        channel = self.namespaces.resolve(get_channel(params))
        self.authz.check_publish(session.identity, channel, subscribed=channel.name in session.subscriptions)
        if "data" not in params:
            raise HubError(ErrorCode.BAD_REQUEST, "'data' is missing")
        try:
            data_json = dumps(params["data"])
        except (ValueError, RecursionError):
            raise HubError(ErrorCode.BAD_REQUEST, "'data' cannot be encoded as JSON") from None
        return self.engine.publish(channel.name, data_json, session.info_json, channel.options).then(
            _publish_result
        )

    def _readable(self, session: Session, params: dict[str, Any]) -> Channel:
        """The command's channel, after the authorization check for reading it (presence, history)."""
        channel = self.namespaces.resolve(get_channel(params))
        subscribed = channel.name in session.subscriptions
        self.authz.check_read(session.identity, channel, subscribed=subscribed)
        return channel

    def _presence_channel(self, session: Session, params: dict[str, Any]) -> Channel:
        channel = self._readable(session, params)
        if not channel.options.presence:
            raise HubError(ErrorCode.NOT_AVAILABLE, "presence is off in this namespace")
        return channel

    def _presence(self, session: Session, params: dict[str, Any]) -> Answer:
        channel = self._presence_channel(session, params)
        return self.engine.presence(channel.name).then(_presence_result)

    def _presence_stats(self, session: Session, params: dict[str, Any]) -> Answer:
        channel = self._presence_channel(session, params)
        return self.engine.presence_stats(channel.name).then(
            lambda stats: {"num_clients": stats[0], "num_users": stats[1]}
        )

    def _history(self, session: Session, params: dict[str, Any]) -> Answer:
        """``limit``: 0 (the default) = the stream position only, -1 = everything held, up to the cap."""
        channel = self._readable(session, params)
        if not channel.options.history:
            raise HubError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")
        cap = self.limits.max_history_limit
        limit = get_int(params, "limit", 0, minimum=-1)
        since = get_position(params, "since")
        reverse = get_bool(params, "reverse")
        if limit == 0:
            return self.engine.position(channel.name, channel.options).then(
                lambda position: _with_publications({"epoch": position.epoch, "offset": position.offset}, [])
            )
        return self.engine.history(
            channel.name,
            channel.options,
            since=since,
            limit=cap if limit < 0 else min(limit, cap),
            reverse=reverse,
        ).then(self._history_result)

    def _history_result(self, history: HistoryResult) -> Result:
        """The ``history`` result, unless it would be larger than a reply may be: then error 106."""
        if publications_size(history.publications) > self.bound.max_reply - _REPLY_HEAD:
            self.stats.trip("reply_size")
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "reply too large: ask for fewer publications")
        position = history.position
        return _with_publications({"epoch": position.epoch, "offset": position.offset}, history.publications)

    def _ping(self, session: Session, params: dict[str, Any]) -> Result:
        return {}

    def _rpc(self, session: Session, params: dict[str, Any]) -> Result:
        raise HubError(ErrorCode.NOT_AVAILABLE, "rpc is not available")  # no RPC handler yet

    # -- subscriptions -----------------------------------------------------------------------------

    def _channel_count(self) -> int:
        return len(self._channels) + sum(len(p) for p in self._patterns.values())

    def _has_subscribers(self, channel: Channel) -> bool:
        return self._subscribers(channel) is not None

    def _subscribers(self, channel: Channel) -> _Subscribers | None:
        if channel.prefix is None:
            return self._channels.get(channel.name)
        patterns = self._patterns.get(channel.namespace)
        return None if patterns is None else patterns.get(channel.name)

    def _local_add(self, subscription: Subscription) -> Reply[None]:
        """Add a pending subscription; the reply of the node's subscription to the channel."""
        channel = subscription.channel
        subscribers = self._subscribers(channel)
        if subscribers is None:
            subscribers = _Subscribers(channel.prefix, _DONE)
            if channel.prefix is None:
                self._channels[channel.name] = subscribers
            else:
                self._patterns.setdefault(channel.namespace, {})[channel.name] = subscribers
            subscribers.ready = self.engine.node_subscribe(channel.name)
        subscribers.pending[subscription.conn] = []
        return subscribers.ready

    def _activate(self, subscription: Subscription, floor: Position | None) -> None:
        """The subscribe reply is sent: deliver what arrived meanwhile (past ``floor``), then live."""
        subscribers = self._subscribers(subscription.channel)
        if subscribers is None:
            return
        conn = subscription.conn
        held = subscribers.pending.pop(conn, None)
        if held is None:  # unsubscribed or closed in between
            return
        session = self.sessions.get(conn)
        for publication in held:
            if floor is not None and _covered(publication, floor):
                continue
            if publication.offset is not None and floor is not None:
                floor = Position(publication.epoch, publication.offset)
            concrete = publication.channel if subscribers.prefix is not None else None
            frame = pub_push_frame(publication.json, subscription.channel.name, concrete)
            if session is None or not self._send_frame(session, frame):
                return  # dropped as slow: the subscription is gone with the session
        subscribers.by_conn[conn] = subscription
        if floor is not None and floor.offset:
            subscribers.floors[conn] = floor

    def _local_remove(self, subscription: Subscription) -> None:
        channel = subscription.channel
        subscribers = self._subscribers(channel)
        if subscribers is None:
            return
        conn = subscription.conn
        if subscribers.by_conn.get(conn) is subscription:
            del subscribers.by_conn[conn]
        subscribers.pending.pop(conn, None)
        subscribers.floors.pop(conn, None)
        if not subscribers.by_conn and not subscribers.pending:
            if channel.prefix is None:
                del self._channels[channel.name]
            else:
                patterns = self._patterns[channel.namespace]
                del patterns[channel.name]
                if not patterns:
                    del self._patterns[channel.namespace]
            self.engine.node_unsubscribe(channel.name)

    def _drop_subscription(self, session: Session, subscription: Subscription) -> None:
        self._expiring.pop(subscription, None)
        self._local_remove(subscription)
        channel = subscription.channel
        if subscription.presence and session.info is not None:
            subscription.presence = False
            self.engine.remove_presence(channel.name, session.info.client)
            if channel.options.join_leave:
                self.engine.join_leave("leave", channel.name, self._presence_info(session.info, subscription))

    def _end(self, session: Session) -> None:
        """Forget a connection's subscriptions and presence (idempotent)."""
        if session.closed:
            return
        session.closed = True
        subscriptions, session.subscriptions = session.subscriptions, {}
        for subscription in subscriptions.values():
            try:  # one failing (the engine's presence, say) must not leave the others subscribed
                self._drop_subscription(session, subscription)
            except Exception:
                logger.exception("%s: ending a subscription failed", session.conn.remote_address)

    # -- the server-side API (the HTTP API of the operations issue calls these) ----------------------

    def channels(self) -> dict[str, int]:
        """Every channel and pattern with subscribers here -> how many (for ``/api/channels``)."""
        counts = {name: len(s.by_conn) for name, s in self._channels.items()}
        for patterns in self._patterns.values():
            counts.update((name, len(s.by_conn)) for name, s in patterns.items())
        return counts

    def subscribe_user(self, target: Target, channel: str, data: Any = None) -> int:
        """Server-side subscription (``/api/subscribe``, through ``control.py`` on every node): subscribe
        ``target``'s connections here to ``channel``.  Each gets a ``subscribe`` push with the
        subscription's result (``data`` in it when given), then the channel's publications; no
        client-side authorization applies (the server decided).  Connections already subscribed are
        left as they are.  How many it reached; raises ``HubError`` (102/107) for a bad channel."""
        self.namespaces.resolve(channel, pattern_ok=True)
        data_json = "" if data is None else dumps(data)
        reached = 0
        for conn in target.conns(self):
            session = self.sessions.get(conn)
            if session is None or session.closed or channel in session.subscriptions:
                continue
            opened = self._server_subscription(session, channel, None)
            if opened is None:
                continue
            reached += 1
            opened.observe(
                lambda done, session=session: self._push_subscribed(session, done, data_json)  # type: ignore[misc]
            )
        return reached

    def _push_subscribed(
        self, session: Session, done: Reply[tuple[str, str, Callable[[], None]]], data_json: str
    ) -> None:
        """Tell the client about a server-side subscription (``subscribe`` push), then let it go live."""
        if done.error is not None or session.closed:
            return
        name, result, activate = done.result()
        if data_json:
            result = f'{result[:-1]}{"," if len(result) > 2 else ""}"data":{data_json}}}'
        if self._send_frame(session, _push_text(name, "subscribe", result)):
            activate()

    def disconnect_user(
        self, user: str, code: int = DisconnectCode.FORCE_DISCONNECT, reason: str = "force disconnect"
    ) -> int:
        """Disconnect every connection of ``user`` (``/api/disconnect``); how many there were."""
        conns = self.users.of(user)
        for conn in conns:
            self.disconnect(conn, code, reason)
        return len(conns)

    def revoke_api_keys(self, keys: Iterable[str]) -> int:
        """Replace the API keys; connections made with a key no longer listed are disconnected (3500)."""
        self.auth.api_keys.replace(keys)
        valid = self.auth.api_keys.digests
        revoked = [
            s.conn
            for s in self.sessions.values()
            if s.identity.trusted and s.identity.key_digest not in valid
        ]
        for conn in revoked:
            self.disconnect(conn, DisconnectCode.UNAUTHORIZED, "unauthorized")
        return len(revoked)

    def connection_of(self, client: str) -> HubConnection | None:
        """The connection of a client id (from ``connect``), if it is still here."""
        return self._clients.get(client)

    def publish(
        self, channel: str, data: Any, *, idempotency_key: str = "", skip_history: bool = False
    ) -> Reply[Publication]:
        """Publish from the server: no ``info``; namespace rules on client publishing do not apply.

        Goes through the engine, so it reaches the channel's subscribers on every node.  Raises
        ``HubError`` (102/107) for a bad channel or data that is not JSON; the reply resolves to the
        publication (offset assigned) or fails with ``HubError`` (108, temporary: engine unavailable).
        ``skip_history``: delivered but not stored; ``idempotency_key``: a repeat within the engine's
        window is not published again (the first one's publication is the answer).
        """
        resolved = self.namespaces.resolve(channel)
        try:
            data_json = dumps(data)
        except (TypeError, ValueError, RecursionError):
            raise HubError(ErrorCode.BAD_REQUEST, "data cannot be encoded as JSON") from None
        options = resolved.options
        if skip_history and options.history:
            options = replace(options, history_size=0, history_ttl=0.0)
        return self.engine.publish(resolved.name, data_json, None, options, idempotency_key=idempotency_key)

    def unsubscribe(
        self,
        conn: HubConnection,
        channel: str,
        code: int = UnsubscribeCode.SERVER,
        reason: str = "server unsubscribe",
    ) -> bool:
        """End a client's subscription from the server side, with an ``unsubscribe`` push."""
        session = self.sessions.get(conn)
        if session is None or session.closed:
            return False
        subscription = session.subscriptions.pop(channel, None)
        if subscription is None:
            return False
        self._end_subscription(session, subscription, code, reason)
        return True

    def _end_subscription(self, session: Session, subscription: Subscription, code: int, reason: str) -> None:
        """Forget a subscription (already out of ``session.subscriptions``) and tell the client; never
        raises.  A client the push cannot reach would go on believing it subscribed: one whose queue is
        full is disconnected as slow, one on which this fails is aborted."""
        conn = session.conn
        try:
            self._drop_subscription(session, subscription)
            # counted in the queue bound; one that cannot take it is disconnected as slow by _send_frame
            self._send_frame(session, unsubscribe_push_frame(subscription.channel.name, code, reason))
        except Exception:
            self._abort(conn, "unsubscribe")

    def disconnect(self, conn: HubConnection, code: int, reason: str) -> None:
        """Close the connection with ``code`` (its reconnect advice: ``DisconnectCode``); never raises.

        As Centrifugo on a bidirectional WebSocket, no push precedes the close: the close frame carries
        the code and the reason, cut to what it holds (123 bytes of UTF-8, on a character boundary).  If
        anything fails on this connection (a code a close frame may not carry, say) it is logged, counted
        (``stats.aborts``) and the connection aborted: never left open with its session ended, never
        stopping a loop over other connections.
        """
        reason = fit_close_reason(reason)
        session = self.sessions.get(conn)
        try:
            if session is not None:
                self._end(session)
            conn.close(code, reason)
        except Exception:
            self._abort(conn, "disconnect")

    def _close(self, conn: HubConnection, code: int, reason: str) -> None:
        """Close ``conn`` (its session already ended); never raises: a failure aborts it."""
        try:
            conn.close(code, reason)
        except Exception:
            self._abort(conn, "close")

    def _abort(self, conn: HubConnection, operation: str) -> None:
        """``operation`` failed on ``conn`` (inside an ``except``): log it, count it, drop the connection."""
        self.stats.aborts += 1
        logger.exception("%s: %s failed; aborting the connection", conn.remote_address, operation)
        try:
            conn.abort()  # -> on_close: the session and its subscriptions are forgotten
        except Exception:
            logger.exception("%s: abort failed", conn.remote_address)

    # -- fan-out -----------------------------------------------------------------------------------

    def _on_join_leave(self, kind: str, channel: str, info: ClientInfo) -> None:
        """The engine's callback: a ``join``/``leave`` on any node, for this node's subscribers."""
        subscribers = self._channels.get(channel)
        if subscribers is None or not subscribers.by_conn:
            return
        frame = prepare_message(presence_push_frame(kind, channel, info.as_json()))
        self._send_all(subscribers.by_conn, frame, exclude=self._clients.get(info.client))

    def _on_lost(self, channels: Iterable[str]) -> None:
        """The engine's callback: publications on these channels may have been missed (its link to
        the backend broke).  Their subscribers are told to reconnect and recover (3010)."""
        conns: set[HubConnection] = set()
        for name in channels:
            for subscribers in (
                self._channels.get(name),
                self._patterns.get(namespace_of(name), {}).get(name),
            ):
                if subscribers is not None:
                    conns.update(subscribers.by_conn)
                    conns.update(subscribers.pending)
        for conn in conns:
            self.disconnect(conn, DisconnectCode.INSUFFICIENT_STATE, "insufficient state")

    def _deliver(self, publication: Publication) -> None:
        """The engine's callback: every publication to a channel this node has subscribers on."""
        self.stats.publications += 1
        channel = publication.channel
        subscribers = self._channels.get(channel)
        if subscribers is not None:
            if subscribers.by_conn:
                targets = (
                    subscribers.by_conn if not subscribers.floors else _past_floors(subscribers, publication)
                )
                self._send_all(targets, prepare_message(pub_push_frame(publication.json, channel)))
            for held in subscribers.pending.values():
                held.append(publication)
        patterns = self._patterns.get(namespace_of(channel))
        if patterns is not None:
            for pattern, matching in list(patterns.items()):
                if channel.startswith(matching.prefix):  # type: ignore[arg-type]
                    if matching.by_conn:
                        frame = prepare_message(pub_push_frame(publication.json, pattern, channel))
                        self._send_all(matching.by_conn, frame)
                    for held in matching.pending.values():
                        held.append(publication)

    def _send_all(
        self, conns: dict[HubConnection, Subscription], frame: PreparedMessage, exclude: object = None
    ) -> None:
        size = len(frame.frame)
        threshold = self.bound.limit - size  # one comparison per subscriber on the fast path
        slow: list[HubConnection] | None = None
        targets = list(conns)  # a send may close a connection, which edits `conns`
        sent = 0
        for conn in targets:
            if conn.buffered_amount > threshold:  # this frame takes it over the bound, or it is already
                if not self.bound.admits(conn.buffered_amount, size):  # past the hard bound: dropped
                    if slow is None:
                        slow = []
                    slow.append(conn)
                elif conn is not exclude:  # queued; the tick times how long it stays over
                    conn.send_prepared(frame)
                    sent += 1
                    self._behind_conn(conn)
            elif conn is not exclude:
                conn.send_prepared(frame)
                sent += 1
        self.stats.deliveries += len(targets)
        self.stats.messages_out += sent
        self.stats.bytes_out += sent * len(frame.frame)
        if slow is not None:
            self._drop_slow(slow)

    def _behind_conn(self, conn: HubConnection) -> None:
        session = self.sessions.get(conn)
        if session is not None:
            self._behind_if_over(session)

    def _drop_slow(self, conns: Iterable[HubConnection]) -> None:
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
_COMMANDS: dict[str, Callable[[Hub, Session, dict[str, Any]], Answer]] = {
    "refresh": Hub._refresh,
    "subscribe": Hub._subscribe,
    "unsubscribe": Hub._unsubscribe,
    "publish": Hub._publish,
    "presence": Hub._presence,
    "presence_stats": Hub._presence_stats,
    "history": Hub._history,
    "ping": Hub._ping,
    "sub_refresh": Hub._sub_refresh,
    "rpc": Hub._rpc,
}

#: ``version`` of the connect and refresh results.
_VERSION = "wsproto-lite"


def _display_name(data: object, max_length: int) -> str:
    """Our extension: a connect ``data`` of ``{"name": ...}`` becomes ``conn_info`` ``{"name": ...}`` when
    the token gives no ``info`` (an anonymous chat user's display name); 107 for one with hidden marks."""
    if not isinstance(data, dict) or "name" not in data:
        return ""
    return get_display_str(data, "name", max_length=max_length)


def _connect_subs(value: object) -> dict[str, Position]:
    """Connect ``subs``: ``{channel: {"recover": true, "epoch", "offset"}}`` -> where to recover from."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 1024:
        raise HubError(ErrorCode.BAD_REQUEST, "'subs' must be an object of channels")
    positions: dict[str, Position] = {}
    for name, request in value.items():
        if not isinstance(request, dict):
            raise HubError(ErrorCode.BAD_REQUEST, "'subs' entries must be objects")
        if get_bool(request, "recover"):
            epoch = get_str(request, "epoch", required=False, max_length=64)
            positions[name] = Position(epoch, get_int(request, "offset", 0))
    return positions


T = TypeVar("T")


def _gather(replies: list[Reply[T]]) -> Reply[list[T]]:
    """One reply of every reply's value, in order; the first failure fails it."""
    gathered: Reply[list[T]] = Reply()
    values: list[Any] = [None] * len(replies)
    left = [len(replies)]

    def one(index: int, done: Reply[T]) -> None:
        if done.error is not None:
            gathered.fail(done.error)
            return
        values[index] = done.result()
        left[0] -= 1
        if left[0] == 0:
            gathered.resolve(values)

    if not replies:
        gathered.resolve([])
    for index, reply in enumerate(replies):
        reply.observe(lambda done, index=index: one(index, done))  # type: ignore[misc]
    return gathered


def _with_subs(result: dict[str, Any], subscribed: list[tuple[str, str, Callable[[], None]]]) -> Result:
    """The connect result with ``"subs": {channel: SubscribeResult}``; the subscriptions go live after it."""
    head = dumps(result)[:-1]
    subs = ",".join(f"{dumps(name)}:{text}" for name, text, _ in subscribed)
    afters = [after for _, _, after in subscribed]

    def activate() -> None:
        for after in afters:
            after()

    return _Then(f'{head},"subs":{{{subs}}}}}', activate)


def _opened(name: str) -> Callable[[Result], tuple[str, str, Callable[[], None]]]:
    """(channel, SubscribeResult JSON, activate) from what ``Hub._open`` resolved to."""

    def unpack(value: Result) -> tuple[str, str, Callable[[], None]]:
        assert isinstance(value, _Then) and isinstance(value.result, str)
        return name, value.result, value.after

    return unpack


def _push_text(channel: str, kind: str, body: str) -> str:
    return f'{{"push":{{"channel":{dumps(channel)},"{kind}":{body}}}}}'


def _presence_result(infos: list[ClientInfo]) -> str:
    """``{"presence": {client: ClientInfo}}`` from the infos' JSON."""
    items = ",".join(f"{dumps(info.client)}:{info.as_json()}" for info in infos)
    return f'{{"presence":{{{items}}}}}'


_DONE: Reply[None] = Reply.of(None)

#: Characters a reply may need besides its publications (id, epoch, offset, flags).
_REPLY_HEAD = 512


def _publish_result(publication: Publication) -> Result:
    return {} if publication.offset is None else {"offset": publication.offset, "epoch": publication.epoch}


def _covered(publication: Publication, floor: Position) -> bool:
    """True when a subscriber whose reply gave position ``floor`` already has ``publication``."""
    return (
        publication.offset is not None
        and publication.epoch == floor.epoch
        and publication.offset <= floor.offset
    )


def _past_floors(subscribers: _Subscribers, publication: Publication) -> dict[HubConnection, Subscription]:
    """The active subscribers that do not have ``publication`` yet (rare: right after a subscribe)."""
    targets = subscribers.by_conn
    for conn, floor in list(subscribers.floors.items()):
        if _covered(publication, floor):
            if targets is subscribers.by_conn:
                targets = dict(targets)
            targets.pop(conn, None)
        else:
            del subscribers.floors[conn]  # publications arrive in offset order: no more duplicates
    return targets


def _with_publications(result: dict[str, Any], publications: Sequence[Publication]) -> str:
    """``result`` plus ``"publications": [...]`` spliced in from the publications' stored JSON."""
    head = dumps(result)[:-1]
    items = ",".join(p.json for p in publications)
    return f'{head}{"," if len(head) > 1 else ""}"publications":[{items}]}}'
