"""The Redis engine: channels, presence and history shared by hub processes on one or many machines.

``RedisEngine("redis://127.0.0.1:6379/0")``; several URLs (``"redis://a:6379/0,redis://b:6379/0"``)
shard channels over several Redis servers by ``crc32(channel) % len(urls)``: a channel's history,
presence and pub/sub live on one server; wildcard subscriptions listen on all of them.  TLS
(``rediss://``) and passwords come with the URL; ``?presence_ttl=60&prefix=hub`` are this engine's own.

Never blocking the hub's loop: each shard has two threads of its own.  The *command thread* runs
queued jobs (publish, history, presence...) in batches, one pipeline round trip per batch, and hands
the results to the loop with its ``call_soon_threadsafe`` (our ``EventLoop`` or an asyncio loop); it also
refreshes this node's presence entries (they expire ``presence_ttl`` after the node stops refreshing, so
a killed node disappears).
The *pub/sub thread* owns the subscribing connection: it applies the loop's subscribe/unsubscribe
requests and hands every message batch to the loop.  Publications of one channel come from one Lua
script on one server (offset assigned and PUBLISHed atomically), read by one connection, queued in
order: every node delivers them once, in offset order.

Faults: a failed command answers ``HubError(108, temporary)``.  When the pub/sub link breaks the shard
is *degraded* (``health()``), local subscribers keep their connections; the thread reconnects with
backoff, resubscribes, and then reports every channel it listened to as *lost*: the hub tells their
subscribers to reconnect and recover (disconnect 4002), which gives them the missed publications from
history or ``recovered: false`` (a restarted Redis has a new epoch).  Never a silent gap.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .engine import (
    IDEMPOTENCY_WINDOW,
    ClientInfo,
    ControlReceiver,
    Deliver,
    Engine,
    HistoryResult,
    JoinLeave,
    Lost,
    Publication,
    RecoveryResult,
    Reply,
    select_history,
    select_recovery,
    unavailable,
)
from .namespaces import NamespaceOptions, namespace_of
from .protocol import HubError, Position
from .redis_scripts import PRESENCE, PUBLISH, PUBLISH_ONCE, READ

if TYPE_CHECKING:
    from .transport import HubLoop

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # pragma: no cover - tested where the extra is installed
    HAVE_REDIS = False
else:
    HAVE_REDIS = True

__all__ = ["RedisEngine", "parse_engine_urls", "shard_of"]

logger = logging.getLogger("wsproto_lite.hub.redis")

_NO_HISTORY = Position("", 0)
_OUR_PARAMS = {"presence_ttl", "prefix"}
_BATCH = 512  # jobs per pipeline round trip


def shard_of(channel: str, shards: int) -> int:
    """The shard of a channel: ``crc32(utf-8 name) % shards`` (stable across processes and machines)."""
    return zlib.crc32(channel.encode()) % shards if shards > 1 else 0


def parse_engine_urls(spec: str) -> tuple[list[str], dict[str, str]]:
    """``"redis://a/0,redis://b/0?presence_ttl=5"`` -> (URLs without our parameters, our parameters)."""
    urls: list[str] = []
    ours: dict[str, str] = {}
    for raw in spec.split(","):
        raw = raw.strip()
        if not raw:
            continue
        parts = urlsplit(raw)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"engine URL {raw!r}: expected redis://host:port/db (or rediss:// for TLS)")
        query = parse_qsl(parts.query)
        ours.update((k, v) for k, v in query if k in _OUR_PARAMS)
        rest = urlencode([(k, v) for k, v in query if k not in _OUR_PARAMS])
        urls.append(urlunsplit(parts._replace(query=rest)))
    if not urls:
        raise ValueError("no Redis URL given")
    return urls, ours


def _require_redis() -> None:
    if not HAVE_REDIS:
        raise RuntimeError(
            "the Redis engine needs the redis package: pip install 'wsproto-lite[redis]' (redis-py, hiredis)"
        )


def _user_key(info: ClientInfo) -> str:
    return "u:" + info.user if info.user else "c:" + info.client


def _info_json(info: ClientInfo) -> str:
    return info.as_json()


class _Job:
    """Commands for the pipeline (``build``) and what to make of their results (``finish``)."""

    __slots__ = ("build", "finish", "reply")

    def __init__(
        self,
        build: Callable[[Any], None],
        finish: Callable[[list[Any]], Any] | None = None,
        reply: Reply[Any] | None = None,
    ) -> None:
        self.build = build
        self.finish = finish
        self.reply = reply


class _Shard:
    """One Redis server: a command thread, a pub/sub thread, and their health."""

    def __init__(self, engine: RedisEngine, index: int, url: str) -> None:
        self.engine = engine
        self.index = index
        self.url = url
        no_retry = Retry(NoBackoff(), 0)  # we retry ourselves: a resent EVAL could publish twice
        self.client = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5, retry=no_retry
        )
        self.sub_client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=None,
            retry=no_retry,
            health_check_interval=10,
        )
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.requests: queue.SimpleQueue[tuple[str, str, _Wait | None]] = queue.SimpleQueue()
        self.presence: dict[tuple[str, str], tuple[str, str]] = {}  # command thread only
        self.stopping = False
        self.commands_ok = True
        self.pubsub_ok = False
        self.command_failures = 0
        self.pubsub_failures = 0
        self.reconnects = 0
        self.command_thread = threading.Thread(
            target=self._run_commands, name=f"hub-redis-{index}", daemon=True
        )
        self.pubsub_thread = threading.Thread(
            target=self._run_pubsub, name=f"hub-redis-sub-{index}", daemon=True
        )

    def key(self, kind: str, channel: str) -> str:
        return f"{self.engine.prefix}:{kind}:{channel}"

    def start(self) -> None:
        self.command_thread.start()
        self.pubsub_thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.jobs.put(None)
        for thread in (self.command_thread, self.pubsub_thread):
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(2.0)
        self.client.close()
        self.sub_client.close()

    # -- command thread --------------------------------------------------------------------------

    def _run_commands(self) -> None:
        refresh_every = self.engine.presence_ttl / 3
        next_refresh = time.monotonic() + refresh_every
        while not self.stopping:
            try:
                job = self.jobs.get(timeout=max(0.01, next_refresh - time.monotonic()))
            except queue.Empty:
                job = None
            if time.monotonic() >= next_refresh:
                self._refresh_presence()
                next_refresh = time.monotonic() + refresh_every
            if job is None:
                continue
            batch = [job]
            while len(batch) < _BATCH:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.stopping = True
                    break
                batch.append(more)
            self._execute(batch)
        for job in self._drain():
            self._post_failure(job, unavailable("the hub is stopping"))

    def _drain(self) -> Iterable[_Job]:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                yield job

    def _execute(self, batch: list[_Job]) -> None:
        pipe = self.client.pipeline(transaction=False)
        sizes = []
        for job in batch:
            before = len(pipe)
            job.build(pipe)
            sizes.append(len(pipe) - before)
        try:
            results = pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError) as exc:
            if self.commands_ok:
                logger.warning("redis shard %d (%s): %s", self.index, self.url, exc)
            self.commands_ok = False
            self.command_failures += 1
            for job in batch:
                self._post_failure(job, unavailable())
            return
        self.commands_ok = True
        settled: list[tuple[Reply[Any], Any, BaseException | None]] = []
        at = 0
        for job, size in zip(batch, sizes, strict=True):
            part = results[at : at + size]
            at += size
            if job.reply is None:
                continue
            error = next((r for r in part if isinstance(r, Exception)), None)
            if error is not None:
                logger.error("redis shard %d: %s", self.index, error)
                settled.append((job.reply, None, unavailable("the engine failed (retry later)")))
                continue
            try:
                value = job.finish(part) if job.finish is not None else None
            except HubError as exc:
                settled.append((job.reply, None, exc))
            else:
                settled.append((job.reply, value, None))
        if settled:
            self.engine.post(_settle_all, settled)

    def _post_failure(self, job: _Job, error: HubError) -> None:
        if job.reply is not None:
            self.engine.post(_settle_all, [(job.reply, None, error)])

    def submit(self, job: _Job) -> None:
        self.jobs.put(job)

    def _refresh_presence(self) -> None:
        if not self.presence:
            return
        ttl_ms = int(self.engine.presence_ttl * 1000)
        entries = list(self.presence.items())
        for start in range(0, len(entries), _BATCH):
            pipe = self.client.pipeline(transaction=False)
            for (channel, client), (userkey, value) in entries[start : start + _BATCH]:
                pipe.eval(PRESENCE, 3, *self.presence_keys(channel), "add", client, userkey, value, ttl_ms)
            try:
                pipe.execute(raise_on_error=False)
            except (redis.RedisError, OSError):
                self.commands_ok = False
                return

    def presence_keys(self, channel: str) -> tuple[str, str, str]:
        return self.key("pres", channel), self.key("pexp", channel), self.key("pusr", channel)

    # -- pub/sub thread --------------------------------------------------------------------------

    def _run_pubsub(self) -> None:
        wanted: set[str] = set()  # Redis channels and patterns ("p:" + pattern) this node listens to
        backoff = 0.1
        first = True
        while not self.stopping:
            pubsub: Any = self.sub_client.pubsub()  # type: ignore[no-untyped-call]
            # subscribes sent, in order, awaiting confirmation; requests taken before connecting
            sent: deque[tuple[str, _Wait | None]] = deque()
            confirm: dict[str, _Wait | None] = {}
            try:
                confirm = self._take_requests(wanted)
                pubsub.ping()  # connects (or raises)
                for name in wanted:
                    self._send(pubsub, "+", name)
                    sent.append((name, confirm.pop(name, None)))
                self.pubsub_ok = True
                if not first:
                    self.reconnects += 1
                    logger.warning("redis shard %d (%s): pub/sub back", self.index, self.url)
                    self.engine.post(self.engine.on_resubscribed, self, set(wanted))
                first = False
                backoff = 0.1
                self._listen(pubsub, wanted, sent)
            except (redis.RedisError, OSError) as exc:
                if self.stopping:
                    break
                if self.pubsub_ok or first:
                    logger.warning("redis shard %d (%s): pub/sub lost: %s", self.index, self.url, exc)
                    self.pubsub_failures += 1
                self.pubsub_ok = False
                first = False
                # nobody may wait for a confirmation that will not come
                waits = [w for _, w in sent if w is not None] + [w for w in confirm.values() if w is not None]
                self.engine.post(self.engine.on_pubsub_down, self, waits)
                deadline = time.monotonic() + backoff
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(0.05)
                backoff = min(backoff * 2, 5.0)
            finally:
                try:
                    pubsub.close()
                except (redis.RedisError, OSError):
                    pass

    def _take_requests(self, wanted: set[str]) -> dict[str, _Wait | None]:
        """Apply queued requests to ``wanted`` without sending (the link is being set up)."""
        confirm: dict[str, _Wait | None] = {}
        while True:
            try:
                op, name, wait = self.requests.get_nowait()
            except queue.Empty:
                return confirm
            if op == "+":
                wanted.add(name)
                confirm[name] = wait
            else:
                wanted.discard(name)
                confirm.pop(name, None)

    @staticmethod
    def _send(pubsub: Any, op: str, name: str) -> None:
        if name.startswith("p:"):
            (pubsub.psubscribe if op == "+" else pubsub.punsubscribe)(name[2:])
        else:
            (pubsub.subscribe if op == "+" else pubsub.unsubscribe)(name)

    def _listen(self, pubsub: Any, wanted: set[str], sent: deque[tuple[str, _Wait | None]]) -> None:
        while not self.stopping:
            while True:  # requests, in order: a quick unsubscribe + subscribe of one channel ends subscribed
                try:
                    op, name, wait = self.requests.get_nowait()
                except queue.Empty:
                    break
                (wanted.add if op == "+" else wanted.discard)(name)
                self._send(pubsub, op, name)
                if op == "+":
                    sent.append((name, wait))
            message = pubsub.get_message(timeout=0.05)
            if message is None:
                continue
            batch: list[Any] = []
            while message is not None and len(batch) < 1000:
                kind = message["type"]
                if kind in ("message", "pmessage"):
                    batch.append(message)
                elif kind in ("subscribe", "psubscribe") and sent:
                    # Redis confirms subscriptions in the order they were sent
                    _, wait = sent.popleft()
                    if wait is not None:
                        batch.append(wait)  # resolved in order with the messages around it
                message = pubsub.get_message(timeout=0)
            if batch:
                self.engine.post(self.engine.on_messages, batch)


def _settle_all(settled: list[tuple[Reply[Any], Any, BaseException | None]]) -> None:
    for reply, value, error in settled:
        if error is not None:
            reply.fail(error)
        else:
            reply.resolve(value)


class RedisEngine(Engine):
    kind = "redis"

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        presence_ttl: float | None = None,
        meta_ttl: float = 3600.0,
        prefix: str | None = None,
    ) -> None:
        _require_redis()
        spec = urls if isinstance(urls, str) else ",".join(urls)
        parsed, ours = parse_engine_urls(spec)
        self.urls = parsed
        self.presence_ttl = presence_ttl if presence_ttl is not None else float(ours.get("presence_ttl", 60))
        if self.presence_ttl <= 0:
            raise ValueError("presence_ttl must be > 0 (seconds)")
        self.meta_ttl = meta_ttl
        self.prefix = prefix if prefix is not None else ours.get("prefix", "hub")
        self._loop: HubLoop | None = None
        self._deliver: Deliver | None = None
        self._join_leave: JoinLeave | None = None
        self._lost: Lost | None = None
        self._control: ControlReceiver | None = None
        self._control_channel = f"{self.prefix}:control"
        """The control channel's Redis channel (on the first shard): every node of this prefix."""
        self._shards = [_Shard(self, i, url) for i, url in enumerate(parsed)]
        self._exact: set[str] = set()
        self._patterns: dict[str, str] = {}  # hub pattern -> its prefix
        self._pubsub_down: set[int] = set()  # shards whose pub/sub link broke (until it is back)
        self._started = False
        self.bad_messages = 0
        """Pub/sub messages on our channels that were not in our format (ignored)."""
        self.lost_events = 0
        """Times a shard's pub/sub came back and its channels were reported lost."""

    # -- lifecycle -------------------------------------------------------------------------------

    def attach(self, loop: HubLoop) -> None:
        self._loop = loop

    def start(self, deliver: Deliver, join_leave: JoinLeave | None = None, lost: Lost | None = None) -> None:
        if self._loop is None:
            raise RuntimeError("RedisEngine.attach(loop) first (Hub.start does it)")
        self._deliver, self._join_leave, self._lost = deliver, join_leave, lost
        if not self._started:
            self._started = True
            for shard in self._shards:
                shard.start()

    def close(self) -> None:
        self._deliver = self._join_leave = self._lost = None
        self._control = None
        for shard in self._shards:
            shard.stop()

    def post(self, callback: Callable[..., object], *args: Any) -> None:
        """From a Redis thread: run ``callback(*args)`` in the loop thread."""
        loop = self._loop
        if loop is not None and self._deliver is not None:
            try:
                loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:  # an asyncio loop closed before the hub stopped us: nobody to tell
                pass

    def health(self) -> dict[str, Any]:
        shards = [
            {
                "url": _redacted(s.url),
                "commands_ok": s.commands_ok,
                "pubsub_ok": s.pubsub_ok,
                "command_failures": s.command_failures,
                "pubsub_failures": s.pubsub_failures,
                "reconnects": s.reconnects,
            }
            for s in self._shards
        ]
        ok = all(s["commands_ok"] and s["pubsub_ok"] for s in shards)
        return {
            "engine": self.kind,
            "ok": ok,
            "shards": shards,
            "lost_events": self.lost_events,
            "bad_messages": self.bad_messages,
        }

    # -- the control channel -----------------------------------------------------------------------

    def start_control(self, receive: ControlReceiver) -> Reply[None]:
        """Listen on ``P:control`` (first shard); resolved once Redis confirmed the subscription."""
        self._control = receive
        reply: Reply[None] = Reply()
        shard = self._shards[0]
        wait: _Wait | None = _Wait(reply, 1)
        if shard.index in self._pubsub_down:
            reply.fail(unavailable())
            wait = None
        shard.requests.put(("+", self._control_channel, wait))
        return reply

    def publish_control(self, payload: str) -> None:
        target = self._control_channel
        self._shards[0].submit(_Job(lambda pipe: pipe.publish(target, payload)))

    # -- shards ----------------------------------------------------------------------------------

    def _shard(self, channel: str) -> _Shard:
        return self._shards[shard_of(channel, len(self._shards))]

    def _redis_channel(self, channel: str) -> str:
        return f"{self.prefix}:ch:{channel}"

    # -- pub/sub ---------------------------------------------------------------------------------

    def _names(self, channel: str) -> tuple[str, list[_Shard]]:
        """The Redis channel (or ``p:`` + pattern) of a hub channel or pattern, and its shards."""
        if channel.endswith("*"):
            return "p:" + _glob_escape(self._redis_channel(channel[:-1])) + "*", self._shards
        return self._redis_channel(channel), [self._shard(channel)]

    def node_subscribe(self, channel: str) -> Reply[None]:
        reply: Reply[None] = Reply()
        name, shards = self._names(channel)
        if channel.endswith("*"):
            self._patterns[channel] = channel[:-1]
        else:
            self._exact.add(channel)
        wait: _Wait | None = _Wait(reply, len(shards))
        if any(s.index in self._pubsub_down for s in shards):
            # the thread subscribes when the link is back; nobody waits for that
            reply.fail(unavailable())
            wait = None
        for shard in shards:
            shard.requests.put(("+", name, wait))
        return reply

    def node_unsubscribe(self, channel: str) -> None:
        name, shards = self._names(channel)
        if channel.endswith("*"):
            self._patterns.pop(channel, None)
        else:
            self._exact.discard(channel)
        for shard in shards:
            shard.requests.put(("-", name, None))

    def on_messages(self, batch: list[Any]) -> None:
        """Loop thread: pub/sub messages (and subscription confirmations) of one shard, in order."""
        strip = len(self.prefix) + 4  # "P:ch:"
        for message in batch:
            if isinstance(message, _Wait):
                message.remaining -= 1
                if message.remaining == 0:
                    message.reply.resolve(None)
                continue
            if message["channel"] == self._control_channel:
                if self._control is not None:
                    self._control(message["data"])
                continue
            channel = message["channel"][strip:]
            if message["type"] == "message" or self._first_pattern_of(channel) == message["pattern"]:
                try:
                    self._on_payload(channel, message["data"])
                except (ValueError, KeyError, TypeError):  # not ours (someone else PUBLISHed there)
                    self.bad_messages += 1
                    logger.warning("redis: ignoring a malformed message on %r", message["channel"])

    def _first_pattern_of(self, channel: str) -> str | None:
        """The one pattern subscription through which this node takes a publication (none when the
        channel is subscribed exactly: Redis sends it to us once per matching subscription)."""
        if channel in self._exact:
            return None
        namespace = namespace_of(channel)
        best: str | None = None
        for prefix in self._patterns.values():
            if channel.startswith(prefix) and namespace_of(prefix) == namespace:
                name = _glob_escape(self._redis_channel(prefix)) + "*"
                if best is None or name < best:
                    best = name
        return best

    def _on_payload(self, channel: str, payload: str) -> None:
        kind = payload[:1]
        if kind == "p":
            _, epoch, offset, _expires, info_json, data = payload.split("\n", 5)
            publication = Publication(
                channel, int(offset) if offset else None, data, info_json or None, epoch=epoch
            )
            if self._deliver is not None:
                self._deliver(publication)
        elif kind in ("j", "l") and self._join_leave is not None:
            value = json.loads(payload[2:])
            info = ClientInfo.from_dict(value)
            self._join_leave("join" if kind == "j" else "leave", channel, info)

    def on_pubsub_down(self, shard: _Shard, waits: list[_Wait]) -> None:
        """Loop thread: a shard's pub/sub link is down; node subscriptions waiting on it fail."""
        self._pubsub_down.add(shard.index)
        for wait in waits:
            wait.reply.fail(unavailable())

    def on_resubscribed(self, shard: _Shard, names: set[str]) -> None:
        """Loop thread: a shard's pub/sub is back after a loss: its channels may have gaps."""
        self._pubsub_down.discard(shard.index)
        strip = len(self.prefix) + 4
        channels = [n[strip:] for n in names if not n.startswith("p:") and n != self._control_channel]
        channels += [p for p in self._patterns if self._names(p)[0] in names]
        if channels:
            self.lost_events += 1
            if self._lost is not None:
                self._lost(channels)

    def publish(
        self,
        channel: str,
        data_json: str,
        info_json: str | None,
        options: NamespaceOptions,
        *,
        idempotency_key: str = "",
    ) -> Reply[Publication]:
        shard = self._shard(channel)
        reply: Reply[Publication] = Reply()
        target = self._redis_channel(channel)
        window_ms = int(IDEMPOTENCY_WINDOW * 1000)
        once = (shard.key("idem", channel) + ":" + idempotency_key,) if idempotency_key else ()
        if not options.history:
            payload = f"p\n\n\n\n{info_json or ''}\n{data_json}"
            publication = Publication(channel, None, data_json, info_json)
            if once:
                job = _Job(
                    lambda pipe: pipe.eval(PUBLISH_ONCE, 1, *once, target, payload, window_ms),
                    lambda _: publication,
                    reply,
                )
            else:
                job = _Job(lambda pipe: pipe.publish(target, payload), lambda _: publication, reply)
            shard.submit(job)
            return reply
        keys = (shard.key("meta", channel), shard.key("hist", channel), f"{self.prefix}:epoch", *once)
        args = (
            target,
            info_json or "",
            data_json,
            options.history_size,
            int(options.history_ttl * 1000),
            int(max(self.meta_ttl, options.history_ttl) * 1000),
            secrets.token_hex(4),
            int(self.meta_ttl * 500),
            *((window_ms,) if once else ()),
        )

        def finish(results: list[Any]) -> Publication:
            epoch, offset = results[0][:2]
            return Publication(channel, int(offset), data_json, info_json, epoch=epoch)

        shard.submit(_Job(lambda pipe: pipe.eval(PUBLISH, len(keys), *keys, *args), finish, reply))
        return reply

    def join_leave(self, kind: str, channel: str, info: ClientInfo) -> None:
        payload = ("j\n" if kind == "join" else "l\n") + _info_json(info)
        target = self._redis_channel(channel)
        self._shard(channel).submit(_Job(lambda pipe: pipe.publish(target, payload)))

    # -- history ---------------------------------------------------------------------------------

    def _read(self, channel: str, entries: bool) -> Reply[tuple[str, int, list[Publication]]]:
        shard = self._shard(channel)
        keys = (shard.key("meta", channel), shard.key("hist", channel), f"{self.prefix}:epoch")
        args = (secrets.token_hex(4), int(self.meta_ttl * 500), "1" if entries else "0")
        reply: Reply[tuple[str, int, list[Publication]]] = Reply()

        def finish(results: list[Any]) -> tuple[str, int, list[Publication]]:
            epoch, top, items = results[0]
            held = []
            for item in items:
                offset, _expires, info, data = item.split("\n", 3)
                held.append(Publication(channel, int(offset), data, info or None, epoch=epoch))
            return epoch, int(top), held

        shard.submit(_Job(lambda pipe: pipe.eval(READ, 3, *keys, *args), finish, reply))
        return reply

    def position(self, channel: str, options: NamespaceOptions) -> Reply[Position]:
        if not options.history:
            return Reply.of(_NO_HISTORY)
        return self._read(channel, False).then(lambda read: Position(read[0], read[1]))

    def history(
        self,
        channel: str,
        options: NamespaceOptions,
        *,
        since: Position | None,
        limit: int | None,
        reverse: bool,
    ) -> Reply[HistoryResult]:
        if not options.history:
            return Reply.of(HistoryResult([], _NO_HISTORY))

        def select(read: tuple[str, int, list[Publication]]) -> HistoryResult:
            epoch, top, held = read
            chosen = select_history(epoch, top, held, since=since, limit=limit, reverse=reverse)
            return HistoryResult(chosen, Position(epoch, top))

        return self._read(channel, True).then(select)

    def recover(self, channel: str, options: NamespaceOptions, since: Position) -> Reply[RecoveryResult]:
        if not options.history:
            return Reply.of(RecoveryResult([], _NO_HISTORY, False))
        return self._read(channel, True).then(lambda read: select_recovery(read[0], read[1], read[2], since))

    # -- presence --------------------------------------------------------------------------------

    def add_presence(self, channel: str, info: ClientInfo) -> None:
        shard = self._shard(channel)
        keys = shard.presence_keys(channel)
        userkey = _user_key(info)
        value = userkey + "\n" + _info_json(info)
        ttl_ms = int(self.presence_ttl * 1000)

        def build(pipe: Any) -> None:
            shard.presence[(channel, info.client)] = (userkey, value)  # command thread: refreshed from now on
            pipe.eval(PRESENCE, 3, *keys, "add", info.client, userkey, value, ttl_ms)

        shard.submit(_Job(build))

    def remove_presence(self, channel: str, client: str) -> None:
        shard = self._shard(channel)
        keys = shard.presence_keys(channel)

        def build(pipe: Any) -> None:
            shard.presence.pop((channel, client), None)
            pipe.eval(PRESENCE, 3, *keys, "remove", client)

        shard.submit(_Job(build))

    def presence(self, channel: str) -> Reply[list[ClientInfo]]:
        shard = self._shard(channel)
        keys = shard.presence_keys(channel)
        reply: Reply[list[ClientInfo]] = Reply()

        def finish(results: list[Any]) -> list[ClientInfo]:
            infos = []
            for value in results[0]:
                item = json.loads(value.partition("\n")[2])
                infos.append(ClientInfo.from_dict(item))
            return infos

        shard.submit(_Job(lambda pipe: pipe.eval(PRESENCE, 3, *keys, "get"), finish, reply))
        return reply

    def presence_stats(self, channel: str) -> Reply[tuple[int, int]]:
        shard = self._shard(channel)
        keys = shard.presence_keys(channel)
        reply: Reply[tuple[int, int]] = Reply()
        shard.submit(
            _Job(
                lambda pipe: pipe.eval(PRESENCE, 3, *keys, "stats"),
                lambda results: (int(results[0][0]), int(results[0][1])),
                reply,
            )
        )
        return reply

    def expire(self) -> None:
        pass  # Redis expires keys itself; history and presence are pruned by the scripts


class _Wait:
    __slots__ = ("reply", "remaining")

    def __init__(self, reply: Reply[None], remaining: int) -> None:
        self.reply = reply
        self.remaining = remaining


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern (PSUBSCRIBE)."""
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
