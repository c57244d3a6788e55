"""The hub's wire protocol: parse and validate commands, build replies and pushes, error codes.

Everything here is pure (no I/O, no hub state).  The table of commands and pushes is in PROTOCOL.md.
Frames are JSON text; a command is ``{"id": n, "method": "...", "params": {...}}``.  Bad input raises
:class:`HubError`, which the hub turns into an ``error`` reply: the connection lives on.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, TypeGuard

__all__ = [
    "Command",
    "HubError",
    "Position",
    "ErrorCode",
    "DisconnectCode",
    "UnsubscribeCode",
    "METHODS",
    "NO_ID",
    "parse_command",
    "refuse_lone_surrogates",
    "dumps",
    "reply_frame",
    "error_frame",
    "publication_json",
    "pub_push_frame",
    "presence_push_frame",
    "unsubscribe_push_frame",
    "disconnect_push_frame",
    "get_channel",
    "get_bool",
    "get_display_str",
    "get_int",
    "get_position",
    "get_str",
]


class ErrorCode:
    """Error codes of ``error`` replies (the contract's table)."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    TOKEN_EXPIRED = 109
    NOT_SUBSCRIBED = 110
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112


class DisconnectCode:
    """Codes of ``disconnect`` pushes, also used as the WebSocket close code that follows.

    4000-4499: the client should reconnect (and recover); 4500-4999: it should not.
    """

    SHUTDOWN = 4000
    """The hub is stopping or restarting: reconnect with backoff, then recover."""
    SLOW = 4001
    """The client did not read fast enough (its outgoing queue overflowed): reconnect and recover."""
    INSUFFICIENT_STATE = 4002
    """This node may have missed publications of a subscribed channel (its engine lost the link to the
    shared backend and got it back): reconnect and recover."""
    TOKEN_EXPIRED = 4003
    """The connection's token expired without a ``refresh``: get a new token, reconnect and recover."""
    CONNECT_TIMEOUT = 4500
    """No ``connect`` command arrived in time after the WebSocket opened."""
    UNAUTHORIZED = 4501
    """The credentials were refused (bad token, revoked API key): do not retry with the same ones."""
    CONNECTION_LIMIT = 4502
    """The user has ``rate_limits.max_connections_per_user`` connections already."""

    CONNECTION_EXPIRED = 3005
    """Centrifugo's "connection expired" (reconnect with a fresh token): ``/api/refresh`` with ``expired``."""
    FORCE_DISCONNECT = 3503
    """Centrifugo's "force disconnect" (terminal): the default code of ``/api/disconnect``."""

    RECONNECT = range(SHUTDOWN, CONNECT_TIMEOUT)
    """The codes after which the client reconnects; from ``CONNECT_TIMEOUT`` on it does not."""

    @staticmethod
    def reconnect(code: int) -> bool:
        return code in DisconnectCode.RECONNECT


class UnsubscribeCode:
    """Codes of ``unsubscribe`` pushes (the server ended one subscription; the connection lives on).

    2000-2499: the client should not resubscribe; 2500-2999: it should, with a fresh subscription token
    (and ``recover`` from its last offset: nothing is lost in between).
    """

    SERVER = 2000
    """The server ended it (``Hub.unsubscribe``)."""
    PERMISSION_REVOKED = 2001
    """A ``refresh`` gave the connection an identity that no longer grants the channel."""
    EXPIRED = 2501
    """Its subscription token expired: subscribe again with a fresh one (the protocol has no sub-refresh)."""

    @staticmethod
    def resubscribe(code: int) -> bool:
        return 2500 <= code < 3000


#: The ``id`` of an error reply to a frame whose own id could not be read (not JSON, not an object,
#: missing or invalid ``id``).  Valid command ids are positive, so 0 never answers a real command.
NO_ID = 0

#: Every method the hub knows; anything else gets 104.
METHODS = frozenset(
    {
        "connect",
        "refresh",
        "subscribe",
        "unsubscribe",
        "publish",
        "presence",
        "presence_stats",
        "history",
        "ping",
    }
)

#: Largest command id accepted (fits in a JavaScript number exactly).
MAX_ID = 2**53 - 1


class HubError(Exception):
    """A refused command: becomes ``{"id": n, "error": {"code", "message", "temporary"}}``."""

    def __init__(self, code: int, message: str, temporary: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.temporary = temporary


@dataclass(frozen=True, slots=True)
class Command:
    id: int
    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a channel's history stream: publications are numbered by ``offset`` inside ``epoch``."""

    epoch: str
    offset: int


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # json accepts NaN/Infinity by default; RFC 8259 does not


_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def dumps(value: Any) -> str:
    """Compact JSON (non-ASCII kept as is: frames are UTF-8 anyway)."""
    return _encode(value)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def refuse_lone_surrogates(text: str, value: Any) -> None:
    """Raise ``ValueError`` when JSON ``text`` decoded to ``value`` holds a string UTF-8 cannot encode.

    A text frame is valid UTF-8 (the core checks it, RFC 6455 §8.1), but a ``\\ud800`` escape still makes
    a lone surrogate, which RFC 7493 §2.1 (I-JSON) forbids: stored in a publication or a presence name it
    would make every frame that carries it fail to encode, for everyone who reads it.  Only texts with a
    surrogate escape are checked (a pair, as for an emoji, passes).
    """
    if _SURROGATE_ESCAPE.search(text) is not None:
        _encode(value).encode("utf-8")  # UnicodeEncodeError is a ValueError


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_command(text: str) -> Command:
    """Parse one frame into a command, or raise ``HubError`` (with ``.command_id`` when it was readable)."""
    try:
        value = _decoder.decode(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested arrays
        raise _BadFrame(NO_ID, ErrorCode.BAD_REQUEST, "invalid JSON") from None
    if not isinstance(value, dict):
        raise _BadFrame(NO_ID, ErrorCode.BAD_REQUEST, "a command must be a JSON object")
    cid = value.get("id")
    if not _is_int(cid) or not 0 < cid <= MAX_ID:
        raise _BadFrame(NO_ID, ErrorCode.BAD_REQUEST, "'id' must be a positive integer")
    try:
        refuse_lone_surrogates(text, value)
    except (ValueError, RecursionError):
        raise _BadFrame(cid, ErrorCode.BAD_REQUEST, "a string holds a lone surrogate") from None  # RFC 7493
    method = value.get("method")
    if not isinstance(method, str):
        raise _BadFrame(cid, ErrorCode.BAD_REQUEST, "'method' must be a string")
    if method not in METHODS:
        raise _BadFrame(cid, ErrorCode.METHOD_NOT_FOUND, "unknown method")
    params = value.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _BadFrame(cid, ErrorCode.BAD_REQUEST, "'params' must be an object")
    return Command(cid, method, params)


class _BadFrame(HubError):
    """A frame refused before it became a command; ``command_id`` is what the reply repeats."""

    def __init__(self, command_id: int, code: int, message: str) -> None:
        super().__init__(code, message)
        self.command_id = command_id


def command_id_of(error: HubError) -> int:
    """The id to repeat in the reply to a frame that ``parse_command`` refused."""
    return error.command_id if isinstance(error, _BadFrame) else NO_ID


# -- parameter accessors: each raises 107 with the parameter's name ----------------------------------


def get_str(params: dict[str, Any], name: str, *, required: bool = True, max_length: int = 1024) -> str:
    value = params.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise HubError(ErrorCode.BAD_REQUEST, f"'{name}' must be a string")
    if len(value) > max_length:
        raise HubError(ErrorCode.BAD_REQUEST, f"'{name}' is longer than {max_length} characters")
    return value


#: Format characters a display string may keep: the joiners of emoji sequences and of some scripts.
_JOINERS = frozenset("\u200c\u200d")


def _displayable(char: str) -> bool:
    """Not a control (C0, C1), surrogate, line/paragraph separator or invisible format character: no
    bidirectional override or isolate (U+202A-202E, U+2066-2069), mark (U+200E/F, U+061C), zero-width
    space, tag, BOM... (category Cf, but for the joiners)."""
    category = unicodedata.category(char)
    if category in ("Cc", "Cs", "Zl", "Zp"):
        return False
    return category != "Cf" or char in _JOINERS


def get_display_str(params: dict[str, Any], name: str, *, max_length: int) -> str:
    """An optional string other users are shown (a presence name); 107 if it has characters that change
    how the text around it is displayed (``U+202E`` makes ``"gnp.exe"`` read ``"exe.png"``)."""
    value = get_str(params, name, required=False, max_length=max_length)
    if not all(map(_displayable, value)):
        raise HubError(ErrorCode.BAD_REQUEST, f"'{name}' has control or invisible formatting characters")
    return value


def get_channel(params: dict[str, Any]) -> str:
    value = params.get("channel")
    if not isinstance(value, str) or not value:
        raise HubError(ErrorCode.BAD_REQUEST, "'channel' must be a non-empty string")
    return value


def get_int(
    params: dict[str, Any], name: str, default: int, *, minimum: int = 0, maximum: int = MAX_ID
) -> int:
    value = params.get(name)
    if value is None:
        return default
    if not _is_int(value) or not minimum <= value <= maximum:
        raise HubError(ErrorCode.BAD_REQUEST, f"'{name}' must be an integer in [{minimum}, {maximum}]")
    return int(value)


def get_bool(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise HubError(ErrorCode.BAD_REQUEST, f"'{name}' must be true or false")
    return value


def get_position(params: dict[str, Any], name: str) -> Position | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise HubError(ErrorCode.BAD_REQUEST, f"'{name}' must be an object {{epoch, offset}}")
    epoch, offset = value.get("epoch"), value.get("offset")
    if not isinstance(epoch, str) or len(epoch) > 64 or not _is_int(offset) or not 0 <= offset <= MAX_ID:
        raise HubError(ErrorCode.BAD_REQUEST, f"'{name}' needs 'epoch' (string) and 'offset' (integer >= 0)")
    return Position(epoch, offset)


# -- frames out ----------------------------------------------------------------------------------------


def reply_frame(command_id: int, result: dict[str, Any]) -> str:
    return _encode({"id": command_id, "result": result})


def error_frame(command_id: int, error: HubError) -> str:
    return _encode(
        {
            "id": command_id,
            "error": {"code": error.code, "message": error.message, "temporary": error.temporary},
        }
    )


def publication_json(channel: str, offset: int | None, data_json: str, info_json: str | None) -> str:
    """A publication object as JSON text, from the already-encoded ``data`` and ``info``.

    ``data`` is encoded once when published and then spliced into every frame that carries it (pushes,
    history and recovery replies): no re-encoding per subscriber or per read.
    """
    parts = ['{"channel":', _encode(channel)]
    if offset is not None:
        parts.append(f',"offset":{offset}')
    parts.append(',"data":')
    parts.append(data_json)
    if info_json is not None:
        parts.append(',"info":')
        parts.append(info_json)
    parts.append("}")
    return "".join(parts)


def pub_push_frame(publication: str, pattern: str | None = None) -> str:
    """``{"push":"pub", ...publication}`` (+ ``"pattern"`` for a wildcard subscription)."""
    head = '{"push":"pub",' if pattern is None else '{"push":"pub","pattern":' + _encode(pattern) + ","
    return head + publication[1:]


def presence_push_frame(kind: str, channel: str, info: dict[str, str]) -> str:
    """``join`` or ``leave``."""
    return _encode({"push": kind, "channel": channel, "info": info})


def unsubscribe_push_frame(channel: str, code: int, reason: str) -> str:
    return _encode(
        {
            "push": "unsubscribe",
            "channel": channel,
            "code": code,
            "reason": reason,
            "resubscribe": UnsubscribeCode.resubscribe(code),
        }
    )


def disconnect_push_frame(code: int, reason: str) -> str:
    return _encode(
        {"push": "disconnect", "code": code, "reason": reason, "reconnect": DisconnectCode.reconnect(code)}
    )
