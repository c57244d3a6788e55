"""The Redis engine's presence: who is in a channel, kept in Redis by the ``PRESENCE`` script.

Each entry expires ``presence_ttl`` after this node stops refreshing it (the shard's refresh timer
rewrites what it holds in ``Shard.presence``), so a killed node's clients disappear."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .engine import ClientInfo, Reply
from .redis_scripts import PRESENCE, call
from .redis_shard import Job

if TYPE_CHECKING:
    from .redis_shard import Shard

__all__ = ["add_presence", "presence", "presence_stats", "remove_presence"]


def _user_key(info: ClientInfo) -> str:
    return "u:" + info.user if info.user else "c:" + info.client


def add_presence(shard: Shard, channel: str, info: ClientInfo, ttl: float) -> None:
    keys = shard.presence_keys(channel)
    userkey = _user_key(info)
    value = userkey + "\n" + info.as_json()
    ttl_ms = int(ttl * 1000)

    def build(pipe: Any) -> None:
        shard.presence[(channel, info.client)] = (userkey, value)  # refreshed from now on
        call(pipe, PRESENCE, keys, "add", info.client, userkey, value, ttl_ms)

    shard.submit(Job(build))


def remove_presence(shard: Shard, channel: str, client: str) -> None:
    keys = shard.presence_keys(channel)

    def build(pipe: Any) -> None:
        shard.presence.pop((channel, client), None)
        call(pipe, PRESENCE, keys, "remove", client)

    shard.submit(Job(build))


def presence(shard: Shard, channel: str) -> Reply[list[ClientInfo]]:
    keys = shard.presence_keys(channel)
    reply: Reply[list[ClientInfo]] = Reply()

    def finish(results: list[Any]) -> list[ClientInfo]:
        infos = []
        for value in results[0]:
            item = json.loads(value.partition("\n")[2])
            infos.append(ClientInfo.from_dict(item))
        return infos

    shard.submit(Job(lambda pipe: call(pipe, PRESENCE, keys, "get"), finish, reply), batched=True)
    return reply


def presence_stats(shard: Shard, channel: str) -> Reply[tuple[int, int]]:
    keys = shard.presence_keys(channel)
    reply: Reply[tuple[int, int]] = Reply()
    shard.submit(
        Job(
            lambda pipe: call(pipe, PRESENCE, keys, "stats"),
            lambda results: (int(results[0][0]), int(results[0][1])),
            reply,
        ),
        batched=True,
    )
    return reply
