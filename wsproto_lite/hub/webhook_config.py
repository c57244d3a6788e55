"""The ``[webhooks]`` table of the hub's config: where signed event webhooks go and how they are sent.

::

    [webhooks]
    url = ["https://app.example.com/hub-events"]   # one URL or a list; every batch goes to each
    secret = "..."            # or WSPROTO_HUB_WEBHOOK_SECRET; the HMAC-SHA256 key of X-Hub-Signature
    key = "hub"               # sent as X-Hub-Key: which secret signed it (rotation)
    events = ["channel_occupied", "channel_vacated"]   # default: every kind (EVENT_KINDS)
    batch_window = 0.05       # seconds a batch waits for more events after its first
    max_batch = 100           # events per POST at most
    queue_size = 10000        # events waiting at most; more are dropped (and counted)
    timeout = 5.0             # seconds per request (connect, then read)
    max_attempts = 5          # tries per batch and URL (retries on 5xx, 408, 429, timeouts, refused)
    backoff = 0.2             # seconds before the first retry, doubled each time, at most max_backoff
    max_backoff = 10.0

The body and the signature follow Pusher's webhooks (https://pusher.com/docs/webhooks/): a POST of
``{"time_ms": ..., "events": [...]}``, signed with the hex HMAC-SHA256 of the body under the secret
(Pusher's ``X-Pusher-Key`` / ``X-Pusher-Signature``; ours ``X-Hub-Key`` / ``X-Hub-Signature``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

__all__ = ["EVENT_KINDS", "SECRET_ENV", "WebhookConfig"]

#: Every event a webhook can carry (Pusher's names where Pusher has the event).
EVENT_KINDS = frozenset(
    {
        "channel_occupied",
        "channel_vacated",
        "member_added",
        "member_removed",
        "connection_opened",
        "connection_closed",
    }
)

SECRET_ENV = "WSPROTO_HUB_WEBHOOK_SECRET"
"""The environment variable with the signing secret (used when the file sets none)."""

_NUMBERS = {
    "batch_window": float,
    "max_batch": int,
    "queue_size": int,
    "timeout": float,
    "max_attempts": int,
    "backoff": float,
    "max_backoff": float,
}


@dataclass
class WebhookConfig:
    """Off (no URL) by default."""

    urls: list[str] = field(default_factory=list)
    secret: str = ""
    key: str = "hub"
    events: frozenset[str] = EVENT_KINDS
    batch_window: float = 0.05
    max_batch: int = 100
    queue_size: int = 10_000
    timeout: float = 5.0
    max_attempts: int = 5
    backoff: float = 0.2
    max_backoff: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def with_environment(self) -> WebhookConfig:
        """This config with the secret from ``WSPROTO_HUB_WEBHOOK_SECRET`` when it has none."""
        if self.secret or not os.environ.get(SECRET_ENV):
            return self
        copy = WebhookConfig(**{f.name: getattr(self, f.name) for f in fields(self)})
        copy.secret = os.environ[SECRET_ENV]
        return copy

    def check(self) -> None:
        """Raise ``ValueError`` naming the key that cannot be used (with URLs: a secret is required)."""
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"webhooks.url: {url!r} is not an http(s) URL")
        if self.urls and not self.secret:
            raise ValueError(f"webhooks: a secret is required (webhooks.secret or {SECRET_ENV})")
        unknown = self.events - EVENT_KINDS
        if unknown:
            raise ValueError(f"webhooks.events: unknown {sorted(unknown)} (known: {sorted(EVENT_KINDS)})")
        for name in _NUMBERS:
            if getattr(self, name) <= 0:
                raise ValueError(f"webhooks.{name} must be > 0")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> WebhookConfig:
        config = cls()
        for key, value in table.items():
            if key == "url":
                config.urls = _strings(value, key, single_ok=True)
            elif key in ("secret", "key"):
                if not isinstance(value, str):
                    raise ValueError(f"webhooks.{key} must be a string")
                setattr(config, key, value)
            elif key == "events":
                config.events = frozenset(_strings(value, key, single_ok=False))
            elif key in _NUMBERS:
                setattr(config, key, _number(value, _NUMBERS[key], key))
            else:
                known = ", ".join(sorted({"url", "secret", "key", "events", *_NUMBERS}))
                raise ValueError(f"unknown key webhooks.{key} (known: {known})")
        config.with_environment().check()
        return config


def _strings(value: Any, key: str, *, single_ok: bool) -> list[str]:
    if single_ok and isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"webhooks.{key} must be a list of strings")
    return list(value)


def _number(value: Any, kind: type, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"webhooks.{key} must be a number")
    if kind is int and not isinstance(value, int):
        raise ValueError(f"webhooks.{key} must be an integer")
    return kind(value)  # type: ignore[no-any-return]
