"""Hooks over HTTP for the standalone hub: each hook a POST of Centrifugo's proxy request to a URL
(centrifugo ``internal/proxy/http.go``: JSON body, 200 with the JSON response, anything else an error;
``proxy_http_headers``: the upgrade request's headers listed in ``headers`` go along as HTTP headers).

The config file's ``[hooks]`` table (``config.py``)::

    [hooks]
    timeout = 5                    # seconds, each hook unless it says otherwise
    headers = ["cookie", "authorization"]   # passed through from the WebSocket upgrade
    workers = 16                   # threads, and pooled connections kept per backend
    max_pending = 1024             # calls in flight; 16 per connection (max_pending_per_connection)
    max_response_bytes = 1048576   # a longer answer is a failure (error 100)
    connect = "http://127.0.0.1:5000/hub/connect"
    rpc = { url = "http://127.0.0.1:5000/hub/rpc", timeout = 2 }

The POSTs run in the hooks' bounded thread pool (``hooks.py``) on ``urllib3`` (the ``hooks`` extra): one
``PoolManager`` keeps up to ``workers`` connections per backend and reuses them.  A backend that is down,
slow past the timeout, answers another status, more than ``max_response_bytes`` or not JSON is a
failure: the command gets error 100 (temporary), counted in ``/metrics``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .hooks import HOOKS, Hooks

if TYPE_CHECKING:
    import urllib3

__all__ = ["HookConfig", "HookFailure", "HttpHook", "http_hooks"]


class HookFailure(Exception):
    """The backend did not answer usably (down, a status other than 200, too long, not JSON)."""


@dataclass
class HookConfig:
    """The ``[hooks]`` table: a URL (and timeout) per hook, the shared bounds."""

    urls: dict[str, str] = field(default_factory=dict)
    timeouts: dict[str, float] = field(default_factory=dict)
    timeout: float = 5.0
    headers: tuple[str, ...] = ()
    workers: int = 16
    max_pending: int = 1024
    max_pending_per_connection: int = 16
    max_response_bytes: int = 1 << 20

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> HookConfig:
        """Raises ``ValueError`` naming the key that is wrong."""
        config = cls()
        for key, value in table.items():
            if key in HOOKS:
                config.set_url(key, value)
            elif key == "headers":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError("hooks.headers must be a list of header names")
                config.headers = tuple(v.lower() for v in value)
            elif key in ("timeout",):
                config.timeout = _positive(value, f"hooks.{key}")
            elif key in ("workers", "max_pending", "max_pending_per_connection", "max_response_bytes"):
                if type(value) is not int or value < 1:
                    raise ValueError(f"hooks.{key} must be a positive integer")
                setattr(config, key, value)
            else:
                raise ValueError(f"unknown key hooks.{key} (hooks: {', '.join(HOOKS)})")
        return config

    def set_url(self, name: str, value: Any) -> None:
        """Hook ``name``'s URL, or ``{url, timeout}``."""
        if isinstance(value, Mapping):
            unknown = set(value) - {"url", "timeout"}
            if unknown:
                raise ValueError(f"hooks.{name}: unknown keys {sorted(unknown)} (known: url, timeout)")
            if "timeout" in value:
                self.timeouts[name] = _positive(value["timeout"], f"hooks.{name}.timeout")
            value = value.get("url")
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError(f"hooks.{name} must be an http:// or https:// URL")
        self.urls[name] = value


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ValueError(f"{where} must be seconds in (0, 3600]")
    return float(value)


def http_hooks(config: HookConfig) -> Hooks:
    """The hooks ``config`` describes, each a POST to its URL; needs the ``hooks`` extra (urllib3)."""
    hooks = Hooks(
        timeout=config.timeout,
        headers=config.headers,
        workers=config.workers,
        max_pending=config.max_pending,
        max_pending_per_connection=config.max_pending_per_connection,
    )
    if not config.urls:
        return hooks
    try:
        import urllib3
    except ImportError:  # pragma: no cover - the extra is in the test environment
        from .auth import MissingExtra

        raise MissingExtra("HTTP hooks need urllib3: pip install 'wsproto-lite[hooks]'") from None
    pool = urllib3.PoolManager(num_pools=max(4, len(config.urls)), maxsize=config.workers)
    for name, url in config.urls.items():
        timeout = config.timeouts.get(name, config.timeout)
        hooks.set(name, HttpHook(url, pool, timeout, config.max_response_bytes), timeout=timeout)
    return hooks


class HttpHook:
    """A hook answered by a POST to ``url`` (blocking: it runs in the hooks' thread pool)."""

    def __init__(self, url: str, pool: urllib3.PoolManager, timeout: float, max_response: int) -> None:
        self.url = url
        self.pool = pool
        self.timeout = timeout
        self.max_response = max_response

    def __repr__(self) -> str:
        return f"HttpHook({self.url!r})"

    def __call__(self, request: dict[str, Any]) -> Any:
        import urllib3

        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        headers.update(request.get("headers") or {})
        body = json.dumps({k: v for k, v in request.items() if k != "headers"}, separators=(",", ":"))
        try:
            response = self.pool.request(
                "POST",
                self.url,
                body=body.encode(),
                headers=headers,
                timeout=urllib3.Timeout(total=self.timeout),
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise HookFailure(f"{self.url}: {exc}") from None
        return json.loads(self._body(response))

    def _body(self, response: urllib3.BaseHTTPResponse) -> bytes:
        """The answer's body, at most ``max_response`` bytes (a longer one is a failure)."""
        import urllib3

        complete = False
        try:
            if response.status != 200:  # centrifugo proxy/http.go: statusCodeError
                raise HookFailure(f"{self.url}: HTTP {response.status}")
            data = response.read(self.max_response + 1, decode_content=False)
            if len(data) > self.max_response:
                raise HookFailure(f"{self.url}: an answer over {self.max_response} bytes")
            complete = True
            return data
        except urllib3.exceptions.HTTPError as exc:
            raise HookFailure(f"{self.url}: {exc}") from None
        finally:
            if complete:
                response.release_conn()
            else:
                response.close()  # what is left unread must not be read as the next answer
