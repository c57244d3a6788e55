"""The official Centrifugo SDKs against the hub: drivers as subprocesses, hubs configured as the SDKs expect.

The SDKs are pinned in this folder: npm ``centrifuge`` + ``ws`` in package.json / package-lock.json
(``npm ci`` installs them into ./node_modules), PyPI ``centrifuge-python`` + ``cent`` in requirements.txt;
``.ci/run`` installs both.  ``driver.mjs`` (centrifuge-js) and ``py_driver.py`` (centrifuge-python) take
the same ops on stdin and print the same JSON events, so each scenario runs against both SDKs.

``HUB_SPEAKS_CENTRIFUGO`` is the switch, per area: the areas of Centrifugo's protocol the hub speaks
(issue 20): ``"http_api"`` (the server HTTP API, ``cent``), ``"client_protocol"`` (client protocol v2, the
SDKs).  A test needing an area not listed is ``xfail(strict=False)``; once listed, these are its
acceptance tests.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wsproto_lite.hub.auth import AuthConfig
from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.namespaces import Namespaces

from ..authkit import NAMESPACES, SECRET
from ..conftest import HubThread
from ..redis_util import RedisServer

#: The areas of Centrifugo's protocol the hub speaks (issue 20): a test needing another one is xfail.
HUB_SPEAKS_CENTRIFUGO: frozenset[str] = frozenset({"http_api", "client_protocol"})
AREAS = frozenset({"http_api", "client_protocol"})

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
API_KEY = "k-sdk-" + secrets.token_hex(8)
SDK_TIMEOUT = 4.0
"""The SDKs' own command/connect timeout (seconds)."""
EVENT_TIMEOUT = 6.0
"""How long a test waits for one expected event: a little over the SDK timeout."""
DRIVER_DEADLINE = 45.0
"""A driver exits by itself after this long, whatever happens."""

SDKS = ("js", "js-protobuf", "python")
"""``js-protobuf``: centrifuge-js's protobuf build (``centrifuge/build/protobuf``), the binary encoding."""


def sdk_marks(*areas: str) -> list[pytest.MarkDecorator]:
    """The marks of an SDK test module (or test): ``centrifugo_sdk``, and xfail while one of ``areas``
    (default: the client protocol) is not in ``HUB_SPEAKS_CENTRIFUGO``."""
    needed = set(areas or ("client_protocol",))
    assert needed <= AREAS, needed - AREAS
    marks = [pytest.mark.centrifugo_sdk]
    missing = sorted(needed - HUB_SPEAKS_CENTRIFUGO)
    if missing:
        marks.append(
            pytest.mark.xfail(
                reason=f"the hub does not speak Centrifugo's {', '.join(missing)} yet (issue 20)",
                strict=False,
            )
        )
    return marks


def needs(*areas: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator for one test that needs more areas than its module: xfail while one is missing."""

    def mark(test: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in sdk_marks(*areas)[1:]:
            test = decorator(test)
        return test

    return mark


def _missing(what: str, how: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: .ci/run installs it ({how})")
    pytest.skip(f"{what} is not installed ({how})")


def require_node() -> str:
    node = shutil.which("node")
    if node is None:
        _missing("node", "apt-get install nodejs npm")
    if not (NODE_MODULES / "centrifuge" / "package.json").exists() or not (NODE_MODULES / "ws").exists():
        _missing("npm centrifuge + ws", f"cd {HERE} && npm ci")
    assert node is not None
    return node


def require_centrifuge_python() -> None:
    try:
        import centrifuge  # noqa: F401
    except ImportError:
        _missing("centrifuge-python", f"pip install -r {HERE / 'requirements.txt'}")


def require_cent() -> None:
    try:
        import cent  # noqa: F401
    except ImportError:
        _missing("cent", f"pip install -r {HERE / 'requirements.txt'}")


class Driver:
    """One SDK client in a subprocess: ``call(op, **args)`` waits for its reply; ``expect(ev, **fields)``
    waits for an event; every event seen is kept in ``events``; ``stop()`` ends it by PID."""

    def __init__(self, sdk: str, url: str, **options: Any) -> None:
        self.sdk = sdk
        options = {"url": url, "timeout": SDK_TIMEOUT, "deadline": DRIVER_DEADLINE, **options}
        if sdk in ("js", "js-protobuf"):
            options["protobuf"] = sdk == "js-protobuf"
            argv = [require_node(), str(HERE / "driver.mjs"), json.dumps(options)]
        else:
            require_centrifuge_python()
            argv = [sys.executable, str(HERE / "py_driver.py"), json.dumps(options)]
        self.proc = subprocess.Popen(
            argv,
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.events: list[dict[str, Any]] = []
        self.cursor = 0
        self._incoming: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._next_id = 1
        self._reader = threading.Thread(target=self._read, name=f"sdk-{sdk}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                value = json.loads(line)
            except ValueError:
                value = {"ev": "noise", "line": line.rstrip()}
            self._incoming.put(value)
        self._incoming.put(None)

    def _pull(self, deadline: float) -> bool:
        """Move one event into ``events``; False at the deadline or when the driver has exited."""
        try:
            value = self._incoming.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if value is None:
            self._incoming.put(None)  # stays ended
            return False
        self.events.append(value)
        return True

    def send(self, op: str, **args: Any) -> int:
        assert self.proc.stdin is not None
        op_id = self._next_id
        self._next_id += 1
        self.proc.stdin.write(json.dumps({"id": op_id, "op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return op_id

    def expect(
        self,
        ev: str,
        timeout: float = EVENT_TIMEOUT,
        fail_on: Callable[[dict[str, Any]], bool] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """The next event (after the last one expected) named ``ev`` whose ``fields`` match; fails at once
        on an event for which ``fail_on`` is true, or when nothing matched within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            while self.cursor < len(self.events):
                event = self.events[self.cursor]
                self.cursor += 1
                if event.get("ev") == ev and all(event.get(k) == v for k, v in fields.items()):
                    return event
                if fail_on is not None and fail_on(event):
                    pytest.fail(f"{self.sdk}: {event} while waiting for {ev} {fields}; seen {self.tail()}")
            if not self._pull(deadline):
                pytest.fail(f"{self.sdk}: no {ev} {fields} within {timeout} s; seen {self.tail()}")

    def seen(self, ev: str, **fields: Any) -> list[dict[str, Any]]:
        """Every event so far (without waiting) named ``ev`` with those ``fields``."""
        while self._pull(time.monotonic()):
            pass
        return [e for e in self.events if e.get("ev") == ev and all(e.get(k) == v for k, v in fields.items())]

    def wait_count(self, ev: str, n: int, timeout: float = EVENT_TIMEOUT, **fields: Any) -> None:
        """Wait until ``n`` events named ``ev`` (with ``fields``) were seen, whenever they came (unlike
        ``expect``, the order against other expected events does not matter)."""
        deadline = time.monotonic() + timeout
        while len(self.seen(ev, **fields)) < n:
            if not self._pull(deadline):
                pytest.fail(
                    f"{self.sdk}: fewer than {n} {ev} {fields} within {timeout} s; seen {self.tail()}"
                )

    def tail(self, n: int = 12) -> list[dict[str, Any]]:
        return self.events[-n:]

    def call(self, op: str, timeout: float = EVENT_TIMEOUT, **args: Any) -> dict[str, Any]:
        """Run an op; its reply event (``result`` or ``error``)."""
        op_id = self.send(op, **args)
        reply = self.expect_reply(op_id, timeout)
        return reply

    def expect_reply(self, op_id: int, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("ev") == "reply" and event.get("id") == op_id:
                    return event
            if not self._pull(deadline):
                pytest.fail(f"{self.sdk}: no reply to op {op_id} within {timeout} s; seen {self.tail()}")

    def ok(self, op: str, **args: Any) -> dict[str, Any]:
        reply = self.call(op, **args)
        assert "result" in reply, f"{self.sdk}: {op} {args} -> {reply}; seen {self.tail()}"
        result = reply["result"]
        assert isinstance(result, dict)
        return result

    def connected(self) -> dict[str, Any]:
        """Connect and wait for ``connected``; a ``disconnected`` first fails at once (terminal)."""
        self.send("connect")
        return self.expect("connected", fail_on=lambda e: e.get("ev") == "disconnected")

    def subscribed(self, channel: str, **options: Any) -> dict[str, Any]:
        self.send("subscribe", channel=channel, **options)
        return self.expect(
            "subscribed",
            channel=channel,
            fail_on=lambda e: (
                e.get("ev") in ("unsubscribed", "disconnected") and e.get("channel") in (None, channel)
            ),
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


Drivers = Callable[..., Driver]


@pytest.fixture
def drivers() -> Iterator[Drivers]:
    """``drivers(sdk, url, **options)``: an SDK client in a subprocess, stopped after the test."""
    made: list[Driver] = []

    def make(sdk: str, url: str, **options: Any) -> Driver:
        driver = Driver(sdk, url, **options)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.stop()


def sdk_hub_config(**auth: Any) -> HubConfig:
    """A hub as the SDK tests need it: HS256 JWTs (authkit's SECRET) but anonymous connections allowed, an
    API key, the built-in namespaces (``chat`` keeps history and presence) and a private ``secret`` one."""
    settings: dict[str, Any] = {
        "jwt_secret": SECRET,
        "api_keys": (API_KEY,),
        "allow_anonymous": True,
        "private_namespaces": ("secret",),
        "leeway": 0.0,
    }
    settings.update(auth)
    return HubConfig(port=0, auth=AuthConfig(**settings), namespaces=Namespaces(dict(NAMESPACES)))


@pytest.fixture
def sdk_hub() -> Iterator[HubThread]:
    node = HubThread(sdk_hub_config())
    yield node
    node.stop()


def api_url(node: HubThread) -> str:
    return f"http://127.0.0.1:{node.hub_server.port}/api"


def drop_transports(node: HubThread) -> int:
    """Cut every client's TCP connection from the server side, with no close frame (a network drop)."""

    def drop() -> int:
        conns = list(node.hub.sessions)
        for conn in conns:
            conn.abort()
        return len(conns)

    return int(node.call(drop))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


Nodes = Callable[[], HubThread]


@pytest.fixture
def redis_nodes(redis_server: RedisServer) -> Iterator[Nodes]:
    """``redis_nodes()``: a hub node (own loop thread, own RedisEngine) on the test's own key prefix."""
    from wsproto_lite.hub.redis_engine import RedisEngine

    prefix = "sdk" + secrets.token_hex(4)
    made: list[HubThread] = []

    def make() -> HubThread:
        node = HubThread(sdk_hub_config(), engine=lambda: RedisEngine(redis_server.url, prefix=prefix))
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()
