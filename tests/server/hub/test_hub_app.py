"""app.py: the static files over plain HTTP, the connect timeout, shutdown with a disconnect push, the origin
rule (cookies make cross-site upgrades dangerous: only the hub's own origin and the listed ones)."""

from __future__ import annotations

import http.client
from typing import Any

import pytest

from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.hub import HubLimits
from wsproto_lite.server.client import connect
from wsproto_lite.server.errors import ConnectionClosed, HandshakeError

from .authkit import hs256, hub_config
from .conftest import HubThread, Raw


@pytest.mark.parametrize(
    ("method", "path", "status", "type_"),
    [
        ("GET", "/", 200, "text/html; charset=utf-8"),
        ("GET", "/index.html", 200, "text/html; charset=utf-8"),
        ("HEAD", "/app.js", 200, "text/javascript; charset=utf-8"),
        ("GET", "/health", 200, "text/plain"),
        ("GET", "/../setup.cfg", 404, "text/plain"),
        ("GET", "/nope", 404, "text/plain"),
        ("POST", "/", 405, "text/plain"),
    ],
)
def test_static_files(hub: HubThread, method: str, path: str, status: int, type_: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", hub.hub_server.port, timeout=5)
    conn.request(method, path)
    response = conn.getresponse()
    response.read()
    assert (response.status, response.getheader("Content-Type")) == (status, type_)
    conn.close()


def test_connect_timeout() -> None:
    h = HubThread(HubConfig(port=0, limits=HubLimits(connect_timeout=0.0)))
    try:
        r = Raw(h.url)  # never sends connect; the once-a-second housekeeping notices
        assert r.push(timeout=5) == {
            "push": "disconnect",
            "code": 4500,
            "reason": "connect timeout",
            "reconnect": False,
        }
        with pytest.raises(ConnectionClosed) as closed:
            r.recv()
        assert closed.value.code == 4500
    finally:
        h.stop()


def _upgrade(h: HubThread, origin: str | None, **headers: str) -> dict[str, Any]:
    """Open a connection as a browser would (``Origin``, cookies) and return the ``connect`` result."""
    r = Raw.__new__(Raw)
    r.ws = connect(h.url, timeout=10, compression=False, headers=headers, origin=origin)
    r.next_id, r.pushes = 1, []
    try:
        return r.ok("connect")
    finally:
        r.close()


def _refused(h: HubThread, origin: str | None, **headers: str) -> int:
    with pytest.raises(HandshakeError) as info:
        _upgrade(h, origin, **headers)
    return info.value.status


def test_cookie_credentials_make_the_hub_refuse_other_origins() -> None:
    h = HubThread(hub_config())  # a JWT key: a token may come from a cookie
    try:
        victim = {"Cookie": f"token={hs256('victim')}"}
        own = f"http://127.0.0.1:{h.hub_server.port}"
        assert _upgrade(h, own, **victim)["user"] == "victim"  # the hub's own page
        assert _upgrade(h, None, **victim)["user"] == "victim"  # not a browser: no Origin
        for origin in ("https://evil.example", "null", f"http://127.0.0.1:{h.hub_server.port + 1}"):
            assert _refused(h, origin, **victim) == 403
        assert _refused(h, "https://evil.example", Authorization=f"Bearer {hs256('x')}") == 403
    finally:
        h.stop()


def test_listed_origins_and_the_laptop_default() -> None:
    config = hub_config()
    config.allowed_origins = ["https://app.example.com"]
    h = HubThread(config)
    try:
        cookie = {"Cookie": f"token={hs256('u')}"}
        assert _upgrade(h, "https://app.example.com", **cookie)["user"] == "u"
        assert _upgrade(h, f"http://127.0.0.1:{h.hub_server.port}", **cookie)["user"] == "u"
        assert _refused(h, "https://evil.example", **cookie) == 403
    finally:
        h.stop()
    h = HubThread(HubConfig(port=0))  # nothing configured: no credentials to steal, any origin
    try:
        assert _upgrade(h, "https://elsewhere.example")["user"] == ""
    finally:
        h.stop()
