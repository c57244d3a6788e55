"""asgi.py: HubASGI mounted in FastAPI, Starlette and Django Channels on a real uvicorn, the application's
own session and in-process publish, its HTTP side, lifespan, backpressure, and a Redis engine shared with
the standalone hub.  (The protocol itself runs on every transport in test_hub_transports.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn")

from tests.ports import unused_port
from wsproto_lite.adapters.uvicorn import WSProtoLiteProtocol  # noqa: E402
from wsproto_lite.hub.asgi import HubASGI, route_path  # noqa: E402
from wsproto_lite.hub.auth import AuthConfig, Identity  # noqa: E402
from wsproto_lite.hub.config import HubConfig  # noqa: E402
from wsproto_lite.hub.hub import HubLimits  # noqa: E402
from wsproto_lite.hub.limits import RateLimits  # noqa: E402
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, NamespaceOptions, Namespaces  # noqa: E402
from wsproto_lite.hub.protocol import (
    DisconnectCode,  # noqa: E402
    ErrorCode,  # noqa: E402
)
from wsproto_lite.server.client import connect  # noqa: E402
from wsproto_lite.server.errors import ConnectionClosed, HandshakeError  # noqa: E402

from .asgi_util import AsgiHubThread, LoopThread, Uvicorn  # noqa: E402
from .conftest import HubThread, Raw  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"


class Client(Raw):
    """A Raw hub client that sends extra headers (a session cookie) and an Origin."""

    def __init__(
        self, url: str, headers: list[tuple[str, str]] | None = None, origin: str | None = None
    ) -> None:
        super().__init__(
            url, connect(url, timeout=10, compression=False, headers=headers or [], origin=origin)
        )


def user_of(loop_thread: Any, hub: Any, result: dict[str, Any]) -> str:
    """The user the ``connect`` with this result established (Centrifugo's result does not say)."""
    return str(loop_thread.call(lambda: hub.sessions[hub.connection_of(result["client"])].info.user))


def refused(url: str, headers: list[tuple[str, str]] | None = None, origin: str | None = None) -> int:
    """The HTTP status a WebSocket upgrade to ``url`` is refused with."""
    with pytest.raises(HandshakeError) as info:
        connect(url, timeout=10, headers=headers or [], origin=origin)
    return int(info.value.status)


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    """``(status, headers, body)`` of one request."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def session_cookie(headers: Any, name: str) -> str:
    """``name=value`` of the ``Set-Cookie`` for ``name``."""
    for value in headers.get_all("Set-Cookie"):
        if value.startswith(name + "="):
            return str(value.split(";", 1)[0])
    raise AssertionError(f"no {name} cookie set")


@contextmanager
def served(app: Any, **options: Any) -> Iterator[tuple[LoopThread, int]]:
    """``app`` on uvicorn (our WebSocket class) in a loop thread; every HubASGI in ``hubs`` stopped after."""
    loop_thread = LoopThread()
    server = Uvicorn(loop_thread, app, **options)
    try:
        yield loop_thread, server.port
    finally:
        server.stop()
        loop_thread.close()


def readme_block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return next(b for b in blocks if marker in b)


# -- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "path"),
    [
        ({"path": "/connection/websocket"}, "/connection/websocket"),  # served alone
        ({"path": "/hub/ws", "root_path": "/hub"}, "/ws"),  # Starlette's Mount, uvicorn --root-path
        ({"path": "/hub", "root_path": "/hub"}, "/"),
        ({"path": "/hubble/ws", "root_path": "/hub"}, "/hubble/ws"),  # not below the root: left alone
        ({"path": "/ws", "root_path": "/hub"}, "/ws"),  # a server that stripped the root already
        ({"path": "/hub/ws", "path_remaining": "ws"}, "/ws"),  # Channels' URLRouter
        ({"path": "/hub/", "path_remaining": ""}, "/"),
    ],
)
def test_route_path_below_every_kind_of_mount(scope: dict[str, Any], path: str) -> None:
    assert route_path(scope) == path


# -- FastAPI: the README's example -------------------------------------------------------------------


def test_readme_fastapi_mount_with_the_apps_session_and_in_process_publish() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("itsdangerous")
    namespace: dict[str, Any] = {}
    exec(compile(readme_block('app.mount("/hub", hub)'), "README.md", "exec"), namespace)
    hub: HubASGI = namespace["hub"]
    with served(namespace["app"]) as (loop_thread, port):
        base = f"http://127.0.0.1:{port}"
        url = f"ws://127.0.0.1:{port}/hub/connection/websocket"
        status, headers, _ = http("POST", f"{base}/login/alice")
        assert status == 200
        cookie = [("Cookie", session_cookie(headers, "session"))]
        assert refused(url) == 403  # no session: identify() says None
        assert refused(f"ws://127.0.0.1:{port}/connection/websocket", cookie) == 403  # only below /hub
        alice = Client(url, cookie)
        assert user_of(loop_thread, hub.hub, alice.ok("connect")) == "alice"
        alice.ok("subscribe", {"channel": "chat:lobby"})
        status, _, body = http("POST", f"{base}/rooms/lobby?text=hi", headers=dict(cookie))
        assert (status, json.loads(body)) == (200, {"offset": 1})
        assert alice.push() == {
            "channel": "chat:lobby",
            "pub": {"offset": 1, "data": {"user": "alice", "text": "hi"}},
        }
        # the session rides on a cookie any page could make the browser send: other origins are refused
        assert refused(url, cookie, origin="http://evil.example") == 403
        same_site = Client(f"ws://127.0.0.1:{port}/hub/ws", cookie, origin=base)
        assert user_of(loop_thread, hub.hub, same_site.ok("connect")) == "alice"
        for r in (alice, same_site):
            r.close()
        loop_thread.call(hub.hub.stop)


def test_identify_may_be_async_and_return_an_identity_with_grants() -> None:
    names = Namespaces({**DEFAULT_NAMESPACES, "secret": NamespaceOptions(allow_publish=True)})
    config = HubConfig(namespaces=names, auth=AuthConfig(private_namespaces=("secret",)))

    async def identify(scope: Any) -> Identity | str | None:
        await asyncio.sleep(0)  # e.g. a session store lookup
        user = dict(scope["headers"]).get(b"x-user", b"").decode()
        if user == "boom":
            raise RuntimeError("session store down")
        if user == "carol":
            return Identity(user="carol", anonymous=False, subscribe=("secret:*",))
        return user or None

    app = HubASGI(config=config, identify=identify)
    with served(app) as (loop_thread, port):
        url = f"ws://127.0.0.1:{port}/connection/websocket"
        assert refused(url) == 403
        assert refused(url, [("X-User", "boom")]) == 500
        carol, dave = Client(url, [("X-User", "carol")]), Client(url, [("X-User", "dave")])
        assert user_of(loop_thread, app.hub, carol.ok("connect")) == "carol"
        assert user_of(loop_thread, app.hub, dave.ok("connect")) == "dave"
        carol.ok("subscribe", {"channel": "secret:plans"})  # her grant
        assert dave.error("subscribe", {"channel": "secret:plans"}) == ErrorCode.PERMISSION_DENIED
        carol.close()
        dave.close()
        assert loop_thread.call(lambda: app.hub._pending) == {}  # nothing kept from refused upgrades
        loop_thread.call(app.hub.stop)


def test_allowed_origins_from_the_config_next_to_the_own_origin() -> None:
    app = HubASGI(config=HubConfig(allowed_origins=["https://app.example"]), identify=lambda scope: "u")
    with served(app) as (loop_thread, port):
        url = f"ws://127.0.0.1:{port}/ws"
        assert refused(url, origin="https://other.example") == 403
        listed, own = (
            Client(url, origin="https://app.example"),
            Client(url, origin=f"http://127.0.0.1:{port}"),
        )
        users = {user_of(loop_thread, app.hub, r.ok("connect")) for r in (listed, own)}
        assert users == {"u"}
        listed.close()
        own.close()
        loop_thread.call(app.hub.stop)


# -- the HTTP side, lifespan -------------------------------------------------------------------------


def test_the_http_side_below_a_starlette_mount() -> None:
    starlette_routing = pytest.importorskip("starlette.routing")
    from starlette.applications import Starlette

    key = "k-" + secrets.token_hex(8)
    hub_app = HubASGI(config=HubConfig(auth=AuthConfig(api_keys=(key,))), http=True)
    bare = HubASGI()
    app = Starlette(routes=[starlette_routing.Mount("/hub", hub_app), starlette_routing.Mount("/bare", bare)])
    with served(app) as (loop_thread, port):
        base = f"http://127.0.0.1:{port}/hub"
        publish = json.dumps({"channel": "chat:x", "data": {"n": 1}}).encode()
        status, _, body = http("POST", f"{base}/api/publish", publish, {"Authorization": f"apikey {key}"})
        assert status == 200 and json.loads(body)["result"]["offset"] == 1
        assert http("POST", f"{base}/api/publish", publish)[0] == 401
        big = json.dumps({"channel": "chat:x", "data": "x" * 40_000}).encode()
        assert http("POST", f"{base}/api/publish", big, {"Authorization": f"apikey {key}"})[0] == 413
        status, _, body = http("GET", f"{base}/metrics", headers={"Authorization": f"apikey {key}"})
        assert status == 200 and b"wsproto_hub_" in body
        assert http("GET", f"{base}/metrics")[0] == 401  # metrics_public is off
        assert http("GET", f"{base}/healthz")[2] == b"ok\n"
        status, _, body = http("GET", f"{base}/")
        assert status == 200 and b'<script src="app.js">' in body
        assert http("GET", f"http://127.0.0.1:{port}/bare/metrics")[0] == 404  # http=False: WebSocket only
        loop_thread.call(hub_app.hub.stop)


def test_lifespan_starts_the_hub_before_any_connection_and_stops_it() -> None:
    app = HubASGI()
    with served(app, lifespan="on") as (loop_thread, port):
        assert app.loop is loop_thread.loop  # started at startup
        assert app.publish_threadsafe("chat:x", 1).result(10).offset == 1
        r = Raw(f"ws://127.0.0.1:{port}/connection/websocket")
        assert r.ok("connect")["client"]
        r.close()
    assert app.hub._tick_timer is None  # stopped at shutdown


# -- backpressure ----------------------------------------------------------------------------------


def stack_protocol_of(h: AsgiHubThread, client: Raw) -> WSProtoLiteProtocol:
    """The uvicorn-side protocol (our adapter) serving ``client``'s connection."""
    port = client.ws.sock.getsockname()[1]
    for protocol in list(h.uvicorn.server.server_state.connections):
        peer = protocol.transport.get_extra_info("peername")
        if isinstance(protocol, WSProtoLiteProtocol) and peer[1] == port:
            return protocol
    raise AssertionError(f"no connection from port {port}")


def test_a_client_that_does_not_read_is_not_read_either_and_loses_no_reply() -> None:
    """Pipelined history commands whose replies the client does not read: the hub stops taking commands
    once their replies wait, instead of queueing (or dropping) every reply.

    The stop is one of two, whichever fills first: the hub's queue for the client over its bound (the hub
    stops asking the stack for messages), or the stack's transport over its high-water mark (the adapter's
    ``send`` waits, and it stops reading the socket). Either way memory stays bounded and no reply is lost.
    """
    rates = RateLimits(bytes_per_second=1e12, bytes_burst=1e12, commands_per_second=1e9, commands_burst=1e9)
    # a reply may take the whole bound (a larger one is refused with 106): 1 MiB holds one ~600 kB reply
    h = AsgiHubThread(HubConfig(port=0, limits=HubLimits(queue_limit=1 << 20), rate_limits=rates))
    clients: list[Raw] = []
    try:
        publisher = Raw(h.url)
        clients.append(publisher)
        publisher.ok("connect")
        blob = "x" * 60_000
        for _ in range(10):  # a history reply is ~600 kB
            publisher.ok("publish", {"channel": "stock:big", "data": blob})
        reader = Raw(h.url)
        clients.append(reader)
        client = reader.ok("connect")["client"]
        stack = h.call(stack_protocol_of, h, reader)
        commands = 40
        baseline = h.call(lambda: h.hub.stats.commands)
        for cid in range(2, commands + 2):
            reader.send({"id": cid, "history": {"channel": "stock:big", "limit": -1}})
        conn = h.call(h.hub.connection_of, client)

        def stopped() -> bool:
            return not conn.writable or not stack.transport.is_reading()

        deadline = time.monotonic() + 10
        while not h.call(stopped):  # until nothing reads the client: a state, polled (bounded)
            assert time.monotonic() < deadline, "never paused: all the commands taken (and replies dropped)?"
            time.sleep(0.01)
        taken = h.call(lambda: h.hub.stats.commands) - baseline
        assert taken < commands  # the rest waits unread
        one_reply = 10 * (len(blob) + 200)
        held = h.call(lambda: conn.buffered_amount + stack.transport.get_write_buffer_size())
        stack_high_water = h.call(lambda: stack.transport.get_write_buffer_limits()[1])
        assert held <= h.app.options.write_high_water + stack_high_water + 2 * one_reply
        ids = []
        for _ in range(commands):
            reply = reader.recv(timeout=20)
            assert len(reply["history"]["publications"]) == 10
            ids.append(reply["id"])
        assert ids == list(range(2, commands + 2))  # every reply, in order: none dropped
    finally:
        for c in clients:
            c.ws.sock.close()  # at once, whatever is unread (a failed assert must not hang the stop)
        h.stop()


def test_shutdown_ends_a_connection_whose_peer_reads_nothing_within_the_close_timeout() -> None:
    """uvicorn's shutdown waits for every connection to end; ours closes with 1012 and, when the peer
    reads nothing (our close stuck behind megabytes of replies), aborts it when the close timer fires
    (asyncio's ``transport.close()`` alone waits for the buffer to drain: for ever)."""
    rates = RateLimits(bytes_per_second=1e12, bytes_burst=1e12, commands_per_second=1e9, commands_burst=1e9)
    h = AsgiHubThread(HubConfig(port=0, limits=HubLimits(queue_limit=1 << 20), rate_limits=rates))
    reader = Raw(h.url)
    try:
        reader.ok("connect")
        blob = "x" * 60_000
        for _ in range(10):
            reader.ok("publish", {"channel": "stock:big", "data": blob})
        stack = h.call(stack_protocol_of, h, reader)
        stack.close_timeout = 0.2
        for cid in range(100, 140):
            reader.send({"id": cid, "history": {"channel": "stock:big", "limit": -1}})
        deadline = time.monotonic() + 10
        while h.call(stack.transport.is_reading):  # until the socket is full and the stack stops reading it
            assert time.monotonic() < deadline, "the stack kept reading a peer that reads nothing"
            time.sleep(0.01)
        h.stop()  # bounded (LoopThread.run: 20 s); it returns once uvicorn saw every connection end
        assert stack.lost
    finally:
        reader.ws.sock.close()


# -- Django Channels: the README's example ---------------------------------------------------------------


def test_readme_django_channels_with_djangos_session_and_an_async_view() -> None:
    pytest.importorskip("channels")
    from . import channels_hub_project

    code = readme_block("from channels.routing import ProtocolTypeRouter")
    code = "\n".join(line for line in code.splitlines() if not line.startswith("from mysite."))
    namespace: dict[str, Any] = {}

    async def say(request: Any, **kwargs: Any) -> Any:  # the README's view, defined by the exec below
        return await namespace["say"](request, **kwargs)

    channels_hub_project.configure({"say": say})
    exec(compile(code, "README.md", "exec"), namespace)
    hub: HubASGI = namespace["hub"]
    with served(namespace["application"]) as (loop_thread, port):
        base = f"http://127.0.0.1:{port}"
        url = f"ws://127.0.0.1:{port}/hub/connection/websocket"
        assert refused(url) == 403
        status, headers, _ = http("POST", f"{base}/login/bob")
        assert status == 200
        cookie = [("Cookie", session_cookie(headers, "sessionid"))]
        bob = Client(url, cookie)
        assert user_of(loop_thread, hub.hub, bob.ok("connect")) == "bob"
        bob.ok("subscribe", {"channel": "chat:lobby"})
        form = {"Cookie": cookie[0][1], "Content-Type": "application/x-www-form-urlencoded"}
        status, _, body = http("POST", f"{base}/rooms/lobby", b"text=hello", form)
        assert (status, json.loads(body)) == (200, {"offset": 1})
        assert bob.push()["pub"]["data"] == {"user": "bob", "text": "hello"}
        bob.close()
        loop_thread.call(hub.hub.stop)


# -- Redis: one engine behind the standalone hub and the mounted one ---------------------------------------


def test_a_redis_engine_shared_by_the_asgi_hub_and_the_standalone_one() -> None:
    from wsproto_lite.hub.redis_engine import RedisEngine

    from .redis_util import RedisServer

    redis_server = RedisServer()
    prefix = "t" + secrets.token_hex(4)
    nodes: list[Any] = []
    try:
        standalone = HubThread(engine=lambda: RedisEngine(redis_server.url, prefix=prefix))
        nodes.append(standalone)
        mounted = AsgiHubThread(engine=lambda: RedisEngine(redis_server.url, prefix=prefix))
        nodes.append(mounted)
        a, b = Raw(standalone.url), Raw(mounted.url)
        a.ok("connect", {"data": {"name": "a"}})
        b.ok("connect", {"data": {"name": "b"}})
        epoch = a.ok("subscribe", {"channel": "chat:r"})["epoch"]
        assert b.ok("subscribe", {"channel": "chat:r"})["epoch"] == epoch  # one stream, in Redis
        assert "join" in a.push()  # b's join, from the other node
        assert b.ok("publish", {"channel": "chat:r", "data": "from b"})["offset"] == 1
        assert a.ok("publish", {"channel": "chat:r", "data": "from a"})["offset"] == 2
        publication = mounted.loop_thread.run(mounted.app.publish("chat:r", "from the app"))
        assert publication.offset == 3  # the engine's answer came back through asyncio's loop
        for r in (a, b):
            pubs = [r.push() for _ in range(3)]
            assert [(p["pub"]["offset"], p["pub"]["data"]) for p in pubs] == [
                (1, "from b"),
                (2, "from a"),
                (3, "from the app"),
            ]
        assert b.ok("presence_stats", {"channel": "chat:r"})["num_clients"] == 2  # both nodes' clients
        a.close()
        b.close()
    finally:
        for node in nodes:
            node.stop()
        redis_server.stop()


# -- other ASGI servers, from their command lines --------------------------------------------------------

APP = "tests.server.hub.asgi_hub_app:app"
OUR_CLASS = "wsproto_lite.adapters.uvicorn:WSProtoLiteProtocol"
SERVERS = {
    "uvicorn": ["-m", "uvicorn", APP, "--ws", OUR_CLASS, "--port", "{port}"],
    "hypercorn": ["-m", "hypercorn", APP, "--bind", "127.0.0.1:{port}"],
    "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", APP],
}


@pytest.mark.parametrize("server", SERVERS)
def test_the_hub_under_each_asgi_servers_command_line(server: str) -> None:
    pytest.importorskip(server)
    port = unused_port()
    argv = [sys.executable, *(a.format(port=port) for a in SERVERS[server])]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": path}, stderr=subprocess.PIPE)
    url = f"ws://127.0.0.1:{port}/connection/websocket"
    try:
        for _ in range(500):  # until it listens: connection refused before (a port, polled)
            try:
                a = Raw(url)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.02)
        else:
            raise AssertionError(f"{server} did not start")
        b, binary = Raw(url), Raw(url)
        a.ok("connect")
        b.ok("connect")
        a.ok("subscribe", {"channel": "chat:x"})
        b.ok("publish", {"channel": "chat:x", "data": "hi"})
        assert a.push()["pub"]["data"] == "hi"
        binary.ok("connect")
        binary.send(b"binary")
        with pytest.raises(ConnectionClosed) as closed:
            binary.recv()
        assert closed.value.code == (1000 if server == "daphne" else 1003)  # daphne: 1000 or 3000-4999 only
        late = Raw(url)  # no connect within connect_timeout (1 s): the hub's timer, on this server's loop
        assert late.closed()[0] == DisconnectCode.CONNECT_TIMEOUT
        assert refused(f"ws://127.0.0.1:{port}/elsewhere") in (404, 403)  # 403: no denial-response extension
        for r in (a, b, late):
            r.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
