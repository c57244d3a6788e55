"""``LoopHubClient``: the hub's Python client on the event loop (``connect_async``); callbacks run in the
loop.  The blocking ``HubClient`` and the module docstring with both are in ``client.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wsproto_lite import CloseCode

from ..server.handler import Handler
from ..server.options import Options
from .client_state import (
    Backoff,
    ClientState,
    OnPresence,
    OnPublication,
    RecoveryReport,
    Subscription,
    messages_of,
)

if TYPE_CHECKING:
    from ..server.loop import EventLoop, TimerHandle
    from ..server.websocket import WebSocket

__all__ = ["LoopHubClient"]


class LoopHubClient(Handler):
    """The same client on the event loop (``connect_async``); every method runs in the loop thread."""

    def __init__(
        self,
        loop: EventLoop,
        url: str,
        *,
        name: str = "",
        token: str = "",
        reconnect: bool = True,
        backoff: Backoff | None = None,
        on_connect: Callable[[LoopHubClient], None] | None = None,
        on_disconnect: Callable[[int, str], None] | None = None,
    ) -> None:
        self.loop = loop
        self.url = url
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.state = ClientState(name, token)
        self.conn: WebSocket | None = None
        self.connected = False
        self._pending: dict[int, Callable[[dict[str, Any]], None]] = {}
        self._attempt = 0
        self._closed = False
        self._timer: TimerHandle | None = None
        self._start()

    def _start(self) -> None:
        from ..server.async_client import connect_async

        self._timer = None
        self.state.disconnect = None
        self.conn = connect_async(self.loop, self.url, self, options=Options(compression=False))

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.conn is not None:
            self.conn.close()

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        on_reply: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Send a command; ``on_reply(reply)`` gets ``{"result": ...}`` or ``{"error": ...}``."""
        if self.conn is None or not self.connected:
            raise ConnectionError("not connected (wait for on_connect)")
        self._send(self.conn, method, params, on_reply)

    def _send(
        self,
        conn: WebSocket,
        method: str,
        params: dict[str, Any] | None,
        on_reply: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        cid, text = self.state.frame(method, params)
        if on_reply is not None:

            def unwrap(reply: dict[str, Any]) -> None:
                if "error" in reply:
                    on_reply({"error": reply["error"]})
                else:
                    on_reply({"result": reply.get(method, {})})

            self._pending[cid] = unwrap
        conn.send(text)

    def subscribe(
        self,
        channel: str,
        on_publication: OnPublication,
        *,
        on_join: OnPresence | None = None,
        on_leave: OnPresence | None = None,
        on_recovery: Callable[[RecoveryReport], None] | None = None,
        on_reply: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Subscribe now if connected, else as soon as the connection is up."""
        sub = Subscription(channel, on_publication, on_join, on_leave, on_recovery)
        self.state.subscriptions[channel] = sub
        if self.connected:
            self._subscribe(sub, False, on_reply)

    def _subscribe(
        self, sub: Subscription, resubscribe: bool, on_reply: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        params = self.state.subscribe_params(sub, resubscribe)

        def done(reply: dict[str, Any]) -> None:
            if "result" in reply:
                report = self.state.subscribed(sub, reply["result"], "recover" in params)
                if report is not None:
                    self.state.report_recovery(sub, report)
            if on_reply is not None:
                on_reply(reply)

        self.call("subscribe", params, done)

    def publish(
        self, channel: str, data: Any, on_reply: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.call("publish", {"channel": channel, "data": data}, on_reply)

    # -- Handler callbacks ---------------------------------------------------------------------

    def on_open(self, conn: WebSocket) -> None:
        def connected(reply: dict[str, Any]) -> None:
            if "result" not in reply:
                conn.close(CloseCode.NORMAL)
                return
            self.state.connected(reply["result"])
            self.connected = True
            self._attempt = 0
            for sub in list(self.state.subscriptions.values()):
                self._subscribe(sub, True)
            if self.on_connect is not None:
                self.on_connect(self)

        self._send(conn, "connect", self.state.connect_params(), connected)

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        for frame in messages_of(message):
            cid = frame.get("id")
            if cid is not None:
                callback = self._pending.pop(cid, None)
                if callback is not None:
                    callback(frame)
            elif "push" in frame:
                self.state.on_push(frame["push"])
            elif self.state.pong:
                conn.send("{}")

    def on_close(self, conn: WebSocket, code: int, reason: str) -> None:
        self._lost(code, reason)

    def on_connect_error(self, conn: WebSocket, error: BaseException) -> None:
        self._lost(CloseCode.ABNORMAL, str(error))

    def _lost(self, code: int, reason: str) -> None:
        self.connected = False
        self.conn = None
        self._pending.clear()
        self.state.closed(code, reason)
        allowed = self.state.disconnect[2] if self.state.disconnect else True
        if self.on_disconnect is not None:
            self.on_disconnect(code, reason)
        if self._closed or not self.reconnect or not allowed:
            return
        delay = self.backoff.delay(self._attempt)
        self._attempt += 1
        self._timer = self.loop.call_later(delay, self._start)
