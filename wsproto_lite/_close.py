"""Close frame payloads (RFC 6455 §5.5.1, §7.4): status codes and reasons."""

from __future__ import annotations

import struct

from ._errors import CloseCode, LocalProtocolError, RemoteProtocolError
from ._frames import MAX_CONTROL_PAYLOAD
from ._utf8 import decode_utf8

__all__ = [
    "MAX_CLOSE_REASON",
    "build_close_payload",
    "fit_close_reason",
    "is_valid_close_code",
    "parse_close_payload",
]

_pack_code = struct.Struct("!H").pack

MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2
"""Bytes of UTF-8 a close reason may have: §5.5 bounds a control frame's payload at 125 bytes, and §5.5.1
puts the two-byte status code first."""
# §7.4.1: the defined codes a close frame may carry; 1005, 1006 and 1015 are for reporting only.
_SENDABLE_NAMED = frozenset(CloseCode) - {CloseCode.NO_STATUS, CloseCode.ABNORMAL, CloseCode.TLS_HANDSHAKE}


def is_valid_close_code(code: int) -> bool:
    """May this code appear in a close frame on the wire? (§7.4.1, §7.4.2, IANA registry §11.7)

    1000-1003 and 1007-1014 are defined; 1004 is reserved, 1005/1006/1015 must never be sent;
    1016-2999 are reserved for future RFCs; 3000-3999 are registered with IANA; 4000-4999 are private.
    Below 1000 nothing is used (§7.4.2).
    """
    return code in _SENDABLE_NAMED or code in CloseCode.REGISTERED or code in CloseCode.PRIVATE


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Return ``(code, reason)`` from a received close frame; raise RemoteProtocolError if invalid."""
    if not payload:
        # §7.1.5: a close frame without a status code is reported as 1005
        return CloseCode.NO_STATUS, ""
    if len(payload) == 1:
        # §5.5.1: if there is a body, its first two bytes MUST be the status code
        raise RemoteProtocolError("close frame payload of one byte")
    code = payload[0] << 8 | payload[1]
    if not is_valid_close_code(code):
        raise RemoteProtocolError(f"invalid close code {code}")
    # §5.5.1: the reason is UTF-8 encoded data; invalid UTF-8 is 1007 like any text (§8.1)
    return code, decode_utf8(payload[2:])


def fit_close_reason(reason: str, limit: int = MAX_CLOSE_REASON) -> str:
    """``reason`` cut to what a close frame carries: ``limit`` bytes of UTF-8, on a character boundary.

    RFC 6455 §5.5: a control frame's payload is at most 125 bytes, and the status code takes two of them;
    §5.5.1: the reason that follows is UTF-8, so a longer one loses its end, never half a character.  A
    character UTF-8 cannot encode (a lone surrogate, as ``json.loads`` makes of ``"\\ud800"``) becomes
    ``?``.  A reason that fits comes back unchanged.
    """
    try:
        encoded = reason.encode("utf-8")
    except UnicodeEncodeError:
        encoded = reason.encode("utf-8", "replace")
    else:
        if len(encoded) <= limit:
            return reason
    # a prefix of valid UTF-8 is valid but for its last sequence, maybe cut: "ignore" drops just that one
    return encoded[:limit].decode("utf-8", "ignore")


def build_close_payload(code: int | None, reason: str) -> bytes:
    """Payload of a close frame we send; None (no code) gives an empty payload."""
    if code is None or code == CloseCode.NO_STATUS:
        if reason:
            raise LocalProtocolError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise LocalProtocolError(f"close code {code} may not be sent (RFC 6455 §7.4)")
    try:
        encoded = reason.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("a close reason must be encodable as UTF-8 (§5.5.1)") from None
    if len(encoded) > MAX_CLOSE_REASON:
        # §5.5: control frame payloads are at most 125 bytes (fit_close_reason cuts one to fit)
        raise LocalProtocolError("close reason longer than 123 bytes of UTF-8 (see fit_close_reason)")
    return _pack_code(code) + encoded
