"""What a running hub exposes, in the lines ``python -m server hub`` prints at start: whether anonymous
clients get in, who may publish where, which pages may open a WebSocket, where the HTTP API and
``/metrics`` answer and whether they need the API key.  Read off the objects that enforce it (the
authorizer, the I/O layer's options, the HTTP handlers), so the report is what the hub does."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .hooks import HOOKS

if TYPE_CHECKING:
    from .app import HubServer
    from .webhook_config import WebhookConfig

__all__ = ["exposure"]


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) if n else "(default)" for n in names)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def exposure(hub: HubServer) -> list[str]:
    """The report's lines."""
    lines = [_anonymous(hub), _publishing(hub), _origins(hub), _api(hub)]
    if hub.hub.webhooks is not None:
        lines.append(_webhooks(hub.hub.webhooks.config))
    hooks = _hooks(hub)
    return lines + [hooks] if hooks else lines


def _webhooks(config: WebhookConfig) -> str:
    hosts = ", ".join(urlsplit(url).netloc for url in config.urls)  # not the paths: they may hold tokens
    events = ", ".join(sorted(config.events))
    return f"webhooks: POST to {hosts} (signed: X-Hub-Signature, key {config.key!r}); events: {events}"


def _anonymous(hub: HubServer) -> str:
    authz = hub.hub.authz
    if not authz.config.authenticates:
        where = "allowed (no authentication configured)"
    elif not authz.anonymous_connections:
        where = "refused (authentication is configured)"
    else:
        namespaces = hub.hub.namespaces.namespaces
        open_to = [n for n, o in namespaces.items() if authz.anonymous_use(n, o)]
        where = f"allowed in {_names(open_to)}" if open_to else "allowed, but no namespace is open to them"
    return f"anonymous connections: {where}"


def _publishing(hub: HubServer) -> str:
    authz = hub.hub.authz
    namespaces = hub.hub.namespaces.namespaces
    publish = [n for n, o in namespaces.items() if authz.clients_publish(n, o)]
    anonymous = [n for n in publish if authz.anonymous_use(n, namespaces[n])]
    where = _names(publish) if publish else "no namespace"
    if anonymous:
        where += f" (anonymous clients too in {_names(anonymous)})"
    return f"clients publish in: {where}; elsewhere only with a token's publish grant or the HTTP API"


def _origins(hub: HubServer) -> str:
    options = hub.server.options
    listed = sorted(options.allowed_origins) if options.allowed_origins is not None else []
    if not options.same_origin:  # the hub turns it on whenever it checks origins (config.checks_origin)
        return "WebSocket origins: any (no token can come from a cookie)"
    why = "a token may come from a cookie" if hub.hub.auth.config.verifies_jwt else "origins are listed"
    pages = "the hub's own" + (f" and {', '.join(listed)}" if listed else " only")
    return f"WebSocket origins: {pages} (others: 403; {why}); clients without Origin (not browsers) too"


def _api(hub: HubServer) -> str:
    if hub.internal is not None:
        where = "on the internal address " + ", ".join(_address(h, p) for h, p in hub.internal.addresses)
    else:
        where = "on the public port"
    keys = "API key required" if hub.hub.auth.api_keys else "no API key configured: the API refuses all"
    metrics = "public" if hub.config.metrics_public else "API key required"
    return f"HTTP API and /metrics: {where}; API: {keys}; /metrics: {metrics}"


def _hooks(hub: HubServer) -> str:
    """Which hooks ask the backend, where (they decide instead of tokens and namespace rules)."""
    hooks = hub.hub.hooks
    asked = [f"{name} -> {hooks.get(name)[0]!r}" for name in HOOKS if name in hooks]  # type: ignore[index]
    if not asked:
        return ""
    headers = ", ".join(hooks.headers) or "none"
    return f"backend hooks: {'; '.join(asked)}; upgrade headers passed to them: {headers}"
