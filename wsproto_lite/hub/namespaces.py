"""Channels and namespaces: name rules, per-namespace options, wildcard patterns.

A channel ``ns:rest`` belongs to namespace ``ns`` (the text before the first ``:``); a channel without
``:`` belongs to the default namespace ``""``.  Every behaviour of a channel (presence, join/leave
pushes, history, who may publish, wildcards) comes from its namespace's options, so the hub has no
per-channel special cases.

A wildcard subscription is a channel name ending in ``*`` (``stock:*``, ``stock:US.*``): it receives
every publication to a channel of the same namespace that starts with the text before the ``*``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .protocol import ErrorCode, HubError

__all__ = [
    "Channel",
    "namespace_of",
    "NamespaceOptions",
    "Namespaces",
    "DEFAULT_NAMESPACES",
    "MAX_CHANNEL_LENGTH",
    "WILDCARD",
]

MAX_CHANNEL_LENGTH = 255
WILDCARD = "*"

# Printable ASCII without spaces, quotes, backslash and '*' (reserved for wildcards): safe in URLs, logs
# and JSON without escaping.  Namespace names are narrower.
_CHANNEL_CHARS = re.compile(r"[A-Za-z0-9_\-.:@=/+,;!~#$%&()\[\]{}|^]+")
_NAMESPACE_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")


@dataclass(frozen=True, slots=True)
class NamespaceOptions:
    """What channels of one namespace do."""

    presence: bool = False
    """Track who is subscribed: ``presence`` and ``presence_stats`` work."""
    join_leave: bool = False
    """Push ``join``/``leave`` to the channel's subscribers (needs ``presence``)."""
    history_size: int = 0
    """Keep the last N publications (0: no history, no recovery, no offsets)."""
    history_ttl: float = 0.0
    """Seconds a publication stays in history."""
    allow_publish: bool | None = False
    """Clients may publish (else only the server side: the HTTP API).  None (the built-in namespaces):
    only while no authentication is configured (authz.py)."""
    allow_anonymous: bool | None = None
    """Connections without credentials may use the namespace (read; publish where clients may).  None:
    while no authentication is configured, or with ``auth.allow_anonymous = true`` (authz.py); true also
    makes the hub accept anonymous connections when authentication is configured."""
    allow_wildcards: bool = False
    """Clients may subscribe to patterns such as ``stock:*``."""
    allow_subscribe: bool = True
    """Clients may subscribe (the auth issue adds per-user rules)."""

    def __post_init__(self) -> None:
        if self.history_size < 0 or self.history_ttl < 0:
            raise ValueError("history_size and history_ttl must be >= 0")
        if self.history_size and not self.history_ttl:
            raise ValueError("history_size > 0 needs history_ttl > 0 (seconds)")
        if self.join_leave and not self.presence:
            raise ValueError("join_leave needs presence")

    @property
    def history(self) -> bool:
        return self.history_size > 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> NamespaceOptions:
        """From a config file's table; unknown keys and wrong types raise ValueError naming the key."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown namespace option {key!r} (known: {', '.join(sorted(known))})")
            default = getattr(cls(), key)
            if isinstance(default, bool) or default is None:  # None: a switch left to the auth config
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok:
                kind = "bool" if default is None else type(default).__name__
                raise ValueError(f"namespace option {key!r} must be {kind}, got {value!r}")
            kwargs[key] = float(value) if isinstance(default, float) else value
        return cls(**kwargs)


#: Clients may publish in the built-in namespaces, and anonymous connections use them, until some
#: authentication is configured (a JWT key or an API key): then only where the config file says so.
DEFAULT_NAMESPACES: dict[str, NamespaceOptions] = {
    "": NamespaceOptions(allow_publish=None),
    "chat": NamespaceOptions(
        presence=True, join_leave=True, history_size=100, history_ttl=300.0, allow_publish=None
    ),
    "stock": NamespaceOptions(history_size=10, history_ttl=60.0, allow_publish=None, allow_wildcards=True),
    "bench": NamespaceOptions(allow_publish=None),
}


@dataclass(frozen=True, slots=True)
class Channel:
    """A validated channel name and its namespace's options."""

    name: str
    namespace: str
    options: NamespaceOptions
    prefix: str | None = None
    """For a wildcard pattern: the text every matching channel starts with."""

    @property
    def is_pattern(self) -> bool:
        return self.prefix is not None


@dataclass
class Namespaces:
    """The namespace table; ``resolve`` turns an untrusted channel name into a ``Channel`` or a 102/107."""

    namespaces: dict[str, NamespaceOptions] = field(default_factory=lambda: dict(DEFAULT_NAMESPACES))

    def __post_init__(self) -> None:
        for name in self.namespaces:
            if name and not _NAMESPACE_NAME.fullmatch(name):
                raise ValueError(f"namespace name {name!r}: 1-64 of A-Z a-z 0-9 _ -")

    def options(self, namespace: str) -> NamespaceOptions | None:
        return self.namespaces.get(namespace)

    def resolve(self, name: str, *, pattern_ok: bool = False) -> Channel:
        if len(name) > MAX_CHANNEL_LENGTH:
            raise HubError(
                ErrorCode.BAD_REQUEST, f"channel names are at most {MAX_CHANNEL_LENGTH} characters"
            )
        body = name[:-1] if name.endswith(WILDCARD) else name
        if body and not _CHANNEL_CHARS.fullmatch(body):
            raise HubError(
                ErrorCode.BAD_REQUEST, "channel names use printable ASCII without spaces or quotes"
            )
        namespace = body.partition(":")[0] if ":" in body else ""
        options = self.namespaces.get(namespace)
        if options is None:  # generic: an error must not tell which namespaces exist
            raise HubError(ErrorCode.UNKNOWN_CHANNEL, "unknown channel")
        if name.endswith(WILDCARD):
            if not pattern_ok:
                raise HubError(ErrorCode.BAD_REQUEST, "wildcards are only for subscribe")
            if not namespace:
                raise HubError(ErrorCode.BAD_REQUEST, "a wildcard needs a namespace ('ns:*')")
            if not options.allow_wildcards:
                raise HubError(ErrorCode.PERMISSION_DENIED, "permission denied")
            return Channel(name, namespace, options, prefix=body)
        if not body or body == namespace + ":":
            raise HubError(ErrorCode.BAD_REQUEST, "empty channel name")
        return Channel(name, namespace, options)

    def with_namespace(self, name: str, options: NamespaceOptions) -> Namespaces:
        return Namespaces({**self.namespaces, name: options})


def namespace_of(channel: str) -> str:
    """The namespace part of a (valid) channel name."""
    return channel.partition(":")[0] if ":" in channel else ""
