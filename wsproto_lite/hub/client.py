"""A Python client for the hub (Centrifugo's client protocol v2, JSON): subscribe with callbacks, reconnect,
recover.

Blocking (on ``server.client.connect``; callbacks run inside ``run()`` and inside command calls)::

    from wsproto_lite.hub.client import HubClient

    with HubClient("ws://127.0.0.1:8000/connection/websocket", name="bot") as hub:
        hub.subscribe("chat:lobby", lambda pub: print(pub["data"]))
        hub.publish("chat:lobby", {"text": "hello"})
        hub.run(timeout=10)           # deliver pushes for 10 s (None: until closed)

From the loop client (``server.async_client.connect_async``; callbacks run in the loop)::

    hub = LoopHubClient(loop, url, name="bot")
    hub.subscribe("chat:lobby", on_publication)
    hub.publish("chat:lobby", {"text": "hi"}, on_reply=print)

Both reconnect after a lost connection or a close code that allows it (3000-3499, 4000-4499 and transport
codes below 3000, the Centrifugo SDKs' rule), with exponential backoff
and jitter, and re-subscribe with ``recover`` from the last offset seen on each channel.  Missed
publications arrive through the subscription's callback first; then ``on_recovery(report)`` tells
whether the whole gap was recovered.  When it was not (``report.recovered`` False: the hub restarted,
or the gap outlived the channel's history) the report says so — the application should reload its
state from elsewhere.  Without an ``on_recovery`` callback that case is logged as a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from wsproto_lite import CloseCode

from ..server.client import ClientWebSocket, connect
from ..server.errors import ConnectionClosed
from .client_state import (
    READ_ONLY,
    Backoff,
    ClientState,
    HubCommandError,
    HubDisconnected,
    HubReplyLost,
    OnPresence,
    OnPublication,
    RecoveryReport,
    Subscription,
    allows_reconnect,
    messages_of,
    result_of,
)
from .loop_client import LoopHubClient
from .protocol import ErrorCode

__all__ = [
    "HubClient",
    "LoopHubClient",
    "RecoveryReport",
    "HubCommandError",
    "HubDisconnected",
    "HubReplyLost",
    "Backoff",
]

logger = logging.getLogger("wsproto_lite.hub.client")


class HubClient:
    """A blocking hub client; not thread-safe (use it from one thread)."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "",
        token: str = "",
        reconnect: bool = True,
        backoff: Backoff | None = None,
        timeout: float = 10.0,
        max_attempts: int | None = None,
    ) -> None:
        self.url = url
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.timeout = timeout
        self.max_attempts = max_attempts
        """Consecutive failed connection attempts before giving up (None: never)."""
        self.state = ClientState(name, token)
        self.ws: ClientWebSocket | None = None
        self.reconnects = 0
        self._closed = False

    @property
    def client_id(self) -> str:
        return self.state.client_id

    # -- connection ------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect (retrying with backoff when ``reconnect``), send ``connect``, re-subscribe everything."""
        attempt = 0
        while True:
            if self._closed:
                raise HubDisconnected(CloseCode.NORMAL, "closed by the client")
            try:
                self._open()
                return
            except (OSError, ConnectionClosed, TimeoutError) as exc:
                self._drop()
                disconnect = self.state.disconnect
                if disconnect is not None and not disconnect[2]:
                    raise HubDisconnected(disconnect[0], disconnect[1]) from exc
                attempt += 1
                if not self.reconnect or (self.max_attempts is not None and attempt >= self.max_attempts):
                    raise
                delay = self.backoff.delay(attempt - 1)
                logger.info("hub connection failed (%s); retrying in %.2f s", exc, delay)
                time.sleep(delay)

    def _open(self) -> None:
        self.state.disconnect = None
        self.ws = connect(self.url, timeout=self.timeout, compression=False)
        result = self._call_once("connect", self.state.connect_params())
        self.state.connected(result)
        for sub in list(self.state.subscriptions.values()):
            params = self.state.subscribe_params(sub, True)
            result = self._call_once("subscribe", params)
            report = self.state.subscribed(sub, result, "recover" in params)
            if report is not None:
                self.state.report_recovery(sub, report)

    def _drop(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                ws.close(timeout=1.0)
            except (OSError, ConnectionClosed, TimeoutError):
                pass

    def _connection_lost(self, exc: BaseException) -> None:
        """Reconnect if allowed, else raise ``HubDisconnected``."""
        self._drop()
        code = getattr(exc, "code", CloseCode.ABNORMAL)
        reason = getattr(exc, "reason", str(exc))
        self.state.closed(code, reason)
        allowed = allows_reconnect(code)
        if self._closed or not self.reconnect or not allowed:
            raise HubDisconnected(code, reason) from exc
        self.reconnects += 1
        time.sleep(self.backoff.delay(0))
        self.connect()

    def close(self) -> None:
        self._closed = True
        self._drop()

    def __enter__(self) -> HubClient:
        if self.ws is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands --------------------------------------------------------------------------------

    def _call_once(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        assert self.ws is not None
        cid, text = self.state.frame(method, params)
        self.ws.send(text)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                message = self.ws.recv(timeout=max(0.0, deadline - time.monotonic()))
            except ConnectionClosed as exc:
                self.state.closed(exc.code, exc.reason)
                raise
            for reply in self._handle(message):
                if reply.get("id") == cid:
                    return result_of(method, reply)
                # else: the answer to a call abandoned earlier

    def _handle(self, message: str | bytes) -> list[dict[str, Any]]:
        """Pushes to their callbacks, pings answered; the replies of the frame."""
        replies = []
        for value in messages_of(message):
            if "id" in value:
                replies.append(value)
            elif "push" in value:
                self.state.on_push(value["push"])
            elif self.state.pong and self.ws is not None:
                self.ws.send("{}")
        return replies

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a command and wait for its reply (pushes that arrive meanwhile go to their callbacks).

        When the connection is lost meanwhile it is re-established (with recovery); a read-only command
        is then sent again, any other raises ``HubReplyLost`` (it may or may not have been applied: a
        ``publish`` repeated blindly could be delivered twice).
        """
        if self.ws is None:
            self.connect()
        try:
            return self._call_once(method, params)
        except (OSError, ConnectionClosed) as exc:
            self._connection_lost(exc)
            if method not in READ_ONLY:
                raise HubReplyLost(method) from exc
            return self._call_once(method, params)

    def subscribe(
        self,
        channel: str,
        on_publication: OnPublication,
        *,
        on_join: OnPresence | None = None,
        on_leave: OnPresence | None = None,
        on_recovery: Callable[[RecoveryReport], None] | None = None,
    ) -> dict[str, Any]:
        sub = Subscription(channel, on_publication, on_join, on_leave, on_recovery)
        result = self.call("subscribe", self.state.subscribe_params(sub, False))
        self.state.subscriptions[channel] = sub
        self.state.subscribed(sub, result, False)
        return result

    def unsubscribe(self, channel: str) -> None:
        self.state.subscriptions.pop(channel, None)
        self.call("unsubscribe", {"channel": channel})

    def publish(self, channel: str, data: Any) -> dict[str, Any]:
        return self.call("publish", {"channel": channel, "data": data})

    def presence(self, channel: str) -> dict[str, Any]:
        return self.call("presence", {"channel": channel})

    def presence_stats(self, channel: str) -> dict[str, Any]:
        return self.call("presence_stats", {"channel": channel})

    def history(
        self,
        channel: str,
        *,
        limit: int | None = None,
        since: dict[str, Any] | None = None,
        reverse: bool = False,
    ) -> dict[str, Any]:
        """``limit``: None or 0 = only the stream position, -1 = everything held (up to the hub's cap)."""
        params: dict[str, Any] = {"channel": channel, "reverse": reverse}
        if limit is not None:
            params["limit"] = limit
        if since is not None:
            params["since"] = since
        return self.call("history", params)

    def refresh(self, token: str) -> dict[str, Any]:
        """Renew the connection's token before it expires (``{"expires", "ttl"}``); reconnects use it too."""
        result = self.call("refresh", {"token": token})
        self.state.token = token
        return result

    def ping(self) -> None:
        """A round trip: every push sent before it has been delivered.  It sends the ``ping`` command,
        which the hub answers 108 "not available" as Centrifugo does (SDKs answer its ``{}`` pings)."""
        try:
            self.call("ping")
        except HubCommandError as exc:
            if exc.code != ErrorCode.NOT_AVAILABLE:
                raise

    def run(self, timeout: float | None = None, until: Callable[[], bool] | None = None) -> None:
        """Deliver pushes for ``timeout`` seconds (None: until closed) or until ``until()`` is true."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.ws is None:
            self.connect()
        while until is None or not until():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            try:
                assert self.ws is not None
                message = self.ws.recv(timeout=left)
            except TimeoutError:
                return
            except (OSError, ConnectionClosed) as exc:
                self._connection_lost(exc)
                continue
            self._handle(message)
