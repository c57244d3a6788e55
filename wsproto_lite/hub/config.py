"""The hub's configuration: defaults that work on a laptop, optionally a JSON or TOML file.

A file may set any of (every key optional; namespaces are added to, or replace, the built-in ones)::

    host = "127.0.0.1"
    port = 8000
    allowed_origins = ["https://app.example.com"]   # other sites whose pages may connect (see below)
    max_connections = 10000
    internal_port = 9000         # the HTTP API and /metrics here, not on `port` (as Centrifugo's internal
    internal_host = "127.0.0.1"  # port): plain HTTP, for loopback or a private network
    metrics_public = false       # true: GET /metrics without the API key
    compression = false          # permessage-deflate costs ~100 KiB of zlib state per connection

    certfile = "cert.pem"        # TLS (wss://): certificate chain and key, PEM
    keyfile = "key.pem"

    [limits]                     # HubLimits: per-connection bounds
    queue_limit = 1048576        # bytes queued per connection; over it for slow_timeout s: 4001
    slow_timeout = 10
    max_channels_per_connection = 128

    [rate_limits]                # RateLimits (limits.py): token buckets, per-user and hub-wide caps
    commands_per_second = 100
    max_connections_per_user = 100

    [auth]                       # AuthConfig (auth.py); the JWT secret from WSPROTO_HUB_JWT_SECRET
    jwt_public_key_file = "jwt.pub.pem"
    issuer = "https://example.com"
    audience = "hub"
    allow_anonymous = false
    private_namespaces = ["secret"]
    api_keys = []                # plus WSPROTO_HUB_API_KEYS (comma-separated); SIGHUP re-reads both

    [history]                    # MemoryEngine bounds over every channel
    max_bytes = 67108864
    max_streams = 100000

    [default_namespace]          # channels without ':'
    allow_publish = true

    [webhooks]                   # WebhookConfig (webhook_config.py): signed event webhooks, off without url
    url = "https://app.example.com/hub-events"
    secret = "..."               # or WSPROTO_HUB_WEBHOOK_SECRET
    [hooks]                      # HookConfig (hook_http.py): the backend asked over HTTP
    connect = "http://127.0.0.1:5000/hub/connect"
    headers = ["cookie"]

    [namespaces.chat]            # NamespaceOptions
    presence = true
    join_leave = true
    history_size = 100
    history_ttl = 300
    allow_publish = true

Origins: when a JWT may come from a cookie (a JWT key is configured), a WebSocket upgrade whose ``Origin``
is neither the hub's own (scheme, host and port of the request) nor listed in ``allowed_origins`` gets
403; listing origins turns the same rule on without a JWT key (:meth:`HubConfig.checks_origin`).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .auth import AuthConfig
from .hook_http import HookConfig
from .limits import HubLimits, RateLimits
from .namespaces import DEFAULT_NAMESPACES, NamespaceOptions, Namespaces
from .webhook_config import WebhookConfig

__all__ = ["HubConfig", "ConfigError", "load_config"]


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


@dataclass
class HubConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    namespaces: Namespaces = field(default_factory=Namespaces)
    limits: HubLimits = field(default_factory=HubLimits)
    max_history_bytes: int = 64 << 20
    max_streams: int = 100_000
    max_connections: int | None = None
    allowed_origins: list[str] | None = None
    compression: bool = False
    max_frame_bytes: int | None = None
    """Largest WebSocket message the hub reads at all (the core's ``max_message_size`` for hub connections;
    over it the core closes with 1009). None, the default: what the largest command can take, 4 bytes of
    UTF-8 per character of ``limits.max_command_size`` (256 KiB). The hub's frames are commands, so the
    I/O layer's general default (``DEFAULT_MAX_MESSAGE_SIZE``, 16 MiB) would only let a peer make each
    connection buffer more. Commands over ``limits.max_command_size`` characters but under this get error
    106 and the connection lives on."""
    auth: AuthConfig = field(default_factory=AuthConfig)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    """Signed event webhooks (``[webhooks]``); off without a URL."""
    certfile: str | None = None
    keyfile: str | None = None
    internal_port: int | None = None
    """Serve the HTTP API and ``/metrics`` on this port (of ``internal_host``) instead of ``port``."""
    internal_host: str = "127.0.0.1"
    metrics_public: bool = False
    """``GET /metrics`` without the API key (else it needs one, as the API does)."""
    hooks: HookConfig = field(default_factory=HookConfig)
    """Backend hooks over HTTP (``hook_http.py``); none by default."""
    path: str | None = None
    """The file this came from (SIGHUP re-reads its ``auth.api_keys``)."""

    def frame_limit(self) -> int:
        """The core's ``max_message_size`` for hub connections (see ``max_frame_bytes``)."""
        if self.max_frame_bytes is not None:
            return self.max_frame_bytes
        return 4 * self.limits.max_command_size

    def checks_origin(self, auth: AuthConfig | None = None) -> bool:
        """Whether upgrades are limited to the hub's own origin and ``allowed_origins`` (403 otherwise).

        Whenever a JWT may come from a cookie (a JWT key is configured: ``auth``, default this config's
        with the environment's secret): a browser sends the hub's cookies from any site's page, and only
        ``Origin`` tells the hub's own pages from another site's (cross-site WebSocket hijacking).  Also
        when origins are listed.  With neither, every origin (the laptop default).
        """
        auth = auth if auth is not None else self.auth.with_environment()
        return auth.verifies_jwt or self.allowed_origins is not None


_TOP_LEVEL = {
    "host": str,
    "port": int,
    "max_connections": int,
    "compression": bool,
    "max_frame_bytes": int,
    "certfile": str,
    "keyfile": str,
    "internal_port": int,
    "internal_host": str,
    "metrics_public": bool,
}


#: Tables read by their own class's ``from_mapping`` (which raises ``ValueError`` naming the key).
_SECTIONS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "auth": AuthConfig.from_mapping,
    "rate_limits": RateLimits.from_mapping,
    "webhooks": WebhookConfig.from_mapping,
}


def _typed(value: Any, kind: type, where: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {kind.__name__}, got {value!r}")
    return value


def config_from_mapping(data: Mapping[str, Any], where: str = "config") -> HubConfig:
    config = HubConfig()
    namespaces = dict(DEFAULT_NAMESPACES)
    for key, value in data.items():
        if key in _TOP_LEVEL:
            setattr(config, key, _typed(value, _TOP_LEVEL[key], f"{where}: {key}"))
        elif key == "allowed_origins":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: allowed_origins must be a list of strings")
            config.allowed_origins = value
        elif key == "limits":
            config.limits = _limits(_table(value, f"{where}: limits"), f"{where}: limits")
        elif key in _SECTIONS:
            try:
                setattr(config, key, _SECTIONS[key](_table(value, f"{where}: {key}")))
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        elif key == "hooks":
            config.hooks = _hooks(value, where)
        elif key == "history":
            table = _table(value, f"{where}: history")
            for name, item in table.items():
                if name == "max_bytes":
                    config.max_history_bytes = _typed(item, int, f"{where}: history.max_bytes")
                elif name == "max_streams":
                    config.max_streams = _typed(item, int, f"{where}: history.max_streams")
                else:
                    raise ConfigError(f"{where}: unknown key history.{name} (known: max_bytes, max_streams)")
        elif key == "default_namespace":
            namespaces[""] = _namespace(value, f"{where}: default_namespace")
        elif key == "namespaces":
            for name, options in _table(value, f"{where}: namespaces").items():
                namespaces[name] = _namespace(options, f"{where}: namespaces.{name}")
        else:
            raise ConfigError(f"{where}: unknown key {key!r}")
    for key in ("port", "internal_port"):
        value = getattr(config, key)
        if value is not None and not 0 <= value <= 65535:
            raise ConfigError(f"{where}: {key} must be in 0-65535")
    try:
        config.namespaces = Namespaces(namespaces)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return config


def _hooks(value: Any, where: str) -> HookConfig:
    try:
        return HookConfig.from_mapping(_table(value, f"{where}: hooks"))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table/object")
    return value


def _namespace(value: Any, where: str) -> NamespaceOptions:
    try:
        return NamespaceOptions.from_mapping(_table(value, where))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _limits(table: Mapping[str, Any], where: str) -> HubLimits:
    known = {f.name: f for f in fields(HubLimits)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        kind = type(getattr(HubLimits(), key))
        kwargs[key] = _typed(value, kind, f"{where}.{key}")
    return HubLimits(**kwargs)


def load_config(path: str | Path) -> HubConfig:
    """Read a ``.toml`` or ``.json`` file (by its extension)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: {exc.strerror or exc}") from None
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        elif p.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            raise ConfigError(f"{p}: the config file must end in .toml or .json")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a table/object")
    config = config_from_mapping(data, str(p))
    config.path = str(p)
    return config
