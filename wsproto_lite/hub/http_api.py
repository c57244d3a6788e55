"""The hub's plain-HTTP side on the WebSocket port: the server API, ``/healthz``, ``/metrics``, static files.

The server API is shaped like Centrifugo v6's (``cent`` and Centrifugo's other HTTP API clients work
unchanged): ``POST /api/<method>`` with the parameters as a JSON object, the API key in ``X-API-Key: <key>``
or ``Authorization: apikey <key>``.  A result comes as ``{"result": {...}}``; an API error (an unknown
channel, a bad parameter, history off...) as HTTP **200** with ``{"error": {"code", "message"}}``, unless
the request says ``X-Centrifugo-Error-Mode: transport``: then as an HTTP status (500 internal, 404 unknown
channel, 400 bad request / not available, 416 unrecoverable position, 409 conflict; 503 for a temporary
108, the engine unavailable: retry).

Methods (parameters -> result):

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
- ``history_remove``: channel -> error 108 (not available: streams are not removable yet)
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
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..server.handler import DeferredResponse, HTTPResponse
from . import metrics
from .control import FORCE_DISCONNECT, Target
from .engine import MAX_IDEMPOTENCY_KEY, Reply
from .protocol import (
    DisconnectCode,
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

    from .engine import ClientInfo, HistoryResult, Publication
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

_NOT_HERE = HTTPResponse(404, _JSON, b'{"error":{"code":104,"message":"unknown method"}}')


MAX_BATCH = 1000
MAX_TAGS = 64

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

Result = dict[str, Any] | str
"""A result object, or its JSON text already built."""
Endpoint = Callable[["HubHTTP", dict[str, Any]], "Result | Reply[Result]"]


class _Body:
    """A whole response body (``batch``: its replies are not wrapped in ``result``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


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

    def _api(self, request: HTTPRequest, name: str) -> HTTPResponse | Reply[Result | _Body]:
        """The response, or the engine's reply still on its way."""
        if not self._authorized(request):  # first: without a key, no path tells what exists
            return _UNAUTHORIZED
        if name != "batch" and name not in _ENDPOINTS:
            return _error(404, ErrorCode.METHOD_NOT_FOUND, "unknown method")
        if request.method != "POST":
            return HTTPResponse(
                405, [*_JSON, ("Allow", "POST")], b'{"error":{"code":107,"message":"POST only"}}'
            )
        transport = _transport_mode(request)
        try:
            params = self._params(request)
            result = self._batch(params) if name == "batch" else _ENDPOINTS[name](self, params)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error response
            return _failure(exc, transport)
        if not isinstance(result, Reply):
            return _ok(result)
        if result.done:  # the in-memory engine: answered already
            return _response_of(result, transport)
        pending: Reply[Result | _Body] = result  # type: ignore[assignment]
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

    # -- methods ---------------------------------------------------------------------------------------

    def publish(self, params: dict[str, Any]) -> Reply[Result]:
        channel = get_channel(params)
        if "data" not in params:
            raise HubError(ErrorCode.BAD_REQUEST, "'data' is missing")
        _check_tags(params)
        return self.hub.publish(
            channel,
            params["data"],
            idempotency_key=get_str(
                params, "idempotency_key", required=False, max_length=MAX_IDEMPOTENCY_KEY
            ),
            skip_history=get_bool(params, "skip_history"),
        ).then(_published)

    def broadcast(self, params: dict[str, Any]) -> Reply[Result]:
        channels = params.get("channels")
        if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
            raise HubError(ErrorCode.BAD_REQUEST, "'channels' must be a list of channel names")
        if len(channels) > MAX_BROADCAST:
            raise HubError(ErrorCode.BAD_REQUEST, f"at most {MAX_BROADCAST} channels")
        if "data" not in params:
            raise HubError(ErrorCode.BAD_REQUEST, "'data' is missing")
        replies: list[Reply[Result]] = []
        for channel in channels:
            try:
                replies.append(self.publish({**params, "channel": channel}))
            except HubError as exc:
                replies.append(Reply.failed(exc))
        return _all_settled(replies, lambda result: {"result": result}).then(
            lambda responses: {"responses": responses}
        )

    def subscribe(self, params: dict[str, Any]) -> Result:
        self.hub.control.subscribe(_target(params), get_channel(params), params.get("data"))
        return {}

    def unsubscribe(self, params: dict[str, Any]) -> Result:
        channel = get_channel(params)
        self.hub.namespaces.resolve(channel, pattern_ok=True)
        self.hub.control.unsubscribe(_target(params), channel)
        return {}

    def disconnect(self, params: dict[str, Any]) -> Result:
        target = _target(params, whitelist=True)
        code, reason = FORCE_DISCONNECT, "force disconnect"
        given = params.get("disconnect")
        if given is not None:
            if not isinstance(given, dict):
                raise HubError(ErrorCode.BAD_REQUEST, "'disconnect' must be an object {code, reason}")
            first, last = DisconnectCode.FIRST, DisconnectCode.LAST
            code = get_int(given, "code", code, minimum=first, maximum=last)
            reason = get_str(given, "reason", required=False, max_length=120) or reason
        self.hub.control.disconnect(target, code, reason)
        return {}

    def refresh(self, params: dict[str, Any]) -> Result:
        target = _target(params)
        expired = get_bool(params, "expired")
        expire_at = (
            None if params.get("expire_at") is None else get_int(params, "expire_at", 0, maximum=2**40)
        )
        self.hub.control.refresh(target, expired=expired, expire_at=expire_at)
        return {}

    def presence(self, params: dict[str, Any]) -> Reply[Result]:
        channel = self.hub.namespaces.resolve(get_channel(params))
        if not channel.options.presence:
            raise HubError(ErrorCode.NOT_AVAILABLE, "presence is off in this namespace")
        return self.hub.engine.presence(channel.name).then(
            lambda infos: {"presence": {i.client: _client_info(i) for i in infos}}
        )

    def presence_stats(self, params: dict[str, Any]) -> Reply[Result]:
        channel = self.hub.namespaces.resolve(get_channel(params))
        if not channel.options.presence:
            raise HubError(ErrorCode.NOT_AVAILABLE, "presence is off in this namespace")
        return self.hub.engine.presence_stats(channel.name).then(
            lambda stats: {"num_clients": stats[0], "num_users": stats[1]}
        )

    def history(self, params: dict[str, Any]) -> Reply[Result]:
        channel = self.hub.namespaces.resolve(get_channel(params))
        if not channel.options.history:
            raise HubError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")
        cap = self.hub.limits.max_history_limit
        limit = get_int(params, "limit", 0, minimum=-1)
        return self.hub.engine.history(
            channel.name,
            channel.options,
            since=get_position(params, "since"),
            limit=cap if limit < 0 else min(limit, cap),
            reverse=get_bool(params, "reverse"),
        ).then(_history_json)

    def history_remove(self, params: dict[str, Any]) -> Result:
        channel = self.hub.namespaces.resolve(get_channel(params))
        if not channel.options.history:
            raise HubError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")
        raise HubError(ErrorCode.NOT_AVAILABLE, "history_remove is not available")

    def channels(self, params: dict[str, Any]) -> Reply[Result]:
        pattern = get_str(params, "pattern", required=False, max_length=255)
        return self.hub.control.channels(pattern).then(
            lambda counts: {"channels": {name: {"num_clients": n} for name, n in sorted(counts.items())}}
        )

    def info(self, params: dict[str, Any]) -> Reply[Result]:
        return self.hub.control.info().then(lambda nodes: {"nodes": nodes})

    def _batch(self, params: dict[str, Any]) -> Reply[Result | _Body]:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > MAX_BATCH:
            raise HubError(
                ErrorCode.BAD_REQUEST, f"'commands' must be a list of at most {MAX_BATCH} commands"
            )
        parallel = get_bool(params, "parallel")
        starts = [self._batch_command(command) for command in commands]
        if parallel:
            replies = _all_settled([start() for start in starts], None)
        else:
            replies = _in_order(starts)
        return replies.then(lambda items: _Body(dumps({"replies": items})))

    def _batch_command(self, command: Any) -> Callable[[], Reply[Result]]:
        """A batch command as a function that starts it; its reply is ``{method: result}``."""
        if not isinstance(command, dict) or len(command) != 1:
            error = HubError(ErrorCode.BAD_REQUEST, "a command is an object {method: params}")
            return lambda: Reply.failed(error)
        ((method, params),) = command.items()
        endpoint = _ENDPOINTS.get(method)
        if endpoint is None or not isinstance(params, dict):
            error = HubError(
                ErrorCode.METHOD_NOT_FOUND if endpoint is None else ErrorCode.BAD_REQUEST,
                "unknown method" if endpoint is None else "params must be an object",
            )
            return lambda: Reply.failed(error)

        def start() -> Reply[Result]:
            try:
                result = endpoint(self, params)
            except Exception as exc:  # noqa: BLE001 - the command's own error reply
                return Reply.failed(exc)
            reply = result if isinstance(result, Reply) else Reply.of(result)
            return reply.then(lambda value: {method: json.loads(value) if isinstance(value, str) else value})

        return start


def _target(params: dict[str, Any], *, whitelist: bool = False) -> Target:
    user = get_str(params, "user", max_length=256)
    if not user:
        raise HubError(ErrorCode.BAD_REQUEST, "'user' must be a user id")
    allowed: list[str] = []
    if whitelist and params.get("whitelist") is not None:
        given = params["whitelist"]
        if (
            not isinstance(given, list)
            or len(given) > MAX_BATCH
            or not all(isinstance(c, str) for c in given)
        ):
            raise HubError(ErrorCode.BAD_REQUEST, "'whitelist' must be a list of client ids")
        allowed = given
    return Target(
        user,
        get_str(params, "client", required=False, max_length=256),
        get_str(params, "session", required=False, max_length=256),
        allowed,
    )


def _check_tags(params: dict[str, Any]) -> None:
    tags = params.get("tags")
    if tags is None:
        return
    if (
        not isinstance(tags, dict)
        or len(tags) > MAX_TAGS
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise HubError(ErrorCode.BAD_REQUEST, f"'tags' must map at most {MAX_TAGS} strings to strings")


def _client_info(info: ClientInfo) -> dict[str, Any]:
    return info.as_dict()


def _published(publication: Publication) -> Result:
    return {} if publication.offset is None else {"offset": publication.offset, "epoch": publication.epoch}


def _history_json(history: HistoryResult) -> Result:
    items = ",".join(p.json for p in history.publications)
    position = history.position
    return f'{{"publications":[{items}],"epoch":{dumps(position.epoch)},"offset":{position.offset}}}'


def _transport_mode(request: HTTPRequest) -> bool:
    return (request.header(ERROR_MODE_HEADER) or "").strip().lower() == "transport"


def _ok(result: Result | _Body) -> HTTPResponse:
    if isinstance(result, _Body):
        return HTTPResponse(200, _JSON, result.text.encode())
    text = result if isinstance(result, str) else dumps(result)
    return HTTPResponse(200, _JSON, b'{"result":' + text.encode() + b"}")


def _as_hub_error(exc: BaseException) -> HubError:
    if isinstance(exc, HubError):
        return exc
    logger.error("HTTP API request failed", exc_info=exc)
    return HubError(ErrorCode.INTERNAL, "internal error")


def _failure(exc: BaseException, transport: bool) -> HTTPResponse:
    if isinstance(exc, _BadRequest):
        return _error(exc.status, exc.code, exc.message)
    error = _as_hub_error(exc)
    return _error(_transport_status(error) if transport else 200, error.code, error.message)


def _response_of(done: Reply[Any], transport: bool) -> HTTPResponse:
    """The response for a resolved reply."""
    if done.error is not None:
        return _failure(done.error, transport)
    return _ok(done.result())


def _error_json(error: BaseException) -> dict[str, Any]:
    hub_error = _as_hub_error(error)
    return {"error": {"code": hub_error.code, "message": hub_error.message}}


def _all_settled(
    replies: list[Reply[Result]], wrap: Callable[[Any], dict[str, Any]] | None
) -> Reply[list[dict[str, Any]]]:
    """One reply for many: each result (``wrap``-ped), or ``{"error": ...}`` for a failed one, in order."""
    results: list[dict[str, Any]] = [{} for _ in replies]
    combined: Reply[list[dict[str, Any]]] = Reply()
    waiting = [len(replies)]

    def settled(index: int, done: Reply[Result]) -> None:
        if done.error is None:
            value = done.result()
            value = json.loads(value) if isinstance(value, str) else value
            results[index] = wrap(value) if wrap is not None else value
        else:
            results[index] = _error_json(done.error)
        waiting[0] -= 1
        if waiting[0] == 0:
            combined.resolve(results)

    if not replies:
        combined.resolve(results)
    for index, reply in enumerate(replies):
        reply.observe(lambda done, index=index: settled(index, done))  # type: ignore[misc]
    return combined


def _in_order(starts: list[Callable[[], Reply[Result]]]) -> Reply[list[dict[str, Any]]]:
    """Run the commands one after another (each once the previous answered); their replies in order.
    Iterative while the answers are immediate (the in-memory engine): no recursion per command."""
    results: list[dict[str, Any]] = []
    combined: Reply[list[dict[str, Any]]] = Reply()

    def record(done: Reply[Result]) -> None:
        if done.error is None:
            value = done.result()
            results.append(value if isinstance(value, dict) else json.loads(value))
        else:
            results.append(_error_json(done.error))

    def run_from(index: int) -> None:
        while index < len(starts):
            reply = starts[index]()
            index += 1
            if not reply.done:
                reply.observe(lambda done, at=index: _then_run(record, done, run_from, at))  # type: ignore[misc]
                return
            record(reply)
        combined.resolve(results)

    run_from(0)
    return combined


def _then_run(
    record: Callable[[Reply[Result]], None], done: Reply[Result], run_from: Callable[[int], None], at: int
) -> None:
    record(done)
    run_from(at)


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


_ENDPOINTS: dict[str, Endpoint] = {
    "publish": HubHTTP.publish,
    "broadcast": HubHTTP.broadcast,
    "subscribe": HubHTTP.subscribe,
    "unsubscribe": HubHTTP.unsubscribe,
    "disconnect": HubHTTP.disconnect,
    "refresh": HubHTTP.refresh,
    "presence": HubHTTP.presence,
    "presence_stats": HubHTTP.presence_stats,
    "history": HubHTTP.history,
    "history_remove": HubHTTP.history_remove,
    "channels": HubHTTP.channels,
    "info": HubHTTP.info,
}
"""Every method but ``batch`` (which runs these)."""
