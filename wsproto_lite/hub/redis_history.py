"""The Redis engine's publishing and history: the ``PUBLISH`` script assigns a publication its offset and
PUBLISHes it atomically (``PUBLISH_ONCE``/plain ``PUBLISH`` without history); ``READ`` reads a channel's
position and kept publications, from which history and recovery are selected."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .engine import (
    IDEMPOTENCY_WINDOW,
    HistoryResult,
    Publication,
    RecoveryResult,
    Reply,
    select_history,
    select_recovery,
)
from .protocol import Position
from .redis_scripts import PUBLISH, PUBLISH_ONCE, READ, call
from .redis_shard import Job

if TYPE_CHECKING:
    from .namespaces import NamespaceOptions
    from .redis_shard import Shard

__all__ = ["Read", "entry_fields", "history_of", "position_of", "publish", "read", "recovery_of", "remove"]

Read = tuple[str, int, list[Publication]]
"""A channel's epoch, top offset and kept publications."""


def publish(
    shard: Shard,
    target: str,
    channel: str,
    data_json: str,
    info_json: str | None,
    options: NamespaceOptions,
    *,
    idempotency_key: str,
    tags_json: str | None,
    meta_ttl: float,
) -> Reply[Publication]:
    """Publish on ``target`` (``channel``'s Redis channel), into its history if the namespace keeps one."""
    window_ms = int(IDEMPOTENCY_WINDOW * 1000)
    once = (shard.key("idem", channel) + ":" + idempotency_key,) if idempotency_key else ()
    if not options.history:
        payload = f"p\n\n\n\n{info_json or ''}\n{tags_json or ''}\n{data_json}"
        publication = Publication(channel, None, data_json, info_json, tags_json=tags_json)
        return _publish_only(shard, target, payload, publication, once, window_ms)
    reply: Reply[Publication] = Reply()
    keys = (shard.key("meta", channel), shard.key("hist", channel), f"{shard.engine.prefix}:epoch", *once)
    head = (
        target,
        f"{info_json or ''}\n{tags_json or ''}",  # the entry's info and tags fields (JSON has no newline)
        data_json,
        options.history_size,
        int(options.history_ttl * 1000),
        int(max(meta_ttl, options.history_ttl) * 1000),
    )
    tail = (int(meta_ttl * 500), *((window_ms,) if once else ()))

    def finish(results: list[Any]) -> Publication:
        epoch, offset = results[0][:2]
        return Publication(channel, int(offset), data_json, info_json, epoch=epoch, tags_json=tags_json)

    def build(pipe: Any) -> None:  # when the batch is packed: its epoch candidate
        call(pipe, PUBLISH, keys, *head, shard.epoch_candidate, *tail)

    shard.submit(Job(build, finish, reply), batched=True)
    return reply


def _publish_only(
    shard: Shard,
    target: str,
    payload: str,
    publication: Publication,
    once: tuple[str, ...],
    window_ms: int,
) -> Reply[Publication]:
    """A publication without history: PUBLISHed as it is (once per idempotency key when given one)."""
    reply: Reply[Publication] = Reply()
    if once:
        job = Job(
            lambda pipe: call(pipe, PUBLISH_ONCE, once, target, payload, window_ms),
            lambda _: publication,
            reply,
        )
    else:
        job = Job(lambda pipe: pipe.publish(target, payload), lambda _: publication, reply)
    shard.submit(job, batched=True)
    return reply


def read(shard: Shard, channel: str, *, entries: bool, meta_ttl: float) -> Reply[Read]:
    """The channel's position (and with ``entries`` its kept publications)."""
    keys = (shard.key("meta", channel), shard.key("hist", channel), f"{shard.engine.prefix}:epoch")
    tail = (int(meta_ttl * 500), "1" if entries else "0")
    reply: Reply[Read] = Reply()

    def finish(results: list[Any]) -> Read:
        epoch, top, items = results[0]
        held = []
        for item in items:
            offset, _expires, info, tags, data = entry_fields(item, 5)
            held.append(
                Publication(channel, int(offset), data, info or None, epoch=epoch, tags_json=tags or None)
            )
        return epoch, int(top), held

    job = Job(lambda pipe: call(pipe, READ, keys, shard.epoch_candidate, *tail), finish, reply)
    shard.submit(job, batched=True)
    return reply


def entry_fields(text: str, count: int) -> list[str]:
    """Split a stored entry or a pub/sub message into its ``count`` newline-separated fields, the data last.

    An entry written before publications carried tags has one field fewer (no tags before the data):
    it reads with empty tags, so history kept in Redis across the upgrade (and messages from nodes still on
    the old version) stay readable.  The data is compact JSON: it holds no raw newline.
    """
    fields = text.split("\n", count - 1)
    if len(fields) == count - 1:
        fields.insert(count - 2, "")
    return fields


def remove(shard: Shard, channel: str) -> Reply[None]:
    """``DEL`` of the channel's list; its meta (epoch, top) stays, as centrifuge's ``removeHistory``."""
    reply: Reply[None] = Reply()
    key = shard.key("hist", channel)
    shard.submit(Job(lambda pipe: pipe.delete(key), lambda _: None, reply))
    return reply


def position_of(reading: Reply[Read]) -> Reply[Position]:
    return reading.then(lambda got: Position(got[0], got[1]))


def history_of(
    reading: Reply[Read], *, since: Position | None, limit: int | None, reverse: bool
) -> Reply[HistoryResult]:
    def select(got: Read) -> HistoryResult:
        epoch, top, held = got
        chosen = select_history(epoch, top, held, since=since, limit=limit, reverse=reverse)
        return HistoryResult(chosen, Position(epoch, top))

    return reading.then(select)


def recovery_of(reading: Reply[Read], since: Position) -> Reply[RecoveryResult]:
    return reading.then(lambda got: select_recovery(got[0], got[1], got[2], since))
