"""A shard's command connection (``Link``): a batch of commands written in one go and their answers read
in order, on one redis-py connection the command thread keeps.

Not redis-py's ``Pipeline``: per round trip it takes a connection from the pool and gives it back, wraps
the call in its retry and observability machinery and builds a pipeline object, which costs about as much
CPU as the commands themselves at the batch sizes the hub sends (one to a few).  Here a batch is a list of
argument tuples (``Commands``, with the pipeline methods the jobs use) packed by the connection and read
back with its parser (hiredis when installed).  The scripts go out by SHA1 (``redis_scripts.py``).
"""

from __future__ import annotations

from typing import Any

from . import redis_scripts

try:
    import redis
except ImportError:  # pragma: no cover - redis_shard.require_redis() says which extra to install
    pass

__all__ = ["Commands", "Link"]


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


class Link:
    """The command thread's connection to one Redis server (only that thread uses it)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.connection: Any = None
        self.scripts_loaded = False  # on this connection: loaded at its start, again after a failure
        self.script_reloads = 0
        """Times a NOSCRIPT answer (Redis restarted or flushed its scripts) made us load them again."""

    def run(self, commands: Commands) -> list[Any]:
        """Each command's answer (an error answer as its exception), in order.  The scripts are loaded
        first when this connection may not have them; commands answered ``NOSCRIPT`` did not run (Redis
        restarted, or ``SCRIPT FLUSH``), so they are sent again, once, after loading the scripts.  Raises
        on a connection failure, after which the next batch connects and loads the scripts again (never
        resent here: a command may have run before the link broke)."""
        try:
            if not self.scripts_loaded:
                self._load_scripts()
            results = self._round_trip(commands.stack)
            missed = [i for i, r in enumerate(results) if isinstance(r, redis.exceptions.NoScriptError)]
            if missed:
                self.script_reloads += 1
                self._load_scripts()
                again = self._round_trip([commands.stack[i] for i in missed])
                for i, result in zip(missed, again, strict=True):
                    results[i] = result
        except (redis.RedisError, OSError):
            self.scripts_loaded = False
            if self.connection is not None:
                self.connection.disconnect()
            raise
        return results

    def _round_trip(self, stack: list[tuple[Any, ...]]) -> list[Any]:
        connection = self.connection
        if connection is None:
            connection = self.connection = self.client.connection_pool.get_connection()
        connection.send_packed_command(connection.pack_commands(stack), check_health=False)
        results: list[Any] = []
        for _ in stack:
            try:
                results.append(connection.read_response())
            except redis.exceptions.ResponseError as exc:  # this command's error answer: read whole
                results.append(exc)
        return results

    def _load_scripts(self) -> None:
        loaded = self._round_trip([("SCRIPT", "LOAD", script.text) for script in redis_scripts.ALL])
        for script, sha in zip(redis_scripts.ALL, loaded, strict=True):
            if isinstance(sha, Exception):
                raise sha
            if sha != script.sha:  # pragma: no cover - Redis names a script by the SHA1 of its text
                raise redis.RedisError(f"SCRIPT LOAD answered {sha}, expected {script.sha}")
        self.scripts_loaded = True
