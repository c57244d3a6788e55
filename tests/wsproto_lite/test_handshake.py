"""The opening handshake rules (RFC 6455 §4)."""

from __future__ import annotations

import pytest

from wsproto_lite._errors import HandshakeFailure
from wsproto_lite._events import Headers
from wsproto_lite._handshake import (
    accept_key,
    build_request,
    build_response,
    is_upgrade_request,
    parse_extension_header,
    validate_response,
    validate_upgrade_request,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD: Headers = (
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
)


def replace(headers: Headers, name: str, value: str | None) -> Headers:
    kept = tuple((k, v) for k, v in headers if k != name)
    return kept if value is None else kept + ((name, value),)


def test_accept_key_example_from_the_rfc() -> None:
    # §1.3: the worked example
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_request() -> None:
    assert validate_upgrade_request("GET", (1, 1), GOOD) == KEY
    mixed = replace(replace(GOOD, "Upgrade", "WebSocket"), "Connection", "keep-alive, UPGRADE")
    assert validate_upgrade_request("GET", (1, 1), mixed) == KEY
    assert is_upgrade_request(mixed)
    assert not is_upgrade_request((("Host", "x"),))


@pytest.mark.parametrize(
    "method, version, headers, status",
    [
        ("POST", (1, 1), GOOD, 405),
        ("GET", (1, 0), GOOD, 400),
        ("GET", (1, 1), replace(GOOD, "Host", None), 400),
        ("GET", (1, 1), replace(GOOD, "Connection", "keep-alive"), 400),
        ("GET", (1, 1), replace(GOOD, "Sec-WebSocket-Key", None), 400),
        ("GET", (1, 1), replace(GOOD, "Sec-WebSocket-Key", "not base64!"), 400),
        ("GET", (1, 1), replace(GOOD, "Sec-WebSocket-Key", "c2hvcnQ="), 400),
        ("GET", (1, 1), replace(GOOD, "Sec-WebSocket-Version", "8"), 426),
        ("GET", (1, 1), replace(GOOD, "Sec-WebSocket-Version", None), 426),
    ],
)
def test_invalid_requests(method: str, version: tuple[int, int], headers: Headers, status: int) -> None:
    with pytest.raises(HandshakeFailure) as info:
        validate_upgrade_request(method, version, headers)
    assert info.value.status == status
    if status == 426:
        # §4.4: tell the client which version we speak
        assert ("Sec-WebSocket-Version", "13") in info.value.headers


def test_parse_extension_header() -> None:
    assert parse_extension_header(
        ['permessage-deflate; client_max_window_bits; server_max_window_bits="10" , x-foo', ", bar ;a=b"]
    ) == [
        ("permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "10")]),
        ("x-foo", []),
        ("bar", [("a", "b")]),
    ]


@pytest.mark.parametrize("value", ["a;", "a; =1", 'a; b="x y"', "a b", "a; b=", 'a; b="1'])
def test_parse_extension_header_errors(value: str) -> None:
    with pytest.raises(ValueError):
        parse_extension_header([value])


def test_build_request_and_response() -> None:
    request = build_request(
        "h:1", "/p", KEY, ["chat", "v2"], ["permessage-deflate"], [("Origin", "http://o")]
    )
    assert request.startswith(b"GET /p HTTP/1.1\r\nHost: h:1\r\n")
    assert b"Sec-WebSocket-Protocol: chat, v2\r\n" in request
    assert b"Sec-WebSocket-Extensions: permessage-deflate\r\n" in request
    assert request.endswith(b"Origin: http://o\r\n\r\n")
    response = build_response(403, [], b"no")
    assert response == b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"


RESPONSE: Headers = (
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Accept", accept_key(KEY)),
)


def test_validate_response() -> None:
    assert validate_response(RESPONSE, KEY, [], []) == (None, [])
    assert validate_response(RESPONSE + (("Sec-WebSocket-Protocol", "b"),), KEY, ["a", "b"], [])[0] == "b"


@pytest.mark.parametrize(
    "headers",
    [
        replace(RESPONSE, "Upgrade", "h2c"),
        replace(RESPONSE, "Connection", "close"),
        replace(RESPONSE, "Sec-WebSocket-Accept", "wrong"),
        replace(RESPONSE, "Sec-WebSocket-Accept", None),
        RESPONSE + (("Sec-WebSocket-Protocol", "c"),),  # §4.1 (6): not offered
        RESPONSE + (("Sec-WebSocket-Extensions", "permessage-deflate"),),  # §4.1 (5): not offered
        RESPONSE + (("Sec-WebSocket-Extensions", "a;;"),),
    ],
)
def test_invalid_responses(headers: Headers) -> None:
    with pytest.raises(HandshakeFailure):
        validate_response(headers, KEY, ["a"], [])
