"""The Redis engine's connections to one Redis server (``Shard``): the command connection
(``redis_link.Link``: jobs in pipelined batches) and the subscribing one (``redis_pubsub.PubSub``), both
read and written on the hub's loop, and the presence refresh timer.  ``redis_engine.py`` describes the
whole."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .engine import Reply
from .redis_link import _BATCH, Commands, Link
from .redis_pubsub import PubSub
from .redis_scripts import PRESENCE, call

if TYPE_CHECKING:
    from .redis_engine import RedisEngine
    from .transport import Cancellable

try:
    import hiredis  # noqa: F401  # redis_resp.RespSocket's parser
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # pragma: no cover - tested where the extra is installed
    HAVE_REDIS = False
else:
    HAVE_REDIS = True

__all__ = ["HAVE_REDIS", "Job", "Shard", "Wait", "parse_engine_urls", "redacted", "require_redis", "shard_of"]

_OUR_PARAMS = {"presence_ttl", "prefix"}


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
        # the URL as written, its query cut off: urlunsplit writes "unix:///path" as "unix:/path"
        base = raw.split("?", 1)[0].split("#", 1)[0]
        urls.append(f"{base}?{rest}" if rest else base)
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
    """One Redis server: a command connection, a subscribing connection, and their health."""

    def __init__(self, engine: RedisEngine, index: int, url: str, command_timeout: float = 5.0) -> None:
        self.engine = engine
        self.index = index
        self.url = url
        no_retry = Retry(NoBackoff(), 0)  # we retry ourselves: a resent EVALSHA could publish twice
        # redis-py's clients only make the connections (redis_resp.Connecting): URL, TLS, AUTH, SELECT
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=command_timeout,  # the set-up's answers (AUTH, SELECT); then non-blocking
            retry=no_retry,
        )
        self.submitted: list[Job] = []  # this loop iteration's batched jobs, handed over at its end
        self.epoch_candidate = ""
        """The epoch the batch being packed offers a stream Redis does not hold yet (``Link._send``)."""
        self.presence: dict[tuple[str, str], tuple[str, str]] = {}  # refreshed every presence_ttl / 3
        self.link = Link(self, client, command_timeout)
        self.pubsub = PubSub(self, client)
        self.refresh_timer: Cancellable | None = None

    def key(self, kind: str, channel: str) -> str:
        return f"{self.engine.prefix}:{kind}:{channel}"

    def start(self) -> None:
        self.pubsub.start()
        loop = self.engine.require_loop()
        self.refresh_timer = loop.call_later(self.engine.presence_ttl / 3, self._refresh_presence)

    def stop(self) -> None:
        """Close both connections, cancel the timers; what is not answered yet fails."""
        if self.refresh_timer is not None:
            self.refresh_timer.cancel()
            self.refresh_timer = None
        if self.link.sock is not None:
            self.hand_over()  # written before the connection closes (a leave, a presence removal)
        self.link.stop()
        self.hand_over()  # no connection is made any more: they fail
        self.pubsub.stop()

    def submit(self, job: Job, *, batched: bool = False) -> None:
        """Queue a job.  ``batched``: one whose result the client's reply waits for (publish, reads): the
        batched jobs of one loop iteration are written together at its end (one write, one round trip).
        Any other job is written at once, with the batched ones before it (in order): its effect must not
        wait behind a reply sent meanwhile."""
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
            self.link.run(jobs)

    def _refresh_presence(self) -> None:
        """Push this node's presence entries' expiry forward (a killed node's entries expire)."""
        loop = self.engine.require_loop()
        self.refresh_timer = loop.call_later(self.engine.presence_ttl / 3, self._refresh_presence)
        if not self.presence:
            return
        ttl_ms = int(self.engine.presence_ttl * 1000)
        entries = list(self.presence.items())
        for start in range(0, len(entries), _BATCH):

            def build(commands: Commands, part: list[Any] = entries[start : start + _BATCH]) -> None:
                for (channel, client), (userkey, value) in part:
                    keys = self.presence_keys(channel)
                    call(commands, PRESENCE, keys, "add", client, userkey, value, ttl_ms)

            self.submit(Job(build))

    def presence_keys(self, channel: str) -> tuple[str, str, str]:
        return self.key("pres", channel), self.key("pexp", channel), self.key("pusr", channel)


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
