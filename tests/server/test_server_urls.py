"""wsproto_lite.server.urls.parse_url."""

from __future__ import annotations

import pytest

from wsproto_lite.server.errors import InvalidURL
from wsproto_lite.server.urls import parse_url


def test_parse_defaults_and_host_header() -> None:
    u = parse_url("ws://example.com/chat?x=1")
    assert (u.secure, u.host, u.port, u.target, u.host_header) == (
        False,
        "example.com",
        80,
        "/chat?x=1",
        "example.com",
    )
    s = parse_url("wss://example.com:8443")
    assert (s.secure, s.port, s.target, s.host_header) == (True, 8443, "/", "example.com:8443")
    v6 = parse_url("ws://[::1]:9000/")
    assert (v6.host, v6.host_header) == ("::1", "[::1]:9000")


@pytest.mark.parametrize("url", ["http://x/", "ws:///nohost", "ws://x/#frag", "ws://x:99999/"])
def test_invalid_urls(url: str) -> None:
    with pytest.raises(InvalidURL):
        parse_url(url)
