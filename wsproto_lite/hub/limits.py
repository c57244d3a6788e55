"""Rate limits: token buckets per connection and per IP, connections per user, and their configuration.

A :class:`TokenBucket` holds up to ``burst`` tokens and refills at ``rate`` per second; an action that
finds too few tokens is refused (the caller answers error 111 and counts a trip).  Per connection: one
bucket for commands, one for bytes received, and one for the trips themselves: a connection that trips
faster than ``abuse_trips_per_second`` for longer than ``abuse_burst`` trips is closed with 1008 (RFC 6455
§7.4.1 "policy violation").  Per IP, a bucket for new connections (HTTP 429 before the upgrade); the table
of IPs is bounded (``max_tracked_ips``) and forgets buckets that have refilled.

Everything takes ``now`` from the caller (the loop's clock), so the buckets are plain arithmetic and
testable without waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["HubLimits", "RateLimits", "TokenBucket", "IpLimiter", "UserConnections"]


@dataclass(frozen=True)
class RateLimits:
    """``[rate_limits]`` in the config file; the defaults are generous for people, tight for floods."""

    commands_per_second: float = 100.0
    commands_burst: float = 200.0
    bytes_per_second: float = 512 * 1024.0
    bytes_burst: float = 2 * 1024 * 1024.0
    """Should be at least ``limits.max_command_size`` (one command's characters are taken at once)."""
    connections_per_second_per_ip: float = 20.0
    connections_burst_per_ip: float = 100.0
    max_tracked_ips: int = 100_000
    """IPs whose connection buckets are remembered; beyond it the oldest are forgotten."""
    max_connections_per_user: int = 100
    """Connections with the same (non-empty) user id; API-key and anonymous ones are not counted."""
    max_channels: int = 100_000
    """Distinct channels and patterns with subscribers on this hub."""
    abuse_trips_per_second: float = 1.0
    abuse_burst: float = 30.0
    """Trips tolerated in a row (refilling at ``abuse_trips_per_second``) before the close with 1008."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"rate_limits.{f.name} must be positive")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "rate_limits") -> RateLimits:
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known:
                raise ValueError(f"unknown key {where}.{key} (known: {', '.join(sorted(known))})")
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{where}.{key} must be a number")
            kwargs[key] = int(value) if known[key].type == "int" else float(value)
        return cls(**kwargs)


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; ``take`` spends them or refuses."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "__weakref__")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float, amount: float = 1.0) -> bool:
        self._refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


class IpLimiter:
    """New connections per second per IP, in a bounded table."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, ip: str, now: float) -> bool:
        bucket = self._buckets.get(ip)
        if bucket is None:
            if len(self._buckets) >= self.limits.max_tracked_ips:
                del self._buckets[next(iter(self._buckets))]  # the oldest entry (dicts keep order)
            bucket = self._buckets[ip] = TokenBucket(
                self.limits.connections_per_second_per_ip, self.limits.connections_burst_per_ip, now
            )
        return bucket.take(now)

    def expire(self, now: float) -> None:
        """Forget refilled buckets: a full bucket and no bucket behave the same."""
        for ip in [ip for ip, bucket in self._buckets.items() if bucket.full(now)]:
            del self._buckets[ip]


class UserConnections:
    """Connections per user id (for ``max_connections_per_user`` and ``/api/disconnect``)."""

    def __init__(self) -> None:
        self._by_user: dict[str, dict[Any, None]] = {}

    def count(self, user: str) -> int:
        return len(self._by_user.get(user, ()))

    def add(self, user: str, conn: Any) -> None:
        self._by_user.setdefault(user, {})[conn] = None

    def remove(self, user: str, conn: Any) -> None:
        conns = self._by_user.get(user)
        if conns is not None:
            conns.pop(conn, None)
            if not conns:
                del self._by_user[user]

    def of(self, user: str) -> list[Any]:
        return list(self._by_user.get(user, ()))


@dataclass(frozen=True)
class HubLimits:
    """Bounds on what one connection may make the hub hold or do."""

    max_command_size: int = 64 * 1024
    """Characters in one command frame; over it: error 106 (the core closes frames over the I/O limit)."""
    max_channels_per_connection: int = 128
    queue_limit: int = 1 << 20
    """Bytes queued for a connection (replies, pushes, fan-out) over which the hub stops reading its
    commands; it is disconnected as slow after ``slow_timeout`` over it, or at once past twice this.
    Also the largest reply (in characters)."""
    slow_timeout: float = 10.0
    """Seconds a connection may stay over ``queue_limit`` before it is disconnected as slow (4001)."""
    connect_timeout: float = 10.0
    """Seconds from the WebSocket opening to the ``connect`` command, else disconnect 3502 (stale)."""
    max_name_length: int = 64
    max_history_limit: int = 1000
    """Most publications one ``history`` reply carries."""
    ping_interval: float = 25.0
    """Seconds between the hub's app-level pings (``{}``; the ``ping`` of the ``connect`` result)."""
    pong_timeout: float = 10.0
    """Seconds a client has to answer a ping with ``{}`` before it is disconnected (3012 no pong)."""
    expired_close_delay: float = 25.0
    """Seconds past its token's expiry before a connection is closed (3005): the SDKs refresh at the
    ``ttl`` the hub reported, so they need a moment (Centrifugo's ``client.expired_close_delay``)."""
    expired_sub_close_delay: float = 25.0
    """The same for a subscription made with a subscription token (``sub_refresh``, then 2501)."""
    max_commands_in_flight: int = 1000
    """Commands of one connection waiting for the engine (or for an earlier reply); at it the hub stops
    reading the connection until half of them are answered (backpressure, not a disconnect); past twice
    it (commands batched in frames already read) the connection is disconnected as slow (3008)."""
