"""Frames of the protobuf encoding: varint-length-delimited ``Command``s in, ``Reply``s out.

The hub runs one set of command handlers, written against the JSON encoding's shapes (``protocol.py``):
a protobuf frame's commands become the same :class:`~wsproto_lite.hub.protocol.Command` objects, and the
JSON text of a reply or push becomes its ``Reply`` here (:func:`reply_of`).  Publication pushes, the hot
path, are built from the stored publication directly (:func:`publication_push`), once per channel.

Payloads (``data``) are bytes in ``client.proto``; the hub keeps every payload as JSON text (what its JSON
clients are sent verbatim, and what the engine, history and Redis hold); a protobuf client's ``data``
may be any bytes: JSON is stored as the text sent (less newlines), not re-encoded, other bytes as their
base64 in a JSON string, marked (``payloads.binary_json``; PROTOCOL.md, "Protobuf").  Frames:
``centrifuge/handler_websocket.go`` (binary messages, ``centrifuge-protobuf``) and ``protocol/decode.go``
(``ProtobufCommandDecoder``: a varint length before each command).
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from .payloads import ExactParams, payload_bytes, payload_of_bytes
from .pb_schema import MESSAGES
from .pb_wire import WireError, decode, encode, read_varint, varint
from .protocol import (
    MAX_BATCH,
    METHODS,
    PONG,
    SEND,
    BadFrame,
    Command,
    ErrorCode,
    HubError,
    dumps,
)

if TYPE_CHECKING:
    from wsproto_lite import Request

__all__ = [
    "JSON_SUBPROTOCOL",
    "PING",
    "SUBPROTOCOL",
    "commands_of",
    "negotiate",
    "publication_push",
    "read_length",
    "reply_of",
]

#: The WebSocket subprotocol of the encoding (``centrifuge/handler_websocket.go``).
SUBPROTOCOL = "centrifuge-protobuf"
#: The JSON encoding's subprotocol: optional (JSON is the default without one).
JSON_SUBPROTOCOL = "centrifuge-json"
#: The app-level ping: an empty ``Reply`` (the pong is an empty ``Command``).
PING = b"\x00"

_raw = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's white space (RFC 8259 §2)


def _space(text: str, pos: int) -> int:
    """Where the white space at ``pos`` ends."""
    match = _SPACE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def read_length(frame: bytes, pos: int) -> tuple[int, int]:
    """The length prefix at ``pos`` and where its message starts; ``BadFrame`` past the frame's end."""
    try:
        size, pos = read_varint(frame, pos)
    except WireError as exc:
        raise BadFrame(str(exc)) from None
    if pos + size > len(frame):
        raise BadFrame("a command's length is past the end of the frame")
    return size, pos


def commands_of(frame: bytes) -> list[Command | tuple[int, HubError]]:
    """The commands of one binary frame, in order, as ``protocol.parse_frame`` gives them for JSON.

    Raises ``BadFrame`` (the hub closes with 3501, as centrifuge does when a command does not decode).
    """
    if not frame:
        raise BadFrame("an empty frame")
    commands: list[Command | tuple[int, HubError]] = []
    pos = 0
    while pos < len(frame):
        if len(commands) == MAX_BATCH:
            raise BadFrame("too many commands in one frame")
        size, pos = read_length(frame, pos)
        try:
            fields = decode("Command", frame[pos : pos + size])
        except (WireError, RecursionError) as exc:
            raise BadFrame(f"not a Command: {exc}") from None
        pos += size
        commands.append(_command(fields))
    return commands


def _command(fields: dict[str, Any]) -> Command | tuple[int, HubError]:
    command_id = fields.pop("id", 0)
    method = next((m for m in METHODS if m in fields), None)
    if command_id == 0:
        if method == SEND:
            return Command(0, SEND, {})
        if not fields:
            return Command(0, PONG, {})
        raise BadFrame("a command needs an 'id'")
    if method is None:
        return command_id, HubError(ErrorCode.METHOD_NOT_FOUND, "unknown method")
    try:
        return Command(command_id, method, _params(fields[method]))
    except HubError as error:
        return command_id, error


def _params(request: dict[str, Any]) -> dict[str, Any]:
    """A request message's fields as the JSON encoding has them: payloads as JSON values (the text sent
    kept beside, :class:`ExactParams`), proto3's omitted zero values of a ``StreamPosition`` filled in."""
    if "data" in request:
        request["data"], data_text = payload_of_bytes(request["data"])
        request = ExactParams(request)
        request.data_text = data_text
    since = request.get("since")
    if since is not None:
        since.setdefault("epoch", "")
        since.setdefault("offset", 0)
    for sub in request.get("subs", {}).values():
        _params(sub)
    return request


def _delimited(body: bytes) -> bytes:
    return varint(len(body)) + body


class _Object(dict[str, Any]):
    """A JSON object read by ``_keeping_data``, with the text of its ``data`` member (``None``: none)."""

    __slots__ = ("data",)

    data: str | None


def _pairs(pairs: list[tuple[str, tuple[Any, str, int, int]]]) -> _Object:
    """An object whose values were read by ``scan_keeping_text``: the values, and ``data``'s text with the
    white space around it (up to the ``:`` and the next ``,`` or ``}``: only a client's own text has any)."""
    made = _Object((key, item[0]) for key, item in pairs)
    made.data = None
    for key, (_, text, start, end) in pairs:
        if key == "data":
            while text[start - 1] in " \t\n\r":
                start -= 1
            made.data = text[start : _space(text, end)]
    return made


def _parse_object(state: tuple[str, int], strict: bool, scan_once: Any, *rest: Any) -> Any:
    def scan_keeping_text(text: str, start: int) -> tuple[tuple[Any, str, int, int], int]:
        value, end = scan_once(text, start)
        return (value, text, start, end), end

    return _json_object(state, strict, scan_keeping_text, None, _pairs, *rest[2:])


_json_object: Any = getattr(json.decoder, "JSONObject")  # noqa: B009 (not in typeshed)
_keeping_data: Any = json.JSONDecoder()
_keeping_data.parse_object = _parse_object
_keeping_data.scan_once = getattr(json.scanner, "py_make_scanner")(_keeping_data)  # noqa: B009


def _with_data_text(message: str, value: Any) -> None:
    """Each ``data`` (a ``bytes`` field) of the ``Reply`` read by ``_keeping_data`` set to its text, by the
    schema: not inside payloads (a ``conn_info`` may well hold a "data" key of its own)."""
    if not isinstance(value, _Object):
        return
    for field in MESSAGES[message].values():
        if field.name not in value:
            continue
        item = value[field.name]
        if field.name == "data" and field.kind == "bytes" and value.data is not None:
            value["data"] = payload_bytes(value.data)
        elif item is not None and (field.kind in MESSAGES or field.map_value in MESSAGES):
            kind = field.map_value or field.kind
            items = item.values() if field.map_value else item if field.repeated else [item]
            for each in items:
                _with_data_text(kind, each)


def reply_of(text: str) -> bytes:
    """The ``Reply`` (length-delimited) of a reply or push the hub built as JSON text.

    ``data`` (payloads: ``bytes`` in ``client.proto``) goes out as the JSON text in ``text``, not parsed
    and re-encoded, so a protobuf client's published text comes back byte for byte in history and
    recovery too.  Such replies are read by the standard library's Python scanner (slower than its C one,
    and only for replies that carry ``data``; publication pushes do not come here).
    """
    if text == "{}":
        return PING
    if '"data":' in text:
        reply = _keeping_data.decode(text)
        _with_data_text("Reply", reply)
        return _delimited(encode("Reply", reply))
    return _delimited(encode("Reply", json.loads(text)))


def _tag(message: str, name: str) -> bytes:
    return next(f.tag for f in MESSAGES[message].values() if f.name == name)


_REPLY_PUSH = _tag("Reply", "push")
_PUSH_CHANNEL, _PUSH_PUB = _tag("Push", "channel"), _tag("Push", "pub")
_PUB_DATA, _PUB_INFO, _PUB_OFFSET = (
    _tag("Publication", "data"),
    _tag("Publication", "info"),
    _tag("Publication", "offset"),
)
_PUB_CHANNEL = _tag("Publication", "channel")
_INFO_FIELDS = [(_tag("ClientInfo", name), name) for name in ("user", "client", "conn_info", "chan_info")]


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def _client_info(info: dict[str, Any]) -> bytes:
    parts = []
    for tag, name in _INFO_FIELDS:
        value = info.get(name)
        if name in ("user", "client"):
            if value:  # a string: proto3 leaves out ""
                parts.append(_field(tag, value.encode("utf-8")))
        elif value is not None:  # a JSON value, even "": its JSON text
            parts.append(_field(tag, dumps(value).encode("utf-8")))
    return b"".join(parts)


def publication_push(publication_json: str, channel: str, concrete: str | None = None) -> bytes:
    """A ``pub`` push (length-delimited ``Reply``) from a stored publication's JSON text
    (``protocol.publication_json``): its ``data`` goes out as the exact bytes stored, not decoded and
    re-encoded.  Built field by field (the hot path: once per publication and channel); the result is
    what ``encode`` gives (tested)."""
    start = len('{"data":')  # a protobuf client's text may have white space around its value
    end = _space(publication_json, _raw.raw_decode(publication_json, _space(publication_json, start))[1])
    rest = json.loads("{" + publication_json[end + 1 :]) if publication_json[end] == "," else {}
    parts = [_field(_PUB_DATA, payload_bytes(publication_json[start:end]))]
    if "info" in rest:
        parts.append(_field(_PUB_INFO, _client_info(rest.pop("info"))))
    offset = rest.pop("offset", None)
    if offset:
        parts.append(_PUB_OFFSET + varint(offset))
    if rest:  # tags
        parts.append(encode("Publication", rest))
    if concrete:
        parts.append(_field(_PUB_CHANNEL, concrete.encode("utf-8")))
    push = _field(_PUSH_CHANNEL, channel.encode("utf-8")) + _field(_PUSH_PUB, b"".join(parts))
    return _delimited(_field(_REPLY_PUSH, push))


def negotiate(request: Request) -> tuple[str | None, bool]:
    """The subprotocol to accept and whether the connection speaks protobuf.

    As ``centrifuge/handler_websocket.go``: of the subprotocols offered, ``centrifuge-json`` is preferred
    to ``centrifuge-protobuf`` (the server's order); the legacy query switches ``?format=protobuf`` and
    ``?cf_protocol=protobuf`` select protobuf too; JSON otherwise.
    """
    offered = request.subprotocols
    chosen = next((p for p in (JSON_SUBPROTOCOL, SUBPROTOCOL) if p in offered), None)
    query = parse_qs(request.query) if request.query else {}
    switched = "protobuf" in query.get("format", ()) or "protobuf" in query.get("cf_protocol", ())
    return chosen, switched or chosen == SUBPROTOCOL
