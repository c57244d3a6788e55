"""The protobuf encoding (pb_schema, pb_wire, pb_frames and the hub's use of them): negotiation, the
flows on the wire, junk binary frames (hypothesis), payload rules, fan-out once per encoding, freeing."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsproto_lite import Request
from wsproto_lite.hub import channels as channels_module
from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.engine import ClientInfo, Publication
from wsproto_lite.hub.limits import RateLimits
from wsproto_lite.hub.namespaces import NamespaceOptions, Namespaces
from wsproto_lite.hub.pb_frames import SUBPROTOCOL, commands_of, negotiate, publication_push, read_length
from wsproto_lite.hub.pb_schema import MESSAGES, field, parse_proto
from wsproto_lite.hub.pb_wire import MAX_DEPTH, WireError, decode, encode, varint
from wsproto_lite.hub.protocol import MAX_BATCH, BadFrame, Command, DisconnectCode, dumps
from wsproto_lite.server.client import connect
from wsproto_lite.server.errors import ConnectionClosed

from .conftest import HubThread, Raw


def _json_of(value: Any) -> Any:
    """A decoded ``Reply`` as the JSON encoding has it: ``bytes`` payloads parsed as JSON."""
    if isinstance(value, bytes):
        return json.loads(value)
    if isinstance(value, dict):
        return {key: _json_of(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_of(item) for item in value]
    return value


def delimited(*messages: bytes) -> bytes:
    return b"".join(varint(len(m)) + m for m in messages)


def replies_of(frame: bytes) -> list[dict[str, Any]]:
    out, pos = [], 0
    while pos < len(frame):
        size, pos = read_length(frame, pos)
        out.append(decode("Reply", frame[pos : pos + size]))
        pos += size
    return out


class PbRaw(Raw):
    """:class:`Raw` over the protobuf encoding: the same dicts in and out, binary frames on the wire."""

    def __init__(self, url: str, query: str = "?", subprotocols: tuple[str, ...] = (SUBPROTOCOL,)) -> None:
        super().__init__(url, connect(url + query, subprotocols=subprotocols, timeout=10, compression=False))

    def send(self, value: Any) -> None:
        if isinstance(value, bytes):
            self.ws.send(value)
            return
        command = json.loads(value) if isinstance(value, str) else value  # Raw answers a ping with "{}"
        self.ws.send(delimited(encode("Command", command)))

    def _read_frame(self, timeout: float) -> None:
        message = self.ws.recv(timeout=timeout)
        assert isinstance(message, bytes), message
        for reply in replies_of(message):
            if reply == {}:
                self.pings += 1
                if self.answer_pings:
                    self.send({})
                continue
            self._lines.append(_json_of(reply))


class _AnyInfo:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and "client" in other


ANY_INFO = _AnyInfo()


def _unlimited() -> HubConfig:
    rates = RateLimits(
        commands_per_second=1e6,
        commands_burst=1e6,
        connections_per_second_per_ip=1e6,
        connections_burst_per_ip=1e6,
    )
    history = NamespaceOptions(history_size=10, history_ttl=60.0, allow_publish=True, presence=True)
    wildcards = NamespaceOptions(allow_publish=True, allow_wildcards=True)
    namespaces = Namespaces(namespaces={"chat": history, "stock": wildcards})
    return HubConfig(port=0, rate_limits=rates, namespaces=namespaces)


@pytest.fixture(scope="module")
def pb_hub() -> Iterator[HubThread]:
    hub = HubThread(_unlimited())
    yield hub
    hub.stop()


@pytest.fixture
def clients(pb_hub: HubThread) -> Iterator[Callable[..., Raw]]:
    made: list[Raw] = []

    def make(protobuf: bool = True, **options: Any) -> Raw:
        client = PbRaw(pb_hub.url, **options) if protobuf else Raw(pb_hub.url)
        made.append(client)
        client.ok("connect", {"data": {"name": "pb" if protobuf else "js"}})
        return client

    yield make
    for client in made:
        client.close()
    assert pb_hub.wait_sessions(0)
    assert pb_hub.call(lambda: set(pb_hub.hub.conns.protobuf)) == set()


# -- negotiation ----------------------------------------------------------------------------------------


def _request(target: str, *subprotocols: str) -> Request:
    return Request("GET", target, [], subprotocols=subprotocols)


@pytest.mark.parametrize(
    ("target", "offered", "expected"),
    [
        ("/connection/websocket", (), (None, False)),
        ("/connection/websocket", ("centrifuge-json",), ("centrifuge-json", False)),
        ("/connection/websocket", ("centrifuge-protobuf",), ("centrifuge-protobuf", True)),
        ("/connection/websocket", ("centrifuge-protobuf", "centrifuge-json"), ("centrifuge-json", False)),
        ("/connection/websocket?format=protobuf", (), (None, True)),
        ("/connection/websocket?cf_protocol=protobuf", (), (None, True)),
        ("/connection/websocket?format=json&x=protobuf", ("chat",), (None, False)),
    ],
)
def test_negotiation_as_centrifuges_websocket_handler(
    target: str, offered: tuple[str, ...], expected: tuple[str | None, bool]
) -> None:
    assert negotiate(_request(target, *offered)) == expected


@pytest.mark.parametrize("query", ["?format=protobuf", "?cf_protocol=protobuf"])
def test_the_legacy_query_switches_select_protobuf_without_a_subprotocol(
    clients: Callable[..., Raw], query: str
) -> None:
    client = clients(query=query, subprotocols=())
    assert client.ws.subprotocol is None
    assert client.roundtrip()


# -- flows on the wire ----------------------------------------------------------------------------------


def test_json_and_protobuf_clients_share_a_channel(clients: Callable[..., Raw]) -> None:
    pb, js = clients(), clients(protobuf=False)
    assert pb.ws.subprotocol == SUBPROTOCOL
    for client in (pb, js):
        client.ok("subscribe", {"channel": "chat:mix"})
    pb.ok("publish", {"channel": "chat:mix", "data": {"from": "pb", "ü": [1, 2.5, None]}})
    js.ok("publish", {"channel": "chat:mix", "data": {"from": "js"}})
    for client in (pb, js):
        got = [client.push()["pub"] for _ in range(2)]
        assert [p["data"] for p in got] == [{"from": "pb", "ü": [1, 2.5, None]}, {"from": "js"}]
        assert [p["offset"] for p in got] == [1, 2]
        assert got[0]["info"]["conn_info"] == {"name": "pb"}
    history = pb.ok("history", {"channel": "chat:mix", "limit": 10})
    assert [p["data"]["from"] for p in history["publications"]] == ["pb", "js"]
    presence = pb.ok("presence", {"channel": "chat:mix"})["presence"]
    assert sorted(info["conn_info"]["name"] for info in presence.values()) == ["js", "pb"]
    stats = pb.ok("presence_stats", {"channel": "chat:mix"})
    assert stats["num_clients"] == 2 and stats == js.ok("presence_stats", {"channel": "chat:mix"})


def test_a_wildcard_subscription_gets_the_concrete_channel(clients: Callable[..., Raw]) -> None:
    pb, js = clients(), clients(protobuf=False)
    pb.ok("subscribe", {"channel": "stock:*"})
    js.ok("publish", {"channel": "stock:B", "data": {"p": 1}})
    assert pb.push() == {
        "channel": "stock:*",
        "pub": {"channel": "stock:B", "data": {"p": 1}, "info": ANY_INFO},
    }


def test_recovery_since_offset_zero_omitted_by_proto3(clients: Callable[..., Raw]) -> None:
    """proto3 leaves zero values out: ``since`` with offset 0 arrives empty and still means position 0."""
    pb = clients()
    epoch = pb.ok("subscribe", {"channel": "chat:rec", "recoverable": True})["epoch"]
    pb.ok("publish", {"channel": "chat:rec", "data": 1})
    assert pb.push()["pub"]["data"] == 1
    since = pb.ok("history", {"channel": "chat:rec", "since": {"epoch": epoch, "offset": 0}, "limit": 5})
    assert [p["data"] for p in since["publications"]] == [1]


def test_the_published_json_reaches_protobuf_subscribers_as_stored(clients: Callable[..., Raw]) -> None:
    pb = clients()
    pb.ok("subscribe", {"channel": "chat:bytes"})
    pb.send(
        delimited(encode("Command", {"id": 90, "publish": {"channel": "chat:bytes", "data": b'{"a": 1}'}}))
    )
    frames = [pb.ws.recv(timeout=5) for _ in range(2)]
    pubs = [r["push"]["pub"] for f in frames for r in replies_of(f) if "push" in r]  # type: ignore[arg-type]
    assert [p["data"] for p in pubs] == [b'{"a": 1}']  # stored and sent as the client wrote it


def test_unknown_fields_are_skipped(clients: Callable[..., Raw]) -> None:
    pb = clients()
    unknown = varint(99 << 3 | 2) + varint(3) + b"abc" + varint(98 << 3) + varint(7)
    subscribe = encode("SubscribeRequest", {"channel": "chat:u"}) + unknown
    pb.send(delimited(varint(1 << 3) + varint(50) + varint(5 << 3 | 2) + varint(len(subscribe)) + subscribe))
    assert "subscribe" in pb.reply(50)
    assert pb.ok("presence", {"channel": "chat:u"})["presence"]  # subscribed


def test_a_text_frame_on_a_protobuf_connection_is_closed_1003(clients: Callable[..., Raw]) -> None:
    pb = clients()
    pb.ws.send('{"id":9,"ping":{}}')
    with pytest.raises(ConnectionClosed) as closed:
        pb.recv()
    assert closed.value.code == 1003


# -- junk binary frames ---------------------------------------------------------------------------------


def _nested_filter(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"op": "eq"}
    for _ in range(depth):
        node = {"nodes": [node]}
    return node


JUNK = {
    "truncated varint": b"\x80",
    "varint over 10 bytes": b"\xff" * 11 + b"\x01",
    "length past the frame": b"\x05\x08\x01",
    "huge declared length": varint(2**40) + b"\x08\x01",
    "truncated inner length": delimited(b"\x08\x01\x3a\x10\x0a"),
    "wrong wire type": delimited(b"\x08\x01\x3d\x00\x00\x00\x00"),
    "group": delimited(b"\x08\x01\x0b"),
    "field number 0": delimited(b"\x00\x01"),
    "string not UTF-8": delimited(b"\x08\x01\x2a\x03\x0a\x01\xff"),
    "deep nesting": delimited(
        encode("Command", {"id": 1, "subscribe": {"channel": "chat:n", "tf": _nested_filter(MAX_DEPTH + 5)}})
    ),
    "command without id": delimited(encode("Command", {"ping": {}})),
    "too many commands": delimited(*[encode("Command", {"id": 1, "ping": {}})] * (MAX_BATCH + 1)),
    "empty frame": b"",
}


@pytest.mark.parametrize("frame", JUNK.values(), ids=list(JUNK))
def test_junk_frames_close_that_connection_3501(clients: Callable[..., Raw], frame: bytes) -> None:
    victim, intruder = clients(), clients()
    victim.ok("subscribe", {"channel": "chat:victim"})
    intruder.send(frame)
    with pytest.raises(ConnectionClosed) as closed:
        intruder.recv()
    assert closed.value.code == DisconnectCode.BAD_REQUEST
    assert victim.roundtrip() and victim.pushes == []


def test_nesting_within_the_bound_is_read() -> None:
    command = encode("Command", {"id": 3, "subscribe": {"channel": "c", "tf": _nested_filter(MAX_DEPTH - 3)}})
    (parsed,) = commands_of(delimited(command))
    assert isinstance(parsed, Command) and parsed.method == "subscribe"


_valid = delimited(
    encode("Command", {"id": 7, "publish": {"channel": "chat:x", "data": {"k": [1, "v"]}}}),
    encode("Command", {"id": 8, "history": {"channel": "chat:x", "since": {"epoch": "e", "offset": 3}}}),
)
mutated = st.builds(
    lambda at, junk: _valid[:at] + junk + _valid[at + len(junk) :],
    st.integers(0, len(_valid)),
    st.binary(min_size=1, max_size=6),
)


@settings(max_examples=400)
@given(frame=st.binary(max_size=200) | mutated | st.builds(bytes.__add__, st.just(_valid), st.binary()))
def test_commands_of_junk_is_commands_or_bad_frame(frame: bytes) -> None:
    try:
        commands = commands_of(frame)
    except BadFrame:
        return
    assert 0 < len(commands) <= MAX_BATCH
    for command in commands:
        assert isinstance(command, Command | tuple)


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=st.binary(max_size=120) | mutated)
def test_junk_on_the_wire_never_reaches_another_connection(pb_hub: HubThread, frame: bytes) -> None:
    victim, intruder = PbRaw(pb_hub.url), PbRaw(pb_hub.url)
    try:
        victim.ok("connect")
        victim.ok("subscribe", {"channel": "chat:victim2"})
        intruder.ok("connect")
        intruder.send(frame)
        try:
            intruder.roundtrip()  # answered, or closed
        except (ConnectionClosed, AssertionError, KeyError):
            pass
        assert victim.roundtrip() and victim.pushes == []
    finally:
        intruder.close()
        victim.close()


# -- the codec -----------------------------------------------------------------------------------------

infos = st.fixed_dictionaries(
    {"user": st.text(min_size=1, max_size=8), "client": st.text(min_size=1, max_size=8)},
    optional={"conn_info": st.binary(min_size=1, max_size=8)},
)
publications = st.fixed_dictionaries(
    {"data": st.binary(min_size=1, max_size=30)},
    optional={
        "info": infos,
        "offset": st.integers(1, 2**64 - 1),
        "tags": st.dictionaries(
            st.text(min_size=1, max_size=5), st.text(min_size=1, max_size=5), min_size=1, max_size=3
        ),
        "time": st.integers(-(2**63), 2**63 - 1).filter(bool),
        "score": st.integers(-(2**63), 2**63 - 1).filter(bool),
        "channel": st.text(min_size=1, max_size=10),
    },
)


@given(publication=publications, command_id=st.integers(1, 2**32 - 1))
def test_encode_then_decode_is_the_identity(publication: dict[str, Any], command_id: int) -> None:
    reply = {"id": command_id, "history": {"publications": [publication], "epoch": "e", "offset": 5}}
    assert decode("Reply", encode("Reply", reply)) == reply


@given(publication=publications)
def test_the_protobuf_package_reads_what_we_write_and_we_read_what_it_writes(
    publication: dict[str, Any],
) -> None:
    pytest.importorskip("google.protobuf")
    from benchmarks.pb_codec import package_classes

    classes = _classes(package_classes)
    theirs = classes["Publication"].FromString(encode("Publication", publication))
    assert decode("Publication", theirs.SerializeToString()) == publication


_cache: dict[str, Any] = {}


def _classes(build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if not _cache:
        _cache.update(build())
    return _cache


def test_wire_errors() -> None:
    with pytest.raises(WireError):
        decode("Command", b"\x08")  # a key and no value
    with pytest.raises(WireError):
        decode("Command", b"\x08" + b"\xff" * 9 + b"\x7f")  # 70 bits


# -- fan-out and memory ---------------------------------------------------------------------------------


def test_fan_out_builds_one_frame_per_encoding(
    clients: Callable[..., Raw], pb_hub: HubThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    original = channels_module.publication_push

    def counting(publication_json: str, channel: str, concrete: str | None = None) -> bytes:
        built.append(channel)
        return original(publication_json, channel, concrete)

    monkeypatch.setattr(channels_module, "publication_push", counting)
    subscribers = [clients() for _ in range(3)] + [clients(protobuf=False) for _ in range(2)]
    for client in subscribers:
        client.ok("subscribe", {"channel": "chat:fan"})
    subscribers[-1].ok("publish", {"channel": "chat:fan", "data": {"n": 1}})
    for client in subscribers:
        assert client.push()["pub"]["data"] == {"n": 1}
    assert built == ["chat:fan"]  # once, for the three protobuf subscribers


def test_a_protobuf_connection_is_freed_at_close_without_gc(
    clients: Callable[..., Raw], pb_hub: HubThread
) -> None:
    pb = clients()
    pb.ok("subscribe", {"channel": "chat:free"})
    gc.disable()
    try:

        def refs() -> list[weakref.ref[Any]]:
            (session,) = pb_hub.hub.sessions.values()
            assert session.conn in pb_hub.hub.conns.protobuf
            return [
                weakref.ref(session.conn),
                weakref.ref(session),
                weakref.ref(session.subscriptions["chat:free"]),
            ]

        weak = pb_hub.call(refs)
        pb.close()
        assert pb_hub.wait_sessions(0)
        assert pb_hub.call(lambda: [w() is None for w in weak]) == [True, True, True]
        assert pb_hub.call(lambda: len(pb_hub.hub.conns.protobuf)) == 0
    finally:
        gc.enable()


json_leaves = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=6)
json_payloads = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
stored_infos = st.builds(
    ClientInfo,
    st.text(min_size=1, max_size=8),
    st.text(max_size=8),
    st.just("") | json_payloads.map(dumps),
    st.just("") | json_payloads.map(dumps),
)


@given(
    data=json_payloads,
    info=st.none() | stored_infos,
    offset=st.none() | st.integers(0, 2**32),
    tags=st.none()
    | st.dictionaries(st.text(min_size=1, max_size=4), st.text(max_size=4), min_size=1, max_size=2),
    concrete=st.none() | st.text(min_size=1, max_size=8),
)
def test_the_publication_push_fast_path_is_the_generic_encoding(
    data: Any, info: ClientInfo | None, offset: int | None, tags: dict[str, str] | None, concrete: str | None
) -> None:
    stored = Publication(
        "chat:p",
        offset,
        dumps(data),
        None if info is None else info.as_json(),
        tags_json=tags and dumps(tags),
    )
    value = json.loads(stored.json)
    value["data"] = dumps(data).encode()
    if concrete is not None:
        value["channel"] = concrete
    expected = decode("Reply", encode("Reply", {"push": {"channel": "p:*", "pub": value}}))
    (got,) = replies_of(publication_push(stored.json, "p:*", concrete))
    assert got == expected
    assert got["push"]["pub"]["data"] == dumps(data).encode()  # the stored bytes, as they are


def test_protobuf_on_every_transport(start_hub: Callable[..., Any]) -> None:
    """The selectors server and the ASGI app (uvicorn, both WebSocket classes) negotiate the subprotocol
    and carry binary frames both ways."""
    hub = start_hub(_unlimited())
    pb, js = PbRaw(hub.url), Raw(hub.url)
    try:
        assert pb.ws.subprotocol == SUBPROTOCOL
        for client in (pb, js):
            client.ok("connect")
            client.ok("subscribe", {"channel": "chat:t"})
        pb.ok("publish", {"channel": "chat:t", "data": {"via": "pb"}})
        assert pb.push()["pub"]["data"] == js.push()["pub"]["data"] == {"via": "pb"}
        pb.send(b"\x80")
        with pytest.raises(ConnectionClosed) as closed:
            pb.recv()
        assert closed.value.code == DisconnectCode.BAD_REQUEST
    finally:
        pb.close()
        js.close()


def test_ping_is_an_empty_reply_and_the_pong_an_empty_command() -> None:
    """centrifuge/client.go: the app-level ping and pong are empty messages in the protobuf encoding too;
    no pong within ``pong`` seconds: 3012."""
    hub = HubThread(_unlimited())
    answering, mute = PbRaw(hub.url), PbRaw(hub.url)
    try:
        assert answering.ok("connect")["ping"] == 25
        mute.ok("connect")
        mute.answer_pings = False
        hub.loop.advance(26)
        answering.await_ping()
        mute.await_ping()
        assert answering.roundtrip()  # the pong went before this command: it is in
        hub.loop.advance(11)
        assert mute.closed() == (DisconnectCode.NO_PONG, "no pong")
        assert answering.roundtrip()
    finally:
        answering.close()
        mute.close()
        hub.stop()


# -- the schema ----------------------------------------------------------------------------------------


def test_the_vendored_proto_is_read_whole() -> None:
    assert {"Command", "Reply", "Push", "Publication", "ClientInfo", "FilterNode"} <= set(MESSAGES)
    assert MESSAGES["Reply"][4] == field("push", 4, "Push")
    assert MESSAGES["ConnectResult"][6].map_value == "SubscribeResult"
    assert MESSAGES["Publication"][13].kind == "sint64"
    assert not {1, 2, 3} & set(MESSAGES["Publication"])  # reserved 1, 2, 3 are not fields


@pytest.mark.parametrize(
    "text",
    [
        "message A { oneof x { string a = 1; } }",
        "enum E { ZERO = 0; }",
        "message A { B b = 1; }",
        "message A { message B { string c = 1; } B b = 1; }",
        "message A { optional string a = 1; }",
        "message A { float a = 1; }",
    ],
)
def test_proto_syntax_beyond_client_protos_subset_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_proto(text)
