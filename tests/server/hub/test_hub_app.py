"""app.py: the static files over plain HTTP, the connect timeout, shutdown with a disconnect push."""

from __future__ import annotations

import http.client

import pytest

from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.hub import HubLimits
from wsproto_lite.server.errors import ConnectionClosed

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
