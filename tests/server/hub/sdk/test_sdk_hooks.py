"""centrifuge-js and centrifuge-python against a hub whose backend hooks go over HTTP to a real backend
(``hook_http.py``): a connect without a token that the backend authenticates, an RPC it answers, a
publication it edits or refuses; each scenario with both SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from wsproto_lite.hub.hook_http import HookConfig

from ..conftest import HubThread
from ..hook_backend import Backend
from .conftest import SDKS, Drivers, sdk_hub_config, sdk_marks

pytestmark = sdk_marks()

SESSIONS = {"s-ann": "ann", "s-bo": "bo"}


@pytest.fixture(params=SDKS)
def sdk(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _connect(body: dict[str, Any]) -> Any:
    session = (body.get("data") or {}).get("session")
    if session not in SESSIONS:
        return {"disconnect": {"code": 4501, "reason": "no session"}}
    return {"result": {"user": SESSIONS[session], "data": {"hello": SESSIONS[session]}}}


def _publish(body: dict[str, Any]) -> Any:
    text = body["data"].get("text", "")
    if "spam" in text:
        return {"error": {"code": 1001, "message": "no spam"}}
    return {"result": {"data": {"text": text, "by": body["user"]}}}


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend()
    b.answers["/connect"] = _connect
    b.answers["/publish"] = _publish
    b.answers["/rpc"] = lambda body: {"result": {"data": {"user": body["user"], "sum": sum(body["data"])}}}
    yield b
    b.stop()


@pytest.fixture
def hooked_hub(backend: Backend) -> Iterator[HubThread]:
    config = sdk_hub_config(allow_anonymous=False)
    table: dict[str, Any] = {name: backend.url(f"/{name}") for name in ("connect", "publish", "rpc")}
    config.hooks = HookConfig.from_mapping({**table, "headers": ["cookie"]})
    node = HubThread(config)
    yield node
    node.stop()


def test_connect_rpc_and_publish_through_the_backend(
    sdk: str, hooked_hub: HubThread, drivers: Drivers
) -> None:
    c = drivers(sdk, hooked_hub.url, data={"session": "s-ann"})
    client = c.connected()["client"]
    assert hooked_hub.user_of(client) == "ann"
    assert c.ok("rpc", method="sum", data=[1, 2, 3]) == {"data": {"user": "ann", "sum": 6}}
    c.subscribed("chat:hooks")
    c.ok("sub_publish", channel="chat:hooks", data={"text": "hi"})
    assert c.expect("publication", channel="chat:hooks")["data"] == {"text": "hi", "by": "ann"}
    refused = c.call("sub_publish", channel="chat:hooks", data={"text": "spam!"})
    assert refused["error"]["code"] == 1001


def test_a_connect_the_backend_refuses(sdk: str, hooked_hub: HubThread, drivers: Drivers) -> None:
    c = drivers(sdk, hooked_hub.url, data={"session": "forged"})
    c.send("connect")
    assert c.expect("disconnected")["code"] == 4501


def test_cookies_reach_the_backend_from_centrifuge_python(
    hooked_hub: HubThread, backend: Backend, drivers: Drivers
) -> None:
    c = drivers("python", hooked_hub.url, data={"session": "s-bo"}, headers={"Cookie": "sid=42"})
    c.connected()
    assert any(headers.get("cookie") == "sid=42" for path, _, headers in backend.got if path == "/connect")
