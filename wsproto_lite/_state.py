"""The connection's life cycle as a table (RFC 6455 §4, §7), and everything that follows from it.

Every change of state goes through :func:`next_state`, and every legal change is one line of
``TRANSITIONS`` below: read the table to audit the life cycle, there is no other place that moves it.
What a phase allows (sending, reading the peer's frames) and when the transport should close are
answered here too, from the phase and the two facts the connection records beside it: which close
frames crossed, and whether the transport reported EOF. The connection asks; it keeps no flags of its own.
"""

from __future__ import annotations

import enum

__all__ = [
    "ConnectionState",
    "Phase",
    "Trigger",
    "TRANSITIONS",
    "PUBLIC_STATE",
    "SENDING",
    "RECEIVING",
    "next_state",
    "should_close_transport",
    "close_expected",
]


class ConnectionState(enum.Enum):
    """The state the application sees (the four states of the WebSocket API)."""

    CONNECTING = "CONNECTING"  # opening handshake in progress (§4)
    OPEN = "OPEN"  # data frames may flow both ways (§4.1 "_The WebSocket Connection is Established_")
    CLOSING = "CLOSING"  # we sent a close frame, the peer's has not arrived yet (§7.1.2-3)
    CLOSED = "CLOSED"  # both close frames crossed, or the connection failed or was dropped (§7.1.4)


class Phase(enum.Enum):
    """The core's own state. There is no "close received" phase: the core answers a close at once."""

    CONNECTING = "CONNECTING"
    OPEN = "OPEN"
    CLOSE_SENT = "CLOSE_SENT"  # we sent a close; we may still receive data until the peer's close
    CLOSED = "CLOSED"  # final: the ConnectionClosed event is queued when it is entered

    # Identity hashing (members are singletons): ``phase in SENDING`` on the send path then costs no
    # Python-level call (Enum's own __hash__ hashes the name in Python).
    __hash__ = object.__hash__


class Trigger(enum.Enum):
    """What can happen to a connection."""

    HANDSHAKE_DONE = "HANDSHAKE_DONE"  # server accepted / client validated the 101
    HANDSHAKE_FAILED = "HANDSHAKE_FAILED"  # server rejected or answered a plain HTTP request / bad 101
    SEND_CLOSE = "SEND_CLOSE"  # the application closed: our close frame is queued
    RECEIVE_CLOSE = "RECEIVE_CLOSE"  # a valid close frame arrived (and our reply, if we owed one, is queued)
    FAIL = "FAIL"  # the peer broke the protocol: our close (if any) is queued, nothing more (§7.1.7)
    TRANSPORT_CLOSED = "TRANSPORT_CLOSED"  # EOF or abort (§7.1.5: without close frames this is 1006)


P, T = Phase, Trigger

TRANSITIONS: dict[tuple[Phase, Trigger], Phase] = {
    # Opening handshake (§4): it ends either open or, with an HTTP answer, closed.
    (P.CONNECTING, T.HANDSHAKE_DONE): P.OPEN,
    (P.CONNECTING, T.HANDSHAKE_FAILED): P.CLOSED,
    (P.CONNECTING, T.TRANSPORT_CLOSED): P.CLOSED,
    # Open: either side may start the closing handshake (§7.1.2), or the peer may break the protocol.
    (P.OPEN, T.SEND_CLOSE): P.CLOSE_SENT,
    # The peer closed first: §5.5.1 "MUST send a Close frame in response", and the core queues it in the
    # same step, so the closing handshake is complete at once.
    (P.OPEN, T.RECEIVE_CLOSE): P.CLOSED,
    (P.OPEN, T.FAIL): P.CLOSED,
    (P.OPEN, T.TRANSPORT_CLOSED): P.CLOSED,
    # We closed first: the peer's close completes the handshake (§7.1.3).
    (P.CLOSE_SENT, T.RECEIVE_CLOSE): P.CLOSED,
    (P.CLOSE_SENT, T.FAIL): P.CLOSED,
    (P.CLOSE_SENT, T.TRANSPORT_CLOSED): P.CLOSED,
    # Closed is final; a late EOF or abort changes nothing.
    (P.CLOSED, T.TRANSPORT_CLOSED): P.CLOSED,
}

PUBLIC_STATE: dict[Phase, ConnectionState] = {
    P.CONNECTING: ConnectionState.CONNECTING,
    P.OPEN: ConnectionState.OPEN,
    P.CLOSE_SENT: ConnectionState.CLOSING,
    P.CLOSED: ConnectionState.CLOSED,
}

#: The application may send data and control frames: only while OPEN (§5.5.1: after sending a close
#: frame "the endpoint MUST NOT send any more data frames"; §4.1: nothing before the handshake ends).
SENDING = frozenset({P.OPEN})

#: The peer's frames are still parsed: until its close frame (§5.5.1: nothing after it is data) or until
#: we fail the connection (§7.1.7: no further data is processed). After our own close we keep reading:
#: the peer may send data until its close (§7.1.2).
RECEIVING = frozenset({P.OPEN, P.CLOSE_SENT})

del P, T


def next_state(phase: Phase, trigger: Trigger) -> Phase:
    """The phase after ``trigger``; a missing table entry is a bug in the core, never the peer's fault."""
    try:
        return TRANSITIONS[phase, trigger]
    except KeyError:
        raise RuntimeError(f"no transition from {phase.name} on {trigger.name}") from None


def should_close_transport(phase: Phase, *, is_server: bool, clean: bool, eof: bool) -> bool:
    """Flush the output, then close the TCP connection now?

    §7.1.1: after the closing handshake the server closes the TCP connection first; the client waits for
    the server to do it (or for the peer's EOF). A connection that failed or was dropped (``clean``
    false: no two close frames crossed) closes at once, whatever the role.
    """
    return phase is Phase.CLOSED and (is_server or eof or not clean)


def close_expected(phase: Phase, *, is_server: bool, clean: bool, eof: bool) -> bool:
    """Are we waiting for the peer (its close frame, or, as a client, its TCP close)?"""
    if phase is Phase.CLOSE_SENT:
        return True  # §7.1.2: the peer's close frame is due
    return phase is Phase.CLOSED and not should_close_transport(
        phase, is_server=is_server, clean=clean, eof=eof
    )
