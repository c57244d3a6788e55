"""The hub: the node's facade, a Handler that wires connections, the channel registry and the engine,
and the server-side API (publish, disconnect, unsubscribe, subscribe_user...).

The work is in rooms with one job each (Centrifuge keeps the same seams in ``client.go``, ``hub.go``
and ``node.go``):

- ``commands.py`` / ``subscribing.py``: one connection's commands (``hub.commands``);
- ``replies.py``: their replies in command order (``hub.replies``);
- ``connections.py``: queueing under the bound, slow drop, close and abort (``hub.conns``);
- ``channels.py``: the registry of local subscribers and the fan-out (``hub.registry``);
- ``session.py``: the per-connection state;
- ``limits.py``: :class:`HubLimits`; ``metrics.py``: :class:`HubStats`.

Per connection the hub keeps a :class:`Session` in a dict keyed by the connection, removed in
``on_close``.  Presence, history and the pub/sub between nodes are the engine's.  The rooms refer to the
hub weakly, and nothing refers back from a subscription to its session, so a closed connection's objects
(and a hub) are freed by reference counting alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..server.handler import Accept, Handler, Reject
from .auth import ANONYMOUS, Authenticator, AuthFailure, Identity, credentials_of
from .authz import Authorizer
from .bound import QueueBound
from .channels import ChannelRegistry
from .commands import Commands
from .connections import Connections
from .control import ClusterControl, Target
from .engine import Engine, Publication, Reply
from .hook_commands import HookCommands
from .hooks import HookRunner, Hooks
from .limits import HubLimits, IpLimiter, RateLimits, UserConnections
from .memory import MemoryEngine
from .metrics import HubStats
from .namespaces import Namespaces
from .payloads import StoredPayload
from .pb_frames import negotiate
from .protocol import (
    PING_FRAME,
    DisconnectCode,
    ErrorCode,
    HubError,
    UnsubscribeCode,
    dumps,
)
from .replies import Replies
from .session import Session, Subscription
from .subscribing import Opened, with_data
from .webhook_config import WebhookConfig
from .webhooks import Webhooks

if TYPE_CHECKING:
    from wsproto_lite import Request

    from .transport import Cancellable, HubConnection, HubLoop

__all__ = ["Hub", "HubLimits", "HubStats", "Session", "Subscription", "Authenticate", "WEBSOCKET_PATHS"]

#: Where the hub accepts WebSocket upgrades.
WEBSOCKET_PATHS = frozenset({"/connection/websocket", "/ws"})

#: ``authenticate(token, request) -> user id`` (``""`` for anonymous); raises ``HubError(101)`` to refuse.
Authenticate = Callable[[str, "Request | None"], str]


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
        webhooks: WebhookConfig | None = None,
        hooks: Hooks | None = None,
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
        self._expiring: dict[Subscription, float] = {}  # subscription -> loop time its token expires
        self.registry = ChannelRegistry(self, self.bound, self.stats)
        """Local subscribers per channel and the fan-out (``channels.py``)."""
        self._channels = self.registry.exact
        self._patterns = self.registry.patterns
        self.conns = Connections(self)
        """Queueing under the bound, slow drop, close (``connections.py``)."""
        self.commands = Commands(self)
        """Each connection's commands (``commands.py``, ``subscribing.py``)."""
        self.replies = Replies(self)
        """Their replies in command order (``replies.py``)."""
        self._loop: HubLoop | None = None
        self._tick_timer: Cancellable | None = None
        self._ticks = 0
        self.control = ClusterControl(self)
        """Server-side operations on every node (``control.py``)."""
        self.webhooks = Webhooks(webhooks, self.engine) if webhooks is not None and webhooks.enabled else None
        """Signed event webhooks (``webhooks.py``), None when no URL is configured."""
        self.hooks = hooks or Hooks()
        """The application's backend hooks (``hooks.py``): ``hub.hooks.on_connect(fn)``..."""
        self.hook_runner = HookRunner(self)
        self.hook_commands = HookCommands(self)  # the commands a hook answers (hook_commands.py)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, loop: HubLoop) -> None:
        """Begin: engine delivery and the once-a-second housekeeping (connect timeouts, TTLs)."""
        self._loop = loop
        self.engine.attach(loop)
        registry = self.registry
        self.engine.start(registry.deliver, registry.on_join_leave, registry.on_lost)
        self.control.start(loop)
        if self.webhooks is not None:
            self.webhooks.start(loop)
        self._tick_timer = loop.call_later(1.0, self._tick)

    def stop(self) -> None:
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        self.control.stop()
        self.hook_runner.stop()
        self.engine.close()
        if self.webhooks is not None:
            self.webhooks.stop()

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
                self._expiring.pop(subscription, None)  # not reachable: drop_subscription forgets it
                continue
            if subscription.by_hook:
                self.hook_commands.sub_refresh(session, subscription)
                continue
            del session.subscriptions[name]
            self.conns.end_subscription(
                session, subscription, UnsubscribeCode.EXPIRED, "subscription expired"
            )
        return len(due)

    def _send_pings(self, now: float) -> None:
        """App-level pings (``{}``) to connected clients, every ``ping_interval``; a client that did not
        answer the previous one within ``pong_timeout`` is disconnected (3012 no pong), as Centrifugo does."""
        mute: list[HubConnection] = []
        # a copy: a ping written to a socket the peer reset closes that connection at once (on_close)
        for session in list(self.sessions.values()):
            if session.info is None or session.closed:
                continue
            if session.pong_due is not None and session.pong_due <= now:
                mute.append(session.conn)
            elif session.ping_due <= now:
                session.ping_due = now + self.limits.ping_interval
                if session.pong_due is None:
                    session.pong_due = now + self.limits.pong_timeout
                self.conns.send_frame(session, PING_FRAME)
        for conn in mute:
            self.disconnect(conn, DisconnectCode.NO_PONG, "no pong")

    def _tick(self) -> None:
        assert self._loop is not None
        self._tick_timer = self._loop.call_later(1.0, self._tick)
        now = self._loop.time()
        late = [s.conn for s in self.sessions.values() if s.info is None and s.deadline <= now]
        for conn in late:
            self.disconnect(conn, DisconnectCode.CONNECT_TIMEOUT, "connect timeout")
        expired = [s for s in self.sessions.values() if s.expires is not None and s.expires <= now]
        for session in expired:
            if session.server_refresh and self.hook_runner.has("refresh"):
                self.hook_commands.refresh(session)
            else:
                self.disconnect(session.conn, DisconnectCode.TOKEN_EXPIRED, "connection expired")
        self.expire_subscriptions(now)
        self.conns.drop_slow(self.conns.stayed_over(now))
        self._send_pings(now)
        self._ticks += 1
        if self._ticks % 5 == 0:
            self.engine.expire()
            self.ip_limiter.expire(now)

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else time.monotonic()

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
        subprotocol = negotiate(request)[0]
        return None if subprotocol is None else Accept(subprotocol=subprotocol)

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
        request = conn.request
        if request is not None and negotiate(request)[1]:
            self.conns.protobuf.add(conn)

    def on_close(self, conn: HubConnection, code: int, reason: str) -> None:
        self._pending.pop(conn, None)
        self._behind.pop(conn, None)
        self.conns.protobuf.discard(conn)
        session = self.sessions.pop(conn, None)
        if session is not None:
            self.hook_runner.forget(session)
            self.conns.end(session)
            if session.info is not None:
                self._clients.pop(session.info.client, None)
                self.users.remove(session.info.user, conn)
                if self.webhooks is not None:
                    self.webhooks.connection_closed(session.info, code)

    def on_writable(self, conn: HubConnection) -> None:
        """Drained under the I/O layer's low watermark: no longer over the bound."""
        session = self.sessions.get(conn)
        if session is not None:
            session.over_since = None

    def on_message(self, conn: HubConnection, message: str | bytes) -> None:
        session = self.sessions.get(conn)
        if session is not None and not session.closed:
            self.commands.receive(session, message)

    # -- the server-side API (the HTTP API and control.py call these) --------------------------------

    def channels(self) -> dict[str, int]:
        """Every channel and pattern with subscribers here -> how many (for ``/api/channels``)."""
        return self.registry.counts()

    def subscribe_user(self, target: Target, channel: str, data: Any = None) -> int:
        """Server-side subscription (``/api/subscribe``, through ``control.py`` on every node): subscribe
        ``target``'s connections here to ``channel``.  Each gets a ``subscribe`` push with the
        subscription's result (``data`` in it when given), then the channel's publications; no
        client-side authorization applies (the server decided).  Connections already subscribed are
        left as they are.  How many it reached; raises ``HubError`` (102/107) for a bad channel."""
        self.namespaces.resolve(channel, pattern_ok=True)
        data_json = "" if data is None else dumps(data)
        reached = 0
        conns = self.conns
        for conn in target.conns(self):
            session = self.sessions.get(conn)
            if session is None or session.closed or channel in session.subscriptions:
                continue
            opened = self.commands.server_subscription(session, channel, None)
            if opened is None:
                continue
            reached += 1
            opened.observe(
                lambda done, session=session: _push_subscribed(conns, session, done, data_json)  # type: ignore[misc]
            )
        return reached

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
        self,
        channel: str,
        data: Any,
        *,
        idempotency_key: str = "",
        skip_history: bool = False,
        tags: dict[str, str] | None = None,
    ) -> Reply[Publication]:
        """Publish from the server: no ``info``; namespace rules on client publishing do not apply.

        Goes through the engine, so it reaches the channel's subscribers on every node.  Raises
        ``HubError`` (102/107) for a bad channel or data that is not JSON; the reply resolves to the
        publication (offset assigned) or fails with ``HubError`` (108, temporary: engine unavailable).
        ``skip_history``: delivered but not stored; ``idempotency_key``: a repeat within the engine's
        window is not published again (the first one's publication is the answer); ``tags``: carried in
        the publication (``pub.tags`` in pushes, history and recovery), as Centrifugo's ``Publication.tags``.
        """
        resolved = self.namespaces.resolve(channel)
        try:
            data_json = data.text if isinstance(data, StoredPayload) else dumps(data)
            tags_json = dumps(tags) if tags else None  # Centrifugo omits empty tags (omitempty)
        except (TypeError, ValueError, RecursionError):
            raise HubError(ErrorCode.BAD_REQUEST, "data cannot be encoded as JSON") from None
        options = resolved.options
        if skip_history and options.history:
            options = replace(options, history_size=0, history_ttl=0.0)
        return self.engine.publish(
            resolved.name, data_json, None, options, idempotency_key=idempotency_key, tags_json=tags_json
        )

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
        self.conns.end_subscription(session, subscription, code, reason)
        return True

    def disconnect(self, conn: HubConnection, code: int, reason: str) -> None:
        """Close the connection with ``code`` (its reconnect advice: ``DisconnectCode``); never raises.

        As Centrifugo on a bidirectional WebSocket, no push precedes the close: the close frame carries
        the code and the reason, cut to what it holds (123 bytes of UTF-8, on a character boundary).  If
        anything fails on this connection (a code a close frame may not carry, say) it is logged, counted
        (``stats.aborts``) and the connection aborted: never left open with its session ended, never
        stopping a loop over other connections.
        """
        self.conns.disconnect(conn, code, reason)


def _push_subscribed(conns: Connections, session: Session, done: Reply[Opened], data_json: str) -> None:
    """Tell the client about a server-side subscription (``subscribe`` push), then let it go live."""
    if done.error is not None or session.closed:
        return
    name, result, activate = done.result()
    if conns.send_frame(session, _push_text(name, "subscribe", with_data(result, data_json))):
        activate()


def _push_text(channel: str, kind: str, body: str) -> str:
    return f'{{"push":{{"channel":{dumps(channel)},"{kind}":{body}}}}}'
