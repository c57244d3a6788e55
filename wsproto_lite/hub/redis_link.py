"""A shard's command connection, on the hub's loop (``Link``): the jobs handed over together are packed
into one write (``Commands``: argument tuples, redis-py's pipeline methods the jobs use), their answers
parsed by hiredis and matched to the jobs in order.  Several batches may be in flight (pipelining: Redis
answers in order), at most ``_MAX_IN_FLIGHT``; the rest wait their turn.

Not redis-py's ``Pipeline``: per round trip it takes a connection from the pool, wraps the call in its
retry machinery and builds a pipeline object, which costs about as much CPU as the commands themselves
at the batch sizes the hub sends (one to a few).  The scripts go out by SHA1 (``redis_scripts.py``),
loaded on every new connection before its first batch.

Faults: a batch not answered within ``timeout`` (5 s) or a broken connection fails every job in flight
with ``unavailable()`` (108, temporary) and resends none (a command may have run before the link
broke: a resent EVALSHA could publish twice).  An answer ``NOSCRIPT`` (Redis restarted, or
``SCRIPT FLUSH``) means the command did not run: the scripts are loaded and those commands sent again,
once.  The connection is made when jobs come and there is none (at most one attempt at a time, and
none within ``_RETRY_SPACING`` of a failure: jobs then fail at once).
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import redis_scripts
from .engine import unavailable
from .protocol import HubError
from .redis_resp import Connecting, RespSocket

if TYPE_CHECKING:
    from .redis_shard import Job, Shard
    from .transport import Cancellable

__all__ = ["Commands", "Link"]

logger = logging.getLogger("wsproto_lite.hub.redis")

_BATCH = 512  # jobs per write
_MAX_IN_FLIGHT = 16  # writes awaiting their answers
_RETRY_SPACING = 0.1  # seconds after a failed connection before the next attempt


class Commands:
    """The commands of one batch, as jobs add them (``Job.build``): the part of redis-py's pipeline
    interface they use."""

    __slots__ = ("stack",)

    def __init__(self) -> None:
        self.stack: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.stack)

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> None:
        self.stack.append(("EVALSHA", sha, numkeys, *keys_and_args))

    def publish(self, channel: str, message: str) -> None:
        self.stack.append(("PUBLISH", channel, message))

    def delete(self, *names: str) -> None:
        self.stack.append(("DEL", *names))


class _Write:
    """Commands written together and the answers read for them so far."""

    __slots__ = ("count", "done", "results", "sent_at")

    def __init__(self, count: int, done: Callable[[list[Any]], None], sent_at: float) -> None:
        self.count = count
        self.done = done
        self.results: list[Any] = []
        self.sent_at = sent_at


class _Batch:
    """Jobs sent together: their commands, how many each added, and the answers once all are in."""

    __slots__ = ("complete", "jobs", "results", "retried", "sizes", "stack")

    def __init__(self, jobs: list[Job], sizes: list[int], stack: list[tuple[Any, ...]]) -> None:
        self.jobs = jobs
        self.sizes = sizes
        self.stack = stack
        self.results: list[Any] = []
        self.complete = False
        self.retried = False


def _is_noscript(result: Any) -> bool:
    return isinstance(result, Exception) and str(result).startswith("NOSCRIPT")


_LOAD = [("SCRIPT", "LOAD", script.text) for script in redis_scripts.ALL]


class Link:
    """The command connection of one shard (loop thread only)."""

    def __init__(self, shard: Shard, client: Any, timeout: float) -> None:
        self.shard = shard
        self.client = client  # redis-py's: makes the connections (URL, TLS, AUTH, timeouts)
        self.timeout = timeout
        self.sock: RespSocket | None = None
        self.connecting: Connecting | None = None
        self.waiting: list[Job] = []  # not written yet: connecting, or too many writes in flight
        self.writes: deque[_Write] = deque()  # in flight, in order
        self.unsettled: deque[_Batch] = deque()  # settled in order, once complete
        self.timer: Cancellable | None = None
        self.hold: _Write | None = None
        """After a NOSCRIPT: new batches wait until this write (the newest then) is answered, so none
        runs before the commands sent again for a batch written before it (offsets in order)."""
        self.retry_at = 0.0
        self.stopping = False
        self.ok = True
        self.failures = 0
        self.script_reloads = 0
        """Times a NOSCRIPT answer (Redis restarted or flushed its scripts) made us load them again."""

    def run(self, jobs: list[Job]) -> None:
        """Send ``jobs`` (in order, after those handed over before)."""
        loop = self.shard.engine.require_loop()
        if self.stopping:
            _fail(jobs, unavailable("the hub is stopping"))
        elif self.sock is not None:
            self.waiting.extend(jobs)
            self._flush()
        elif self.connecting is not None:
            self.waiting.extend(jobs)
        elif loop.time() < self.retry_at:
            _fail(jobs, unavailable())
        else:
            self.waiting.extend(jobs)
            name = f"hub-redis-connect-{self.shard.index}"
            self.connecting = Connecting(loop, self.client, name, self._connected)

    def stop(self) -> None:
        """Close the connection (or the attempt); every job not answered yet fails."""
        self.stopping = True
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        self._drop(unavailable("the hub is stopping"))

    def _connected(self, attempt: Connecting) -> None:
        self.connecting = None
        if attempt.error is not None:
            self._failed(str(attempt.error))
            return
        loop = self.shard.engine.require_loop()
        self.sock = RespSocket(loop, attempt.connection, self._on_replies, self._failed)
        self._write(_LOAD, self._scripts_loaded)
        self._flush()

    def _scripts_loaded(self, results: list[Any]) -> None:
        for script, sha in zip(redis_scripts.ALL, results, strict=True):
            if sha != script.sha:  # an error answer (or a SHA1 that is not the text's: not Redis)
                self._failed(f"SCRIPT LOAD answered {sha!r}")
                return

    def _flush(self) -> None:
        if self.hold is not None:
            return
        while self.waiting and self.sock is not None and len(self.writes) < _MAX_IN_FLIGHT:
            jobs, self.waiting = self.waiting[:_BATCH], self.waiting[_BATCH:]
            self._send(jobs)

    def _send(self, jobs: list[Job]) -> None:
        # the epoch offered to a stream Redis does not hold yet: drawn per batch, not per command (a read
        # of the OS's random source each); the scripts keep the shared ``P:epoch`` while it lives anyway
        self.shard.epoch_candidate = secrets.token_hex(4)
        commands = Commands()
        sizes = []
        for job in jobs:
            before = len(commands)
            job.build(commands)
            sizes.append(len(commands) - before)
        batch = _Batch(jobs, sizes, commands.stack)
        self.unsettled.append(batch)
        if commands.stack:
            self._write(commands.stack, lambda results: self._answered(batch, results))
        else:
            self._answered(batch, [])

    def _write(self, stack: list[tuple[Any, ...]], done: Callable[[list[Any]], None]) -> None:
        assert self.sock is not None
        loop = self.shard.engine.require_loop()
        self.writes.append(_Write(len(stack), done, loop.time()))
        self.sock.send(stack)
        if self.timer is None:
            self.timer = loop.call_later(self.timeout, self._check_timeout)

    def _answered(self, batch: _Batch, results: list[Any]) -> None:
        batch.results = results
        missed = [i for i, r in enumerate(results) if _is_noscript(r)]
        if missed and not batch.retried and self.sock is not None:
            batch.retried = True
            self.script_reloads += 1
            if self.writes:
                self.hold = self.writes[-1]
            again = [batch.stack[i] for i in missed]
            self._write(_LOAD + again, lambda answers: self._answered_again(batch, missed, answers))
            return
        batch.complete = True
        self._settle()

    def _answered_again(self, batch: _Batch, missed: list[int], answers: list[Any]) -> None:
        for i, result in zip(missed, answers[len(_LOAD) :], strict=True):
            batch.results[i] = result
        batch.complete = True
        self._settle()

    def _on_replies(self, replies: list[Any]) -> None:
        sock = self.sock
        writes = self.writes
        for reply in replies:
            if self.sock is not sock:  # a callback found the link broken
                return
            if not writes:
                self._failed("an answer to no command")
                return
            write = writes[0]
            write.results.append(reply)
            if len(write.results) == write.count:
                writes.popleft()
                self.ok = True
                if write is self.hold:
                    self.hold = None
                write.done(write.results)
        self._flush()

    def _settle(self) -> None:
        unsettled = self.unsettled
        while unsettled and unsettled[0].complete:
            _settle(self.shard.index, unsettled.popleft())

    def _check_timeout(self) -> None:
        self.timer = None
        if not self.writes:
            return
        loop = self.shard.engine.require_loop()
        waited = loop.time() - self.writes[0].sent_at
        if waited >= self.timeout - 0.001:
            self._failed(f"no answer in {self.timeout:g} s")
        else:
            self.timer = loop.call_later(self.timeout - waited, self._check_timeout)

    def _failed(self, reason: str) -> None:
        """The connection broke, timed out or could not be made: nothing pending will be answered."""
        if self.ok:
            logger.warning("redis shard %d (%s): %s", self.shard.index, self.shard.url, reason)
        self.ok = False
        self.failures += 1
        self.retry_at = self.shard.engine.require_loop().time() + _RETRY_SPACING
        self._drop(unavailable())

    def _drop(self, error: HubError) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.writes.clear()
        self.hold = None
        unsettled, self.unsettled = self.unsettled, deque()
        for batch in unsettled:
            if batch.complete:
                _settle(self.shard.index, batch)
            else:
                _fail(batch.jobs, error)
        waiting, self.waiting = self.waiting, []
        _fail(waiting, error)


def _settle(index: int, batch: _Batch) -> None:
    at = 0
    for job, size in zip(batch.jobs, batch.sizes, strict=True):
        part = batch.results[at : at + size]
        at += size
        reply = job.reply
        if reply is None:
            continue
        error = next((r for r in part if isinstance(r, Exception)), None)
        try:
            if error is not None:
                logger.error("redis shard %d: %s", index, error)
                reply.fail(unavailable("the engine failed (retry later)"))
                continue
            try:
                value = job.finish(part) if job.finish is not None else None
            except HubError as exc:
                reply.fail(exc)
            else:
                reply.resolve(value)
        except Exception:  # one failing job (or a callback of its reply) must not hold back the others
            logger.exception("redis shard %d: settling a job failed", index)
            if not reply.done:
                reply.fail(unavailable("the engine failed (retry later)"))


def _fail(jobs: list[Job], error: HubError) -> None:
    for job in jobs:
        if job.reply is not None:
            try:
                job.reply.fail(error)
            except Exception:  # a callback of the reply: the other jobs are still told
                logger.exception("redis: failing a job failed")
