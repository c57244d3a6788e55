"""The example backend (``examples/hooks_backend.py``, FastAPI under uvicorn) behind a hub configured by
``examples/hooks.toml``: its session cookie authenticates, its rules check publications, it answers RPCs."""

from __future__ import annotations

import importlib.util
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wsproto_lite.hub.config import load_config
from wsproto_lite.server.client import connect

from .asgi_util import LoopThread, Uvicorn
from .conftest import HubThread, Raw

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


SECRET = "example-secret-for-the-test"


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The example's module, loaded with the webhooks' secret in its environment."""
    monkeypatch.setenv("WSPROTO_HUB_WEBHOOK_SECRET", SECRET)
    spec = importlib.util.spec_from_file_location("hooks_backend", EXAMPLES / "hooks_backend.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loop = LoopThread()
    server = Uvicorn(loop, module.app, ws="none")
    module.port = server.port
    yield module
    server.stop()
    loop.close()


@pytest.fixture
def backend_port(backend: Any) -> int:
    port: int = backend.port
    return port


@pytest.fixture
def example_hub(backend_port: int) -> Iterator[HubThread]:
    config = load_config(EXAMPLES / "hooks.toml")
    config.port = 0
    config.hooks.urls = {k: v.replace(":5000/", f":{backend_port}/") for k, v in config.hooks.urls.items()}
    config.webhooks.urls = [url.replace(":5000/", f":{backend_port}/") for url in config.webhooks.urls]
    config.webhooks.secret = SECRET
    hub = HubThread(config)
    yield hub
    hub.stop()


def _login(port: int, name: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/login/{name}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        cookie: str = response.headers["Set-Cookie"]
    return cookie.split(";", 1)[0]  # sid=...


def test_the_example_backend_authenticates_checks_and_answers(
    backend_port: int, example_hub: HubThread
) -> None:
    cookie = _login(backend_port, "ann")
    r = Raw(example_hub.url, connect(example_hub.url, headers={"Cookie": cookie}, compression=False))
    result = r.ok("connect")  # no token: the backend's session says who this is
    assert example_hub.user_of(result["client"]) == "ann"
    assert set(result["subs"]) == {"user:ann"}
    r.ok("subscribe", {"channel": "chat:lobby"})
    r.ok("publish", {"channel": "chat:lobby", "data": {"text": "hi"}})
    assert r.push()["pub"]["data"] == {"text": "hi", "user": "ann"}
    refused: list[Any] = [
        r.cmd("publish", {"channel": "chat:lobby", "data": {"text": "buy spam"}})["error"]["code"],
        r.cmd("publish", {"channel": "chat:lobby", "data": {"html": "<b>"}})["error"]["code"],
    ]
    assert refused == [1403, 1400]
    assert r.ok("rpc", {"method": "whoami"}) == {"data": {"user": "ann", "client": result["client"]}}
    assert r.cmd("rpc", {"method": "nope"})["error"]["code"] == 104
    r.close()


def test_the_example_backend_refuses_a_connection_without_its_session(example_hub: HubThread) -> None:
    r = Raw(example_hub.url, connect(example_hub.url, headers={"Cookie": "sid=forged"}, compression=False))
    r.send({"id": 1, "connect": {}})
    assert r.closed() == (4501, "not logged in")


def test_the_example_backend_receives_the_signed_webhooks(backend: Any, example_hub: HubThread) -> None:
    cookie = _login(backend.port, "bob")
    r = Raw(example_hub.url, connect(example_hub.url, headers={"Cookie": cookie}, compression=False))
    r.ok("connect")
    r.ok("subscribe", {"channel": "chat:webhooks"})
    r.close()
    wanted = [("channel_occupied", "chat:webhooks"), ("channel_vacated", "chat:webhooks")]
    assert _until(lambda: [e for e in _channel_events(backend.EVENTS) if e[1] == "chat:webhooks"] == wanted)
    assert any(event["name"] == "connection_opened" for event in backend.EVENTS)


def test_the_example_backend_refuses_an_unsigned_webhook(backend: Any) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{backend.port}/hub/events",
        data=b'{"time_ms": 0, "events": [{"name": "channel_vacated", "channel": "x"}]}',
        headers={"X-Hub-Signature": "0" * 64},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401 and backend.EVENTS == []


def _channel_events(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["name"], e["channel"]) for e in events if e["name"].startswith("channel_")]


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``predicate`` became true within ``timeout`` (checked as the backend's loop thread appends)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
