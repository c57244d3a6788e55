"""The commands a hook answers (``hooks.py``): where each of Centrifugo's proxies is asked, as
centrifuge's ``client.go`` fires the events (``connectCmd`` -> ``OnConnecting``; ``expire`` ->
``OnRefresh``; ``subscribeCmd`` -> ``OnSubscribe``; ``publishCmd`` -> ``OnPublish``; ``handleRPC``;
``handleSend``) and centrifugo's ``internal/client/handler.go`` chooses the proxy:

- ``connect``: a ``connect`` without a token and without upgrade credentials (``OnClientConnecting``:
  a token is verified first, the connect proxy only asked without one);
- ``refresh``: when a connection the connect hook made expires (server-side refresh: its connect result
  has no ``expires``; ``ClientSideRefresh`` is off when a refresh proxy is on);
- ``subscribe``: a ``subscribe`` without a subscription token (the hook replaces the namespace's
  permission check); ``sub_refresh``: when a subscription it gave an ``expire_at`` expires;
- ``publish``: every client ``publish`` (the hook replaces ``allow_publish``); ``rpc``; ``send``.

This object refers to its hub weakly (the hub owns it).
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .auth import Identity
from .engine import Publication, Reply
from .hook_answers import connect_identity, expired, expiry, json_field, publish_data
from .hooks import HookDisconnect, now
from .part import HubPart
from .protocol import DisconnectCode, ErrorCode, HubError, UnsubscribeCode, get_str
from .session import Answer, Result, Session, Subscription
from .subscribing import _with_token_data, subscribe_flags

if TYPE_CHECKING:
    from .hub import Hub
    from .namespaces import Channel

__all__ = ["HookCommands", "RETRY_DELAY"]

#: Seconds before a subscription's failed ``sub_refresh`` is asked again.
RETRY_DELAY = 10.0


class HookCommands(HubPart):
    """Runs the commands that go through a hook (``hub.hook_commands``)."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)

    def connect(
        self, session: Session, params: dict[str, Any], display: str, recover: dict[str, Any]
    ) -> Answer:
        """``connect`` answered by the connect hook (``ConnectRequest`` -> ``ConnectResult``)."""
        hub = self.hub
        client = secrets.token_urlsafe(12)
        fields: dict[str, Any] = {"client": client}
        for name in ("name", "version"):
            if params.get(name):
                fields[name] = params[name]
        if "data" in params:
            fields["data"] = params["data"]
        if recover:
            fields["channels"] = list(recover)
        request = hub.hook_runner.request(session, **fields)
        session.connecting = True
        max_name = hub.limits.max_name_length

        def parse(result: dict[str, Any]) -> tuple[Identity, str]:
            return connect_identity(result, max_name)

        def answered(answer: tuple[Identity, str]) -> Answer:
            if session.closed or session.info is not None:
                raise HubError(ErrorCode.BAD_REQUEST, "already connected")
            identity, data_json = answer
            session.server_refresh = identity.expires is not None and hub.hook_runner.has("refresh")
            return hub.commands.connect_as(session, identity, display, recover, data_json, client)

        reply: Reply[Result] = hub.hook_runner.call(session, "connect", request, parse).then(answered)
        reply.observe(lambda _: _connected(session))
        return reply

    def refresh(self, session: Session) -> None:
        """The connection expired: ask the refresh hook (centrifuge ``client.go`` ``expire``)."""
        hub = self.hub
        session.expires = None  # asked once: the answer sets the next expiry
        request = hub.hook_runner.request(session)
        hub.hook_runner.call(session, "refresh", request, _refresh_answer).observe(
            lambda done: self._refreshed(session, done)
        )

    def _refreshed(self, session: Session, done: Reply[float | None]) -> None:
        hub = self.hub
        if session.closed:
            return
        error = done.error
        if error is not None:
            # centrifuge client.go expire: a disconnect closes with it, any other error with 3004
            if isinstance(error, HookDisconnect):
                hub.disconnect(session.conn, error.disconnect_code, error.message)
            else:
                hub.disconnect(session.conn, DisconnectCode.SERVER_ERROR, "internal server error")
            return
        at = done.result()
        if at is None:
            hub.disconnect(session.conn, DisconnectCode.TOKEN_EXPIRED, "connection expired")
            return
        session.expires = hub._now() + max(0.0, at - now())

    def subscribe(self, session: Session, params: dict[str, Any]) -> Answer:
        """``subscribe`` answered by the subscribe hook (``SubscribeRequest`` -> ``SubscribeResult``)."""
        hub = self.hub
        commands = hub.commands
        channel, recover, _ = commands.admit(session, params, authorize=False)
        asked, reject_unrecovered = subscribe_flags(params)
        fields: dict[str, Any] = {"channel": channel.name}
        if "data" in params:
            fields["data"] = params["data"]
        request = hub.hook_runner.request(session, **fields)

        def answered(answer: tuple[str, str, float | None]) -> Answer:
            commands.check_room(session, channel)  # another subscribe to it may have won meanwhile
            info, data_json, expires = answer
            subscription = Subscription(channel, session.conn, chan_info=info, by_hook=True)
            opened = commands.open(
                session, subscription, recover, asked, None, reject_unrecovered=reject_unrecovered
            )
            if expires is not None:
                hub._expiring[subscription] = hub._now() + max(0.0, expires - now())
            return opened.then(_with_token_data(data_json)) if data_json else opened

        return hub.hook_runner.call(session, "subscribe", request, _subscribe_answer).then(answered)

    def sub_refresh(self, session: Session, subscription: Subscription) -> None:
        """A hook's subscription expired: ask ``sub_refresh`` (without that hook it ends, 2501)."""
        hub = self.hub
        name = subscription.channel.name
        if not hub.hook_runner.has("sub_refresh"):
            del session.subscriptions[name]
            hub.conns.end_subscription(session, subscription, UnsubscribeCode.EXPIRED, "subscription expired")
            return
        hub._expiring[subscription] = hub._now() + RETRY_DELAY  # not asked again meanwhile
        request = hub.hook_runner.request(session, channel=name)
        hub.hook_runner.call(session, "sub_refresh", request, _refresh_answer).observe(
            lambda done: self._sub_refreshed(session, subscription, done)
        )

    def _sub_refreshed(self, session: Session, subscription: Subscription, done: Reply[float | None]) -> None:
        hub = self.hub
        name = subscription.channel.name
        if session.closed or session.subscriptions.get(name) is not subscription:
            return
        if isinstance(done.error, HookDisconnect):
            hub.disconnect(session.conn, done.error.disconnect_code, done.error.message)
            return
        if done.error is not None:
            return  # asked again after RETRY_DELAY
        at = done.result()
        if at is None:
            del session.subscriptions[name]
            hub.conns.end_subscription(session, subscription, UnsubscribeCode.EXPIRED, "subscription expired")
            return
        hub._expiring[subscription] = hub._now() + max(0.0, at - now())

    def publish(self, session: Session, channel: Channel, data: Any, data_json: str) -> Reply[Publication]:
        """``publish`` through the publish hook (``PublishRequest`` -> ``PublishResult``: the data may be
        replaced, the history skipped)."""
        hub = self.hub
        request = hub.hook_runner.request(session, channel=channel.name, data=data)

        def parse(result: dict[str, Any]) -> tuple[str, bool]:
            return publish_data(result, data_json)

        def answered(answer: tuple[str, bool]) -> Reply[Publication]:
            published, skip_history = answer
            options = channel.options
            if skip_history and options.history:
                options = replace(options, history_size=0, history_ttl=0.0)
            return hub.engine.publish(channel.name, published, session.info_json, options)

        return hub.hook_runner.call(session, "publish", request, parse).then(answered)

    def rpc(self, session: Session, params: dict[str, Any]) -> Answer:
        """``rpc`` answered by the rpc hook (``RPCRequest`` -> ``RPCResult``); 108 without one, as
        centrifuge's ``handleRPC`` without an ``OnRPC`` handler."""
        hub = self.hub
        if not hub.hook_runner.has("rpc"):
            raise HubError(ErrorCode.NOT_AVAILABLE, "rpc is not available")
        method = get_str(params, "method", required=False, max_length=hub.limits.max_name_length)
        request = hub.hook_runner.request(session, method=method, data=params.get("data"))
        return hub.hook_runner.call(session, "rpc", request, _rpc_result)

    def send(self, session: Session, params: dict[str, Any]) -> None:
        """``send``: to the send hook, nothing answered (centrifuge ``handleSend``)."""
        hub = self.hub
        request = hub.hook_runner.request(session, data=params.get("data"))
        hub.hook_runner.call(session, "send", request)


def _connected(session: Session) -> None:
    session.connecting = False


def _refresh_answer(result: dict[str, Any]) -> float | None:
    """A ``RefreshResult``/``SubRefreshResult``: the new wall-clock expiry, None when expired."""
    at = expiry(result)
    return None if expired(result) or at is None else at


def _subscribe_answer(result: dict[str, Any]) -> tuple[str, str, float | None]:
    """A ``SubscribeResult``: ``info`` and ``data`` (JSON text) and ``expire_at``."""
    return json_field(result, "info"), json_field(result, "data"), expiry(result)


def _rpc_result(result: dict[str, Any]) -> Result:
    data_json = json_field(result, "data")
    return f'{{"data":{data_json}}}' if data_json else {}
