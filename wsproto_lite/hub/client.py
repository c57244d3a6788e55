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

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wsproto_lite import CloseCode

from ..server.client import ClientWebSocket, connect
from ..server.errors import ConnectionClosed
from ..server.handler import Handler
from ..server.options import Options
from .protocol import DisconnectCode

if TYPE_CHECKING:
    from ..server.loop import EventLoop, TimerHandle
    from ..server.websocket import WebSocket

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

OnPublication = Callable[[dict[str, Any]], None]
OnPresence = Callable[[dict[str, Any]], None]


class HubCommandError(Exception):
    """The hub answered a command with an error."""

    def __init__(self, code: int, message: str, temporary: bool) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.temporary = temporary


class HubDisconnected(ConnectionError):
    """The connection is gone and will not come back (closed, or the hub's close code said not to
    reconnect)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"disconnected: {code} {reason}")
        self.code = code
        self.reason = reason


class HubReplyLost(ConnectionError):
    """The connection broke before the reply; the client reconnected; the outcome is unknown."""

    def __init__(self, method: str) -> None:
        super().__init__(f"connection lost before the reply to {method!r}; reconnected")
        self.method = method


_READ_ONLY = frozenset({"presence", "presence_stats", "history", "ping"})


@dataclass(frozen=True)
class RecoveryReport:
    """What re-subscribing after a reconnect found."""

    channel: str
    recovered: bool
    """True: every publication missed while away was delivered (``missed`` of them)."""
    missed: int
    """Publications delivered from history on this re-subscribe."""
    epoch_changed: bool
    """The channel's history was lost (e.g. the hub restarted): offsets start over."""

    def __str__(self) -> str:
        if self.recovered:
            return f"{self.channel}: recovered {self.missed} missed publication(s)"
        cause = "the hub lost its history (restart?)" if self.epoch_changed else "the gap is no longer held"
        return f"{self.channel}: recovery impossible, {cause}; {self.missed} delivered, some may be missing"


@dataclass
class Backoff:
    """Exponential backoff with jitter: attempt n waits between base·2ⁿ/2 and base·2ⁿ, capped."""

    base: float = 0.5
    cap: float = 20.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 30))
        return random.uniform(ceiling / 2, ceiling)


class _Subscription:
    __slots__ = (
        "channel",
        "on_publication",
        "on_join",
        "on_leave",
        "on_recovery",
        "epoch",
        "offset",
        "recoverable",
    )

    def __init__(
        self,
        channel: str,
        on_publication: OnPublication,
        on_join: OnPresence | None,
        on_leave: OnPresence | None,
        on_recovery: Callable[[RecoveryReport], None] | None,
    ) -> None:
        self.channel = channel
        self.on_publication = on_publication
        self.on_join = on_join
        self.on_leave = on_leave
        self.on_recovery = on_recovery
        self.epoch = ""
        self.offset = 0
        self.recoverable = False


def _reconnects(code: int) -> bool:
    """Whether a close with ``code`` allows reconnecting: 3000-3499 and 4000-4499 (the hub's and the
    application's reconnect ranges) and transport-level codes, except 1009 (message too big)."""
    if DisconnectCode.reconnect(code):
        return True
    return code < DisconnectCode.FIRST and code != CloseCode.MESSAGE_TOO_BIG


class _ClientState:
    """What both clients share: ids, subscriptions and their positions, push routing."""

    def __init__(self, name: str, token: str) -> None:
        self.name = name
        self.token = token
        self.next_id = 1
        self.subscriptions: dict[str, _Subscription] = {}
        self.client_id = ""
        self.pong = False
        """The connect result asked for pongs: answer each ``{}`` ping with ``{}``."""
        self.disconnect: tuple[int, str, bool] | None = None
        """The last close: (code, reason, reconnect)."""
        self.server_subscriptions: dict[str, dict[str, Any]] = {}
        """Server-side subscriptions (the token's ``channels``, ``/api/subscribe``) -> their result."""
        self.on_server_publication: OnPublication | None = None
        """Publications of server-side subscriptions (``pub["channel"]`` says which)."""

    def frame(self, method: str, params: dict[str, Any] | None) -> tuple[int, str]:
        cid = self.next_id
        self.next_id += 1
        return cid, json.dumps({"id": cid, method: params or {}}, separators=(",", ":"))

    def connect_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"name": "wsproto-lite"}
        if self.name:
            params["data"] = {"name": self.name}  # shown as conn_info when the token gives no info
        if self.token:
            params["token"] = self.token
        subs = {
            channel: {"recover": True, "epoch": result["epoch"], "offset": result["offset"]}
            for channel, result in self.server_subscriptions.items()
            if result.get("recoverable") and result.get("epoch")
        }
        if subs:
            params["subs"] = subs
        return params

    def connected(self, result: dict[str, Any]) -> None:
        self.client_id = str(result.get("client", ""))
        self.pong = bool(result.get("pong"))
        for channel, sub in (result.get("subs") or {}).items():
            self.server_subscribed(channel, sub)

    def subscribe_params(self, sub: _Subscription, resubscribe: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"channel": sub.channel, "recoverable": True, "positioned": True}
        if resubscribe and sub.recoverable and sub.epoch:
            params.update(recover=True, epoch=sub.epoch, offset=sub.offset)
        return params

    def subscribed(
        self, sub: _Subscription, result: dict[str, Any], recovering: bool
    ) -> RecoveryReport | None:
        """Apply a subscribe result; when recovering, deliver what was missed and return the report."""
        sub.recoverable = bool(result.get("recoverable"))
        epoch, top = str(result.get("epoch", "")), int(result.get("offset", 0))
        if not recovering:
            sub.epoch, sub.offset = epoch, top
            return None
        epoch_changed = epoch != sub.epoch
        publications = result.get("publications", [])
        if epoch_changed:
            sub.epoch, sub.offset = epoch, 0
        for pub in publications:  # only when recovered in full (Centrifugo sends none otherwise)
            self._deliver(sub, pub)
        sub.offset = max(sub.offset, top)  # from here on, every publication arrives live
        return RecoveryReport(sub.channel, bool(result.get("recovered")), len(publications), epoch_changed)

    def _deliver(self, sub: _Subscription, pub: dict[str, Any]) -> None:
        offset = pub.get("offset")
        if isinstance(offset, int) and "channel" not in pub:  # a wildcard's pubs have no one stream
            if offset <= sub.offset:
                return  # a duplicate (recovered and live)
            sub.offset = offset
        sub.on_publication(pub)

    def server_subscribed(self, channel: str, result: dict[str, Any]) -> None:
        known = self.server_subscriptions.get(channel)
        publications = result.get("publications") or []
        for pub in publications:
            self._server_publication(channel, pub)
        if known is None or not publications:
            known = self.server_subscriptions[channel] = dict(result)
        known["epoch"] = result.get("epoch", known.get("epoch", ""))
        known["offset"] = max(int(known.get("offset", 0)), int(result.get("offset", 0)))
        known["recoverable"] = result.get("recoverable", False)

    def _server_publication(self, channel: str, pub: dict[str, Any]) -> None:
        known = self.server_subscriptions.get(channel)
        offset = pub.get("offset")
        if known is not None and isinstance(offset, int):
            if offset <= int(known.get("offset", 0)):
                return
            known["offset"] = offset
        if self.on_server_publication is not None:
            self.on_server_publication({"channel": channel, **pub})

    def closed(self, code: int, reason: str) -> None:
        self.disconnect = (code, reason, _reconnects(code))

    def on_push(self, push: dict[str, Any]) -> None:
        channel = str(push.get("channel", ""))
        if "subscribe" in push:
            self.server_subscribed(channel, push["subscribe"])
            return
        sub = self.subscriptions.get(channel)
        if sub is None:
            if "pub" in push:
                self._server_publication(channel, push["pub"])
            elif "unsubscribe" in push:
                self.server_subscriptions.pop(channel, None)
            return
        if "pub" in push:
            self._deliver(sub, push["pub"])
        elif "join" in push and sub.on_join is not None:
            sub.on_join(push["join"]["info"])
        elif "leave" in push and sub.on_leave is not None:
            sub.on_leave(push["leave"]["info"])
        elif "unsubscribe" in push:
            self.subscriptions.pop(sub.channel, None)

    @staticmethod
    def report_recovery(sub: _Subscription, report: RecoveryReport) -> None:
        if sub.on_recovery is not None:
            sub.on_recovery(report)
        elif not report.recovered:
            logger.warning("%s", report)


def _messages(text: str | bytes) -> list[dict[str, Any]]:
    """The replies and pushes of one frame (``\n``-separated); ``{}`` is the hub's ping."""
    if isinstance(text, bytes):
        text = text.decode()
    return [json.loads(line) for line in text.split("\n") if line]


def _result(method: str, reply: dict[str, Any]) -> dict[str, Any]:
    error = reply.get("error")
    if error is not None:
        raise HubCommandError(
            int(error.get("code", 0)), str(error.get("message", "")), bool(error.get("temporary"))
        )
    result = reply.get(method, {})
    return result if isinstance(result, dict) else {}


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
        self.state = _ClientState(name, token)
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
        allowed = _reconnects(code)
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
                    return _result(method, reply)
                # else: the answer to a call abandoned earlier

    def _handle(self, message: str | bytes) -> list[dict[str, Any]]:
        """Pushes to their callbacks, pings answered; the replies of the frame."""
        replies = []
        for value in _messages(message):
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
            if method not in _READ_ONLY:
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
        sub = _Subscription(channel, on_publication, on_join, on_leave, on_recovery)
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
        """A round trip (the ``ping`` command; Centrifugo SDKs use the hub's ``{}`` pings instead)."""
        self.call("ping")

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
        self.state = _ClientState(name, token)
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
        sub = _Subscription(channel, on_publication, on_join, on_leave, on_recovery)
        self.state.subscriptions[channel] = sub
        if self.connected:
            self._subscribe(sub, False, on_reply)

    def _subscribe(
        self, sub: _Subscription, resubscribe: bool, on_reply: Callable[[dict[str, Any]], None] | None = None
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
        for frame in _messages(message):
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
