"""The hub's plain-HTTP side on the WebSocket port: the server API, ``/healthz``, ``/metrics``, static files.

The server API is shaped like Centrifugo v6's (``cent`` and Centrifugo's other HTTP API clients work
unchanged): ``POST /api/<method>`` with the parameters as a JSON object, the API key in ``X-API-Key: <key>``
or ``Authorization: apikey <key>``.  A result comes as ``{"result": {...}}``; an API error (an unknown
channel, a bad parameter, history off...) as HTTP **200** with ``{"error": {"code", "message"}}``, unless
the request says ``X-Centrifugo-Error-Mode: transport``: then as an HTTP status (500 internal, 404 unknown
channel, 400 bad request / not available, 416 unrecoverable position, 409 conflict; 503 for a temporary
108, the engine unavailable: retry).

Methods (parameters -> result; they are ``api_methods.py``'s, this module routes, authenticates and answers):

- ``publish``: channel, data, skip_history?, tags?, idempotency_key? -> offset, epoch (``{}`` without
  history)
- ``broadcast``: channels (at most 1000), data, and publish's options -> responses: [{result} | {error}]
- ``subscribe``: user, channel, client?, session?, data? -> ``{}`` (a server-side subscription)
- ``unsubscribe``: user, channel, client?, session? -> ``{}``
- ``disconnect``: user, client?, session?, whitelist?, disconnect? {code (3000-4999), reason} -> ``{}``
  (default 3503 "force disconnect")
- ``refresh``: user, client?, session?, expired?, expire_at? -> ``{}``
- ``presence``: channel -> presence: {client id: {client, user, conn_info?}}
- ``presence_stats``: channel -> num_clients, num_users
- ``history``: channel, limit? (absent or 0: the position only; -1: all, up to ``max_history_limit``),
  since? {offset, epoch}, reverse? -> publications, epoch, offset
- ``history_remove``: channel -> ``{}``: the kept publications go, the position (epoch, offset) stays
- ``channels``: pattern? (a glob) -> channels: {name: {num_clients}}
- ``info`` -> nodes: [{uid, name, version, num_clients, num_users, num_subs, num_channels, uptime}]
- ``batch``: commands [{method: params}] (at most 1000), parallel? -> ``{"replies": [{method: result} |
  {error}]}`` (at the top level, as Centrifugo answers it)

Cluster-wide (``control.py``): disconnect, unsubscribe, subscribe and refresh reach the user's
connections on every node sharing the engine; ``channels`` and ``info`` gather every node's answer (a
node that does not answer within ``control.REQUEST_TIMEOUT`` is left out); an ``idempotency_key``
deduplicates publishes to a channel on every node for ``engine.IDEMPOTENCY_WINDOW`` seconds.

Where the parameters come from: the JSON object in the request body (``Content-Length`` framing, read by
the core: ``request.body``; ``curl -d '{...}'``), or, without a body, the ``json`` query parameter
(``POST /api/publish?json=%7B...%7D``).

Answers come from the engine: with the in-memory engine at once; with the Redis engine when Redis has
answered, through a :class:`~wsproto_lite.server.handler.DeferredResponse` (the loop is never blocked; the
connection's handshake timeout bounds the wait).

Transport errors keep their HTTP status in either mode: 401 (no or wrong key, whatever the path under
``/api/``; the same JSON body either way), 404 unknown method, 405 not POST, 413 parameters over
``max_request`` (and, through :func:`core_error_body`, bodies the core refuses before the API sees them),
400 a body that is not a JSON object.

``GET /metrics`` needs the API key too, unless ``metrics_public``.  With an internal address configured
(``internal_port``), the API and ``/metrics`` are served there only: the public port's ``HubHTTP`` has
``serve_api=False`` (404 there).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..server.handler import DeferredResponse, HTTPResponse
from . import metrics
from .api_methods import (
    ENDPOINTS,
    MAX_BATCH,
    MAX_BROADCAST,
    MAX_TAGS,
    ApiMethods,
    Body,
    Result,
    as_hub_error,
)
from .engine import Reply
from .protocol import ErrorCode, HubError, dumps, refuse_lone_surrogates

if TYPE_CHECKING:
    from wsproto_lite import HTTPRequest

    from .hub import Hub

__all__ = [
    "HubHTTP",
    "MAX_API_REQUEST",
    "MAX_BATCH",
    "MAX_BROADCAST",
    "MAX_TAGS",
    "core_error_body",
]

MAX_API_REQUEST = 32 * 1024
"""Characters of one API request's JSON parameters (the core bounds the whole head at 64 KiB: 431)."""

_JSON = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
_UNAUTHORIZED = HTTPResponse(
    401,
    [*_JSON, ("WWW-Authenticate", 'ApiKey realm="hub"')],
    b'{"error":{"code":101,"message":"unauthorized"}}',
)

_NOT_HERE = HTTPResponse(404, _JSON, b'{"error":{"code":104,"message":"unknown method"}}')

ERROR_MODE_HEADER = "X-Centrifugo-Error-Mode"
"""``X-Centrifugo-Error-Mode: transport``: API errors as HTTP statuses instead of 200 + ``{"error"}``."""


class _BadRequest(Exception):
    """A transport-level refusal: its HTTP status in either error mode."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(status: int, code: int, message: str) -> HTTPResponse:
    return HTTPResponse(status, _JSON, dumps({"error": {"code": code, "message": message}}).encode())


def core_error_body(status: int, reason: str) -> tuple[str, bytes]:
    """The HTTP errors the core answers itself (``Options.http_error_body``) in the API's JSON shape:
    a body or head over its limit is 106 "request too large", anything else 107 with the core's reason."""
    if status in (413, 431):
        code, message = ErrorCode.LIMIT_EXCEEDED, "request too large"
    else:
        code, message = ErrorCode.BAD_REQUEST, reason
    return "application/json", dumps({"error": {"code": code, "message": message}}).encode()


def _transport_status(error: HubError) -> int:
    """Centrifugo's ``MapErrorToHTTPCode``, plus 503 for a temporary error (the engine unavailable)."""
    if error.temporary:
        return 503
    return {
        ErrorCode.INTERNAL: 500,
        ErrorCode.UNKNOWN_CHANNEL: 404,
        ErrorCode.METHOD_NOT_FOUND: 404,
        ErrorCode.BAD_REQUEST: 400,
        ErrorCode.NOT_AVAILABLE: 400,
        ErrorCode.UNRECOVERABLE_POSITION: 416,
        CONFLICT: 409,
    }.get(error.code, 500)


CONFLICT = 113
"""Centrifugo's API error 113 "conflict"."""


class HubHTTP:
    """The ``http_handler`` of the hub's WebSocketServer; ``fallback`` answers everything else (static)."""

    def __init__(
        self,
        hub: Hub,
        fallback: Callable[[HTTPRequest], HTTPResponse],
        max_request: int = MAX_API_REQUEST,
        *,
        serve_api: bool = True,
        metrics_public: bool = False,
    ) -> None:
        """``serve_api``: answer ``/api/…`` and ``/metrics`` here (False: they go to ``fallback``, as on the
        public port when the hub has an internal address); ``metrics_public``: ``/metrics`` without a key."""
        self.hub = hub
        self.methods = ApiMethods(hub)
        self.fallback = fallback
        self.max_request = max_request
        self.serve_api = serve_api
        self.metrics_public = metrics_public
        self.requests = 0
        self.refused = 0

    def __call__(self, request: HTTPRequest) -> HTTPResponse | DeferredResponse:
        path = request.path
        if path == "/healthz":
            return self._healthz()
        if not self.serve_api:  # the API and /metrics are on the internal address
            return _NOT_HERE if path == "/metrics" or path.startswith("/api/") else self.fallback(request)
        if path == "/metrics":
            return self._metrics(request)
        if path.startswith("/api/"):
            self.requests += 1
            answer = self._api(request, path[5:])
            if isinstance(answer, HTTPResponse):
                return self._counted(answer)
            transport = _transport_mode(request)
            deferred = DeferredResponse()  # the engine answers later (Redis): respond when it does
            answer.observe(lambda done: deferred.resolve(self._counted(_response_of(done, transport))))
            return deferred
        return self.fallback(request)

    def _authorized(self, request: HTTPRequest) -> bool:
        """Whether the request carries a configured API key (a refusal is counted as an auth failure)."""
        key = _api_key(request)
        if key is not None and self.hub.auth.api_keys.match(key):
            return True
        self.hub.stats.auth_failures += 1
        return False

    def _metrics(self, request: HTTPRequest) -> HTTPResponse:
        if not self.metrics_public and not self._authorized(request):
            return _UNAUTHORIZED
        if request.method not in ("GET", "HEAD"):
            return HTTPResponse(405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")], b"GET only\n")
        text = metrics.render(self.hub) + self._own_metrics()
        return HTTPResponse(200, [("Content-Type", metrics.CONTENT_TYPE)], text.encode())

    def _healthz(self) -> HTTPResponse:
        """200 ``ok`` while the engine is healthy; 503 with its report while degraded (Redis unreachable)."""
        report = self.hub.engine.health()
        if report.get("ok", True):
            return HTTPResponse(200, [("Content-Type", "text/plain")], b"ok\n")
        return HTTPResponse(503, _JSON, dumps(report).encode() + b"\n")

    def _counted(self, response: HTTPResponse) -> HTTPResponse:
        if response.status >= 400:
            self.refused += 1
        return response

    def _own_metrics(self) -> str:
        return (
            "# HELP wsproto_hub_api_requests_total HTTP API requests.\n"
            "# TYPE wsproto_hub_api_requests_total counter\n"
            f"wsproto_hub_api_requests_total {self.requests}\n"
            "# HELP wsproto_hub_api_refused_total HTTP API requests answered with a 4xx.\n"
            "# TYPE wsproto_hub_api_refused_total counter\n"
            f"wsproto_hub_api_refused_total {self.refused}\n"
        )

    def _api(self, request: HTTPRequest, name: str) -> HTTPResponse | Reply[Result | Body]:
        """The response, or the engine's reply still on its way."""
        if not self._authorized(request):  # first: without a key, no path tells what exists
            return _UNAUTHORIZED
        if name != "batch" and name not in ENDPOINTS:
            return _error(404, ErrorCode.METHOD_NOT_FOUND, "unknown method")
        if request.method != "POST":
            return HTTPResponse(
                405, [*_JSON, ("Allow", "POST")], b'{"error":{"code":107,"message":"POST only"}}'
            )
        transport = _transport_mode(request)
        try:
            params = self._params(request)
            result = self.methods.batch(params) if name == "batch" else ENDPOINTS[name](self.methods, params)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error response
            return _failure(exc, transport)
        if not isinstance(result, Reply):
            return _ok(result)
        if result.done:  # the in-memory engine: answered already
            return _response_of(result, transport)
        pending: Reply[Result | Body] = result  # type: ignore[assignment]
        return pending

    def _params(self, request: HTTPRequest) -> dict[str, Any]:
        body = request.body  # the core answered 413 / 501 already for one it would not read
        if body:
            if len(body) > self.max_request:
                raise _BadRequest(413, ErrorCode.LIMIT_EXCEEDED, "request too large")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise _BadRequest(400, ErrorCode.BAD_REQUEST, "the body is not UTF-8") from None
        else:
            values = parse_qs(request.query, max_num_fields=8).get("json")
            if not values:
                return {}
            text = values[0]
            if len(text) > self.max_request:
                raise _BadRequest(413, ErrorCode.LIMIT_EXCEEDED, "request too large")
        try:
            value = json.loads(text, parse_constant=_no_constants)
            refuse_lone_surrogates(text, value)
        except (ValueError, RecursionError):
            raise _BadRequest(400, ErrorCode.BAD_REQUEST, "invalid JSON") from None
        if not isinstance(value, dict):
            raise _BadRequest(400, ErrorCode.BAD_REQUEST, "the parameters must be a JSON object")
        return value


def _transport_mode(request: HTTPRequest) -> bool:
    return (request.header(ERROR_MODE_HEADER) or "").strip().lower() == "transport"


def _ok(result: Result | Body) -> HTTPResponse:
    if isinstance(result, Body):
        return HTTPResponse(200, _JSON, result.text.encode())
    text = result if isinstance(result, str) else dumps(result)
    return HTTPResponse(200, _JSON, b'{"result":' + text.encode() + b"}")


def _failure(exc: BaseException, transport: bool) -> HTTPResponse:
    if isinstance(exc, _BadRequest):
        return _error(exc.status, exc.code, exc.message)
    error = as_hub_error(exc)
    return _error(_transport_status(error) if transport else 200, error.code, error.message)


def _response_of(done: Reply[Any], transport: bool) -> HTTPResponse:
    """The response for a resolved reply."""
    if done.error is not None:
        return _failure(done.error, transport)
    return _ok(done.result())


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _api_key(request: HTTPRequest) -> str | None:
    """``X-API-Key: <key>``, else ``Authorization: apikey <key>`` (Centrifugo's order)."""
    key = request.header("X-API-Key")
    if key is not None:
        return key
    authorization = request.header("Authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        return value.strip() if scheme.lower() == "apikey" else None
    return None
