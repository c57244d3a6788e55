"""The commands of one connection: a frame's commands checked against the connection's limits, then
``connect``, ``refresh``, ``publish``, ``presence``, ``history``... (the subscription commands are in
``subscribing.py``); each answer goes out through ``replies.py`` in command order.

Bad input never raises out of here: a frame that does not parse closes the connection (3501), a bad
command becomes an ``error`` reply.  This object refers to its hub weakly (the hub owns it).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wsproto_lite import CloseCode

from .auth import ANONYMOUS, AuthFailure, Identity
from .bound import publications_size
from .engine import ClientInfo, HistoryResult, Publication, Reply
from .payloads import payload_json
from .pb_frames import commands_of
from .protocol import (
    PONG,
    SEND,
    BadFrame,
    Command,
    DisconnectCode,
    ErrorCode,
    HubError,
    Position,
    dumps,
    get_bool,
    get_channel,
    get_display_str,
    get_int,
    get_position,
    get_str,
    parse_frame,
)
from .session import Answer, ConnectRefused, Result, Session
from .subscribing import REPLY_HEAD, SubscribeCommands, gather, with_publications, with_subs

if TYPE_CHECKING:
    from .namespaces import Channel

__all__ = ["Commands", "VERSION"]

#: ``version`` of the connect and refresh results.
VERSION = "wsproto-lite"


class Commands(SubscribeCommands):
    """Runs each connection's commands (``hub.commands``)."""

    def receive(self, session: Session, message: str | bytes) -> None:
        """A frame from the connection (``Hub.on_message``)."""
        hub = self.hub
        protobuf = session.conn in hub.conns.protobuf
        if isinstance(message, str) == protobuf:
            # RFC 6455 §7.4.1: 1003, "received a type of data it cannot accept"
            hub.conns.end(session)
            expected = "protobuf binary" if protobuf else "JSON text"
            hub.conns.close(
                session.conn, CloseCode.UNSUPPORTED_DATA, f"the hub speaks {expected} frames here"
            )
            return
        hub.stats.messages_in += 1
        hub.stats.bytes_in += len(message)
        try:
            commands = commands_of(message) if isinstance(message, bytes) else parse_frame(message)
        except BadFrame as exc:
            # nothing to answer (no id to repeat): Centrifugo closes with 3501 bad request (a protobuf
            # command that does not decode too: centrifuge/client.go, DisconnectBadRequest)
            hub.stats.errors += 1
            hub.disconnect(session.conn, DisconnectCode.BAD_REQUEST, str(exc))
            return
        now = hub._now()
        refusal, limit = self._frame_refusal(session, message, now)
        if refusal is not None and hub.conns.tripped(session, limit):
            return
        for command in commands:
            if session.closed:
                return
            self._one(session, command, refusal, now)

    def _pong(self, session: Session) -> None:
        """``{}`` answers the outstanding ping; with none outstanding (before the first ping, or a second
        ``{}`` for one ping) it is a bad request, as in centrifuge's client.go ``dispatchCommand``
        ("disconnect client due to unnecessary pong": ``DisconnectBadRequest``)."""
        if session.pong_due is None:
            self.hub.disconnect(session.conn, DisconnectCode.BAD_REQUEST, "unnecessary pong")
        else:
            session.pong_due = None

    def _frame_refusal(
        self, session: Session, message: str | bytes, now: float
    ) -> tuple[HubError | None, str]:
        """The error every command of a frame gets (too large, too many bytes) and the limit's name."""
        if len(message) > self.hub.limits.max_command_size:
            return HubError(ErrorCode.LIMIT_EXCEEDED, "command too large"), "command_size"
        if not session.identity.trusted and not session.byte_bucket.take(now, len(message)):
            error = HubError(ErrorCode.TOO_MANY_REQUESTS, "too many requests", temporary=True)
            return error, "bytes_per_connection"
        return None, ""

    def _one(
        self, session: Session, command: Command | tuple[int, HubError], refusal: HubError | None, now: float
    ) -> None:
        hub = self.hub
        if isinstance(command, tuple):
            hub.stats.commands += 1
            hub.replies.send_error(session, command[0], command[1])
        elif command.method == PONG:
            self._pong(session)
        elif command.method == SEND:
            hub.stats.commands += 1
            # to the send hook when there is one (else dropped); a connected client's, within its rate
            if session.info is not None and hub.hook_runner.has("send") and refusal is None:
                if session.identity.trusted or session.command_bucket.take(now):
                    hub.hook_commands.send(session, command.params)
        else:
            hub.stats.commands += 1
            if refusal is not None:
                hub.replies.send_error(session, command.id, refusal)
            elif not session.identity.trusted and not session.command_bucket.take(now):
                # an API-key client (the operator's own server) is not limited
                if hub.conns.tripped(session, "commands_per_connection"):
                    return
                error = HubError(ErrorCode.TOO_MANY_REQUESTS, "too many requests", temporary=True)
                hub.replies.send_error(session, command.id, error)
            else:
                hub.replies.run(session, command, self.answer(session, command))

    def answer(self, session: Session, command: Command) -> Answer:
        """The command's answer; a failure is a failed reply (it becomes an ``error`` reply)."""
        try:
            if command.method == "connect":
                return self.connect(session, command.params)
            if session.info is None:
                raise HubError(ErrorCode.BAD_REQUEST, "the first command must be connect")
            return _COMMANDS[command.method](self, session, command.params)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
            return Reply.failed(exc)

    # -- connect, refresh --------------------------------------------------------------------------

    def connect(self, session: Session, params: dict[str, Any]) -> Answer:
        hub = self.hub
        if session.info is not None or session.connecting:
            raise HubError(ErrorCode.BAD_REQUEST, "already connected")
        token = get_str(params, "token", required=False, max_length=8192)
        get_str(params, "name", required=False, max_length=hub.limits.max_name_length)  # the SDK's name
        get_str(params, "version", required=False, max_length=hub.limits.max_name_length)
        display = _display_name(params.get("data"), hub.limits.max_name_length)
        recover = _connect_subs(params.get("subs"))
        if not token and session.identity is ANONYMOUS and hub.hook_runner.has("connect"):
            # centrifugo internal/client/handler.go OnClientConnecting: a token first, else the proxy
            return hub.hook_commands.connect(session, params, display, recover)
        return self.connect_as(session, self.identify(session, token), display, recover)

    def connect_as(
        self,
        session: Session,
        identity: Identity,
        display: str,
        recover: dict[str, Position],
        data_json: str = "",
        client: str = "",
    ) -> Answer:
        """Connect ``session`` as ``identity``: the ``ConnectResult`` (``data``: the connect hook's), then
        its server-side subscriptions."""
        hub = self.hub
        self._admit_user(identity)
        info = self._connected(session, identity, display, client)
        result: dict[str, Any] = {
            "client": info.client,
            "version": VERSION,
            "ping": int(hub.limits.ping_interval),
            "pong": True,
        }
        if data_json:
            result["data"] = json.loads(data_json)
        self.set_expiry(session, result)
        channels = [c for c in identity.server_channels if c not in session.subscriptions]
        if not channels:
            return result
        opened = [
            self.server_subscription(session, name, recover.get(name), identity.options_of(name))
            for name in channels
        ]
        return gather([reply for reply in opened if reply is not None]).then(
            lambda subscribed: with_subs(result, subscribed)
        )

    def _admit_user(self, identity: Identity) -> None:
        """Refuse a user over ``max_connections_per_user`` (3 connection limit after the error)."""
        hub = self.hub
        user = identity.user
        if user and not identity.trusted:
            if hub.users.count(user) >= hub.rate_limits.max_connections_per_user:
                hub.stats.trip("connections_per_user")
                raise ConnectRefused(
                    ErrorCode.LIMIT_EXCEEDED, "connection limit", DisconnectCode.CONNECTION_LIMIT
                )

    def _connected(self, session: Session, identity: Identity, display: str, client: str) -> ClientInfo:
        """The session is connected as ``identity``: a client id, its user's count, the first ping."""
        hub = self.hub
        session.identity = identity
        conn_info = identity.info or (dumps({"name": display}) if display else "")
        session.info = ClientInfo(client or secrets.token_urlsafe(12), identity.user, conn_info)
        hub._clients[session.info.client] = session.conn
        if identity.user:
            hub.users.add(identity.user, session.conn)
        session.info_json = session.info.as_json()
        session.ping_due = hub._now() + hub.limits.ping_interval
        if hub.webhooks is not None:
            hub.webhooks.connection_opened(session.info)
        return session.info

    def identify(self, session: Session, token: str) -> Identity:
        """The identity ``connect`` establishes: its token, else the upgrade's credentials, else anonymous."""
        hub = self.hub
        if token:
            if hub.authenticate is not None:  # the former hook
                user = hub.authenticate(token, session.conn.request)
                return Identity(user=user, anonymous=not user)
            identity = hub.auth.verify_token(token)
            if identity.anonymous and not hub.authz.anonymous_connections:
                raise AuthFailure()  # a token without ``sub`` is anonymous: allowed only where they are
            return identity
        if session.identity is not ANONYMOUS:
            return session.identity
        if hub.authz.anonymous_connections:
            return ANONYMOUS
        raise AuthFailure()

    def set_expiry(self, session: Session, result: dict[str, Any]) -> dict[str, Any]:
        expires = session.identity.expires
        if expires is None:
            session.expires = None
            return result
        hub = self.hub
        ttl = max(0.0, expires - time.time())
        if session.server_refresh:  # the refresh hook extends it: nothing for the client to do
            session.expires = hub._now() + ttl
            return result
        session.expires = hub._now() + ttl + hub.limits.expired_close_delay
        result["expires"] = True
        result["ttl"] = int(ttl)
        return result

    def refresh(self, session: Session, params: dict[str, Any]) -> Result:
        """A new token for a live connection: same user, new expiry (and grants)."""
        identity = self.hub.auth.verify_token(get_str(params, "token", max_length=8192))
        if identity.user != session.identity.user:
            raise AuthFailure()
        session.identity = identity
        self.recheck_subscriptions(session)
        assert session.info is not None
        return self.set_expiry(session, {"client": session.info.client, "version": VERSION})

    # -- publish, presence, history ----------------------------------------------------------------

    def publish(self, session: Session, params: dict[str, Any]) -> Answer:
        hub = self.hub
        channel = hub.namespaces.resolve(get_channel(params))
        if not hub.hook_runner.has("publish"):
            subscribed = channel.name in session.subscriptions
            hub.authz.check_publish(session.identity, channel, subscribed=subscribed)
        if "data" not in params:
            raise HubError(ErrorCode.BAD_REQUEST, "'data' is missing")
        try:
            data_json = payload_json(params)
        except (ValueError, RecursionError):
            raise HubError(ErrorCode.BAD_REQUEST, "'data' cannot be encoded as JSON") from None
        if hub.hook_runner.has("publish"):
            # centrifugo internal/client/handler.go OnPublish: the proxy decides, may replace the data
            return hub.hook_commands.publish(session, channel, params["data"], data_json).then(
                _publish_result
            )
        return hub.engine.publish(channel.name, data_json, session.info_json, channel.options).then(
            _publish_result
        )

    def readable(self, session: Session, params: dict[str, Any]) -> Channel:
        """The command's channel, after the authorization check for reading it (presence, history)."""
        hub = self.hub
        channel = hub.namespaces.resolve(get_channel(params))
        subscribed = channel.name in session.subscriptions
        hub.authz.check_read(session.identity, channel, subscribed=subscribed)
        return channel

    def presence_channel(self, session: Session, params: dict[str, Any]) -> Channel:
        channel = self.readable(session, params)
        if not channel.options.presence:
            raise HubError(ErrorCode.NOT_AVAILABLE, "presence is off in this namespace")
        return channel

    def presence(self, session: Session, params: dict[str, Any]) -> Answer:
        channel = self.presence_channel(session, params)
        return self.hub.engine.presence(channel.name).then(_presence_result)

    def presence_stats(self, session: Session, params: dict[str, Any]) -> Answer:
        channel = self.presence_channel(session, params)
        return self.hub.engine.presence_stats(channel.name).then(
            lambda stats: {"num_clients": stats[0], "num_users": stats[1]}
        )

    def history(self, session: Session, params: dict[str, Any]) -> Answer:
        """``limit``: 0 (the default) = the stream position only, -1 = everything held, up to the cap."""
        hub = self.hub
        channel = self.readable(session, params)
        if not channel.options.history:
            raise HubError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")
        cap = hub.limits.max_history_limit
        limit = get_int(params, "limit", 0, minimum=-1)
        since = get_position(params, "since")
        reverse = get_bool(params, "reverse")
        if limit == 0:
            return hub.engine.position(channel.name, channel.options).then(
                lambda position: with_publications({"epoch": position.epoch, "offset": position.offset}, [])
            )
        return hub.engine.history(
            channel.name,
            channel.options,
            since=since,
            limit=cap if limit < 0 else min(limit, cap),
            reverse=reverse,
        ).then(self.history_result)

    def history_result(self, history: HistoryResult) -> Result:
        """The ``history`` result, unless it would be larger than a reply may be: then error 106."""
        hub = self.hub
        if publications_size(history.publications) > hub.bound.max_reply - REPLY_HEAD:
            hub.stats.trip("reply_size")
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "reply too large: ask for fewer publications")
        position = history.position
        return with_publications({"epoch": position.epoch, "offset": position.offset}, history.publications)

    def ping(self, session: Session, params: dict[str, Any]) -> Result:
        # centrifuge client.go handlePing: "Ping not supported by protocol v2" -> ErrorNotAvailable (108);
        # the SDKs never send it (they answer the hub's ``{}`` pings)
        raise HubError(ErrorCode.NOT_AVAILABLE, "not available")

    def rpc(self, session: Session, params: dict[str, Any]) -> Answer:
        return self.hub.hook_commands.rpc(session, params)


#: Method name -> handler (plain functions: a table of bound methods would be a reference cycle).
_COMMANDS: dict[str, Callable[[Commands, Session, dict[str, Any]], Answer]] = {
    "refresh": Commands.refresh,
    "subscribe": Commands.subscribe,
    "unsubscribe": Commands.unsubscribe,
    "publish": Commands.publish,
    "presence": Commands.presence,
    "presence_stats": Commands.presence_stats,
    "history": Commands.history,
    "ping": Commands.ping,
    "sub_refresh": Commands.sub_refresh,
    "rpc": Commands.rpc,
}


def _display_name(data: object, max_length: int) -> str:
    """Our extension: a connect ``data`` of ``{"name": ...}`` becomes ``conn_info`` ``{"name": ...}`` when
    the token gives no ``info`` (an anonymous chat user's display name); 107 for one with hidden marks."""
    if not isinstance(data, dict) or "name" not in data:
        return ""
    return get_display_str(data, "name", max_length=max_length)


def _connect_subs(value: object) -> dict[str, Position]:
    """Connect ``subs``: ``{channel: {"recover": true, "epoch", "offset"}}`` -> where to recover from."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 1024:
        raise HubError(ErrorCode.BAD_REQUEST, "'subs' must be an object of channels")
    positions: dict[str, Position] = {}
    for name, request in value.items():
        if not isinstance(request, dict):
            raise HubError(ErrorCode.BAD_REQUEST, "'subs' entries must be objects")
        if get_bool(request, "recover"):
            epoch = get_str(request, "epoch", required=False, max_length=64)
            positions[name] = Position(epoch, get_int(request, "offset", 0))
    return positions


def _presence_result(infos: list[ClientInfo]) -> str:
    """``{"presence": {client: ClientInfo}}`` from the infos' JSON."""
    items = ",".join(f"{dumps(info.client)}:{info.as_json()}" for info in infos)
    return f'{{"presence":{{{items}}}}}'


def _publish_result(publication: Publication) -> Result:
    return {} if publication.offset is None else {"offset": publication.offset, "epoch": publication.epoch}
