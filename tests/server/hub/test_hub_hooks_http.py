"""Backend hooks over HTTP (``hook_http.py``) against a real HTTP backend the test starts on 127.0.0.1:
every hook allowing and refusing, the backend down, hung, answering junk, too much, another status;
headers and cookies passed through; connections reused; the counters in ``/metrics``; config and CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ports import unused_port
from wsproto_lite.hub.config import ConfigError, HubConfig, config_from_mapping
from wsproto_lite.hub.hook_http import HookConfig
from wsproto_lite.hub.metrics import render
from wsproto_lite.hub.protocol import ErrorCode
from wsproto_lite.server.client import connect

from .conftest import HubThread, Raw
from .hook_backend import Backend, RawAnswer

HOOKED = ("connect", "subscribe", "publish", "rpc", "send", "refresh", "sub_refresh")


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend()
    yield b
    b.stop()


def _hub(backend: Backend, **options: Any) -> HubThread:
    table: dict[str, Any] = {name: backend.url(f"/{name}") for name in HOOKED}
    table.update(options)
    return HubThread(HubConfig(port=0, hooks=HookConfig.from_mapping(table)))


@pytest.fixture
def hooked(backend: Backend) -> Iterator[HubThread]:
    h = _hub(backend, headers=["cookie", "x-app"])
    yield h
    h.stop()


def _error(reply: dict[str, Any]) -> dict[str, Any]:
    assert "error" in reply, reply
    error: dict[str, Any] = reply["error"]
    return error


def test_connect_over_http_with_cookies_and_headers_passed_through(
    backend: Backend, hooked: HubThread
) -> None:
    backend.answers["/connect"] = lambda body: {"result": {"user": "u-" + body["data"]["who"]}}
    ws = connect(
        hooked.url, headers={"Cookie": "session=abc", "X-App": "1", "X-Other": "no"}, compression=False
    )
    r = Raw(hooked.url, ws)
    result = r.ok("connect", {"data": {"who": "ann"}})
    assert hooked.user_of(result["client"]) == "u-ann"
    ((path, body, headers),) = backend.got
    assert path == "/connect" and body["client"] == result["client"]
    assert body["transport"] == "websocket" and body["protocol"] == "json" and body["encoding"] == "json"
    assert "headers" not in body
    assert headers["cookie"] == "session=abc" and headers["x-app"] == "1" and "x-other" not in headers
    assert headers["content-type"] == "application/json"
    r.close()


def test_every_hook_allows_over_http(backend: Backend, hooked: HubThread) -> None:
    backend.answers.update(
        {
            "/connect": {"result": {"user": "bo"}},
            "/subscribe": {"result": {"data": {"welcome": 1}}},
            "/publish": {"result": {"data": {"edited": True}}},
            "/rpc": lambda body: {"result": {"data": {"method": body["method"], "echo": body["data"]}}},
            "/send": {},
        }
    )
    r = Raw(hooked.url)
    r.ok("connect")
    assert r.ok("subscribe", {"channel": "chat:h"})["data"] == {"welcome": 1}
    r.ok("publish", {"channel": "chat:h", "data": {"raw": 1}})
    assert r.push()["pub"]["data"] == {"edited": True}
    assert r.ok("rpc", {"method": "m", "data": [1]}) == {"data": {"method": "m", "echo": [1]}}
    r.send({"send": {"data": "fire"}})
    assert r.roundtrip()
    deadline = time.monotonic() + 10
    while not backend.requests("/send"):  # fire-and-forget: nothing tells the client it arrived
        assert time.monotonic() < deadline
        hooked.call(lambda: None)
    (sent,) = backend.requests("/send")
    assert sent["data"] == "fire" and sent["user"] == "bo"
    (published,) = backend.requests("/publish")
    assert published == {
        "client": published["client"],
        "transport": "websocket",
        "protocol": "json",
        "encoding": "json",
        "user": "bo",
        "channel": "chat:h",
        "data": {"raw": 1},
    }
    r.close()


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("subscribe", {"channel": "chat:no"}),
        ("publish", {"channel": "chat:no", "data": 1}),
        ("rpc", {"method": "no"}),
    ],
)
def test_every_hook_refuses_over_http(
    backend: Backend, hooked: HubThread, method: str, params: dict[str, Any]
) -> None:
    backend.answers["/connect"] = {"result": {"user": "x"}}
    backend.answers[f"/{method}"] = {"error": {"code": 1403, "message": "no", "temporary": True}}
    r = Raw(hooked.url)
    r.ok("connect")
    assert _error(r.cmd(method, params)) == {"code": 1403, "message": "no", "temporary": True}
    backend.answers[f"/{method}"] = {"disconnect": {"code": 4503, "reason": "bye"}}
    r.send({"id": 99, method: params})
    assert r.closed() == (4503, "bye")
    assert r.pushes == [] and r._lines == []  # no reply before the close


def test_connect_refused_over_http(backend: Backend, hooked: HubThread) -> None:
    backend.answers["/connect"] = {"error": {"code": 101, "message": "unauthorized"}}
    r = Raw(hooked.url)
    assert _error(r.cmd("connect")) == {"code": 101, "message": "unauthorized"}
    r.close()


BAD_ANSWERS = {
    "status 500": RawAnswer(500, b'{"result": {}}'),
    "status 302": RawAnswer(302, b""),
    "junk JSON": RawAnswer(200, b"{not json"),
    "empty body": RawAnswer(200, b""),
    "huge body": RawAnswer(200, b'{"result": {"data": "' + b"x" * (2 << 20) + b'"}}'),
    "deep JSON": RawAnswer(200, b"[" * 100_000 + b"]" * 100_000),
    "wrong types": {"result": {"data": 1, "user": ["x"], "channels": 5}},
    "not an object": [1, 2],
}


@pytest.mark.parametrize("answer", list(BAD_ANSWERS.values()), ids=list(BAD_ANSWERS))
def test_a_bad_backend_answer_is_error_100_and_counted(
    backend: Backend, hooked: HubThread, answer: Any
) -> None:
    backend.answers["/connect"] = answer
    r = Raw(hooked.url)
    error = _error(r.cmd("connect"))
    assert error["code"] == ErrorCode.INTERNAL and error["temporary"] is True
    assert hooked.call(lambda: hooked.hub.hook_runner.stats.errors["connect"]) == 1
    backend.answers["/connect"] = None  # the hub is fine: the next one gets in
    r.ok("connect")
    r.close()


def test_the_backend_down_is_error_100_and_counted(backend: Backend) -> None:
    port = unused_port()  # nothing listens there
    h = HubThread(HubConfig(port=0, hooks=HookConfig.from_mapping({"rpc": f"http://127.0.0.1:{port}/rpc"})))
    try:
        r = Raw(h.url)
        r.ok("connect")
        error = _error(r.cmd("rpc", {"method": "m"}))
        assert error == {"code": 100, "message": "internal server error", "temporary": True}
        assert r.roundtrip()
        assert h.call(lambda: h.hub.hook_runner.stats.errors["rpc"]) == 1
        r.close()
    finally:
        h.stop()


def test_a_hung_backend_times_out_and_the_hub_serves_others(backend: Backend) -> None:
    backend.answers["/rpc"] = "hang"
    h = _hub(backend, rpc={"url": backend.url("/rpc"), "timeout": 600})
    try:
        backend.answers["/connect"] = None
        r = Raw(h.url)
        r.ok("connect")
        r.send({"id": 5, "rpc": {"method": "slow"}})
        other = Raw(h.url)
        other.ok("connect")
        assert other.roundtrip()
        deadline = time.monotonic() + 10
        while not backend.requests("/rpc"):  # the call is at the backend: now jump past its timeout
            assert time.monotonic() < deadline
            h.call(lambda: None)
        h.loop.advance(601.0)
        assert r.reply(5)["error"]["code"] == ErrorCode.INTERNAL
        assert h.call(lambda: h.hub.hook_runner.stats.timeouts["rpc"]) == 1
        text = h.call(render, h.hub)
        assert 'wsproto_hub_hook_timeouts_total{hook="rpc"} 1' in text
        assert 'wsproto_hub_hook_calls_total{hook="connect"} 2' in text
        backend.release.set()
        r.close()
        other.close()
    finally:
        h.stop()


def test_pooled_connections_are_reused(backend: Backend, hooked: HubThread) -> None:
    backend.answers["/connect"] = None
    backend.answers["/rpc"] = {"result": {"data": 1}}
    r = Raw(hooked.url)
    r.ok("connect")
    for _ in range(6):
        r.ok("rpc", {"method": "m"})
    assert len(backend.peers) <= 2  # one kept-alive connection (two if a call raced the first's return)
    r.close()


def test_hooks_config_and_its_errors() -> None:
    config = config_from_mapping(
        {
            "hooks": {
                "connect": "http://127.0.0.1:1/c",
                "rpc": {"url": "https://x/r", "timeout": 2},
                "timeout": 3,
            }
        }
    )
    assert config.hooks.urls == {"connect": "http://127.0.0.1:1/c", "rpc": "https://x/r"}
    assert config.hooks.timeouts == {"rpc": 2.0} and config.hooks.timeout == 3.0
    for bad in (
        {"nope": "http://x"},
        {"connect": "ftp://x"},
        {"connect": {"url": "http://x", "retries": 3}},
        {"timeout": 0},
        {"timeout": True},
        {"workers": 0},
        {"headers": "cookie"},
    ):
        with pytest.raises(ConfigError):
            config_from_mapping({"hooks": bad})


def test_cli_hook_option(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from wsproto_lite.hub import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["hub", "--hook", "rpc=http://127.0.0.1:1/rpc"])
    assert cli._config(args).hooks.urls == {"rpc": "http://127.0.0.1:1/rpc"}
    for bad in ("nope=http://x", "rpc=file:///etc/passwd"):
        with pytest.raises(cli._Refused):
            cli._config(parser.parse_args(["hub", "--hook", bad]))


def test_the_start_report_names_the_hooks_and_the_headers(backend: Backend, hooked: HubThread) -> None:
    from wsproto_lite.hub.report import exposure

    line = exposure(hooked.hub_server)[-1]
    assert line.startswith("backend hooks: connect -> HttpHook('http://127.0.0.1:")
    assert line.endswith("upgrade headers passed to them: cookie, x-app")
