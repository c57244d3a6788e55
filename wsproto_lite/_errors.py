"""Exceptions, and the one place that maps a peer's fault to a close code."""

from __future__ import annotations


class CloseCode:
    """Close status codes used by the core (RFC 6455 §7.4.1)."""

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


class HandshakeError(Exception):
    """The opening handshake failed; `status` is the HTTP status the server answers with."""

    def __init__(self, reason: str, status: int = 400, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers
