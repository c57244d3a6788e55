"""The protobuf wire format for the messages of ``client.proto``: dicts with the .proto field names.

A hand-written codec (standard library only) for the part of the format ``client.proto`` needs: varints
(with zigzag for ``sint64``) and length-delimited fields, per https://protobuf.dev/programming-guides/encoding/.
``benchmarks/pb_codec.py`` measured it against the ``protobuf`` package (RESULTS-protobuf.md).

:func:`decode` reads what a peer sent and raises :class:`WireError` for anything that is not a well-formed
message of the schema: a truncated varint or one longer than 10 bytes, a length past the end, a wire
type other than the field's, groups, field number 0, a string that is not UTF-8 (proto3 strings are
UTF-8), nesting deeper than :data:`MAX_DEPTH`.  Unknown fields are skipped, as every protobuf decoder does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .pb_schema import MESSAGES, Field
from .pb_schema import field as make_field
from .protocol import dumps

__all__ = ["MAX_DEPTH", "WireError", "decode", "encode", "read_varint", "varint"]

#: Deepest nesting of messages accepted (client.proto nests a few levels; ``FilterNode`` is recursive).
MAX_DEPTH = 16

_MASK64 = (1 << 64) - 1


class WireError(ValueError):
    """Bytes that are not a message of the schema."""


def varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**64) as a base-128 varint."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result > _MASK64:
                raise WireError("varint over 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


# -- decoding -------------------------------------------------------------------------------------------


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


_VARINTS: dict[str, Callable[[int], Any]] = {
    "bool": bool,
    "uint32": lambda v: v & 0xFFFFFFFF,  # as Go's generated code truncates
    "uint64": int,
    "int32": lambda v: _signed(v, 32),
    "int64": lambda v: _signed(v, 64),
    "sint64": lambda v: (v >> 1) ^ -(v & 1),
}


def _scalar(kind: str, raw: bytes) -> Any:
    if kind == "bytes":
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("a string field is not UTF-8") from None


def _value(field_kind: str, wire_type: int, data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if wire_type == 0:
        raw, pos = read_varint(data, pos)
        return _VARINTS[field_kind](raw), pos
    size, pos = read_varint(data, pos)
    end = pos + size
    if end > len(data):
        raise WireError("length past the end")
    if field_kind in MESSAGES:
        return decode(field_kind, data[pos:end], depth + 1), end
    return _scalar(field_kind, data[pos:end]), end


def _skip(wire_type: int, data: bytes, pos: int) -> int:
    if wire_type == 0:
        return read_varint(data, pos)[1]
    if wire_type == 2:
        size, pos = read_varint(data, pos)
        pos += size
    elif wire_type in (1, 5):
        pos += 8 if wire_type == 1 else 4
    else:
        raise WireError(f"wire type {wire_type} (groups are not used)")
    if pos > len(data):
        raise WireError("length past the end")
    return pos


def _map_entry(field: Field, data: bytes, pos: int, depth: int) -> tuple[Any, Any, int]:
    size, pos = read_varint(data, pos)
    end = pos + size
    if end > len(data):
        raise WireError("length past the end")
    entry = data[pos:end]
    key: Any = "" if field.kind == "string" else 0
    value: Any = {} if field.map_value in MESSAGES else ""
    at = 0
    while at < len(entry):
        tag, at = read_varint(entry, at)
        number, wire_type = tag >> 3, tag & 7
        kind = field.kind if number == 1 else field.map_value if number == 2 else None
        if kind is None:
            at = _skip(wire_type, entry, at)
            continue
        if wire_type != (0 if kind in _VARINTS else 2):
            raise WireError(f"map entry of {field.name}: wrong wire type")
        if number == 1:
            key, at = _value(kind, wire_type, entry, at, depth)
        else:
            value, at = _value(kind, wire_type, entry, at, depth)
    return key, value, end


def decode(message: str, data: bytes, depth: int = 0) -> dict[str, Any]:
    """The fields present in ``data``, a serialized ``message``, by name; ``WireError`` if malformed."""
    if depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    fields = MESSAGES[message]
    out: dict[str, Any] = {}
    pos = 0
    end = len(data)
    while pos < end:
        tag = data[pos]
        if tag < 0x80:  # every field of client.proto has a one-byte key
            pos += 1
        else:
            tag, pos = read_varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        field = fields.get(number)
        if field is None:
            pos = _skip(wire_type, data, pos)
        elif wire_type != field.wire_type:
            raise WireError(f"{message}.{field.name}: wire type {wire_type}")
        elif field.map_value is not None:
            key, value, pos = _map_entry(field, data, pos, depth + 1)
            out.setdefault(field.name, {})[key] = value
        else:
            value, pos = _value(field.kind, wire_type, data, pos, depth)
            if field.repeated:
                out.setdefault(field.name, []).append(value)
            else:
                out[field.name] = value
    return out


# -- encoding -------------------------------------------------------------------------------------------

_BY_NAME = {name: {f.name: f for f in fields.values()} for name, fields in MESSAGES.items()}


def _encode_varint(kind: str, value: Any) -> bytes:
    if kind == "sint64":
        return varint(((value << 1) ^ (value >> 63)) & _MASK64)
    return varint(int(value) & _MASK64)


def _encode_one(kind: str, value: Any) -> bytes | None:
    """The payload of one value: a varint, or the bytes a length prefix goes before (None: default)."""
    if kind in _VARINTS:
        return _encode_varint(kind, value) if value else None
    if kind == "string":
        return value.encode("utf-8") if value else None
    if kind == "bytes":
        return value if isinstance(value, bytes) else dumps(value).encode("utf-8")
    return encode(kind, value)


def _field_bytes(field: Field, value: Any, out: list[bytes]) -> None:
    if field.map_value is not None:
        for key, item in value.items():
            entry = _entry(field, key, item)
            out += (field.tag, varint(len(entry)), entry)
        return
    length_delimited = field.wire_type == 2
    for item in value if field.repeated else (value,):
        payload = _encode_one(field.kind, item)
        if payload is None:
            if not field.repeated:
                continue
            payload = b""
        out.append(field.tag)
        if length_delimited:
            out.append(varint(len(payload)))
        out.append(payload)


_ENTRY_FIELDS: dict[tuple[str, str], tuple[Field, Field]] = {}


def _entry(field: Field, key: Any, value: Any) -> bytes:
    kinds = (field.kind, field.map_value or "")
    entry_fields = _ENTRY_FIELDS.get(kinds)
    if entry_fields is None:
        entry_fields = _ENTRY_FIELDS[kinds] = (
            make_field("key", 1, kinds[0]),
            make_field("value", 2, kinds[1]),
        )
    parts: list[bytes] = []
    _field_bytes(entry_fields[0], key, parts)
    _field_bytes(entry_fields[1], value, parts)
    return b"".join(parts)


def encode(message: str, value: dict[str, Any]) -> bytes:
    """``value`` (field name -> value; names not in ``message`` and None are left out) serialized.

    A ``bytes`` field takes ``bytes`` as they are and any other value as its JSON text (the hub's
    payloads are JSON); zero values are not written (proto3).
    """
    by_name = _BY_NAME[message]
    out: list[bytes] = []
    for name, item in value.items():
        field = by_name.get(name)
        if field is not None and item is not None:
            _field_bytes(field, item, out)
    return b"".join(out)
