"""Backend hooks in-process (``hooks.py``, ``hook_commands.py``): sync callables in the pool, ``async def``
ones, every hook allowing and refusing, failures and timeouts as error 100, order of replies, memory."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.hooks import HookDisconnect, Hooks, response_result
from wsproto_lite.hub.limits import HubLimits
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, NamespaceOptions, Namespaces
from wsproto_lite.hub.protocol import ErrorCode, HubError

from .conftest import HubThread, Raw

Request = dict[str, Any]


@pytest.fixture
def hooks(hub: HubThread) -> Hooks:
    result: Hooks = hub.hub.hooks
    return result


def _error(reply: dict[str, Any]) -> dict[str, Any]:
    assert "error" in reply, reply
    error: dict[str, Any] = reply["error"]
    return error


def test_connect_hook_sets_user_info_data_and_server_side_channels(hub: HubThread, hooks: Hooks) -> None:
    seen: list[Request] = []

    @hooks.on_connect
    def connect(request: Request) -> Any:
        seen.append(request)
        return {
            "result": {
                "user": "alice",
                "info": {"role": "admin"},
                "data": {"welcome": True},
                "channels": ["news"],
                "subs": {"chat:room": {"data": {"topic": "x"}}},
            }
        }

    r = Raw(hub.url)
    result = r.ok("connect", {"data": {"hello": 1}, "name": "js", "version": "1"})
    assert result["data"] == {"welcome": True}
    assert set(result["subs"]) == {"news", "chat:room"}
    assert result["subs"]["chat:room"]["data"] == {"topic": "x"}
    assert hub.user_of(result["client"]) == "alice"
    (request,) = seen
    assert request["client"] == result["client"]
    assert request["data"] == {"hello": 1} and request["name"] == "js" and request["transport"] == "websocket"
    assert "user" not in request
    r.close()


def test_connect_hook_without_answer_is_anonymous_and_token_skips_it(hub: HubThread, hooks: Hooks) -> None:
    calls: list[Request] = []
    hooks.on_connect(lambda request: calls.append(request))  # returns None: allowed, nothing set
    r = Raw(hub.url)
    result = r.ok("connect")
    assert hub.user_of(result["client"]) == ""
    assert len(calls) == 1
    r.close()


def test_connect_hook_refusals(hub: HubThread, hooks: Hooks) -> None:
    answers: list[Any] = [
        {"error": {"code": 4403, "message": "go away", "temporary": False}},
        {"disconnect": {"code": 4501, "reason": "banned"}},
    ]
    hooks.on_connect(lambda request: answers.pop(0))
    r = Raw(hub.url)
    assert _error(r.cmd("connect")) == {"code": 4403, "message": "go away"}
    r.close()
    r = Raw(hub.url)
    r.send({"id": 1, "connect": {}})
    assert r.closed() == (4501, "banned")  # no reply: the close (centrifuge client.go)


def test_a_raising_hook_is_error_100_temporary_and_counted(hub: HubThread, hooks: Hooks) -> None:
    def broken(request: Request) -> Any:
        raise RuntimeError("the database is down")

    hooks.on_connect(broken)
    r = Raw(hub.url)
    assert _error(r.cmd("connect")) == {"code": 100, "message": "internal server error", "temporary": True}
    assert hub.call(lambda: hub.hub.hook_runner.stats.errors["connect"]) == 1
    # the connection lives on: another try that the hook lets through
    hooks.on_connect(lambda request: {"result": {"user": "bob"}})
    assert hub.user_of(r.ok("connect")["client"]) == "bob"
    r.close()


def test_an_in_process_hook_may_raise_hub_error(hub: HubThread, hooks: Hooks) -> None:
    def refuse(request: Request) -> Any:
        raise HubError(ErrorCode.PERMISSION_DENIED, "not you")

    hooks.on_connect(refuse)
    r = Raw(hub.url)
    assert _error(r.cmd("connect")) == {"code": 103, "message": "not you"}
    r.close()


def test_subscribe_hook_allows_with_data_and_info_and_denies(hub: HubThread, hooks: Hooks) -> None:
    def subscribe(request: Request) -> Any:
        if request["channel"] == "chat:private":
            return {"error": {"code": 103, "message": "permission denied"}}
        return {"result": {"info": {"seat": 3}, "data": {"joined": request["channel"]}}}

    hooks.on_subscribe(subscribe)
    hooks.on_connect(lambda request: {"result": {"user": "carol"}})
    r = Raw(hub.url)
    r.ok("connect")
    result = r.ok("subscribe", {"channel": "chat:hooked"})
    assert result["data"] == {"joined": "chat:hooked"}
    presence = r.ok("presence", {"channel": "chat:hooked"})["presence"]
    (entry,) = presence.values()
    assert entry["user"] == "carol" and entry["chan_info"] == {"seat": 3}
    error = _error(r.cmd("subscribe", {"channel": "chat:private"}))
    assert error == {"code": 103, "message": "permission denied"}
    r.close()


def test_publish_hook_replaces_data_and_denies(hub: HubThread, hooks: Hooks) -> None:
    def publish(request: Request) -> Any:
        if request["data"].get("bad"):
            return {"error": {"code": 1000, "message": "not allowed here"}}
        return {"result": {"data": {"text": request["data"]["text"].upper()}}}

    hooks.on_publish(publish)
    r = Raw(hub.url)
    r.ok("connect")
    r.ok("subscribe", {"channel": "chat:p"})
    r.ok("publish", {"channel": "chat:p", "data": {"text": "hi"}})
    assert r.push()["pub"]["data"] == {"text": "HI"}
    assert _error(r.cmd("publish", {"channel": "chat:p", "data": {"bad": 1}}))["code"] == 1000
    r.close()


def test_publish_hook_decides_where_the_namespace_would_refuse() -> None:
    namespaces = Namespaces({**DEFAULT_NAMESPACES, "ro": NamespaceOptions(allow_publish=False)})
    hub = HubThread(HubConfig(port=0, namespaces=namespaces))
    try:
        r = Raw(hub.url)
        r.ok("connect")
        assert r.error("publish", {"channel": "ro:x", "data": 1}) == ErrorCode.PERMISSION_DENIED
        hub.hub.hooks.on_publish(lambda request: None)
        r.ok("publish", {"channel": "ro:x", "data": 1})
        r.close()
    finally:
        hub.stop()


def test_rpc_without_hook_is_108_and_with_it_answers(hub: HubThread, hooks: Hooks) -> None:
    r = Raw(hub.url)
    r.ok("connect")
    assert r.error("rpc", {"method": "sum", "data": [1, 2]}) == ErrorCode.NOT_AVAILABLE

    def rpc(request: Request) -> Any:
        if request["method"] == "sum":
            return {"result": {"data": sum(request["data"])}}
        return {"error": {"code": ErrorCode.METHOD_NOT_FOUND, "message": "method not found"}}

    hooks.on_rpc(rpc)
    assert r.ok("rpc", {"method": "sum", "data": [1, 2]}) == {"data": 3}
    assert r.error("rpc", {"method": "nope"}) == ErrorCode.METHOD_NOT_FOUND
    r.close()


def test_send_reaches_the_hook_and_nothing_is_answered(hub: HubThread, hooks: Hooks) -> None:
    got: list[Request] = []
    arrived = threading.Event()

    def send(request: Request) -> None:
        got.append(request)
        arrived.set()

    hooks.on_send(send)
    hooks.on_connect(lambda request: {"result": {"user": "dave"}})
    r = Raw(hub.url)
    r.ok("connect")
    r.send({"send": {"data": {"typing": True}}})
    assert arrived.wait(10)
    assert got[0]["data"] == {"typing": True} and got[0]["user"] == "dave"
    assert r.roundtrip()  # nothing was answered to the send: the next reply is the ping's
    r.close()


def test_async_hook_on_the_selectors_hub(hub: HubThread, hooks: Hooks) -> None:
    async def rpc(request: Request) -> Any:
        await asyncio.sleep(0)
        return {"result": {"data": request["method"]}}

    hooks.on_rpc(rpc)
    r = Raw(hub.url)
    r.ok("connect")
    assert r.ok("rpc", {"method": "echo"}) == {"data": "echo"}
    r.close()


def test_replies_keep_command_order_behind_a_slow_hook(hub: HubThread, hooks: Hooks) -> None:
    release = threading.Event()

    def rpc(request: Request) -> Any:
        assert release.wait(10)
        return {"result": {"data": "slow"}}

    hooks.on_rpc(rpc)
    r = Raw(hub.url)
    r.ok("connect")
    r.send({"id": 50, "rpc": {"method": "x"}})
    r.send({"id": 51, "presence_stats": {"channel": "chat:order"}})
    r.send({"id": 52, "rpc": {"method": "y"}})
    release.set()
    assert [r.recv()["id"] for _ in range(3)] == [50, 51, 52]
    r.close()


def test_a_hung_hook_times_out_as_error_100_and_the_loop_runs_on(hub: HubThread, hooks: Hooks) -> None:
    release = threading.Event()
    hooks.set("rpc", lambda request: release.wait(30), timeout=60.0)
    r = Raw(hub.url)
    r.ok("connect")
    r.send({"id": 7, "rpc": {"method": "hang"}})
    other = Raw(hub.url)
    other.ok("connect")  # the loop is not waiting for the hook
    assert other.roundtrip()
    _until(hub, lambda: hub.hub.hook_runner.stats.calls["rpc"] == 1)
    hub.loop.advance(61.0)
    reply = r.reply(7)
    message = "the backend timed out (retry later)"
    assert reply["error"] == {"code": 100, "message": message, "temporary": True}
    assert hub.call(lambda: hub.hub.hook_runner.stats.timeouts["rpc"]) == 1
    release.set()
    r.close()
    other.close()


def test_calls_over_max_pending_fail_at_once(hub: HubThread, hooks: Hooks) -> None:
    release = threading.Event()
    hooks.max_pending = 2
    hooks.on_rpc(lambda request: release.wait(30) and None)
    r = Raw(hub.url)
    r.ok("connect")
    r.send({"id": 10, "rpc": {}})
    r.send({"id": 11, "rpc": {}})
    r.send({"id": 12, "rpc": {}})
    runner = hub.hub.hook_runner
    _until(hub, lambda: runner.in_flight == 2 and runner.stats.calls["rpc"] == 3)
    release.set()
    assert "rpc" in r.reply(10) and "rpc" in r.reply(11)
    assert r.reply(12)["error"]["code"] == ErrorCode.INTERNAL
    r.close()


def _until(hub: HubThread, predicate: Any, timeout: float = 10.0) -> None:
    """Until ``predicate()``, run in the hub's loop, is true (each try is a round trip of the loop)."""
    deadline = time.monotonic() + timeout
    while not hub.call(predicate):
        assert time.monotonic() < deadline


@pytest.fixture
def quiet_hub() -> Iterator[HubThread]:
    """A hub whose app-level pings do not come within the hours a test's clock jumps."""
    h = HubThread(HubConfig(port=0, limits=HubLimits(ping_interval=86_400.0)))
    yield h
    h.stop()


def test_refresh_hook_extends_a_hook_made_connection_and_ends_it(quiet_hub: HubThread) -> None:
    hub, hooks = quiet_hub, quiet_hub.hub.hooks
    refreshed: list[Request] = []
    answers = [{"result": {"expire_at": int(time.time()) + 600}}, {"result": {"expired": True}}]

    def refresh(request: Request) -> Any:
        refreshed.append(request)
        return answers.pop(0)

    hooks.on_connect(lambda request: {"result": {"user": "erin", "expire_at": int(time.time()) + 60}})
    hooks.on_refresh(refresh)
    r = Raw(hub.url)
    result = r.ok("connect")
    assert "expires" not in result  # server-side refresh: nothing for the client to do
    hub.loop.advance(120.0)
    _until(hub, lambda: hub.hub.hook_runner.stats.answered["refresh"] == 1)
    assert r.roundtrip()  # extended: still connected
    assert refreshed[0]["user"] == "erin" and refreshed[0]["client"] == result["client"]
    hub.loop.advance(700.0)
    assert r.closed()[0] == 3005


def test_a_failing_refresh_hook_disconnects_with_3004(quiet_hub: HubThread) -> None:
    hub, hooks = quiet_hub, quiet_hub.hub.hooks
    hooks.on_connect(lambda request: {"result": {"user": "erin", "expire_at": int(time.time()) + 60}})
    hooks.on_refresh(lambda request: "junk")
    r = Raw(hub.url)
    r.ok("connect")
    hub.loop.advance(120.0)
    assert r.closed()[0] == 3004


def test_sub_refresh_hook_extends_then_ends_a_hook_subscription(quiet_hub: HubThread) -> None:
    hub, hooks = quiet_hub, quiet_hub.hub.hooks
    answers = [{"result": {"expire_at": int(time.time()) + 600}}, {"result": {"expired": True}}]
    hooks.on_subscribe(lambda request: {"result": {"expire_at": int(time.time()) + 60}})
    hooks.on_sub_refresh(lambda request: answers.pop(0))
    r = Raw(hub.url)
    r.ok("connect")
    result = r.ok("subscribe", {"channel": "chat:sr"})
    assert "expires" not in result
    hub.loop.advance(120.0)
    _until(hub, lambda: hub.hub.hook_runner.stats.answered["sub_refresh"] == 1)
    assert r.roundtrip() and not r.pushes  # extended: no unsubscribe push
    hub.loop.advance(700.0)
    push = r.push()
    assert push["channel"] == "chat:sr" and push["unsubscribe"]["code"] == 2501


def test_a_hook_subscription_without_sub_refresh_ends_at_its_expiry(quiet_hub: HubThread) -> None:
    hub, hooks = quiet_hub, quiet_hub.hub.hooks
    hooks.on_subscribe(lambda request: {"result": {"expire_at": int(time.time()) + 60}})
    r = Raw(hub.url)
    r.ok("connect")
    r.ok("subscribe", {"channel": "chat:sr"})
    hub.loop.advance(120.0)
    assert r.push()["unsubscribe"]["code"] == 2501


def test_a_pending_hook_keeps_no_closed_connection_alive_without_gc(hub: HubThread, hooks: Hooks) -> None:
    from wsproto_lite.hub.session import Session

    release = threading.Event()
    started = threading.Event()
    finished = threading.Event()

    def rpc(request: Request) -> Any:
        started.set()
        release.wait(30)
        finished.set()
        return {"result": {"data": 1}}

    hooks.on_rpc(rpc)
    r = Raw(hub.url)
    r.ok("connect")
    gc.disable()
    try:
        r.send({"id": 9, "rpc": {"method": "hang"}})
        assert started.wait(10)  # the rpc is in flight now

        def session_ref() -> weakref.ref[Session]:
            (session,) = hub.hub.sessions.values()
            return weakref.ref(session)

        weak = hub.call(session_ref)
        r.close()
        assert hub.wait_sessions(0)
        assert hub.call(lambda: weak() is None)  # freed while its hook still runs
        assert hub.call(lambda: hub.hub.hook_runner._held) == {}
        release.set()
        assert finished.wait(10)
        _until(hub, lambda: hub.hub.hook_runner.in_flight == 0)  # its late answer found nobody
    finally:
        release.set()
        gc.enable()


def _children(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.sampled_from(["result", "error", "disconnect", "code", "message", "reason", "temporary"])
    return st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5), _children, max_leaves=8))
def test_junk_answers_are_an_error_never_an_exception(answer: Any) -> None:
    try:
        result = response_result(answer)
    except HookDisconnect as exc:
        assert 3000 <= exc.disconnect_code <= 4999
    except HubError as exc:
        assert isinstance(exc.code, int) and exc.code > 0
    else:
        assert isinstance(result, dict)


@pytest.fixture
def hub_with_junk_hooks(hub: HubThread) -> Iterator[tuple[HubThread, list[Any]]]:
    answers: list[Any] = []
    for name in ("connect", "subscribe", "publish", "rpc"):
        hub.hub.hooks.set(name, lambda request: answers[0])
    yield hub, answers


#: Junk to every hook.
JUNK = [
    "not an object",
    [],
    {"result": []},
    {"result": {"b64data": "***"}},
    {"result": {"b64data": "bm90IGpzb24="}},  # base64 of "not json"
    {"result": {"data": float("nan")}},
    {"error": {"code": "x"}},
    {"error": {"code": 0, "message": "no code"}},
    {"error": "no"},
    {"disconnect": {"code": 1000, "reason": "not an application code"}},
    {"disconnect": {"code": 4000, "reason": 5}},
]
#: Junk to the connect hook.
CONNECT_JUNK = [
    {"result": {"user": 5}},
    {"result": {"user": "u" * 100_000}},
    {"result": {"channels": "news"}},
    {"result": {"channels": [1]}},
    {"result": {"expire_at": "soon"}},
    {"result": {"expire_at": -1}},
    {"result": {"subs": {"chat:a": 3}}},
    {"result": {"subs": []}},
    {"result": {"b64info": 7}},
]


@pytest.mark.parametrize("answer", CONNECT_JUNK, ids=[str(i) for i in range(len(CONNECT_JUNK))])
def test_junk_connect_answers_are_error_100(hub: HubThread, hooks: Hooks, answer: Any) -> None:
    hooks.on_connect(lambda request: answer)
    r = Raw(hub.url)
    error = _error(r.cmd("connect"))
    assert error["code"] == ErrorCode.INTERNAL and error["temporary"] is True
    assert hub.call(lambda: hub.hub.hook_runner.stats.errors["connect"]) == 1
    r.close()


@pytest.mark.parametrize("answer", JUNK, ids=[str(i) for i in range(len(JUNK))])
def test_junk_answers_to_every_command_are_error_100(
    hub_with_junk_hooks: tuple[HubThread, list[Any]], answer: Any
) -> None:
    hub, answers = hub_with_junk_hooks
    answers.append(answer)
    r = Raw(hub.url)
    assert _error(r.cmd("connect"))["code"] == ErrorCode.INTERNAL
    answers[0] = None
    r.ok("connect")
    answers[0] = answer
    for method, params in (
        ("subscribe", {"channel": "chat:j"}),
        ("publish", {"channel": "chat:j", "data": 1}),
        ("rpc", {"method": "m"}),
    ):
        error = _error(r.cmd(method, params))
        assert error["code"] == ErrorCode.INTERNAL and error["temporary"] is True, (method, error)
    assert r.roundtrip()
    r.close()


def test_async_hooks_run_on_the_hubs_asyncio_loop_and_sync_ones_off_it(start_hub: Any) -> None:
    hub = start_hub()
    on_hub_loop: list[bool] = []

    async def rpc(request: Request) -> Any:
        on_hub_loop.append(asyncio.get_running_loop() is hub.hub._loop)
        await asyncio.sleep(0)
        return {"result": {"data": "async"}}

    def publish(request: Request) -> Any:
        on_hub_loop.append(threading.current_thread().name.startswith("hub-hook"))
        return None

    hub.hub.hooks.on_rpc(rpc)
    hub.hub.hooks.on_publish(publish)
    r = Raw(hub.url)
    r.ok("connect")
    assert r.ok("rpc", {"method": "m"}) == {"data": "async"}
    r.ok("publish", {"channel": "chat:a", "data": 1})
    asyncio_hub = isinstance(hub.hub._loop, asyncio.AbstractEventLoop)
    assert on_hub_loop == [asyncio_hub, True]
    r.close()


def test_one_connection_cannot_take_every_pending_call(hub: HubThread, hooks: Hooks) -> None:
    release = threading.Event()
    hooks.max_pending_per_connection = 2
    hooks.on_rpc(lambda request: release.wait(30) and None)
    greedy, other = Raw(hub.url), Raw(hub.url)
    greedy.ok("connect")
    other.ok("connect")
    for cid in (20, 21, 22):
        greedy.send({"id": cid, "rpc": {}})
    other.send({"id": 30, "rpc": {}})  # its own budget: not refused for the greedy one's calls
    runner = hub.hub.hook_runner
    _until(hub, lambda: runner.in_flight == 3 and runner.stats.calls["rpc"] == 4)
    release.set()
    assert "rpc" in greedy.reply(20) and "rpc" in greedy.reply(21)
    assert greedy.reply(22)["error"] == {"code": 111, "message": "too many requests", "temporary": True}
    assert "rpc" in other.reply(30)
    greedy.close()
    other.close()


def test_a_second_connect_while_the_hook_decides_is_refused(hub: HubThread, hooks: Hooks) -> None:
    release = threading.Event()
    hooks.on_connect(lambda request: release.wait(30) and {"result": {"user": "first"}})
    r = Raw(hub.url)
    r.send({"id": 1, "connect": {}})
    _until(hub, lambda: hub.hub.hook_runner.stats.calls["connect"] == 1)
    r.send({"id": 2, "connect": {"token": "whatever"}})
    release.set()
    assert "connect" in r.reply(1)
    assert r.reply(2)["error"]["code"] == ErrorCode.BAD_REQUEST
    assert hub.user_of(hub.call(lambda: next(iter(hub.hub._clients)))) == "first"
    r.close()


def test_a_pending_async_hook_keeps_no_closed_connection_alive_without_gc(start_hub: Any) -> None:
    from wsproto_lite.hub.session import Session

    hub = start_hub()
    started, release = threading.Event(), threading.Event()

    async def rpc(request: Request) -> Any:
        started.set()
        while not release.is_set():  # on the hub's loop (asyncio) or in a pool thread (selectors)
            await asyncio.sleep(0.01)
        return None

    hub.hub.hooks.on_rpc(rpc)
    r = Raw(hub.url)
    r.ok("connect")
    gc.disable()
    try:
        r.send({"id": 9, "rpc": {"method": "hang"}})
        assert started.wait(10)

        def session_ref() -> weakref.ref[Session]:
            (session,) = hub.hub.sessions.values()
            return weakref.ref(session)

        weak = hub.call(session_ref)
        r.close()
        assert hub.wait_sessions(0)
        assert hub.call(lambda: weak() is None)
        assert hub.call(lambda: hub.hub.hook_runner._held) == {}
    finally:
        release.set()
        gc.enable()
