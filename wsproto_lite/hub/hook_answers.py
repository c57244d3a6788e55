"""The fields of the hooks' ``result`` objects, checked (centrifugo ``internal/proxyproto/proxy.proto``:
``ConnectResult``, ``RefreshResult``, ``SubscribeResult``, ``PublishResult``, ``RPCResult``,
``SubRefreshResult``).

The hub speaks JSON, so ``data``/``info`` are JSON values; their ``b64data``/``b64info`` forms must
decode to JSON text (centrifugo decodes them the same way: ``connect_handler.go``; a bad one is
``ErrorInternal``).  A field of the wrong type fails the command with :func:`~.hooks.hook_failed`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .auth import Identity, SubOptions
from .hooks import hook_failed, now
from .protocol import dumps

__all__ = ["connect_identity", "expiry", "json_field", "publish_data", "text_field", "expired"]

#: Server-side channels one connect answer may name.
MAX_CHANNELS = 1024


def json_field(result: dict[str, Any], name: str) -> str:
    """JSON text of ``name`` (or ``b64`` + ``name``); ``""`` when absent."""
    encoded = result.get("b64" + name)
    if encoded:
        if not isinstance(encoded, str):
            raise hook_failed(f"the backend's b64{name} is not a string")
        try:
            text = base64.b64decode(encoded, validate=True).decode("utf-8")
            return dumps(json.loads(text))
        except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
            raise hook_failed(f"the backend's b64{name} is not base64 of JSON") from None
    if result.get(name) is None:
        return ""
    try:
        return dumps(result[name])
    except (ValueError, RecursionError):
        raise hook_failed(f"the backend's {name} cannot be encoded as JSON") from None


def text_field(result: dict[str, Any], name: str, max_length: int) -> str:
    value = result.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > max_length:
        raise hook_failed(f"the backend's {name} is not a string of at most {max_length} characters")
    return value


def expiry(result: dict[str, Any]) -> float | None:
    """``expire_at`` (Unix seconds; 0 or absent: never) as a wall-clock time."""
    value = result.get("expire_at", 0)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise hook_failed("the backend's expire_at is not a non-negative integer")
    return float(value) if value else None


def expired(result: dict[str, Any]) -> bool:
    """A refresh answer's ``expired``, or an ``expire_at`` already past."""
    value = result.get("expired", False)
    if not isinstance(value, bool):
        raise hook_failed("the backend's expired is not a boolean")
    at = expiry(result)
    return value or (at is not None and at <= now())


def connect_identity(result: dict[str, Any], max_name: int) -> tuple[Identity, str]:
    """The connection's identity from a ``ConnectResult``, and its ``data`` (JSON text, ``""``)."""
    user = text_field(result, "user", max_name)
    channels = _channels(result.get("channels"))
    subs = result.get("subs")
    subs = {} if subs is None else subs
    if not isinstance(subs, dict) or len(subs) > MAX_CHANNELS:
        raise hook_failed("the backend's subs is not an object")
    options = []
    for name, entry in subs.items():
        if not isinstance(entry, dict):
            raise hook_failed("the backend's subs entry is not an object")
        options.append(SubOptions(name, json_field(entry, "info"), json_field(entry, "data")))
        if name not in channels:
            channels.append(name)
    identity = Identity(
        user=user,
        expires=expiry(result),
        anonymous=not user,
        info=json_field(result, "info"),
        server_channels=tuple(channels),
        sub_options=tuple(o for o in options if o.info or o.data),
    )
    return identity, json_field(result, "data")


def _channels(value: Any) -> list[str]:
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > MAX_CHANNELS
        or not all(isinstance(name, str) for name in value)
    ):
        raise hook_failed("the backend's channels is not a list of strings")
    return list(dict.fromkeys(value))


def publish_data(result: dict[str, Any], data_json: str) -> tuple[str, bool]:
    """The data to publish (the answer's, else the client's) and ``skip_history``."""
    replaced = json_field(result, "data")
    skip = result.get("skip_history", False)
    if not isinstance(skip, bool):
        raise hook_failed("the backend's skip_history is not a boolean")
    return replaced or data_json, skip
