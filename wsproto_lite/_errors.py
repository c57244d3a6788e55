"""Exceptions, close codes, and the one place that maps a peer's fault to a close code."""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 §7.4.1, IANA registry §11.7); an ``int`` wherever a code is expected."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire (§7.4.1)
    ABNORMAL = 1006  # never on the wire (§7.4.1)
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire (§7.4.1)
    # §7.4.2: the ranges beyond the named codes (not members): registered with IANA by libraries,
    # frameworks and applications, and private use. 1016-2999 are reserved; nothing below 1000 is used.
    REGISTERED = enum.nonmember(range(3000, 4000))
    PRIVATE = enum.nonmember(range(4000, 5000))


class LocalProtocolError(Exception):
    """The local application used the connection wrongly (send after close, wrong type, ...)."""


class RemoteProtocolError(Exception):
    """The peer broke the protocol; `code` is the close code to fail the connection with."""

    def __init__(self, reason: str, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ExtensionError(RemoteProtocolError):
    """An extension rejected what the peer sent (bad negotiation, bad compressed data, too big)."""


class HandshakeFailure(Exception):
    """The opening handshake failed (internal to the core); `status` is the HTTP status to answer with.

    Not to be confused with ``server.HandshakeError``, which the I/O layer raises to its users.
    """

    def __init__(self, reason: str, status: int = 400, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers
