"""Payloads given as bytes (a protobuf client's ``data``, the HTTP API's ``b64data``) and the text the hub
stores for them: JSON as sent, anything else as a marked base64 string (PROTOCOL.md, "Protobuf")."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from .protocol import dumps, refuse_lone_surrogates

__all__ = [
    "BINARY_MARK",
    "ExactParams",
    "StoredPayload",
    "binary_json",
    "payload_bytes",
    "payload_json",
    "payload_of_bytes",
]


class ExactParams(dict[str, Any]):
    """A protobuf command's params: ``data`` parsed as JSON, as for a JSON client, and ``data_text``, the
    exact JSON text the client sent, which the hub stores and delivers instead of re-encoding the value."""

    __slots__ = ("data_text",)

    data_text: str


#: The first character of a binary payload's stored text (``binary_json``).  JSON texts never start with
#: it: the hub's own are compact, a protobuf client's lose a leading one (``pb_frames``).
BINARY_MARK = "\r"


def binary_json(raw: bytes) -> str:
    """The stored text of a payload that is not JSON: its base64 as a JSON string, marked.

    JSON clients get that string (valid JSON, never a broken frame), protobuf clients the bytes back
    (``payload_bytes``).  Centrifugo splices any bytes into JSON frames as they are (centrifugal/protocol
    ``raw.go``), which breaks its JSON clients on binary data: PROTOCOL.md, "Protobuf"."""
    return BINARY_MARK + '"' + base64.b64encode(raw).decode("ascii") + '"'


def payload_bytes(text: str) -> bytes:
    """A payload's bytes for the protobuf encoding, from its stored text."""
    if text.startswith(BINARY_MARK):
        return base64.b64decode(text.strip(" \t\r\n")[1:-1])
    return text.encode("utf-8")


def payload_of_bytes(raw: bytes) -> tuple[Any, str]:
    """The value of a payload given as bytes (a protobuf client's ``data``, the HTTP API's ``b64data``) and
    the text to store for it.  JSON in UTF-8: the bytes as sent, less newlines (only white space in JSON,
    and the JSON encoding's frame separator: centrifugal/protocol ``raw.go``, ``Raw.MarshalJSON``, drops
    them too) and less a leading ``BINARY_MARK``.  Anything else: ``binary_json``, its base64 string."""
    try:
        text = raw.decode("utf-8")
        value = json.loads(text)
        refuse_lone_surrogates(text, value)
    except (ValueError, RecursionError):
        text = binary_json(raw)
        return json.loads(text), text
    text = text.replace("\n", "") if "\n" in text else text
    return value, text.lstrip(BINARY_MARK) if text.startswith(BINARY_MARK) else text


@dataclass(frozen=True, slots=True)
class StoredPayload:
    """A payload given as the text to store (``payload_of_bytes``): published as is, not encoded."""

    text: str


def payload_json(params: dict[str, Any]) -> str:
    """The JSON text to store for ``params["data"]``: a protobuf client's own text (``ExactParams``) as
    sent, else the value encoded compact.  ``ValueError`` when the value cannot be encoded."""
    if isinstance(params, ExactParams):
        return params.data_text
    return dumps(params["data"])
