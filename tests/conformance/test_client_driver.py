"""The client driver's fuzzingserver protocol, against a scripted fake client (no network)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # repo root: conformance/

from conformance.client_driver import ClientAPI, Driver, DriverOptions  # noqa: E402


class Closed(Exception):
    def __init__(self, code: int = 1000, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code, self.reason = code, reason


class FakeConn:
    def __init__(self, url: str, incoming: list[object], log: list[tuple[str, object]]) -> None:
        self.url, self.incoming, self.log = url, list(incoming), log

    def __enter__(self) -> FakeConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.log.append(("exit", self.url))

    def recv(self, timeout: float | None = None) -> str | bytes:
        if not self.incoming:
            raise Closed()
        item = self.incoming.pop(0)
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, (str, bytes))
        return item

    def send(self, message: str | bytes) -> None:
        self.log.append(("send", message))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.log.append(("close", code))


def make_api(script: dict[str, list[object]], log: list[tuple[str, object]]) -> ClientAPI:
    def connect(url: str, timeout: float, compression: bool, max_message_size: int) -> FakeConn:
        log.append(("connect", url))
        path = url.split("127.0.0.1:9", 1)[1]
        if path not in script:
            raise ConnectionRefusedError(path)
        return FakeConn(url, script[path], log)

    return ClientAPI(connect=connect, closed=Closed, name="fake")


def test_protocol_and_echo() -> None:
    log: list[tuple[str, object]] = []
    script: dict[str, list[object]] = {
        "/getCaseCount": ["2"],
        "/runCase?case=1&agent=me": ["hello", b"\x00\x01"],
        "/runCase?case=2&agent=me": [TimeoutError("slow")],
        "/updateReports?agent=me": [],
    }
    out = io.StringIO()
    d = Driver(make_api(script, log), "ws://127.0.0.1:9/", "me", DriverOptions(), log=out)
    assert d.run() == 0
    connects = [u for k, u in log if k == "connect"]
    assert connects == [f"ws://127.0.0.1:9{p}" for p in script]
    assert [m for k, m in log if k == "send"] == ["hello", b"\x00\x01"]  # echoed, types kept
    assert d.case_errors == {2: "TimeoutError: slow"}
    assert "done: 2 cases" in out.getvalue()


def test_case_count_failure_is_fatal() -> None:
    d = Driver(make_api({}, []), "ws://127.0.0.1:9", "me", DriverOptions(), log=io.StringIO())
    assert d.run() == 1


def test_refused_case_does_not_stop_the_run() -> None:
    log: list[tuple[str, object]] = []
    script: dict[str, list[object]] = {
        "/getCaseCount": ["2"],
        "/runCase?case=2&agent=me": ["x"],
        "/updateReports?agent=me": [],
    }
    d = Driver(make_api(script, log), "ws://127.0.0.1:9", "me", DriverOptions(), log=io.StringIO())
    assert d.run() == 0
    assert list(d.case_errors) == [1]
    assert ("send", "x") in log
