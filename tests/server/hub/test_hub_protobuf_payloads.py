"""A protobuf client's JSON ``data`` is stored and delivered as the text it sent (issue 23): byte for byte to
protobuf subscribers (push, history, recovery) and spliced as is into JSON subscribers' frames, on the
memory engine and on Redis.  Newlines are the one exception (centrifugal/protocol ``raw.go``)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsproto_lite.hub.pb_wire import encode

from .conftest import HubThread, Raw
from .redis_util import RedisServer
from .test_hub_protobuf import PbRaw, _unlimited, delimited, replies_of


@pytest.fixture(scope="module", params=["memory", "redis"])
def hub_on(request: pytest.FixtureRequest) -> Iterator[HubThread]:
    """A hub with history in ``chat:``, on the memory engine or on a real redis-server."""
    if request.param == "memory":
        hub = HubThread(_unlimited())
        yield hub
        hub.stop()
        return
    from wsproto_lite.hub.redis_engine import RedisEngine

    server = RedisServer()
    prefix = "t" + secrets.token_hex(4)
    hub = HubThread(_unlimited(), engine=lambda: RedisEngine(server.url, prefix=prefix))
    yield hub
    hub.stop()
    server.stop()


class Exact:
    """A protobuf client reading raw ``Reply`` dicts, ``data`` left as the bytes on the wire."""

    def __init__(self, hub: HubThread, token: str = "") -> None:
        self.client = PbRaw(hub.url)
        self.next_id = 1
        self.pushes: list[dict[str, Any]] = []
        self.call("connect", {"token": token} if token else {})

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one command; its result (pushes read on the way are kept)."""
        command_id, self.next_id = self.next_id, self.next_id + 1
        self.client.ws.send(delimited(encode("Command", {"id": command_id, method: params})))
        while True:
            for reply in replies_of(self.client.ws.recv(timeout=5)):
                if "push" in reply:
                    self.pushes.append(reply["push"])
                elif reply.get("id") == command_id:
                    assert "error" not in reply, reply
                    result = reply.get(method, {})
                    assert isinstance(result, dict)
                    return result

    def pub_data(self) -> bytes:
        """The next publication's ``data`` (other pushes, such as joins, skipped)."""
        while not any("pub" in push for push in self.pushes):
            for reply in replies_of(self.client.ws.recv(timeout=5)):
                if "push" in reply:
                    self.pushes.append(reply["push"])
        while "pub" not in self.pushes[0]:
            self.pushes.pop(0)
        data = self.pushes.pop(0)["pub"]["data"]
        assert isinstance(data, bytes)
        return data


def _round_trip(hub: HubThread, channel: str, payload: bytes) -> list[bytes]:
    """``payload`` published by a protobuf client: what protobuf clients get back from the push, from
    history and from recovery."""
    publisher, late = Exact(hub), Exact(hub)
    try:
        epoch = publisher.call("subscribe", {"channel": channel, "recoverable": True})["epoch"]
        publisher.call("publish", {"channel": channel, "data": payload})
        pushed = publisher.pub_data()
        history = publisher.call("history", {"channel": channel, "limit": 10})["publications"]
        since = {"epoch": epoch, "offset": history[-1]["offset"] - 1}
        recovered = late.call("subscribe", {"channel": channel, "recover": True, **since})
        assert recovered.get("recovered") is True, recovered
        return [pushed, history[-1]["data"], recovered["publications"][-1]["data"]]
    finally:
        publisher.client.close()
        late.client.close()


_spaces = st.text(alphabet=" \t\r", max_size=3)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def odd_json(draw: st.DrawFn) -> bytes:
    """A JSON text as a person or another library might write it: any spacing, escaped or not."""
    item, key = draw(_spaces), draw(_spaces)
    text = json.dumps(
        draw(_values),
        separators=("," + item, key + ":" + draw(_spaces)),
        ensure_ascii=draw(st.booleans()),
    )
    return (draw(_spaces) + text + draw(_spaces)).encode("utf-8")


@settings(max_examples=25, deadline=None)
@given(payload=odd_json())
def test_json_bytes_reach_protobuf_subscribers_byte_exact(hub_on: HubThread, payload: bytes) -> None:
    """Exact but for a leading carriage return, the binary payloads' mark (``payloads.BINARY_MARK``)."""
    assert _round_trip(hub_on, "chat:exact", payload) == [payload.lstrip(b"\r")] * 3


def test_a_json_subscriber_gets_the_same_text_spliced_in(hub_on: HubThread) -> None:
    payload = b'{ "a" :\t[1 , 2.50,\r"\\u00fc"] }'
    js = Raw(hub_on.url)
    try:
        js.ok("connect", {})
        js.ok("subscribe", {"channel": "chat:splice"})
        assert _round_trip(hub_on, "chat:splice", payload) == [payload] * 3
        frame = js.ws.recv(timeout=5)
        assert isinstance(frame, str)
        assert '"data":' + payload.decode() + "," in frame
        assert json.loads(frame)["push"]["pub"]["data"] == {"a": [1, 2.5, "ü"]}
    finally:
        js.close()


def test_newlines_are_removed_as_centrifuges_raw_does(hub_on: HubThread) -> None:
    """A newline separates the JSON encoding's frames: centrifugal/protocol ``raw.go`` drops it from
    ``data``; the hub stores one text for both encodings, so protobuf subscribers get it without."""
    payload = b'{\n  "a": "x\\ny"\n}\n'
    assert _round_trip(hub_on, "chat:lines", payload) == [b'{  "a": "x\\ny"}'] * 3


def _not_json(payload: bytes) -> bool:
    try:
        json.loads(payload.decode("utf-8"))
    except ValueError:
        return True
    return False


@settings(max_examples=25, deadline=None)
@given(payload=st.binary(min_size=1, max_size=300).filter(_not_json))
def test_any_bytes_reach_protobuf_subscribers_byte_exact(hub_on: HubThread, payload: bytes) -> None:
    assert _round_trip(hub_on, "chat:binary", payload) == [payload] * 3


@pytest.mark.parametrize(
    "payload", [b"\x00\xffbinary", b"not json", b'{"a":1', '"\udcff"'.encode("utf-8", "surrogatepass")]
)
def test_a_json_subscriber_gets_binary_data_as_a_base64_string(hub_on: HubThread, payload: bytes) -> None:
    js = Raw(hub_on.url)
    try:
        js.ok("connect", {})
        js.ok("subscribe", {"channel": "chat:b64"})
        assert _round_trip(hub_on, "chat:b64", payload) == [payload] * 3
        assert base64.b64decode(js.push()["pub"]["data"]) == payload
        history = js.ok("history", {"channel": "chat:b64", "limit": 10})["publications"]
        assert base64.b64decode(history[-1]["data"]) == payload
    finally:
        js.close()


@pytest.mark.parametrize("payload", [b'\r"QUJD"', b'\r\r {"data":\r"!!"}'])
def test_json_text_that_looks_marked_stays_json(hub_on: HubThread, payload: bytes) -> None:
    """A client's JSON text never passes for a binary payload: a leading carriage return is dropped."""
    assert _round_trip(hub_on, "chat:marked", payload) == [payload.lstrip(b"\r")] * 3
