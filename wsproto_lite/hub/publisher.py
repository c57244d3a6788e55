"""Publish from Django, FastAPI or any Python code without a WebSocket: the hub's HTTP API, stdlib only.

    from wsproto_lite.hub.publisher import HubAPI

    api = HubAPI("http://127.0.0.1:8000", api_key=os.environ["HUB_API_KEY"])
    api.publish("chat:lobby", {"text": "deploy finished"})
    api.disconnect("42")                       # user 42, on every node

The API is shaped like Centrifugo v6's (``cent`` works against the hub too): each method returns the
``result`` object of its answer.  Blocking (``urllib``): from async code call it in a thread
(``await asyncio.to_thread(api.publish, ...)``).  Errors raise :class:`HubAPIError` with the HTTP status
(200 for an API error such as an unknown channel, 401 for a wrong key...) and the hub's error code.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

__all__ = ["HubAPI", "HubAPIError"]


class HubAPIError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status}: {message} (code {code})")
        self.status = status
        self.code = code
        self.message = message


def _given(**params: Any) -> dict[str, Any]:
    return {name: value for name, value in params.items() if value is not None}


class HubAPI:
    """``HubAPI(base_url, api_key)``: one method per ``/api/<method>``, each returning its ``result``."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.ssl_context = ssl_context

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """POST ``/api/<method>``: the whole answer (``{"result"}``, or batch ``{"replies"}``)."""
        request = urllib.request.Request(
            f"{self.base_url}/api/{method}",
            data=json.dumps(params, separators=(",", ":")).encode(),
            method="POST",
            headers={"X-API-Key": self.api_key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.ssl_context) as response:
                answer: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())["error"]
                code, message = int(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = 0, exc.reason or "error"
            raise HubAPIError(exc.code, code, message) from None
        error = answer.get("error")
        if isinstance(error, dict):
            raise HubAPIError(200, int(error.get("code", 0)), str(error.get("message", "")))
        return answer

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The ``result`` of ``/api/<method>``."""
        result: dict[str, Any] = self.request(method, params).get("result", {})
        return result

    def publish(
        self,
        channel: str,
        data: Any,
        *,
        idempotency_key: str | None = None,
        skip_history: bool | None = None,
        tags: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``{"offset", "epoch"}`` (``{}`` on a channel without history)."""
        options = _given(idempotency_key=idempotency_key, skip_history=skip_history, tags=tags)
        return self.call("publish", {"channel": channel, "data": data, **options})

    def broadcast(self, channels: list[str], data: Any, **options: Any) -> list[dict[str, Any]]:
        """One ``{"result": ...}`` or ``{"error": ...}`` per channel, in order."""
        responses: list[dict[str, Any]] = self.call(
            "broadcast", {"channels": channels, "data": data, **options}
        )["responses"]
        return responses

    def subscribe(self, user: str, channel: str, *, client: str | None = None) -> None:
        self.call("subscribe", _given(user=user, channel=channel, client=client))

    def unsubscribe(self, user: str, channel: str, *, client: str | None = None) -> None:
        self.call("unsubscribe", _given(user=user, channel=channel, client=client))

    def disconnect(
        self,
        user: str,
        code: int | None = None,
        reason: str | None = None,
        *,
        client: str | None = None,
        whitelist: list[str] | None = None,
    ) -> None:
        """Disconnect ``user`` on every node (default 3503 "force disconnect")."""
        disconnect = _given(code=code, reason=reason) or None
        self.call("disconnect", _given(user=user, client=client, whitelist=whitelist, disconnect=disconnect))

    def refresh(
        self,
        user: str,
        *,
        client: str | None = None,
        expired: bool | None = None,
        expire_at: int | None = None,
    ) -> None:
        self.call("refresh", _given(user=user, client=client, expired=expired, expire_at=expire_at))

    def presence(self, channel: str) -> dict[str, Any]:
        """Client id -> ``{"client", "user", "conn_info"?}``."""
        presence: dict[str, Any] = self.call("presence", {"channel": channel})["presence"]
        return presence

    def presence_stats(self, channel: str) -> dict[str, int]:
        """``{"num_clients", "num_users"}``."""
        stats: dict[str, int] = self.call("presence_stats", {"channel": channel})
        return stats

    def history(
        self,
        channel: str,
        limit: int | None = None,
        *,
        since: dict[str, Any] | None = None,
        reverse: bool | None = None,
    ) -> dict[str, Any]:
        """``{"publications", "epoch", "offset"}``; ``limit`` absent or 0: the position only, -1: all."""
        return self.call("history", _given(channel=channel, limit=limit, since=since, reverse=reverse))

    def channels(self, pattern: str = "") -> dict[str, int]:
        """Channel -> subscribers, on every node (``pattern``: a glob such as ``chat:*``)."""
        channels: dict[str, dict[str, int]] = self.call("channels", _given(pattern=pattern or None))[
            "channels"
        ]
        return {name: info.get("num_clients", 0) for name, info in channels.items()}

    def info(self) -> list[dict[str, Any]]:
        """One entry per node."""
        nodes: list[dict[str, Any]] = self.call("info", {})["nodes"]
        return nodes

    def batch(self, commands: list[dict[str, Any]], *, parallel: bool = False) -> list[dict[str, Any]]:
        """``commands`` like ``[{"publish": {...}}, ...]``: one ``{method: result}`` or ``{"error"}`` each."""
        replies: list[dict[str, Any]] = self.request("batch", {"commands": commands, "parallel": parallel})[
            "replies"
        ]
        return replies
