"""Publish from Django, FastAPI or any Python code without a WebSocket: the hub's HTTP API, stdlib only.

    from wsproto_lite.hub.publisher import HubAPI

    api = HubAPI("http://127.0.0.1:8000", api_key=os.environ["HUB_API_KEY"])
    api.publish("chat:lobby", {"text": "deploy finished"})
    api.disconnect("42")                       # user 42, everywhere

Blocking (``urllib``): from async code call it in a thread (``await asyncio.to_thread(api.publish, ...)``).
Errors from the hub raise :class:`HubAPIError` with the HTTP status and the hub's error code.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from .protocol import DisconnectCode

__all__ = ["HubAPI", "HubAPIError"]


class HubAPIError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status}: {message} (code {code})")
        self.status = status
        self.code = code
        self.message = message


class HubAPI:
    """``HubAPI(base_url, api_key)``: one method per ``/api/...`` endpoint, each returning its JSON result."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.ssl_context = ssl_context

    def call(self, endpoint: str, params: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"{self.base_url}/api/{endpoint}",
            data=json.dumps(params, separators=(",", ":")).encode(),
            method="POST",
            headers={"Authorization": f"apikey {self.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.ssl_context) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())["error"]
                code, message = int(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = 0, exc.reason or "error"
            raise HubAPIError(exc.code, code, message) from None

    def publish(self, channel: str, data: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.call("publish", {"channel": channel, "data": data})
        return result

    def broadcast(self, channels: list[str], data: Any) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = self.call("broadcast", {"channels": channels, "data": data})[
            "results"
        ]
        return results

    def presence(self, channel: str) -> dict[str, Any]:
        clients: dict[str, Any] = self.call("presence", {"channel": channel})["clients"]
        return clients

    def history(self, channel: str, limit: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"channel": channel}
        if limit is not None:
            params["limit"] = limit
        result: dict[str, Any] = self.call("history", params)
        return result

    def disconnect(self, user: str, code: int = DisconnectCode.UNAUTHORIZED, reason: str = "server") -> int:
        count: int = self.call("disconnect", {"user": user, "code": code, "reason": reason})["disconnected"]
        return count

    def channels(self, prefix: str = "") -> dict[str, int]:
        channels: dict[str, int] = self.call("channels", {"prefix": prefix})["channels"]
        return channels
