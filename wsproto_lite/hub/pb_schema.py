"""The messages of Centrifugo's ``client.proto``, read from the vendored file at import.

``client.proto`` (next to this module, from ``github.com/centrifugal/protocol``) uses a small part of
proto3: top-level messages whose fields are scalars, messages, ``repeated`` ones and ``map<K, V>``.  This
reads exactly that part (anything else raises at import, so a newer file that needs more is noticed) into
:data:`MESSAGES`: message name -> field number -> :class:`Field`, which ``pb_wire`` encodes and decodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

__all__ = ["Field", "MESSAGES", "SCALARS", "field", "parse_proto"]

#: The scalar types client.proto uses -> wire type (0 varint, 2 length-delimited; protobuf encoding guide).
SCALARS = {
    "string": 2,
    "bytes": 2,
    "bool": 0,
    "int32": 0,
    "int64": 0,
    "uint32": 0,
    "uint64": 0,
    "sint64": 0,
}


@dataclass(frozen=True, slots=True)
class Field:
    """One field: ``kind`` is a scalar type or a message name; a map is a repeated entry message."""

    name: str
    number: int
    kind: str
    repeated: bool = False
    map_value: str | None = None
    """For ``map<K, V>``: V (K is ``kind``); entries are messages ``{1: key, 2: value}``."""
    wire_type: int = 2
    """0 (varint) or 2 (length-delimited), from ``kind``."""
    tag: bytes = b""
    """The field's key as encoded: the varint of ``number << 3 | wire_type``."""


def field(name: str, number: int, kind: str, repeated: bool = False, map_value: str | None = None) -> Field:
    """A :class:`Field` with its wire type and encoded key filled in."""
    wire_type = 2 if map_value is not None else SCALARS.get(kind, 2)
    key = number << 3 | wire_type
    tag = bytearray()
    while key >= 0x80:
        tag.append((key & 0x7F) | 0x80)
        key >>= 7
    tag.append(key)
    return Field(name, number, kind, repeated, map_value, wire_type, bytes(tag))


_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_MESSAGE = re.compile(r"message\s+(\w+)\s*\{([^{}]*)\}")
_FIELD = re.compile(r"^(repeated\s+)?(?:map<\s*(\w+)\s*,\s*(\w+)\s*>|(\w+))\s+(\w+)\s*=\s*(\d+)\s*;$")
_HEADER = re.compile(r"^(syntax|package|option)\b[^;]*;$", re.M)


def _fields(name: str, body: str) -> dict[int, Field]:
    fields: dict[int, Field] = {}
    for statement in body.split(";"):
        line = " ".join(statement.split())
        if not line or line.startswith("reserved "):
            continue
        match = _FIELD.match(line + ";")
        if match is None:
            raise ValueError(f"client.proto: cannot read {line!r} in message {name}")
        repeated, key, value, kind, field_name, number = match.groups()
        if key is not None:
            fields[int(number)] = field(field_name, int(number), key, True, value)
        else:
            fields[int(number)] = field(field_name, int(number), kind, bool(repeated))
    return fields


def parse_proto(text: str) -> dict[str, dict[int, Field]]:
    """The messages of a .proto text in the subset client.proto uses; ``ValueError`` for anything else."""
    text = _HEADER.sub("", _COMMENT.sub("", text))
    messages = {name: _fields(name, body) for name, body in _MESSAGE.findall(text)}
    rest = _MESSAGE.sub("", text).strip()
    if rest:
        raise ValueError(f"client.proto: cannot read {rest[:60]!r}")
    for name, fields in messages.items():
        for field in fields.values():
            for kind in (field.kind, field.map_value):
                if kind is not None and kind not in SCALARS and kind not in messages:
                    raise ValueError(f"client.proto: {name}.{field.name} has unknown type {kind}")
    return messages


MESSAGES = parse_proto(resources.files(__package__).joinpath("client.proto").read_text("utf-8"))
