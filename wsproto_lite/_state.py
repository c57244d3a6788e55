"""The connection's life cycle as a table (RFC 6455 §4, §7).

Every change of state goes through :func:`next_state`, and every legal change is one line of
``TRANSITIONS`` below: read the table to audit the life cycle, there is no other place that moves it.
"""

from __future__ import annotations

import enum

__all__ = ["ConnectionState", "Phase", "Trigger", "TRANSITIONS", "next_state", "PUBLIC_STATE"]


class ConnectionState(enum.Enum):
    """The state the application sees (the four states of the WebSocket API)."""

    CONNECTING = "CONNECTING"  # opening handshake in progress (§4)
    OPEN = "OPEN"  # data frames may flow both ways (§4.1 "_The WebSocket Connection is Established_")
    CLOSING = "CLOSING"  # one close frame has crossed, the other has not yet (§7.1.2-3)
    CLOSED = "CLOSED"  # both close frames crossed, or the connection failed or was dropped (§7.1.4)


class Phase(enum.Enum):
    """The core's finer-grained state: CLOSING is split by who sent the first close frame."""

    CONNECTING = "CONNECTING"
    OPEN = "OPEN"
    CLOSE_SENT = "CLOSE_SENT"  # we sent a close; we may still receive data until the peer's close
    CLOSE_RECEIVED = "CLOSE_RECEIVED"  # the peer sent a close; we owe it ours (sent right away)
    CLOSED = "CLOSED"


class Trigger(enum.Enum):
    """What can happen to a connection."""

    HANDSHAKE_DONE = "HANDSHAKE_DONE"  # server accepted / client validated the 101
    HANDSHAKE_FAILED = "HANDSHAKE_FAILED"  # server rejected or answered a plain HTTP request / bad 101
    SEND_CLOSE = "SEND_CLOSE"  # a close frame was queued by us
    RECEIVE_CLOSE = "RECEIVE_CLOSE"  # a valid close frame arrived
    FAIL = "FAIL"  # the peer broke the protocol: our close (if any) is queued, nothing more (§7.1.7)
    TRANSPORT_CLOSED = "TRANSPORT_CLOSED"  # EOF or abort (§7.1.5: without close frames this is 1006)


P, T = Phase, Trigger

TRANSITIONS: dict[tuple[Phase, Trigger], Phase] = {
    # Opening handshake (§4): it ends either open or, with an HTTP answer, closed.
    (P.CONNECTING, T.HANDSHAKE_DONE): P.OPEN,
    (P.CONNECTING, T.HANDSHAKE_FAILED): P.CLOSED,
    (P.CONNECTING, T.FAIL): P.CLOSED,
    (P.CONNECTING, T.TRANSPORT_CLOSED): P.CLOSED,
    # Open: either side may start the closing handshake (§7.1.2), or the peer may break the protocol.
    (P.OPEN, T.SEND_CLOSE): P.CLOSE_SENT,
    (P.OPEN, T.RECEIVE_CLOSE): P.CLOSE_RECEIVED,
    (P.OPEN, T.FAIL): P.CLOSED,
    (P.OPEN, T.TRANSPORT_CLOSED): P.CLOSED,
    # We closed first: the peer's close completes the handshake (§7.1.3).
    (P.CLOSE_SENT, T.RECEIVE_CLOSE): P.CLOSED,
    (P.CLOSE_SENT, T.FAIL): P.CLOSED,
    (P.CLOSE_SENT, T.TRANSPORT_CLOSED): P.CLOSED,
    # The peer closed first: our reply completes it (§5.5.1 "MUST send a Close frame in response").
    (P.CLOSE_RECEIVED, T.SEND_CLOSE): P.CLOSED,
    (P.CLOSE_RECEIVED, T.FAIL): P.CLOSED,
    (P.CLOSE_RECEIVED, T.TRANSPORT_CLOSED): P.CLOSED,
    # Closed is final; a late EOF or abort changes nothing.
    (P.CLOSED, T.TRANSPORT_CLOSED): P.CLOSED,
}

PUBLIC_STATE: dict[Phase, ConnectionState] = {
    P.CONNECTING: ConnectionState.CONNECTING,
    P.OPEN: ConnectionState.OPEN,
    P.CLOSE_SENT: ConnectionState.CLOSING,
    P.CLOSE_RECEIVED: ConnectionState.CLOSING,
    P.CLOSED: ConnectionState.CLOSED,
}

del P, T


def next_state(phase: Phase, trigger: Trigger) -> Phase:
    """The phase after ``trigger``; a missing table entry is a bug in the core, never the peer's fault."""
    try:
        return TRANSITIONS[phase, trigger]
    except KeyError:
        raise RuntimeError(f"no transition from {phase.name} on {trigger.name}") from None
