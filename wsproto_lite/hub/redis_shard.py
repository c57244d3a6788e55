"""The Redis engine's connections to one Redis server (``Shard``): a *command thread* that runs queued
jobs in pipelined batches, and a *pub/sub thread* that owns the subscribing connection; both hand their
results to the hub's loop through the engine (``RedisEngine.post``).  ``redis_engine.py`` describes the
whole."""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .engine import Reply, unavailable
from .protocol import HubError
from .redis_link import Commands, Link
from .redis_scripts import PRESENCE, call

if TYPE_CHECKING:
    from .redis_engine import RedisEngine

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # pragma: no cover - tested where the extra is installed
    HAVE_REDIS = False
else:
    HAVE_REDIS = True

__all__ = ["HAVE_REDIS", "Job", "Shard", "Wait", "parse_engine_urls", "redacted", "require_redis", "shard_of"]

logger = logging.getLogger("wsproto_lite.hub.redis")

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


def require_redis() -> None:
    if not HAVE_REDIS:
        raise RuntimeError(
            "the Redis engine needs the redis package: pip install 'wsproto-lite[redis]' (redis-py, hiredis)"
        )


class Job:
    """Commands for the batch (``build``: a ``redis_link.Commands``) and what to make of their results
    (``finish``)."""

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


class Shard:
    """One Redis server: a command thread, a pub/sub thread, and their health."""

    def __init__(self, engine: RedisEngine, index: int, url: str) -> None:
        self.engine = engine
        self.index = index
        self.url = url
        no_retry = Retry(NoBackoff(), 0)  # we retry ourselves: a resent EVALSHA could publish twice
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
        self.jobs: queue.SimpleQueue[list[Job] | None] = queue.SimpleQueue()
        self.submitted: list[Job] = []  # loop thread: this loop iteration's jobs, handed over at its end
        self.epoch_candidate = ""
        """Command thread: the epoch offered to a stream Redis does not hold yet, drawn per batch (not per
        command: a read of the OS's random source each); the scripts keep the shared ``P:epoch`` while it
        lives, so every stream made in one pipeline takes the same one anyway."""
        self.requests: queue.SimpleQueue[tuple[str, str, Wait | None]] = queue.SimpleQueue()
        self.presence: dict[tuple[str, str], tuple[str, str]] = {}  # command thread only
        self.stopping = False
        self.commands_ok = True
        self.link = Link(self.client)  # the command thread's connection
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
        self.hand_over()
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
                job: list[Job] | None = self.jobs.get(timeout=max(0.01, next_refresh - time.monotonic()))
            except queue.Empty:
                job = None
            if time.monotonic() >= next_refresh:
                self._refresh_presence()
                next_refresh = time.monotonic() + refresh_every
            if job is None:
                continue
            batch = job
            while len(batch) < _BATCH:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.stopping = True
                    break
                batch.extend(more)
            self._execute(batch)
        for left in self._drain():
            self._post_failure(left, unavailable("the hub is stopping"))

    def _drain(self) -> Iterable[Job]:
        while True:
            try:
                jobs = self.jobs.get_nowait()
            except queue.Empty:
                return
            if jobs is not None:
                yield from jobs

    def _execute(self, batch: list[Job]) -> None:
        self.epoch_candidate = secrets.token_hex(4)
        commands = Commands()
        sizes = []
        for job in batch:
            before = len(commands)
            job.build(commands)
            sizes.append(len(commands) - before)
        try:
            results = self.link.run(commands)
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

    def _post_failure(self, job: Job, error: HubError) -> None:
        if job.reply is not None:
            self.engine.post(_settle_all, [(job.reply, None, error)])

    def submit(self, job: Job, *, batched: bool = False) -> None:
        """Loop thread: queue a job.  ``batched``: one whose result the client's reply waits for
        (publish, reads): the batched jobs of one loop iteration reach the command thread together at
        its end (one wake-up, one pipeline round trip).  Any other job is handed over at once, with the
        batched ones before it (in order): its effect must not wait behind a reply sent meanwhile."""
        submitted = self.submitted
        submitted.append(job)
        loop = self.engine.loop
        if not batched or loop is None:
            self.hand_over()
        elif len(submitted) == 1:
            loop.call_later(0.0, self.hand_over)

    def hand_over(self) -> None:
        if self.submitted:
            jobs, self.submitted = self.submitted, []
            self.jobs.put(jobs)

    def _refresh_presence(self) -> None:
        if not self.presence:
            return
        ttl_ms = int(self.engine.presence_ttl * 1000)
        entries = list(self.presence.items())
        for start in range(0, len(entries), _BATCH):
            commands = Commands()
            for (channel, client), (userkey, value) in entries[start : start + _BATCH]:
                call(commands, PRESENCE, self.presence_keys(channel), "add", client, userkey, value, ttl_ms)
            try:
                self.link.run(commands)
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
            sent: deque[tuple[str, Wait | None]] = deque()
            confirm: dict[str, Wait | None] = {}
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

    def _take_requests(self, wanted: set[str]) -> dict[str, Wait | None]:
        """Apply queued requests to ``wanted`` without sending (the link is being set up)."""
        confirm: dict[str, Wait | None] = {}
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

    def _listen(self, pubsub: Any, wanted: set[str], sent: deque[tuple[str, Wait | None]]) -> None:
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


class Wait:
    __slots__ = ("reply", "remaining")

    def __init__(self, reply: Reply[None], remaining: int) -> None:
        self.reply = reply
        self.remaining = remaining


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
