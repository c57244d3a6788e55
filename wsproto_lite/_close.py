"""Close frame payloads (RFC 6455 §5.5.1, §7.4): status codes and reasons."""

from __future__ import annotations

import struct

from ._errors import CloseCode, LocalProtocolError, RemoteProtocolError
from ._frames import MAX_CONTROL_PAYLOAD
from ._utf8 import decode_utf8

_pack_code = struct.Struct("!H").pack
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


def build_close_payload(code: int | None, reason: str) -> bytes:
    """Payload of a close frame we send; None (no code) gives an empty payload."""
    if code is None or code == CloseCode.NO_STATUS:
        if reason:
            raise LocalProtocolError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise LocalProtocolError(f"close code {code} may not be sent (RFC 6455 §7.4)")
    payload = _pack_code(code) + reason.encode("utf-8")
    if len(payload) > MAX_CONTROL_PAYLOAD:
        # §5.5: control frame payloads are at most 125 bytes
        raise LocalProtocolError("close reason longer than 123 bytes of UTF-8")
    return payload
