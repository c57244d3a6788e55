"""``Origin`` checks: RFC 6454 origin tuples, the server's own origin from ``Host`` and the connection, the
allow-list; an upgrade without ``Origin`` (not a browser) passes, ``null`` never does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite.server.origins import origin_allowed, parse_origin


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("https://App.Example.COM", ("https", "app.example.com", 443)),
        ("https://app.example.com:443", ("https", "app.example.com", 443)),
        ("http://127.0.0.1:8000", ("http", "127.0.0.1", 8000)),
        ("http://[::1]:8000", ("http", "::1", 8000)),
        ("HTTP://h/", ("http", "h", 80)),
        ("null", None),
        ("", None),
        ("file://", None),
        ("ws://h", None),
        ("https://h:99999", None),
        ("https://h:x", None),
        ("https://user@h", None),
        ("https://h/path", None),
        ("https://h?q", None),
        ("//h", None),
    ],
)
def test_parse_origin(text: str, parsed: object) -> None:
    assert parse_origin(text) == parsed


def _same(origin: str | None, host: str, secure: bool = False, allowed: list[str] | None = None) -> bool:
    return origin_allowed(origin, allowed=allowed, same_origin=True, host=host, secure=secure)


def test_same_origin_is_scheme_host_and_port() -> None:
    assert _same("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert _same("http://hub.example", "HUB.example:80")
    assert _same("https://hub.example", "hub.example", secure=True)
    assert _same("http://[::1]:9", "[::1]:9")
    assert not _same("http://127.0.0.1:8001", "127.0.0.1:8000")  # another port is another origin
    assert not _same("https://127.0.0.1:8000", "127.0.0.1:8000")  # a plain connection: http only
    assert not _same("http://hub.example", "hub.example", secure=True)
    assert not _same("http://localhost:8000", "127.0.0.1:8000")  # the name is compared, not the address
    assert not _same("https://evil.example", "hub.example")
    assert not _same("null", "hub.example")
    assert not _same("http://hub.example", "")  # no Host: nothing is the server's own origin
    assert _same(None, "hub.example")  # not a browser


def test_allow_list_alone_and_with_same_origin() -> None:
    allowed = ["https://app.example.com", "http://127.0.0.1:3000/"]
    only = dict(allowed=allowed, same_origin=False, host="hub.example.com", secure=True)
    assert origin_allowed("https://APP.example.com:443", **only)  # type: ignore[arg-type]
    assert origin_allowed("http://127.0.0.1:3000", **only)  # type: ignore[arg-type]
    assert not origin_allowed("https://hub.example.com", **only)  # type: ignore[arg-type]
    assert _same("https://hub.example.com", "hub.example.com", True, allowed)
    assert _same("https://app.example.com", "hub.example.com", True, allowed)
    assert not _same("https://evil.example", "hub.example.com", True, allowed)
    anything = dict(allowed=None, same_origin=False, host="h", secure=False)
    assert origin_allowed("https://evil.example", **anything)  # type: ignore[arg-type]
    assert origin_allowed("null", **anything)  # type: ignore[arg-type]


@given(origin=st.text(max_size=80), host=st.text(max_size=40), secure=st.booleans())
def test_junk_never_raises_and_only_matches_its_own_origin(origin: str, host: str, secure: bool) -> None:
    allowed = _same(origin, host, secure)
    own = parse_origin(("https://" if secure else "http://") + host) if host else None
    assert allowed is (own is not None and parse_origin(origin) == own)
