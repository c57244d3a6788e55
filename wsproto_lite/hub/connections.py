"""What the hub does to its connections: queue frames under the one bound, drop the slow, close, abort,
and forget a connection's subscriptions.

One bound on what is queued for a connection, replies, pushes and fan-out alike (``bound.py``): over
``queue_limit`` the I/O layer stops reading the connection; one that stays over it for ``slow_timeout``
(checked by the once-a-second tick), or that a frame would take past twice the bound, is disconnected
(3008 "slow") and the drop counted.  Operations never stop at one connection nor leave one half-closed: a
failure on a connection is logged, counted (``stats.aborts``) and that connection aborted.

This object refers to its hub weakly (the hub owns it): no reference cycle keeps either alive.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from wsproto_lite import CloseCode, fit_close_reason

from .part import HubPart
from .pb_frames import reply_of
from .protocol import DisconnectCode, unsubscribe_push_frame

if TYPE_CHECKING:
    from .hub import Hub
    from .session import Session, Subscription
    from .transport import HubConnection

__all__ = ["Connections"]

logger = logging.getLogger("wsproto_lite.hub")


class Connections(HubPart):
    """Sending to, dropping and closing this node's connections (``hub.conns``)."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.protobuf: set[HubConnection] = set()
        """The connections speaking the protobuf encoding (``pb_frames``); the others speak JSON."""

    # -- the queue bound ---------------------------------------------------------------------------

    def queued(self, session: Session) -> int:
        """What is queued for the connection: unsent bytes and the replies waiting in its outbox."""
        return session.conn.buffered_amount + session.outbox_bytes

    def room(self, session: Session, size: int) -> bool:
        """True when ``size`` more fit under the hard bound; otherwise the connection is dropped as slow."""
        if self.hub.bound.admits(self.queued(session), size):
            return True
        self.drop_slow((session.conn,))
        return False

    def send_frame(self, session: Session, frame: str) -> bool:
        """Queue a reply or a push (JSON text; a protobuf connection gets its ``Reply``); False (and the
        connection dropped as slow) when it does not fit."""
        message: str | bytes = reply_of(frame) if session.conn in self.protobuf else frame
        if not self.room(session, len(message)):
            return False
        stats = self.hub.stats
        stats.messages_out += 1
        stats.bytes_out += len(message)
        if not session.conn.send(message):  # past the I/O layer's own hard limit: dropped
            self.drop_slow((session.conn,))
            return False
        self.mark_behind(session)
        return True

    def mark_behind(self, session: Session) -> None:
        """Mark a connection that something just queued took over the bound (the tick times it)."""
        hub = self.hub
        if session.conn not in hub._behind and hub.bound.over(self.queued(session)):
            hub._behind[session.conn] = session
            session.over_since = hub._now()

    def behind_conn(self, conn: HubConnection) -> None:
        session = self.hub.sessions.get(conn)
        if session is not None:
            self.mark_behind(session)

    def stayed_over(self, now: float) -> list[HubConnection]:
        """The connections that went over the queue bound ``slow_timeout`` ago and are still behind:
        over it, or with reading still paused (until the I/O layer's low watermark).  Only those that
        went over are looked at, not every session."""
        slow: list[HubConnection] = []
        hub = self.hub
        bound, behind = hub.bound, hub._behind
        for conn, session in list(behind.items()):
            if session.closed:
                del behind[conn]
            elif bound.over(self.queued(session)) or (conn.is_open and not conn.writable):
                if session.over_since is None:  # drained in between (on_writable), then behind again
                    session.over_since = now
                elif now - session.over_since >= bound.timeout:
                    slow.append(conn)
            else:
                session.over_since = None
                del behind[conn]
        return slow

    def drop_slow(self, conns: Iterable[HubConnection]) -> None:
        hub = self.hub
        for conn in conns:
            if conn in hub.sessions and not hub.sessions[conn].closed:
                hub.stats.slow_disconnects += 1
                logger.info(
                    "%s: slow subscriber (%d bytes unsent), disconnecting",
                    conn.remote_address,
                    conn.buffered_amount,
                )
                self.disconnect(conn, DisconnectCode.SLOW, "slow")

    def tripped(self, session: Session, limit: str) -> bool:
        """Count a trip of ``limit`` (any per-connection limit: rates, sizes, subscriptions, channels).

        A connection that keeps tripping limits, faster than ``rate_limits.abuse_trips_per_second`` for
        longer than ``abuse_burst`` trips, is closed with 1008 (RFC 6455 §7.4.1: a message "that violates
        its policy"); True then.  API-key clients (the operator's own servers) are never closed for it.
        """
        hub = self.hub
        hub.stats.trip(limit)
        if session.identity.trusted or session.trip_bucket.take(hub._now()):
            return False
        hub.stats.trip("abuse_close")
        self.end(session)
        session.conn.close(CloseCode.POLICY_VIOLATION, "policy violation")
        return True

    # -- closing -----------------------------------------------------------------------------------

    def disconnect(self, conn: HubConnection, code: int, reason: str) -> None:
        """Close the connection with ``code`` (see ``Hub.disconnect``); never raises."""
        reason = fit_close_reason(reason)
        session = self.hub.sessions.get(conn)
        try:
            if session is not None:
                self.end(session)
            conn.close(code, reason)
        except Exception:
            self.abort(conn, "disconnect")

    def close(self, conn: HubConnection, code: int, reason: str) -> None:
        """Close ``conn`` (its session already ended); never raises: a failure aborts it."""
        try:
            conn.close(code, reason)
        except Exception:
            self.abort(conn, "close")

    def abort(self, conn: HubConnection, operation: str) -> None:
        """``operation`` failed on ``conn`` (inside an ``except``): log it, count it, drop the connection."""
        self.hub.stats.aborts += 1
        logger.exception("%s: %s failed; aborting the connection", conn.remote_address, operation)
        try:
            conn.abort()  # -> on_close: the session and its subscriptions are forgotten
        except Exception:
            logger.exception("%s: abort failed", conn.remote_address)

    # -- forgetting subscriptions ------------------------------------------------------------------

    def end(self, session: Session) -> None:
        """Forget a connection's subscriptions and presence (idempotent)."""
        if session.closed:
            return
        session.closed = True
        subscriptions, session.subscriptions = session.subscriptions, {}
        for subscription in subscriptions.values():
            try:  # one failing (the engine's presence, say) must not leave the others subscribed
                self.drop_subscription(session, subscription)
            except Exception:
                logger.exception("%s: ending a subscription failed", session.conn.remote_address)

    def drop_subscription(self, session: Session, subscription: Subscription) -> None:
        hub = self.hub
        hub._expiring.pop(subscription, None)
        channel = subscription.channel
        if subscription.presence and session.info is not None and hub.webhooks is not None:
            # before the registry: the member leaves before the channel is vacated
            hub.webhooks.member_left(channel.name, subscription.presence_info(session.info))
        hub.registry.remove(subscription)
        if subscription.presence and session.info is not None:
            subscription.presence = False
            hub.engine.remove_presence(channel.name, session.info.client)
            if channel.options.join_leave:
                hub.engine.join_leave("leave", channel.name, subscription.presence_info(session.info))

    def end_subscription(self, session: Session, subscription: Subscription, code: int, reason: str) -> None:
        """Forget a subscription (already out of ``session.subscriptions``) and tell the client; never
        raises.  A client the push cannot reach would go on believing it subscribed: one whose queue is
        full is disconnected as slow, one on which this fails is aborted."""
        conn = session.conn
        try:
            self.drop_subscription(session, subscription)
            # counted in the queue bound; one that cannot take it is disconnected as slow by send_frame
            self.send_frame(session, unsubscribe_push_frame(subscription.channel.name, code, reason))
        except Exception:
            self.abort(conn, "unsubscribe")
