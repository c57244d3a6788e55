"""The hub's wire protocol: Centrifugo's client protocol v2 in its JSON encoding.

Everything here is pure (no I/O, no hub state).  PROTOCOL.md has the table of commands and pushes; the
reference is Centrifugo's ``protocol/definitions/client.proto`` and ``centrifuge/client.go``.

A frame holds one or more commands separated by ``\n`` (``protocol/decode.go``); a command is
``{"id": n, "<method>": {...}}`` with exactly one method key.  ``{}`` (no id, no method) is the pong to
the hub's app-level ``{}`` ping; ``{"send": {...}}`` has no id and gets no reply.  A frame that cannot be
read at all (not JSON, not an object, a bad ``id``) raises :class:`BadFrame`: the hub closes with 3501,
never answering with an ``id`` the client did not send (SDKs take an id-less frame for a ping).  A bad
command with a readable id raises :class:`HubError`, which the hub turns into an ``error`` reply.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, TypeGuard

__all__ = [
    "BadFrame",
    "Command",
    "HubError",
    "Position",
    "ErrorCode",
    "DisconnectCode",
    "UnsubscribeCode",
    "METHODS",
    "PONG",
    "SEND",
    "PING_FRAME",
    "parse_frame",
    "refuse_lone_surrogates",
    "dumps",
    "reply_frame",
    "error_frame",
    "publication_json",
    "pub_push_frame",
    "presence_push_frame",
    "unsubscribe_push_frame",
    "subscribe_push_frame",
    "message_push_frame",
    "client_info_json",
    "get_channel",
    "get_bool",
    "get_display_str",
    "get_int",
    "get_position",
    "get_str",
]


class ErrorCode:
    """Error codes of ``error`` replies: Centrifugo's (``centrifuge/errors.go``)."""

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
    EXPIRED = 110
    """The connection expired and no token can renew it (``refresh`` without a token mechanism)."""
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112


class DisconnectCode:
    """WebSocket close codes the hub disconnects with (``centrifuge/disconnect.go``); no push precedes
    the close on a bidirectional WebSocket, as in Centrifugo.

    3000-3499: the client should reconnect (and recover); 3500-3999: it should not.  Codes of our own
    (and the operator's, through the HTTP API) are in 4000-4499 (reconnect) and 4500-4999 (terminal).
    """

    SHUTDOWN = 3001
    """The hub is stopping or restarting: reconnect with backoff, then recover."""
    SLOW = 3008
    """The client did not read fast enough (its outgoing queue overflowed): reconnect and recover."""
    INSUFFICIENT_STATE = 3010
    """This node may have missed publications of a subscribed channel (its engine lost the link to the
    shared backend and got it back): reconnect and recover."""
    FORCE_RECONNECT = 3011
    NO_PONG = 3012
    """No pong (``{}``) to the hub's app-level ping in time."""
    TOKEN_EXPIRED = 3005
    """The connection's token expired without a ``refresh``: get a new token, reconnect and recover."""
    SUBSCRIPTION_EXPIRED = 3006
    SERVER_ERROR = 3004
    """The refresh hook failed (centrifuge ``DisconnectServerError``): reconnect."""
    INVALID_TOKEN = 3500
    """The credentials were refused (bad token, revoked API key): do not retry with the same ones."""
    UNAUTHORIZED = INVALID_TOKEN
    BAD_REQUEST = 3501
    """A frame that is not a command (not JSON, not an object, a bad ``id``)."""
    CONNECT_TIMEOUT = 3502
    """Stale: no ``connect`` command arrived in time after the WebSocket opened."""
    FORCE_DISCONNECT = 3503
    CONNECTION_LIMIT = 3504
    """The user has ``rate_limits.max_connections_per_user`` connections already."""

    FIRST = 3000
    """Codes below are the transport's (RFC 6455 §7.4)."""
    LAST = 4999
    """The last code a close frame may carry (RFC 6455 §7.4.2: 4000-4999 are private use)."""
    RECONNECT = (range(3000, 3500), range(4000, 4500))
    """The ranges after which the SDKs reconnect; 3500-3999 and 4500-4999 are terminal."""
    CONNECTION_EXPIRED = TOKEN_EXPIRED
    """Centrifugo's "connection expired" (reconnect with a fresh token): ``/api/refresh`` with ``expired``."""

    @staticmethod
    def reconnect(code: int) -> bool:
        """Whether a client reconnects after this close code (the SDKs' rule)."""
        return any(code in codes for codes in DisconnectCode.RECONNECT)


class UnsubscribeCode:
    """Codes of ``unsubscribe`` pushes (the server ended one subscription; the connection lives on).

    2000-2499: the client should not resubscribe; 2500-2999: it should (``centrifuge/unsubscribe.go``).
    """

    SERVER = 2000
    """The server ended it (``Hub.unsubscribe``, ``/api/unsubscribe``)."""
    PERMISSION_REVOKED = 2001
    """A ``refresh`` gave the connection an identity that no longer grants the channel (ours)."""
    INSUFFICIENT_STATE = 2500
    EXPIRED = 2501
    """Its subscription token expired without a ``sub_refresh``: subscribe again with a fresh one."""

    @staticmethod
    def resubscribe(code: int) -> bool:
        return 2500 <= code < 3000


#: Every method the hub knows, in the order a command's key is looked for; anything else gets 104.
METHODS = (
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
)
_METHOD_SET = frozenset(METHODS)

#: The method of ``{}``: the pong to the hub's ping.
PONG = ""
#: The method of an id-less ``send`` (no reply).
SEND = "send"
#: The hub's app-level ping.
PING_FRAME = "{}"

#: Largest command id accepted (Centrifugo's ids are uint32).
MAX_ID = 2**32 - 1

#: Most commands one frame may batch.
MAX_BATCH = 100


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


class BadFrame(Exception):
    """A frame that is not a command: the hub closes the connection with 3501 (bad request)."""


def _parse_one(text: str) -> Command:
    try:
        value = _decoder.decode(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested arrays
        raise BadFrame("invalid JSON") from None
    if not isinstance(value, dict):
        raise BadFrame("a command must be a JSON object")
    cid = value.get("id", 0)
    if not _is_int(cid) or not 0 <= cid <= MAX_ID:
        raise BadFrame("'id' must be an integer in [1, 2**32)")
    try:
        refuse_lone_surrogates(text, value)
    except (ValueError, RecursionError):
        raise BadFrame("a string holds a lone surrogate") from None  # RFC 7493
    method = next((m for m in METHODS if m in value), None)
    if cid == 0:
        if method == SEND:
            params = value[SEND]
            return Command(0, SEND, params if isinstance(params, dict) else {})
        if len(value) == (1 if "id" in value else 0):
            return Command(0, PONG, {})
        raise BadFrame("a command needs an 'id'")
    if method is None:
        raise _Refused(cid, HubError(ErrorCode.METHOD_NOT_FOUND, "unknown method"))
    params = value[method]
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _Refused(cid, HubError(ErrorCode.BAD_REQUEST, f"'{method}' must be an object"))
    return Command(cid, method, params)


class _Refused(Exception):
    def __init__(self, command_id: int, error: HubError) -> None:
        self.command_id = command_id
        self.error = error


def parse_frame(text: str) -> list[Command | tuple[int, HubError]]:
    """The commands of one frame, in order; a command refused with a readable id is ``(id, error)``.

    Raises :class:`BadFrame` when any part is unreadable (the whole frame is refused: the hub closes).
    """
    parts = text.split("\n")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing newline is allowed
    if len(parts) > MAX_BATCH:
        raise BadFrame("too many commands in one frame")
    commands: list[Command | tuple[int, HubError]] = []
    for part in parts:
        try:
            commands.append(_parse_one(part))
        except _Refused as refused:
            commands.append((refused.command_id, refused.error))
    return commands


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


def reply_frame(command_id: int, method: str, result: dict[str, Any] | str) -> str:
    """``{"id": n, "<method>": result}`` (``result`` may be JSON text already)."""
    text = result if isinstance(result, str) else _encode(result)
    return f'{{"id":{command_id},"{method}":{text}}}'


def error_frame(command_id: int, error: HubError) -> str:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.temporary:
        body["temporary"] = True
    return _encode({"id": command_id, "error": body})


def client_info_json(client: str, user: str, conn_info_json: str = "", chan_info_json: str = "") -> str:
    """A ``ClientInfo`` object as JSON text: ``{"user", "client", "conn_info"?, "chan_info"?}``."""
    parts = ['{"user":', _encode(user), ',"client":', _encode(client)]
    if conn_info_json:
        parts += [',"conn_info":', conn_info_json]
    if chan_info_json:
        parts += [',"chan_info":', chan_info_json]
    parts.append("}")
    return "".join(parts)


def publication_json(
    offset: int | None, data_json: str, info_json: str | None, tags_json: str | None = None
) -> str:
    """A ``Publication`` object as JSON text, from the already-encoded ``data`` and ``info``.

    ``data`` is encoded once when published and then spliced into every frame that carries it (pushes,
    history and recovery replies): no re-encoding per subscriber or per read.
    """
    parts = ['{"data":', data_json]
    if info_json is not None:
        parts.append(',"info":')
        parts.append(info_json)
    if offset is not None:
        parts.append(f',"offset":{offset}')
    if tags_json is not None:
        parts.append(',"tags":')
        parts.append(tags_json)
    parts.append("}")
    return "".join(parts)


def _push(channel: str, kind: str, body: str) -> str:
    return f'{{"push":{{"channel":{_encode(channel)},"{kind}":{body}}}}}'


def pub_push_frame(publication: str, channel: str, concrete: str | None = None) -> str:
    """``{"push": {"channel": c, "pub": {...}}}``; through a wildcard subscription ``channel`` is the
    pattern and the publication carries its ``concrete`` channel (``pub.channel``, as Centrifugo's NATS
    wildcards do)."""
    if concrete is not None:
        publication = '{"channel":' + _encode(concrete) + "," + publication[1:]
    return _push(channel, "pub", publication)


def presence_push_frame(kind: str, channel: str, info_json: str) -> str:
    """``join`` or ``leave``: ``{"push": {"channel": c, "join": {"info": ClientInfo}}}``."""
    return _push(channel, kind, '{"info":' + info_json + "}")


def unsubscribe_push_frame(channel: str, code: int, reason: str) -> str:
    return _push(channel, "unsubscribe", _encode({"code": code, "reason": reason}))


def subscribe_push_frame(channel: str, result: dict[str, Any]) -> str:
    """A server-side subscription: ``{"push": {"channel": c, "subscribe": {...}}}``."""
    return _push(channel, "subscribe", _encode(result))


def message_push_frame(data_json: str) -> str:
    """An asynchronous message to one client: ``{"push": {"message": {"data": ...}}}``."""
    return '{"push":{"message":{"data":' + data_json + "}}}"
