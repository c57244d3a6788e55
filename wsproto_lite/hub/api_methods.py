"""The server API's methods (``publish``, ``broadcast``, ``presence``, ``batch``...): parameters in, a result
or the engine's reply out.  Routing, the API key, the request body and the HTTP responses are
``http_api.py``'s (``HubHTTP``); the methods and their parameters are listed in its docstring."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .control import FORCE_DISCONNECT, Target
from .engine import MAX_IDEMPOTENCY_KEY, Reply
from .payloads import StoredPayload, payload_of_bytes
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
)

if TYPE_CHECKING:
    from .engine import ClientInfo, HistoryResult, Publication
    from .hub import Hub

__all__ = [
    "ApiMethods",
    "Body",
    "ENDPOINTS",
    "MAX_BATCH",
    "MAX_BROADCAST",
    "MAX_TAGS",
    "Result",
    "as_hub_error",
]

logger = logging.getLogger("wsproto_lite.hub.http")

MAX_BROADCAST = 1000
MAX_BATCH = 1000
MAX_TAGS = 64

Result = dict[str, Any] | str
"""A result object, or its JSON text already built."""
Endpoint = Callable[["ApiMethods", dict[str, Any]], "Result | Reply[Result]"]


class Body:
    """A whole response body (``batch``: its replies are not wrapped in ``result``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _data(params: dict[str, Any]) -> Any:
    """``data`` (a JSON value) or ``b64data`` (bytes in base64: Centrifugo v6's ``PublishRequest`` and
    ``BroadcastRequest``, for binary payloads), stored as a protobuf client's ``data`` would be
    (``payloads.payload_of_bytes``: JSON subscribers get binary bytes as their base64 string)."""
    if "b64data" in params:
        b64data = params["b64data"]
        try:
            if not isinstance(b64data, str):
                raise ValueError
            raw = base64.b64decode(b64data, validate=True)
        except ValueError:  # binascii.Error is one
            raise HubError(ErrorCode.BAD_REQUEST, "'b64data' must be base64") from None
        if raw:
            return StoredPayload(payload_of_bytes(raw)[1])
    if "data" not in params:
        raise HubError(ErrorCode.BAD_REQUEST, "'data' is missing")
    return params["data"]


class ApiMethods:
    """The server API's methods on one hub; each raises ``HubError`` for bad parameters."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def publish(self, params: dict[str, Any]) -> Reply[Result]:
        channel = get_channel(params)
        data = _data(params)
        tags = _tags(params)
        return self.hub.publish(
            channel,
            data,
            idempotency_key=get_str(
                params, "idempotency_key", required=False, max_length=MAX_IDEMPOTENCY_KEY
            ),
            skip_history=get_bool(params, "skip_history"),
            tags=tags,
        ).then(_published)

    def broadcast(self, params: dict[str, Any]) -> Reply[Result]:
        channels = params.get("channels")
        if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
            raise HubError(ErrorCode.BAD_REQUEST, "'channels' must be a list of channel names")
        if len(channels) > MAX_BROADCAST:
            raise HubError(ErrorCode.BAD_REQUEST, f"at most {MAX_BROADCAST} channels")
        _data(params)
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

    def history_remove(self, params: dict[str, Any]) -> Reply[Result]:
        channel = self.hub.namespaces.resolve(get_channel(params))
        if not channel.options.history:
            raise HubError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")
        return self.hub.engine.remove_history(channel.name).then(lambda _: {})

    def channels(self, params: dict[str, Any]) -> Reply[Result]:
        pattern = get_str(params, "pattern", required=False, max_length=255)
        return self.hub.control.channels(pattern).then(
            lambda counts: {"channels": {name: {"num_clients": n} for name, n in sorted(counts.items())}}
        )

    def info(self, params: dict[str, Any]) -> Reply[Result]:
        return self.hub.control.info().then(lambda nodes: {"nodes": nodes})

    def batch(self, params: dict[str, Any]) -> Reply[Result | Body]:
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
        return replies.then(lambda items: Body(dumps({"replies": items})))

    def _batch_command(self, command: Any) -> Callable[[], Reply[Result]]:
        """A batch command as a function that starts it; its reply is ``{method: result}``."""
        if not isinstance(command, dict) or len(command) != 1:
            error = HubError(ErrorCode.BAD_REQUEST, "a command is an object {method: params}")
            return lambda: Reply.failed(error)
        ((method, params),) = command.items()
        endpoint = ENDPOINTS.get(method)
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


def _tags(params: dict[str, Any]) -> dict[str, str] | None:
    """The publish's ``tags`` (Centrifugo's ``map<string, string>``), checked."""
    tags = params.get("tags")
    if tags is None:
        return None
    if (
        not isinstance(tags, dict)
        or len(tags) > MAX_TAGS
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise HubError(ErrorCode.BAD_REQUEST, f"'tags' must map at most {MAX_TAGS} strings to strings")
    return tags


def _client_info(info: ClientInfo) -> dict[str, Any]:
    return info.as_dict()


def _published(publication: Publication) -> Result:
    return {} if publication.offset is None else {"offset": publication.offset, "epoch": publication.epoch}


def _history_json(history: HistoryResult) -> Result:
    items = ",".join(p.json for p in history.publications)
    position = history.position
    return f'{{"publications":[{items}],"epoch":{dumps(position.epoch)},"offset":{position.offset}}}'


def as_hub_error(exc: BaseException) -> HubError:
    if isinstance(exc, HubError):
        return exc
    logger.error("HTTP API request failed", exc_info=exc)
    return HubError(ErrorCode.INTERNAL, "internal error")


def _error_json(error: BaseException) -> dict[str, Any]:
    hub_error = as_hub_error(error)
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


ENDPOINTS: dict[str, Endpoint] = {
    "publish": ApiMethods.publish,
    "broadcast": ApiMethods.broadcast,
    "subscribe": ApiMethods.subscribe,
    "unsubscribe": ApiMethods.unsubscribe,
    "disconnect": ApiMethods.disconnect,
    "refresh": ApiMethods.refresh,
    "presence": ApiMethods.presence,
    "presence_stats": ApiMethods.presence_stats,
    "history": ApiMethods.history,
    "history_remove": ApiMethods.history_remove,
    "channels": ApiMethods.channels,
    "info": ApiMethods.info,
}
"""Every method but ``batch`` (which runs these)."""
