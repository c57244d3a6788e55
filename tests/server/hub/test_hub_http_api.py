"""The HTTP API on the hub's port: every endpoint with and without its key, bad requests, the Python helper,
``/healthz``, and over TLS (wss:// and https:// on one port)."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from wsproto_lite.hub.protocol import ErrorCode
from wsproto_lite.hub.publisher import HubAPI, HubAPIError
from wsproto_lite.server.client import connect
from wsproto_lite.server.errors import ConnectionClosed, HandshakeError

from .authkit import API_KEY, hs256, hub_config
from .conftest import HubThread, Raw


@pytest.fixture
def secure() -> Iterator[HubThread]:
    h = HubThread(hub_config())
    yield h
    h.stop()


def _request(
    h: Any,
    path: str,
    params: Any = None,
    *,
    key: str | None = API_KEY,
    method: str = "POST",
    body: bytes | None = None,
    raw_query: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", h.hub_server.port, timeout=10)
    target = path
    if raw_query is not None:
        target += "?" + raw_query
    elif params is not None:
        target += "?" + urllib.parse.urlencode({"json": json.dumps(params)})
    sent = {"Authorization": f"apikey {key}"} if key is not None else {}
    sent.update(headers or {})
    conn.request(method, target, body=body, headers=sent)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    content_type = response.getheader("Content-Type") or ""
    return response.status, json.loads(data) if content_type.startswith("application/json") else data


def test_without_or_with_a_wrong_key_401(secure: HubThread) -> None:
    for key in (None, "wrong", "", API_KEY + "x"):
        status, body = _request(secure, "/api/publish", {"channel": "chat:a", "data": 1}, key=key)
        assert status == 401 and body == {"error": {"code": 101, "message": "unauthorized"}}
    conn = http.client.HTTPConnection("127.0.0.1", secure.hub_server.port, timeout=10)
    conn.request("POST", "/api/channels", headers={"Authorization": f"Bearer {API_KEY}"})
    assert conn.getresponse().status == 401  # an API key is not a bearer token
    conn.close()
    assert secure.call(lambda: secure.hub.stats.auth_failures) == 5


def test_the_key_in_x_api_key_or_authorization_apikey(secure: HubThread) -> None:
    status, result = _request(secure, "/api/info", {}, key=None, headers={"X-API-Key": API_KEY})
    assert status == 200 and len(result["result"]["nodes"]) == 1
    assert _request(secure, "/api/info", {}, key=None, headers={"X-API-Key": "wrong"})[0] == 401
    assert _request(secure, "/api/info", {})[0] == 200  # Authorization: apikey <key>


def test_publish_broadcast_presence_history_channels_disconnect(secure: HubThread) -> None:
    alice = Raw(secure.url)
    alice.ok("connect", {"token": hs256("alice"), "data": {"name": "A"}})
    alice.ok("subscribe", {"channel": "chat:a"})
    alice.ok("subscribe", {"channel": "user:alice"})
    status, result = _request(secure, "/api/publish", {"channel": "chat:a", "data": {"t": "hi"}})
    assert status == 200 and result["result"]["offset"] == 1 and result["result"]["epoch"]
    assert alice.push()["pub"]["data"] == {"t": "hi"}
    status, result = _request(
        secure, "/api/broadcast", {"channels": ["user:alice", "nope:x", "bench:z"], "data": 2}
    )
    assert status == 200
    responses = result["result"]["responses"]
    assert responses[0]["result"]["offset"] == 1 and responses[2] == {"result": {}}
    assert responses[1] == {"error": {"code": 102, "message": "unknown channel"}}
    assert alice.push()["channel"] == "user:alice"
    status, result = _request(secure, "/api/presence", {"channel": "chat:a"})
    presence = result["result"]["presence"]
    assert status == 200 and [(v["user"], v["conn_info"]) for v in presence.values()] == [
        ("alice", {"name": "A"})
    ]
    assert [v["client"] for v in presence.values()] == list(presence)
    status, result = _request(secure, "/api/presence_stats", {"channel": "chat:a"})
    assert (status, result) == (200, {"result": {"num_clients": 1, "num_users": 1}})
    status, result = _request(secure, "/api/history", {"channel": "chat:a", "limit": 5})
    assert status == 200 and [p["data"] for p in result["result"]["publications"]] == [{"t": "hi"}]
    assert result["result"]["offset"] == 1 and result["result"]["epoch"]
    status, result = _request(secure, "/api/history", {"channel": "chat:a"})  # no limit: the position only
    assert result["result"]["publications"] == [] and result["result"]["offset"] == 1
    status, result = _request(secure, "/api/channels", {"pattern": "chat:*"})
    assert status == 200 and result == {"result": {"channels": {"chat:a": {"num_clients": 1}}}}
    status, result = _request(secure, "/api/channels")
    assert set(result["result"]["channels"]) == {"chat:a", "user:alice"}
    status, result = _request(secure, "/api/info")
    (node,) = result["result"]["nodes"]
    assert (node["num_clients"], node["num_users"], node["num_subs"], node["num_channels"]) == (1, 1, 2, 2)
    assert node["uid"] and node["name"] and node["version"] and node["uptime"] >= 0
    status, result = _request(secure, "/api/disconnect", {"user": "alice"})
    assert (status, result) == (200, {"result": {}})
    assert _closed_with(alice) == (3503, "force disconnect")  # Centrifugo's default
    alice.close()


def test_history_remove_drops_the_publications_and_keeps_the_position(secure: HubThread) -> None:
    """centrifuge broker_memory.go ``RemoveHistory``: the stream is cleared, its epoch and top offset stay."""
    for n in (1, 2):
        _request(secure, "/api/publish", {"channel": "chat:rm", "data": n})
    epoch = _request(secure, "/api/history", {"channel": "chat:rm"})[1]["result"]["epoch"]
    assert _request(secure, "/api/history_remove", {"channel": "chat:rm"}) == (200, {"result": {}})
    status, result = _request(secure, "/api/history", {"channel": "chat:rm", "limit": -1})
    assert status == 200 and result["result"] == {"publications": [], "epoch": epoch, "offset": 2}
    assert _request(secure, "/api/publish", {"channel": "chat:rm", "data": 3})[1]["result"] == {
        "offset": 3,
        "epoch": epoch,
    }
    since = {"epoch": epoch, "offset": 1}  # publication 2 is gone: a gap, never a silent one
    assert _request(secure, "/api/history", {"channel": "chat:rm", "since": since})[1]["error"]["code"] == 112
    assert _request(secure, "/api/history_remove", {"channel": "chat:never"}) == (200, {"result": {}})


def test_publish_tags_ride_in_the_publication(secure: HubThread) -> None:
    """Centrifugo's ``Publication.tags`` (protocol ``client.proto`` field 7): in the push, the history and
    a recovery; broadcast carries them too; empty tags are left out (``omitempty``)."""
    alice = Raw(secure.url)
    alice.ok("connect", {"token": hs256("alice")})
    sub = alice.ok("subscribe", {"channel": "chat:tg"})
    tags = {"kind": "news", "lang": "en"}
    _request(secure, "/api/publish", {"channel": "chat:tg", "data": 1, "tags": tags})
    assert alice.push() == {"channel": "chat:tg", "pub": {"data": 1, "offset": 1, "tags": tags}}
    _request(secure, "/api/broadcast", {"channels": ["chat:tg"], "data": 2, "tags": {"b": "1"}})
    assert alice.push()["pub"]["tags"] == {"b": "1"}
    _request(secure, "/api/publish", {"channel": "chat:tg", "data": 3, "tags": {}})
    assert "tags" not in alice.push()["pub"]
    history = _request(secure, "/api/history", {"channel": "chat:tg", "limit": -1})[1]["result"]
    assert [p.get("tags") for p in history["publications"]] == [tags, {"b": "1"}, None]
    back = Raw(secure.url)
    back.ok("connect", {"token": hs256("alice")})
    since = {"recover": True, "epoch": sub["epoch"], "offset": 0}
    recovered = back.ok("subscribe", {"channel": "chat:tg", **since})
    assert recovered["recovered"] is True and recovered["publications"][0]["tags"] == tags
    alice.close()
    back.close()


def test_b64data_is_published_as_a_protobuf_clients_bytes(secure: HubThread) -> None:
    """Centrifugo v6's ``b64data`` (publish, broadcast): protobuf subscribers get the bytes, JSON ones the
    JSON value when the bytes are JSON, else their base64 string (PROTOCOL.md, "Protobuf")."""
    from .test_hub_protobuf_payloads import Exact

    pb, js = Exact(secure, hs256("bob")), Raw(secure.url)
    pb.call("subscribe", {"channel": "chat:b64"})
    js.ok("connect", {"token": hs256("alice")})
    js.ok("subscribe", {"channel": "chat:b64"})
    for raw, seen_by_json in ((b'{"a": 1}', {"a": 1}), (b"\x00\xff", "AP8=")):
        b64data = base64.b64encode(raw).decode("ascii")
        assert _request(secure, "/api/publish", {"channel": "chat:b64", "b64data": b64data})[0] == 200
        assert js.push()["pub"]["data"] == seen_by_json and pb.pub_data() == raw
        broadcast = {"channels": ["chat:b64"], "b64data": b64data}
        assert _request(secure, "/api/broadcast", broadcast)[0] == 200
        assert js.push()["pub"]["data"] == seen_by_json and pb.pub_data() == raw
    for bad in ("not base64!", 5, ""):
        result = _request(secure, "/api/publish", {"channel": "chat:b64", "b64data": bad})[1]
        assert result["error"]["code"] == ErrorCode.BAD_REQUEST, bad
    js.close()
    pb.client.close()


API_ERRORS = [
    ("/api/publish", {"channel": "chat:a"}, 107, 400),  # no data
    ("/api/publish", {"channel": "nope:a", "data": 1}, 102, 404),
    ("/api/publish", {"channel": "chat:*", "data": 1}, 107, 400),
    ("/api/publish", {"channel": 5, "data": 1}, 107, 400),
    ("/api/publish", {"channel": "chat:a", "data": 1, "tags": {"a": 1}}, 107, 400),
    ("/api/publish", {"channel": "chat:a", "data": 1, "idempotency_key": 5}, 107, 400),
    ("/api/broadcast", {"channels": "chat:a", "data": 1}, 107, 400),
    ("/api/broadcast", {"channels": ["chat:a"] * 1001, "data": 1}, 107, 400),
    ("/api/presence", {"channel": "bench:a"}, 108, 400),
    ("/api/presence_stats", {"channel": "bench:a"}, 108, 400),
    ("/api/history", {"channel": "chat:a", "since": {"epoch": "x", "offset": 1}}, 112, 416),
    ("/api/history", {"channel": "chat:a", "limit": -2}, 107, 400),
    ("/api/history_remove", {"channel": "bench:a"}, 108, 400),  # no history in this namespace
    ("/api/disconnect", {"user": ""}, 107, 400),
    ("/api/disconnect", {"user": "u", "disconnect": {"code": 1000}}, 107, 400),
    ("/api/disconnect", {"user": "u", "whitelist": "c"}, 107, 400),
    ("/api/subscribe", {"user": "u"}, 107, 400),
    ("/api/unsubscribe", {"user": "u", "channel": "nope:x"}, 102, 404),
    ("/api/refresh", {"user": "u", "expire_at": "soon"}, 107, 400),
    ("/api/channels", {"pattern": 5}, 107, 400),
    ("/api/batch", {"commands": "publish"}, 107, 400),
]


@pytest.mark.parametrize(("path", "params", "code", "transport_status"), API_ERRORS)
def test_api_errors_are_200_with_the_error_or_a_status_in_transport_mode(
    secure: HubThread, path: str, params: Any, code: int, transport_status: int
) -> None:
    status, body = _request(secure, path, params)
    assert (status, body["error"]["code"]) == (200, code), body
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str)
    status, body = _request(secure, path, params, headers={"X-Centrifugo-Error-Mode": "transport"})
    assert (status, body["error"]["code"]) == (transport_status, code), body


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/publish", [1, 2], 400, 107),  # not an object: a transport error in either mode
        ("/api/nothing", {}, 404, 104),  # with the key: unknown method
        ("/api/batch", [], 400, 107),
    ],
)
def test_transport_errors_keep_their_status(
    secure: HubThread, path: str, params: Any, status: int, code: int
) -> None:
    got, body = _request(secure, path, params)
    assert (got, body["error"]["code"]) == (status, code), body
    assert isinstance(body["error"]["message"], str)


def test_bad_bodies(secure: HubThread) -> None:
    for query in ("json=%7Bnot+json", "json=NaN", "json=" + "1" * 40000, "json=%FF"):
        status, body = _request(secure, "/api/publish", raw_query=query)
        assert status in (400, 413), (query, status)
        assert body["error"]["code"] in (106, 107)
    status, body = _request(secure, "/api/publish", method="GET")
    assert status == 405
    for raw in (
        b"{not json",
        b"[1]",
        b"\xff\xfe",
        b"NaN",
        b'{"channel":"chat:a","data":"' + b"x" * 40000 + b'"}',
        b'{"channel":"chat:a","data":"\\ud800"}',  # a lone surrogate: no frame could carry it (RFC 7493)
    ):
        status, body = _request(secure, "/api/publish", body=raw)
        assert status in (400, 413), (raw[:20], status)
        assert body["error"]["code"] in (106, 107)
    # over the core's max_http_body (64 KiB): the core answers 413 before the API sees it, in the API's JSON
    status, body = _request(secure, "/api/publish", body=b"{" + b" " * 70000 + b"}")
    assert (status, body) == (413, {"error": {"code": 106, "message": "request too large"}})


def test_a_huge_announced_body_gets_the_json_413_before_it_is_sent(secure: HubThread) -> None:
    with socket.create_connection(("127.0.0.1", secure.hub_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/publish HTTP/1.1\r\nHost: h\r\nAuthorization: apikey "
            + API_KEY.encode()
            + b"\r\nContent-Length: 104857600\r\n\r\n"
        )
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"Content-Type: application/json" in head
    assert json.loads(body) == {"error": {"code": 106, "message": "request too large"}}


def test_without_a_key_every_api_path_is_401_and_metrics_too(secure: HubThread) -> None:
    for path, method in (("/api/nothing", "POST"), ("/api/publish", "GET"), ("/api/", "POST")):
        status, body = _request(secure, path, {}, key=None, method=method)
        assert (status, body) == (401, {"error": {"code": 101, "message": "unauthorized"}}), path
    status, body = _request(secure, "/metrics", key=None, method="GET")
    assert status == 401 and body["error"]["code"] == 101
    status, body = _request(secure, "/metrics", key=API_KEY, method="GET")
    assert status == 200 and b"wsproto_hub_connections 0" in body
    config = hub_config()
    config.metrics_public = True
    public = HubThread(config)
    try:
        status, body = _request(public, "/metrics", key=None, method="GET")
        assert status == 200 and b"wsproto_hub_connections 0" in body
        assert _request(public, "/api/nothing", {}, key=None)[0] == 401  # the API still needs its key
    finally:
        public.stop()


def test_the_api_and_metrics_on_an_internal_address() -> None:
    config = hub_config()
    config.internal_port = 0
    h = HubThread(config)
    try:
        internal = h.hub_server.internal_port
        assert internal is not None and internal != h.hub_server.port
        # the public port: WebSocket, the page and /healthz; nothing of the API
        for path, method in (("/api/publish", "POST"), ("/metrics", "GET")):
            assert _request(h, path, {"channel": "chat:a", "data": 1}, method=method)[0] == 404
        assert _request(h, "/healthz", method="GET", key=None) == (200, b"ok\n")
        r = Raw(h.url)
        r.ok("connect", {"token": hs256("in")})
        r.ok("subscribe", {"channel": "chat:in"})
        # the internal port: the API with its key, /metrics, /healthz; no WebSocket, no page
        inside = _Port(internal)
        status, result = _request(inside, "/api/publish", {"channel": "chat:in", "data": "x"})
        assert status == 200 and result["result"]["offset"] == 1
        assert r.push()["pub"]["data"] == "x"
        assert _request(inside, "/api/publish", {"channel": "chat:in", "data": 1}, key=None)[0] == 401
        status, body = _request(inside, "/metrics", method="GET")
        assert status == 200 and b"wsproto_hub_connections 1" in body
        assert _request(inside, "/healthz", method="GET", key=None) == (200, b"ok\n")
        assert _request(inside, "/", method="GET", key=None)[0] == 404
        with pytest.raises(HandshakeError) as info:
            connect(f"ws://127.0.0.1:{internal}/connection/websocket", timeout=10)
        assert info.value.status == 404
        r.close()
    finally:
        h.stop()


class _Port:
    """What ``_request`` needs of a hub: a port (the internal one)."""

    def __init__(self, port: int) -> None:
        self.hub_server = self
        self.port = port


def test_parameters_in_a_json_body_or_the_query(secure: HubThread) -> None:
    r = Raw(secure.url)
    r.ok("connect", {"token": hs256("carol")})
    r.ok("subscribe", {"channel": "chat:body"})
    status, result = _request(
        secure, "/api/publish", body=json.dumps({"channel": "chat:body", "data": "b"}).encode()
    )
    assert status == 200 and result["result"]["offset"] == 1
    status, result = _request(secure, "/api/publish", {"channel": "chat:body", "data": "q"})
    assert status == 200 and result["result"]["offset"] == 2
    assert [r.push()["pub"]["data"], r.push()["pub"]["data"]] == ["b", "q"]
    # a body wins over the query parameter
    status, result = _request(
        secure,
        "/api/history",
        {"channel": "nope:x"},
        body=json.dumps({"channel": "chat:body", "limit": 1, "reverse": True}).encode(),
    )
    assert status == 200 and [p["data"] for p in result["result"]["publications"]] == ["q"]
    r.close()


def test_the_python_helper(secure: HubThread) -> None:
    r = Raw(secure.url)
    r.ok("connect", {"token": hs256("bob")})
    r.ok("subscribe", {"channel": "chat:py"})
    api = HubAPI(f"http://127.0.0.1:{secure.hub_server.port}", API_KEY)
    assert api.publish("chat:py", {"text": "from django"})["offset"] == 1
    assert r.push()["pub"]["data"] == {"text": "from django"}
    assert api.broadcast(["chat:py", "chat:other"], 3)[1]["result"]["offset"] == 1
    assert [v["user"] for v in api.presence("chat:py").values()] == ["bob"]
    assert api.presence_stats("chat:py") == {"num_clients": 1, "num_users": 1}
    assert len(api.history("chat:py", limit=10)["publications"]) == 2
    assert api.history("chat:py")["publications"] == []
    assert api.channels("chat:*") == {"chat:py": 1}
    assert [node["num_clients"] for node in api.info()] == [1]
    replies = api.batch([{"publish": {"channel": "chat:py", "data": 4}}, {"presence": {"channel": "nope:x"}}])
    assert replies[0]["publish"]["offset"] == 3 and replies[1]["error"]["code"] == 102
    assert api.publish("chat:py", 5, idempotency_key="k1") == api.publish("chat:py", 6, idempotency_key="k1")
    api.disconnect("bob", 4501, "banned")
    assert _closed_with(r) == (4501, "banned")
    with pytest.raises(HubAPIError) as info:
        HubAPI(f"http://127.0.0.1:{secure.hub_server.port}", "wrong").publish("chat:py", 1)
    assert (info.value.status, info.value.code) == (401, 101)
    with pytest.raises(HubAPIError) as info:
        api.publish("nope:x", 1)
    assert (info.value.status, info.value.code) == (200, 102)
    r.close()


def test_healthz_and_static_still_served(secure: HubThread) -> None:
    status, body = _request(secure, "/healthz", method="GET", key=None)
    assert (status, body) == (200, b"ok\n")
    status, body = _request(secure, "/", method="GET", key=None)
    assert status == 200 and b"<title>" in body


def test_wss_and_https_on_one_port(cert_files: tuple[str, str, str]) -> None:
    cert, key, cafile = cert_files
    config = hub_config()
    config.certfile, config.keyfile = cert, key
    h = HubThread(config)
    try:
        port = h.hub_server.port
        url = f"wss://localhost:{port}/connection/websocket"
        with connect(url, ca_file=cafile, timeout=10, origin=f"https://localhost:{port}") as ws:
            ws.send(json.dumps({"id": 1, "connect": {"token": hs256("t")}}))
            assert json.loads(str(ws.recv(timeout=5)))["connect"]["expires"] is True
        with pytest.raises(HandshakeError) as info:  # the same host and port, but not the page's scheme
            connect(url, ca_file=cafile, timeout=10, origin=f"http://localhost:{port}")
        assert info.value.status == 403
        context = ssl.create_default_context(cafile=cafile)
        api = HubAPI(f"https://localhost:{port}", API_KEY, ssl_context=context)
        assert api.publish("chat:tls", 1)["offset"] == 1
    finally:
        h.stop()


def _closed_with(r: Raw) -> tuple[int, str]:
    """Read until the hub's close: its code and reason (pushes before it are kept)."""
    while True:
        try:
            r.pushes.append(r.recv(timeout=5))
        except ConnectionClosed as exc:
            return exc.code, exc.reason


def test_a_ban_with_a_non_ascii_reason_closes_every_connection_of_the_user(secure: HubThread) -> None:
    reason = "Ж" * 71  # 142 bytes of UTF-8: more than a close frame holds (RFC 6455 §5.5: 125 - the code)
    tabs = [Raw(secure.url) for _ in range(3)]
    watcher = Raw(secure.url)
    watcher.ok("connect", {"token": hs256("watcher")})
    watcher.ok("subscribe", {"channel": "chat:ban"})
    for tab in tabs:
        tab.ok("connect", {"token": hs256("mallory")})
        tab.ok("subscribe", {"channel": "chat:ban"})
    status, result = _request(
        secure, "/api/disconnect", {"user": "mallory", "disconnect": {"code": 4100, "reason": reason}}
    )
    assert (status, result) == (200, {"result": {}})
    cut = "Ж" * 61  # 122 bytes: the longest whole-character prefix within 123
    for tab in tabs:
        assert _closed_with(tab) == (4100, cut)
        assert [p for p in tab.pushes if "disconnect" in p.get("push", {})] == []  # a close only
        tab.close()
    assert secure.wait_sessions(1)
    status, result = _request(secure, "/api/presence", {"channel": "chat:ban"})
    assert [v["user"] for v in result["result"]["presence"].values()] == ["watcher"]
    _request(secure, "/api/publish", {"channel": "chat:ban", "data": "after"})
    assert watcher.roundtrip()
    assert [p["pub"]["data"] for p in watcher.pushes if "pub" in p] == ["after"]
    watcher.close()
