"""report.py: the start-up lines say what is open, read off the objects that enforce it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wsproto_lite.hub.app import HubServer
from wsproto_lite.hub.auth import AuthConfig
from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, NamespaceOptions, Namespaces
from wsproto_lite.hub.report import exposure
from wsproto_lite.server.loop import EventLoop

from .authkit import API_KEY, SECRET


@pytest.fixture
def report() -> Iterator[object]:
    loop = EventLoop()
    made: list[HubServer] = []

    def make(config: HubConfig) -> list[str]:
        server = HubServer(config, loop=loop)
        made.append(server)
        return exposure(server)

    yield make
    for server in made:
        server.close()
    loop.close()


def test_the_laptop(report: object) -> None:
    anonymous, publishing, origins, api = report(HubConfig(port=0))  # type: ignore[operator]
    assert anonymous == "anonymous connections: allowed (no authentication configured)"
    assert publishing.startswith(
        "clients publish in: (default), 'chat', 'stock', 'bench' "
        "(anonymous clients too in (default), 'chat', 'stock', 'bench')"
    )
    assert origins == "WebSocket origins: any (no token can come from a cookie)"
    assert api == (
        "HTTP API and /metrics: on the public port; API: no API key configured: the API refuses all; "
        "/metrics: API key required"
    )


def test_a_production_config(report: object) -> None:
    config = HubConfig(
        port=0,
        auth=AuthConfig(jwt_secret=SECRET, api_keys=(API_KEY,), private_namespaces=("secret",)),
        allowed_origins=["https://app.example.com"],
        internal_port=0,
        namespaces=Namespaces({**DEFAULT_NAMESPACES, "secret": NamespaceOptions(allow_publish=True)}),
    )
    anonymous, publishing, origins, api = report(config)  # type: ignore[operator]
    assert anonymous == "anonymous connections: refused (authentication is configured)"
    assert publishing.startswith("clients publish in: no namespace;")  # private ones: never by clients
    assert origins.startswith("WebSocket origins: the hub's own and https://app.example.com (others: 403;")
    assert "a token may come from a cookie" in origins
    assert api.startswith("HTTP API and /metrics: on the internal address 127.0.0.1:")
    assert api.endswith("API: API key required; /metrics: API key required")


def test_namespaces_that_open_up(report: object) -> None:
    namespaces = {
        **DEFAULT_NAMESPACES,
        "lobby": NamespaceOptions(allow_anonymous=True, allow_publish=True),
        "room": NamespaceOptions(allow_publish=True),
    }
    config = HubConfig(
        port=0, auth=AuthConfig(api_keys=(API_KEY,)), namespaces=Namespaces(namespaces), metrics_public=True
    )
    anonymous, publishing, origins, api = report(config)  # type: ignore[operator]
    assert anonymous == "anonymous connections: allowed in 'lobby'"
    assert publishing.startswith("clients publish in: 'lobby', 'room' (anonymous clients too in 'lobby');")
    assert origins == "WebSocket origins: any (no token can come from a cookie)"  # API keys: headers only
    assert api.endswith("/metrics: public")


def test_listed_origins_without_a_jwt_key(report: object) -> None:
    origins = report(HubConfig(port=0, allowed_origins=["https://b.example", "https://a.example"]))[2]  # type: ignore[operator]
    assert origins == (
        "WebSocket origins: the hub's own and https://a.example, https://b.example "
        "(others: 403; origins are listed); clients without Origin (not browsers) too"
    )
