"""The node-to-node control channel: server-side operations that reach every hub node.

A hub node serves only its own connections, so an operation of the HTTP API on "user 42" must run on
every node: ``disconnect``, ``unsubscribe``, ``subscribe``, ``refresh``, and API-key revocation.  The
node that gets the request applies it to its own connections at once (its answer, and its errors, are
the API's) and sends it over the engine's control channel (:meth:`Engine.publish_control`) to the
others, which apply it when it arrives (fire and forget, as Centrifugo does).

``channels`` and ``info`` need every node's answer: they are a request over the control channel and
the answers of the nodes this one knows of, with a bounded wait (``REQUEST_TIMEOUT``): a node that does
not answer in time is left out of that answer and forgotten until it is heard from again.  Nodes know
each other from the control channel itself: a node says ``hello`` once it listens (every node answers
``here``), then every ``BEAT_INTERVAL`` seconds; one not heard from for ``3 * BEAT_INTERVAL`` is
forgotten; a stopping node says ``bye``.  With the in-memory engine there are no other nodes: every
operation is local and every answer immediate.

Messages are JSON objects ``{"from": <node uid>, "op": ..., ...}`` on one channel; a node ignores its
own.  A malformed message (not ours) is counted (``bad_messages``) and ignored.  Bounds: at most
``MAX_REQUESTS`` requests of this node in flight (more: error 108, temporary), each one's state freed
when it completes or times out; the known nodes are bounded by ``MAX_NODES``.

The hub is referred to weakly: the control object is owned by its hub and keeps no cycle with it.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from wsproto_lite import __version__

from .engine import Reply
from .part import HubPart
from .protocol import DisconnectCode, ErrorCode, HubError, dumps

if TYPE_CHECKING:
    from .hub import Hub
    from .transport import Cancellable, HubConnection, HubLoop

__all__ = [
    "ClusterControl",
    "FORCE_DISCONNECT",
    "CONNECTION_EXPIRED",
    "REQUEST_TIMEOUT",
    "BEAT_INTERVAL",
    "Target",
]

logger = logging.getLogger("wsproto_lite.hub.control")

FORCE_DISCONNECT = DisconnectCode.FORCE_DISCONNECT
"""Centrifugo's "force disconnect" (terminal): the default code of ``/api/disconnect``."""
CONNECTION_EXPIRED = DisconnectCode.CONNECTION_EXPIRED
"""Centrifugo's "connection expired" (reconnect with a fresh token): ``/api/refresh`` with ``expired``."""

REQUEST_TIMEOUT = 1.0
"""Seconds a cluster-wide ``channels``/``info`` waits for the other nodes' answers."""
BEAT_INTERVAL = 5.0
"""Seconds between a node's ``hello`` messages; one silent for three of them is forgotten."""
MAX_REQUESTS = 64
MAX_NODES = 1024


class Target:
    """Which connections of a user an operation is for: all of them, one ``client`` id, one ``session``
    (this hub has no session ids of its own: a session is a client id), minus a ``whitelist``."""

    __slots__ = ("user", "client", "session", "whitelist")

    def __init__(self, user: str, client: str = "", session: str = "", whitelist: Iterable[str] = ()) -> None:
        self.user = user
        self.client = client
        self.session = session
        self.whitelist = frozenset(whitelist)

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "client": self.client,
            "session": self.session,
            "whitelist": sorted(self.whitelist),
        }

    @classmethod
    def of(cls, value: dict[str, Any]) -> Target:
        whitelist = value.get("whitelist") or ()
        return cls(str(value["user"]), str(value.get("client", "")), str(value.get("session", "")), whitelist)

    def conns(self, hub: Hub) -> list[HubConnection]:
        """This node's connections that match."""
        matched = []
        for conn in hub.users.of(self.user):
            session = hub.sessions.get(conn)
            info = session.info if session is not None else None
            if info is None:
                continue
            if self.client and info.client != self.client:
                continue
            if self.session and info.client != self.session:
                continue
            if info.client in self.whitelist:
                continue
            matched.append(conn)
        return matched


class _Request:
    """A cluster-wide ``channels``/``info`` waiting for the other nodes."""

    __slots__ = ("reply", "waiting", "answers", "timer")

    def __init__(self, waiting: set[str]) -> None:
        self.reply: Reply[list[Any]] = Reply()
        self.waiting = waiting
        self.answers: list[Any] = []
        self.timer: Cancellable | None = None


class ClusterControl(HubPart):
    """The hub's side of the control channel; ``hub.control``."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.uid = secrets.token_hex(8)
        self.name = f"{socket.gethostname()}_{os.getpid()}"
        self.started = time.monotonic()
        self.nodes: dict[str, float] = {}
        """Other nodes' uids -> loop time they were last heard from."""
        self.bad_messages = 0
        self._loop: HubLoop | None = None
        self._requests: dict[str, _Request] = {}
        self._beat: Cancellable | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, loop: HubLoop) -> None:
        """Listen on the engine's control channel; say hello once listening, then every BEAT_INTERVAL."""
        self._loop = loop
        self.started = time.monotonic()
        self.hub.engine.start_control(self._receive).observe(lambda done: self._hello())
        self._beat = loop.call_later(BEAT_INTERVAL, self._on_beat)

    def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self._loop is not None:
            self._send({"op": "bye"})
        for request in list(self._requests.values()):
            self._finish(request, None)
        self._loop = None

    def _hello(self) -> None:
        if self._loop is not None:
            self._send({"op": "hello"})

    def _on_beat(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self._beat = loop.call_later(BEAT_INTERVAL, self._on_beat)
        silent = loop.time() - 3 * BEAT_INTERVAL
        for uid in [uid for uid, seen in self.nodes.items() if seen < silent]:
            del self.nodes[uid]
        self._send({"op": "hello"})

    # -- the operations (the HTTP API calls these) -------------------------------------------------

    def disconnect(
        self, target: Target, code: int = FORCE_DISCONNECT, reason: str = "force disconnect"
    ) -> int:
        """Disconnect the target's connections on every node; how many there were on this one."""
        self._send({"op": "disconnect", "target": target.as_dict(), "code": code, "reason": reason})
        return self._disconnect(target, code, reason)

    def unsubscribe(self, target: Target, channel: str) -> int:
        """End the target's subscriptions to ``channel`` on every node; how many on this one."""
        self._send({"op": "unsubscribe", "target": target.as_dict(), "channel": channel})
        return self._unsubscribe(target, channel)

    def subscribe(self, target: Target, channel: str, data: Any = None) -> int:
        """Subscribe the target's connections to ``channel`` on every node (server-side subscription).

        This node's answer decides: ``Hub.subscribe_user`` raises ``HubError(108)`` while the client
        protocol has no ``subscribe`` push; the other nodes are told only when this node could do it.
        """
        count = self.hub.subscribe_user(target, channel, data)
        self._send({"op": "subscribe", "target": target.as_dict(), "channel": channel, "data": data})
        return count

    def refresh(self, target: Target, *, expired: bool = False, expire_at: int | None = None) -> int:
        """Server-side refresh on every node: ``expired`` disconnects the target (3005, reconnect with a
        fresh token); ``expire_at`` (Unix seconds; 0 = never) is the connections' new expiry."""
        self._send({"op": "refresh", "target": target.as_dict(), "expired": expired, "expire_at": expire_at})
        return self._refresh(target, expired, expire_at)

    def revoke_api_keys(self, keys: Iterable[str]) -> int:
        """This node's API keys become ``keys``; the ones no longer listed are revoked on every node
        (only their SHA-256 digests travel), and the connections made with them disconnected."""
        api_keys = self.hub.auth.api_keys
        before = api_keys.digests
        revoked_here = self.hub.revoke_api_keys(keys)
        gone = sorted(before - api_keys.digests)
        if gone:
            self._send({"op": "revoke", "digests": gone})
        return revoked_here

    def channels(self, pattern: str = "") -> Reply[dict[str, int]]:
        """Channels with subscribers on any node (matching the glob ``pattern``) -> subscribers."""

        def merged(answers: list[Any]) -> dict[str, int]:
            total: dict[str, int] = {}
            for answer in answers:
                for name, count in answer.items():
                    total[name] = total.get(name, 0) + int(count)
            return total

        return self._ask({"what": "channels", "pattern": pattern}).then(merged)

    def info(self) -> Reply[list[dict[str, Any]]]:
        """One entry per node: ``uid, name, version, num_clients, num_users, num_subs, num_channels,
        uptime`` (this node first)."""
        return self._ask({"what": "info"})

    # -- local application ---------------------------------------------------------------------------

    def _disconnect(self, target: Target, code: int, reason: str) -> int:
        conns = target.conns(self.hub)
        for conn in conns:
            self.hub.disconnect(conn, code, reason)
        return len(conns)

    def _unsubscribe(self, target: Target, channel: str) -> int:
        hub = self.hub
        return sum(1 for conn in target.conns(hub) if hub.unsubscribe(conn, channel))

    def _refresh(self, target: Target, expired: bool, expire_at: int | None) -> int:
        hub = self.hub
        conns = target.conns(hub)
        if expired:
            for conn in conns:
                hub.disconnect(conn, CONNECTION_EXPIRED, "connection expired")
            return len(conns)
        if expire_at is not None:
            now = self._loop.time() if self._loop is not None else time.monotonic()
            expires = None if expire_at == 0 else now + (expire_at - time.time())
            for conn in conns:
                session = hub.sessions.get(conn)
                if session is not None:
                    session.expires = expires
        return len(conns)

    def _revoke(self, digests: Iterable[str]) -> int:
        hub = self.hub
        gone = set(digests)
        keys = hub.auth.api_keys
        keys.discard_digests(gone)
        revoked = [
            s.conn for s in hub.sessions.values() if s.identity.trusted and s.identity.key_digest in gone
        ]
        for conn in revoked:
            hub.disconnect(conn, DisconnectCode.UNAUTHORIZED, "unauthorized")
        return len(revoked)

    def local_channels(self, pattern: str) -> dict[str, int]:
        counts = self.hub.channels()
        if not pattern:
            return counts
        return {name: n for name, n in counts.items() if fnmatch.fnmatchcase(name, pattern)}

    def local_info(self) -> dict[str, Any]:
        hub = self.hub
        users = {s.info.user for s in hub.sessions.values() if s.info is not None and s.info.user}
        return {
            "uid": self.uid,
            "name": self.name,
            "version": __version__,
            "num_clients": sum(1 for s in hub.sessions.values() if s.info is not None),
            "num_users": len(users),
            "num_subs": sum(len(s.subscriptions) for s in hub.sessions.values()),
            "num_channels": len(hub.channels()),
            "uptime": int(time.monotonic() - self.started),
        }

    def _answer(self, question: dict[str, Any]) -> Any:
        if question.get("what") == "channels":
            pattern = question.get("pattern", "")
            return self.local_channels(pattern if isinstance(pattern, str) else "")
        if question.get("what") == "info":
            return self.local_info()
        raise ValueError("unknown question")

    # -- requests ------------------------------------------------------------------------------------

    def _ask(self, question: dict[str, Any]) -> Reply[list[Any]]:
        """This node's answer and those of the known nodes that answer within REQUEST_TIMEOUT."""
        mine = self._answer(question)
        loop = self._loop
        if loop is None or not self.nodes:
            return Reply.of([mine])
        if len(self._requests) >= MAX_REQUESTS:
            return Reply.failed(
                HubError(ErrorCode.NOT_AVAILABLE, "too many cluster requests", temporary=True)
            )
        rid = secrets.token_hex(6)
        request = _Request(set(self.nodes))
        request.answers.append(mine)
        self._requests[rid] = request
        request.timer = loop.call_later(REQUEST_TIMEOUT, self._timed_out, rid)
        self._send({"op": "ask", "rid": rid, "question": question})
        return request.reply

    def _timed_out(self, rid: str) -> None:
        request = self._requests.get(rid)
        if request is None:
            return
        for uid in request.waiting:  # silent: forgotten until heard from again
            self.nodes.pop(uid, None)
        request.timer = None
        self._finish(request, rid)

    def _finish(self, request: _Request, rid: str | None) -> None:
        if rid is None:
            rid = next((k for k, v in self._requests.items() if v is request), None)
        if rid is not None:
            self._requests.pop(rid, None)
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        request.reply.resolve(request.answers)

    def _answered(self, sender: str, rid: str, answer: Any) -> None:
        request = self._requests.get(rid)
        if request is None or sender not in request.waiting:
            return
        request.waiting.discard(sender)
        request.answers.append(answer)
        if not request.waiting:
            self._finish(request, rid)

    # -- the channel ---------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        message["from"] = self.uid
        try:
            self.hub.engine.publish_control(dumps(message))
        except Exception:  # a control message lost must not fail the local operation
            logger.exception("control: sending %s failed", message.get("op"))

    def _receive(self, payload: str) -> None:
        """The engine's callback (loop thread): a message from the control channel."""
        try:
            message = json.loads(payload)
            sender = message["from"]
            if not isinstance(sender, str):
                raise TypeError("from")
            if sender == self.uid:
                return
            self._heard(sender, message["op"])
            self._apply(sender, message)
        except Exception:  # noqa: BLE001 - not ours, or malformed: counted and ignored
            self.bad_messages += 1
            logger.warning("control: ignoring a malformed message", exc_info=True)

    def _heard(self, sender: str, op: str) -> None:
        if op == "bye":
            self.nodes.pop(sender, None)
            return
        if sender not in self.nodes and len(self.nodes) >= MAX_NODES:
            return
        loop = self._loop
        self.nodes[sender] = loop.time() if loop is not None else time.monotonic()

    def _apply(self, sender: str, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "hello":
            self._send({"op": "here", "to": sender})
        elif op in ("here", "bye"):
            pass
        elif op == "disconnect":
            self._disconnect(Target.of(message["target"]), int(message["code"]), str(message["reason"]))
        elif op == "unsubscribe":
            self._unsubscribe(Target.of(message["target"]), str(message["channel"]))
        elif op == "subscribe":
            try:
                self.hub.subscribe_user(
                    Target.of(message["target"]), str(message["channel"]), message.get("data")
                )
            except HubError as exc:
                logger.info("control: subscribe: %s", exc.message)
        elif op == "refresh":
            expire_at = message.get("expire_at")
            self._refresh(
                Target.of(message["target"]),
                bool(message["expired"]),
                None if expire_at is None else int(expire_at),
            )
        elif op == "revoke":
            self._revoke(str(d) for d in message["digests"])
        elif op == "ask":
            self._send(
                {
                    "op": "answer",
                    "to": sender,
                    "rid": message["rid"],
                    "answer": self._answer(message["question"]),
                }
            )
        elif op == "answer":
            if message.get("to") == self.uid:
                self._answered(sender, str(message["rid"]), message["answer"])
        else:
            raise ValueError(f"unknown op {op!r}")
