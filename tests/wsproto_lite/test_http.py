"""HTTP heads for the handshake: bounded reading and parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite._handshake import is_upgrade_request, validate_upgrade_request
from wsproto_lite._http import (
    HeadReader,
    HTTPError,
    build_head,
    header_index,
    header_values,
    parse_request_head,
    parse_response_head,
    status_phrase,
    token_list,
)

REQUEST = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\n"


def test_head_reader_byte_by_byte_keeps_what_follows() -> None:
    reader = HeadReader(1000)
    data = REQUEST + b"\x81\x00"
    results = [reader.feed(data[i : i + 1]) for i in range(len(data) - 2)]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == (REQUEST[:-4], b"")
    reader = HeadReader(1000)
    assert reader.feed(data) == (REQUEST[:-4], b"\x81\x00")


def test_head_reader_accepts_bare_lf() -> None:
    assert HeadReader(100).feed(b"GET / HTTP/1.1\nHost: x\n\nrest") == (b"GET / HTTP/1.1\nHost: x", b"rest")


def test_head_reader_bounds_the_head() -> None:
    reader = HeadReader(100)
    reader.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HTTPError) as info:
        reader.feed(b"X-Long: " + b"a" * 100)
    assert info.value.status == 431
    with pytest.raises(HTTPError):
        HeadReader(10).feed(REQUEST)


def test_parse_request() -> None:
    method, target, version, headers = parse_request_head(REQUEST[:-4], 10)
    assert (method, target, version) == ("GET", "/a?b=1", (1, 1))
    assert headers == (("Host", "x"), ("Connection", "keep-alive, Upgrade"))
    assert token_list(headers, "connection") == ["keep-alive", "Upgrade"]


@pytest.mark.parametrize(
    "head, status",
    [
        (b"GET /\r\nHost: x", 400),  # no version
        (b"GET / HTTP/1.1\r\nHost x", 400),  # no colon
        (b"GET / HTTP/1.1\r\nHo st: x", 400),  # not a token
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded", 400),  # obsolete folding
        (b"GET / HTTP/1.1" + b"\r\nA: b" * 11, 431),  # too many headers
    ],
)
def test_parse_request_errors(head: bytes, status: int) -> None:
    with pytest.raises(HTTPError) as info:
        parse_request_head(head, 10)
    assert info.value.status == status


def test_parse_response() -> None:
    assert parse_response_head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket", 10) == (
        101,
        "Switching Protocols",
        (("Upgrade", "websocket"),),
    )
    assert parse_response_head(b"HTTP/1.1 404", 10)[:2] == (404, "")
    with pytest.raises(HTTPError):
        parse_response_head(b"SSH-2.0-OpenSSH", 10)


def test_build_head_refuses_header_injection() -> None:
    assert build_head("HTTP/1.1 200 OK", [("A", "b")]) == b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n"
    with pytest.raises(ValueError):
        build_head("HTTP/1.1 200 OK", [("A", "b\r\nSet-Cookie: x")])
    with pytest.raises(ValueError):
        build_head("HTTP/1.1 200 OK", [("A:B", "b")])


def test_status_phrase() -> None:
    assert status_phrase(426) == "Upgrade Required"
    assert status_phrase(299) == ""


_NAMES = st.sampled_from(
    ["Host", "host", "HOST", "Upgrade", "upgrade", "Connection", "connection", "Sec-WebSocket-Key",
     "sec-websocket-key", "Sec-WebSocket-Version", "X-Other", "x-other", "\u0130"]
)  # fmt: skip
_VALUES = st.sampled_from(
    ["", "websocket", "Upgrade", "keep-alive, Upgrade", "13", "8", "dGhlIHNhbXBsZSBub25jZQ==", ",,x"]
)
_HEADERS = st.lists(st.tuples(_NAMES, _VALUES), max_size=12).map(tuple)


@given(_HEADERS, _NAMES)
def test_header_index_gives_what_header_values_gives(headers: tuple[tuple[str, str], ...], name: str) -> None:
    """One pass for several lookups (the handshake's) finds the same values, in the same order."""
    assert header_index(headers).get(name.lower(), []) == header_values(headers, name)


@given(_HEADERS)
def test_upgrade_checks_agree_with_and_without_an_index(headers: tuple[tuple[str, str], ...]) -> None:
    index = header_index(headers)
    assert is_upgrade_request(headers, index) == is_upgrade_request(headers)
    outcomes = []
    for given_index in (index, None):
        try:
            outcomes.append(validate_upgrade_request("GET", (1, 1), headers, given_index))
        except Exception as exc:  # noqa: BLE001 - compared below
            outcomes.append(repr(exc))
    assert outcomes[0] == outcomes[1]


def test_build_head_skips_the_name_check_only_for_known_names() -> None:
    assert build_head("HTTP/1.1 101 Switching Protocols", [("Sec-WebSocket-Accept", "x")]).endswith(
        b"x\r\n\r\n"
    )
    with pytest.raises(ValueError):
        build_head("HTTP/1.1 200 OK", [("Bad Name", "x")])
    with pytest.raises(ValueError):
        build_head("HTTP/1.1 200 OK", [("Upgrade", "x\r\nInjected: 1")])
