"""The hub's plain-HTTP side on the WebSocket port: the server API, ``/healthz``, ``/metrics``, static files.

API endpoints (``POST``, API key in ``Authorization: apikey <key>`` or ``X-API-Key``), JSON in and out:

===================  ====================================  ===============================================
endpoint             parameters                            result
===================  ====================================  ===============================================
``/api/publish``     channel, data                         offset?, epoch?
``/api/broadcast``   channels (list, ≤ 1000), data         results: [{offset?, epoch?} | {error}], in order
``/api/presence``    channel                               clients: {client: {user, name}}
``/api/history``     channel, limit?, since?, reverse?     publications, epoch, offset
``/api/disconnect``  user, code? (4000-4999), reason?      disconnected (connections closed; a reason is cut
                                                           to the 123 bytes of UTF-8 a close frame holds)
``/api/channels``    prefix?                               channels: {name: local subscribers}
===================  ====================================  ===============================================

Where the parameters come from: the JSON object in the request body (``Content-Length`` framing, read by
the core: ``request.body``; ``curl -d '{...}'``), or, without a body, the ``json`` query parameter
(``POST /api/publish?json=%7B...%7D``; ``curl -G --data-urlencode 'json={...}' -X POST``).

Answers come from the engine: with the in-memory engine at once; with the Redis engine when Redis has
answered, through a :class:`~wsproto_lite.server.handler.DeferredResponse` (the loop is never blocked; the
connection's
handshake timeout bounds the wait).

Errors: 401 (no or wrong key, whatever the path under ``/api/``; the same body either way), 404 unknown
endpoint, 405 not POST, 413 parameters over ``max_request`` (and, through :func:`core_error_body`, bodies
the core refuses before the API sees them), 400 bad JSON or parameters, 503 engine unavailable
(temporary: retry): ``{"error": {"code": <hub error code>, "message": ...}}``.

``GET /metrics`` needs the API key too, unless ``metrics_public``.  With an internal address configured
(``internal_port``), the API and ``/metrics`` are served there only: the public port's ``HubHTTP`` has
``serve_api=False`` (404 there).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..server.handler import DeferredResponse, HTTPResponse
from . import metrics
from .engine import Reply
from .protocol import (
    ErrorCode,
    HubError,
    dumps,
    get_bool,
    get_channel,
    get_int,
    get_position,
    get_str,
    refuse_lone_surrogates,
)

if TYPE_CHECKING:
    from wsproto_lite import HTTPRequest

    from .engine import HistoryResult, Publication
    from .hub import Hub

__all__ = ["HubHTTP", "MAX_API_REQUEST", "core_error_body"]

logger = logging.getLogger("wsproto_lite.hub.http")

MAX_API_REQUEST = 32 * 1024
"""Characters of one API request's JSON parameters (the core bounds the whole head at 64 KiB: 431)."""

MAX_BROADCAST = 1000

_JSON = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
_UNAUTHORIZED = HTTPResponse(
    401,
    [*_JSON, ("WWW-Authenticate", 'ApiKey realm="hub"')],
    b'{"error":{"code":101,"message":"unauthorized"}}',
)

_NOT_HERE = HTTPResponse(404, _JSON, b'{"error":{"code":104,"message":"unknown endpoint"}}')


class _BadRequest(Exception):
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


def _ok(result: dict[str, Any] | str) -> HTTPResponse:
    text = result if isinstance(result, str) else dumps(result)
    return HTTPResponse(200, _JSON, text.encode())


Result = dict[str, Any] | str
Endpoint = Callable[["HubHTTP", dict[str, Any]], "Result | Reply[Result]"]


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
            deferred = DeferredResponse()  # the engine answers later (Redis): respond when it does
            answer.observe(lambda done: deferred.resolve(self._counted(_response_of(done))))
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

    def _api(self, request: HTTPRequest, name: str) -> HTTPResponse | Reply[Result]:
        """The response, or the engine's reply still on its way."""
        if not self._authorized(request):  # first: without a key, no path tells what exists
            return _UNAUTHORIZED
        endpoint = _ENDPOINTS.get(name)
        if endpoint is None:
            return _error(404, ErrorCode.METHOD_NOT_FOUND, "unknown endpoint")
        if request.method != "POST":
            return HTTPResponse(
                405, [*_JSON, ("Allow", "POST")], b'{"error":{"code":107,"message":"POST only"}}'
            )
        try:
            params = self._params(request)
            result = endpoint(self, params)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error response
            return _failure(exc)
        if not isinstance(result, Reply):
            return _ok(result)
        if result.done:  # the in-memory engine: answered already
            return _response_of(result)
        return result

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

    # -- endpoints -------------------------------------------------------------------------------------

    def publish(self, params: dict[str, Any]) -> Reply[Result]:
        channel = get_channel(params)
        if "data" not in params:
            raise HubError(ErrorCode.BAD_REQUEST, "'data' is missing")
        return self.hub.publish(channel, params["data"]).then(_published)

    def broadcast(self, params: dict[str, Any]) -> Reply[Result]:
        channels = params.get("channels")
        if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
            raise HubError(ErrorCode.BAD_REQUEST, "'channels' must be a list of channel names")
        if len(channels) > MAX_BROADCAST:
            raise _BadRequest(413, ErrorCode.LIMIT_EXCEEDED, f"at most {MAX_BROADCAST} channels")
        if "data" not in params:
            raise HubError(ErrorCode.BAD_REQUEST, "'data' is missing")
        replies: list[Reply[Result]] = []
        for channel in channels:
            try:
                replies.append(self.publish({"channel": channel, "data": params["data"]}))
            except HubError as exc:
                replies.append(Reply.failed(exc))
        return _all_settled(replies).then(lambda results: {"results": results})

    def presence(self, params: dict[str, Any]) -> Reply[Result]:
        channel = self.hub.namespaces.resolve(get_channel(params))
        if not channel.options.presence:
            raise HubError(ErrorCode.NOT_AVAILABLE, "presence is off in this namespace")
        return self.hub.engine.presence(channel.name).then(
            lambda infos: {"clients": {i.client: {"user": i.user, "name": i.name} for i in infos}}
        )

    def history(self, params: dict[str, Any]) -> Reply[Result]:
        channel = self.hub.namespaces.resolve(get_channel(params))
        if not channel.options.history:
            raise HubError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")
        cap = self.hub.limits.max_history_limit
        return self.hub.engine.history(
            channel.name,
            channel.options,
            since=get_position(params, "since"),
            limit=min(get_int(params, "limit", cap), cap),
            reverse=get_bool(params, "reverse"),
        ).then(_history_json)

    def disconnect(self, params: dict[str, Any]) -> dict[str, Any]:
        user = get_str(params, "user", max_length=256)
        if not user:
            raise HubError(ErrorCode.BAD_REQUEST, "'user' must be a user id")
        code = get_int(params, "code", 4501, minimum=4000, maximum=4999)
        reason = get_str(params, "reason", required=False, max_length=120) or "server"
        return {"disconnected": self.hub.disconnect_user(user, code, reason)}

    def channels(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = get_str(params, "prefix", required=False, max_length=255)
        counts = self.hub.channels()
        return {"channels": {name: n for name, n in counts.items() if name.startswith(prefix)}}


def _published(publication: Publication) -> Result:
    return {} if publication.offset is None else {"offset": publication.offset, "epoch": publication.epoch}


def _history_json(history: HistoryResult) -> Result:
    items = ",".join(p.json for p in history.publications)
    position = history.position
    return f'{{"publications":[{items}],"epoch":{dumps(position.epoch)},"offset":{position.offset}}}'


def _failure(exc: BaseException) -> HTTPResponse:
    if isinstance(exc, _BadRequest):
        return _error(exc.status, exc.code, exc.message)
    if isinstance(exc, HubError):
        # 108 "engine unavailable" is temporary: 503, retry later; an unknown channel 404; else 400
        status = 503 if exc.temporary else 404 if exc.code == ErrorCode.UNKNOWN_CHANNEL else 400
        return _error(status, exc.code, exc.message)
    logger.error("HTTP API request failed", exc_info=exc)
    return _error(500, ErrorCode.INTERNAL, "internal error")


def _response_of(done: Reply[Result]) -> HTTPResponse:
    """The response for a resolved reply."""
    if done.error is not None:
        return _failure(done.error)
    return _ok(done.result())


def _all_settled(replies: list[Reply[Result]]) -> Reply[list[dict[str, Any]]]:
    """One reply for many: each result, or ``{"error": ...}`` for a failed one, in order."""
    results: list[dict[str, Any]] = [{} for _ in replies]
    combined: Reply[list[dict[str, Any]]] = Reply()
    waiting = [len(replies)]

    def settled(index: int, done: Reply[Result]) -> None:
        error = done.error
        if error is None:
            value = done.result()
            results[index] = value if isinstance(value, dict) else {}
        elif isinstance(error, HubError):
            results[index] = {"error": {"code": error.code, "message": error.message}}
        else:
            logger.error("broadcast: a publish failed", exc_info=error)
            results[index] = {"error": {"code": ErrorCode.INTERNAL, "message": "internal error"}}
        waiting[0] -= 1
        if waiting[0] == 0:
            combined.resolve(results)

    if not replies:
        combined.resolve(results)
    for index, reply in enumerate(replies):
        reply.observe(lambda done, index=index: settled(index, done))  # type: ignore[misc]
    return combined


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _api_key(request: HTTPRequest) -> str | None:
    authorization = request.header("Authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        return value.strip() if scheme.lower() == "apikey" else None
    return request.header("X-API-Key")


_ENDPOINTS: dict[str, Endpoint] = {
    "publish": HubHTTP.publish,
    "broadcast": HubHTTP.broadcast,
    "presence": HubHTTP.presence,
    "history": HubHTTP.history,
    "disconnect": HubHTTP.disconnect,
    "channels": HubHTTP.channels,
}
