"""Hub test fixtures: a hub in a loop thread on a free port, and a raw JSON client over loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from srvtest_util import SteppedLoop, call_in_loop

from wsproto_lite.hub.app import HubServer
from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.engine import Engine
from wsproto_lite.hub.hub import Authenticate
from wsproto_lite.hub.protocol import ErrorCode
from wsproto_lite.server.client import ClientWebSocket, connect
from wsproto_lite.server.errors import ConnectionClosed
from wsproto_lite.server.websocket import WebSocket


class HubThread:
    """A HubServer on 127.0.0.1 in its own loop thread; ``restart()``: a fresh hub on the same port.

    The loop is a :class:`SteppedLoop`: ``loop.advance(seconds)`` moves the hub's clock (its timers and
    its rate limits) ahead without waiting."""

    def __init__(
        self,
        config: HubConfig | None = None,
        authenticate: Authenticate | None = None,
        engine: Callable[[], Engine] | None = None,
    ) -> None:
        self.config = config or HubConfig(port=0)
        self.authenticate = authenticate
        self.engine = engine
        self.loop = SteppedLoop()
        self.closed = threading.Condition()
        self.hub_server = self._start()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hub", daemon=True)
        self.thread.start()

    def _start(self) -> HubServer:
        engine = self.engine() if self.engine is not None else None
        server = HubServer(self.config, loop=self.loop, authenticate=self.authenticate, engine=engine)
        hub = server.hub
        original = hub.on_close

        def on_close(conn: WebSocket, code: int, reason: str) -> None:
            original(conn, code, reason)
            with self.closed:
                self.closed.notify_all()

        hub.on_close = on_close  # type: ignore[method-assign]
        self.config.port = server.port  # a restart binds the same port
        return server

    @property
    def hub(self):  # type: ignore[no-untyped-def]
        return self.hub_server.hub

    @property
    def port(self) -> int:
        return self.hub_server.port

    @property
    def base(self) -> str:
        """The hub's HTTP address (its chat page)."""
        return f"http://127.0.0.1:{self.hub_server.port}/"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.hub_server.port}/connection/websocket"

    def call(self, fn: Any, *args: Any, timeout: float = 10.0) -> Any:
        return call_in_loop(self.loop, fn, *args, timeout=timeout)

    def user_of(self, client: str) -> str:
        """The user a connection's ``connect`` established (Centrifugo's connect result does not say)."""

        def look() -> str:
            conn = self.hub.connection_of(client)
            assert conn is not None, client
            return str(self.hub.sessions[conn].info.user)

        return str(self.call(look))

    def wait_sessions(self, at_most: int, timeout: float = 10.0) -> bool:
        with self.closed:
            return self.closed.wait_for(lambda: len(self.hub.sessions) <= at_most, timeout)

    def restart(self) -> None:
        """Stop the hub (disconnect pushes, closes) and start a new one, with new epochs, on the same port."""
        stopped = threading.Event()
        self.call(self.hub_server.shutdown, 2.0, stopped.set)
        assert stopped.wait(10)
        self.hub_server = self.call(self._start)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.call(self.hub_server.close)
            self.loop.stop()
            self.thread.join(10)
        assert not self.thread.is_alive()
        self.loop.close()


@pytest.fixture
def hub() -> Iterator[HubThread]:
    h = HubThread()
    yield h
    h.stop()


class Raw:
    """A hub client speaking raw Centrifugo v2 JSON frames; pushes that arrive before an awaited reply are
    kept; the hub's ``{}`` pings are answered (and counted) as the SDKs do."""

    def __init__(self, url: str, ws: ClientWebSocket | None = None) -> None:
        self.ws: ClientWebSocket = ws or connect(url, timeout=10, compression=False)
        self.next_id = 1
        self.pushes: list[dict[str, Any]] = []
        self.pings = 0
        self.answer_pings = True
        self._lines: list[dict[str, Any]] = []

    def send(self, value: Any) -> None:
        self.ws.send(value if isinstance(value, str | bytes) else json.dumps(value))

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next reply or push (a frame may hold several, ``\n``-separated); pings are answered."""
        while True:
            if self._lines:
                return self._lines.pop(0)
            self._read_frame(timeout)

    def _read_frame(self, timeout: float) -> None:
        message = self.ws.recv(timeout=timeout)
        assert isinstance(message, str)
        for line in message.split("\n"):
            value = json.loads(line)
            assert isinstance(value, dict)
            if value == {}:
                self.pings += 1
                if self.answer_pings:
                    self.send("{}")
                continue
            self._lines.append(value)

    def await_ping(self, timeout: float = 5.0) -> None:
        """Read until the hub's next ``{}`` ping has arrived (other frames are kept)."""
        seen = self.pings
        while self.pings == seen:
            self._read_frame(timeout)

    def reply(self, cid: int, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            frame = self.recv(timeout)
            if "id" in frame:
                assert frame["id"] == cid, frame
                return frame
            self.pushes.append(frame["push"])

    def cmd(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send ``{"id": n, method: params}`` and return the whole reply (``{"id", method}`` or
        ``{"id", "error"}``)."""
        cid = self.next_id
        self.next_id += 1
        self.send({"id": cid, method: params if params is not None else {}})
        return self.reply(cid)

    def ok(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = self.cmd(method, params)
        assert method in reply, reply
        result = reply[method]
        assert isinstance(result, dict)
        return result

    def roundtrip(self) -> bool:
        """A round trip: every push sent before it has arrived.  The ``ping`` command, which the hub
        answers 108 "not available" as Centrifugo does (centrifuge client.go ``handlePing``)."""
        return self.error("ping") == ErrorCode.NOT_AVAILABLE

    def error(self, method: str, params: dict[str, Any] | None = None) -> int:
        reply = self.cmd(method, params)
        assert "error" in reply, reply
        assert {"code", "message"} <= set(reply["error"]) <= {"code", "message", "temporary"}
        return int(reply["error"]["code"])

    def push(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next push's body: ``{"channel": c, "pub" | "join" | ...: {...}}``."""
        if self.pushes:
            return self.pushes.pop(0)
        frame = self.recv(timeout)
        assert "id" not in frame, frame
        push = frame["push"]
        assert isinstance(push, dict)
        return push

    def closed(self, timeout: float = 5.0) -> tuple[int, str]:
        """Read until the hub closes; (code, reason) of its close frame.  Pushes on the way are kept."""
        try:
            while True:
                frame = self.recv(timeout)
                if "push" in frame:
                    self.pushes.append(frame["push"])
        except ConnectionClosed as exc:
            return exc.code, exc.reason

    def close(self) -> None:
        try:
            self.ws.close(timeout=2)
        except OSError:
            pass


def _raw_clients(url: str) -> Iterator[Callable[..., Raw]]:
    """``make(name="a")``: a connected Raw client to ``url``; every one made is closed at the end."""
    made: list[Raw] = []

    def make(name: str = "", token: str | None = None, connect: bool = True) -> Raw:
        r = Raw(url)
        made.append(r)
        if connect:
            params: dict[str, Any] = {"data": {"name": name}} if name else {}
            if token is not None:
                params["token"] = token
            r.ok("connect", params)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def raw(hub: HubThread) -> Iterator[Any]:
    """``raw(name="a")``: a connected Raw client, closed after the test."""
    yield from _raw_clients(hub.url)


# -- the same tests on every transport the hub runs on -----------------------------------------------

#: "selectors": our own server (HubServer); "asgi": HubASGI under uvicorn with our WebSocket class;
#: "asgi-websockets": the same under uvicorn's own websockets-sansio class (another ASGI server's send/close).
TRANSPORTS = ("selectors", "asgi", "asgi-websockets")


@pytest.fixture(params=TRANSPORTS)
def start_hub(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``start_hub(config=None, authenticate=None, engine=None)``: a hub on this test's transport (stopped
    after the test); both kinds have ``url``, ``port``, ``hub``, ``config``, ``call``, ``wait_sessions``,
    ``restart`` and ``stop``."""
    started: list[Any] = []

    def start(
        config: HubConfig | None = None,
        authenticate: Authenticate | None = None,
        engine: Callable[[], Engine] | None = None,
    ) -> Any:
        if request.param == "selectors":
            h: Any = HubThread(config, authenticate, engine)
        else:
            from .asgi_util import AsgiHubThread

            ws = "websockets-sansio" if request.param == "asgi-websockets" else None
            h = AsgiHubThread(config, authenticate, engine, ws=ws)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


@pytest.fixture
def any_hub(start_hub: Callable[..., Any]) -> Any:
    """A hub with the default config, on each transport in turn."""
    return start_hub()


@pytest.fixture
def any_raw(any_hub: Any) -> Iterator[Any]:
    """``raw`` on each transport: ``any_raw(name="a")`` is a connected Raw client."""
    yield from _raw_clients(any_hub.url)


def non_reading_client(port: int, *commands: dict[str, Any]) -> socket.socket:
    """A raw client with a small receive buffer: the handshake, then ``commands`` (masked text frames,
    replies never read); it reads nothing more, so what the hub queues for it stays queued."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    for command in commands:
        payload = json.dumps(command).encode()  # short: a 7-bit length, an all-zero mask
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
    return sock
