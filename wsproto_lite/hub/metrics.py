"""``GET /metrics``: the hub's counters and gauges in the Prometheus text exposition format (0.0.4).

The counters are plain ints in :class:`~wsproto_lite.hub.metrics.HubStats`, bumped where things happen; this
module
only reads them (and counts gauges such as subscriptions at scrape time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hub import Hub
    from .webhook_sender import WebhookStats

__all__ = ["render", "CONTENT_TYPE", "HubStats"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_PREFIX = "wsproto_hub_"


def _escape(value: str) -> str:
    """A label value: backslash, double quote and newline escaped (the format's only escapes)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        full = _PREFIX + name
        self.lines.append(f"# HELP {full} {help_text}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            number = repr(value) if isinstance(value, float) else str(value)
            self.lines.append(f"{full}{labels} {number}")

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.metric(name, kind, help_text, [("", value)])


def render(hub: Hub) -> str:
    """The hub's metrics in the Prometheus text format."""
    w = _Writer()
    _connections(w, hub)
    _traffic(w, hub.stats)
    _refusals(w, hub.stats)
    _recoveries(w, hub.stats)
    history_bytes = getattr(hub.engine, "history_bytes", None)  # engines that keep history in this process
    if isinstance(history_bytes, int):
        w.one("history_bytes", "gauge", "Bytes of publications held in history.", history_bytes)
    _engine_health(w, hub.engine.health())
    if hub.webhooks is not None:
        _webhooks(w, hub.webhooks.stats, hub.webhooks.sender.queued_now)
    _hooks(w, hub)
    w.metric(
        "limit_trips_total",
        "counter",
        "Requests refused by a limit, by limit.",
        [(f'{{limit="{_escape(name)}"}}', count) for name, count in sorted(hub.stats.limit_trips.items())],
    )
    return "\n".join(w.lines) + "\n"


def _connections(w: _Writer, hub: Hub) -> None:
    """What the hub holds now: connections, their subscriptions, channels."""
    w.one("connections", "gauge", "Open hub connections.", len(hub.sessions))
    w.one("connections_total", "counter", "Connections opened.", hub.stats.connections)
    w.one(
        "subscriptions",
        "gauge",
        "Subscriptions held by open connections.",
        sum(len(s.subscriptions) for s in hub.sessions.values()),
    )
    w.one("channels", "gauge", "Channels and patterns with subscribers on this hub.", len(hub.channels()))


def _traffic(w: _Writer, stats: HubStats) -> None:
    """Frames and bytes in and out, publications and their deliveries."""
    w.one("commands_total", "counter", "Command frames received.", stats.commands)
    w.one("errors_total", "counter", "Error replies sent.", stats.errors)
    w.one("messages_in_total", "counter", "Text frames received.", stats.messages_in)
    w.one("bytes_in_total", "counter", "Characters of text frames received.", stats.bytes_in)
    w.one("messages_out_total", "counter", "Replies and pushes queued.", stats.messages_out)
    w.one("bytes_out_total", "counter", "Bytes of replies and pushes queued.", stats.bytes_out)
    w.one("publications_total", "counter", "Publications delivered to this hub.", stats.publications)
    w.one("deliveries_total", "counter", "Publication pushes addressed to subscribers.", stats.deliveries)


def _refusals(w: _Writer, stats: HubStats) -> None:
    """Connections dropped or refused: slow, aborted, bad credentials."""
    w.one("slow_disconnects_total", "counter", "Subscribers dropped as slow (drops).", stats.slow_disconnects)
    w.one(
        "aborts_total",
        "counter",
        "Connections aborted because a server-side operation (disconnect, unsubscribe...) failed on them.",
        stats.aborts,
    )
    w.one(
        "auth_failures_total", "counter", "Refused credentials (HTTP 401 or disconnect).", stats.auth_failures
    )


def _recoveries(w: _Writer, stats: HubStats) -> None:
    """Recoveries of subscriptions after a reconnect: whole, or with a gap."""
    w.one(
        "recoveries_total",
        "counter",
        "Subscriptions that recovered every missed publication.",
        stats.recoveries,
    )
    w.one(
        "recovery_failures_total",
        "counter",
        "Recoveries that could not recover all.",
        stats.recovery_failures,
    )


def _webhooks(w: _Writer, stats: WebhookStats, queued_now: int) -> None:
    """The webhooks' queue and requests (``webhook_sender.py``)."""
    w.one("webhook_queue", "gauge", "Webhook events waiting to be sent.", queued_now)
    w.one("webhook_events_total", "counter", "Webhook events queued.", stats.queued)
    w.one("webhook_events_dropped_total", "counter", "Webhook events dropped: queue full.", stats.dropped)
    w.one("webhook_requests_sent_total", "counter", "Webhook requests answered 2xx.", stats.sent)
    w.one("webhook_requests_failed_total", "counter", "Webhook requests given up.", stats.failed)
    w.one("webhook_events_lost_total", "counter", "Webhook events in requests given up.", stats.lost)
    w.one("webhook_retries_total", "counter", "Webhook requests tried again.", stats.retried)
    w.one(
        "webhook_undecided_total",
        "counter",
        "Channel or member transitions not decided (the engine failed): no event.",
        stats.undecided,
    )


_SHARD_GAUGES = (
    ("commands_ok", "1 while the shard answers commands."),
    ("pubsub_ok", "1 while the shard's pub/sub link is up."),
)
_SHARD_COUNTERS = (
    ("command_failures", "Commands the shard failed."),
    ("pubsub_failures", "Times the shard's pub/sub link broke."),
    ("reconnects", "Reconnections to the shard."),
)


def _engine_health(w: _Writer, report: dict[str, Any]) -> None:
    """The engine's ``health()``: up or degraded, lost events, and per shard (Redis) its links."""
    kind = _escape(str(report.get("engine", "")))
    w.metric(
        "engine_up",
        "gauge",
        "1 while the engine is healthy, 0 while degraded (its backend unreachable).",
        [(f'{{engine="{kind}"}}', 1 if report.get("ok", True) else 0)],
    )
    for key, help_text in (
        ("lost_events", "Times the engine may have missed publications (subscribers told 4002)."),
        ("bad_messages", "Malformed messages on the engine's channels, ignored."),
    ):
        value = report.get(key)
        if isinstance(value, int):
            w.one(f"engine_{key}_total", "counter", help_text, value)
    shards = [s for s in report.get("shards", ()) if isinstance(s, dict)]
    if not shards:
        return
    for key, help_text in _SHARD_GAUGES + _SHARD_COUNTERS:
        kind_of = "gauge" if (key, help_text) in _SHARD_GAUGES else "counter"
        name = f"engine_shard_{key}" + ("_total" if kind_of == "counter" else "")
        w.metric(
            name,
            kind_of,
            help_text,
            [(f'{{shard="{_escape(str(s.get("url", "")))}"}}', int(s.get(key, 0))) for s in shards],
        )


@dataclass
class HubStats:
    """Counters (plain ints, bumped where things happen), rendered by ``metrics.py`` on ``GET /metrics``."""

    connections: int = 0
    commands: int = 0
    errors: int = 0
    publications: int = 0
    deliveries: int = 0
    slow_disconnects: int = 0
    messages_in: int = 0
    bytes_in: int = 0
    """Characters of text frames received (JSON: bytes for ASCII)."""
    messages_out: int = 0
    bytes_out: int = 0
    """Characters of replies and bytes of fan-out frames queued."""
    auth_failures: int = 0
    recoveries: int = 0
    recovery_failures: int = 0
    aborts: int = 0
    """Connections aborted because a server-side operation (disconnect, unsubscribe, ...) failed on them."""
    limit_trips: dict[str, int] = field(default_factory=dict)
    """Limit name -> times it refused something."""

    def trip(self, limit: str) -> None:
        self.limit_trips[limit] = self.limit_trips.get(limit, 0) + 1


def _hooks(w: _Writer, hub: Hub) -> None:
    """Per backend hook (``hooks.py``): calls, failures, timeouts, and the seconds answers took."""
    stats = hub.hook_runner.stats
    names = [name for name in stats.calls if name in hub.hooks or stats.calls[name]]

    def per_hook(values: dict[str, int] | dict[str, float]) -> list[tuple[str, float]]:
        return [(f'{{hook="{name}"}}', values[name]) for name in names]

    w.metric("hook_calls_total", "counter", "Backend hook calls.", per_hook(stats.calls))
    w.metric(
        "hook_errors_total",
        "counter",
        "Backend hook calls that failed (raised, down, bad status, junk answer); timeouts apart.",
        per_hook(stats.errors),
    )
    w.metric("hook_timeouts_total", "counter", "Backend hook calls that timed out.", per_hook(stats.timeouts))
    w.metric("hook_seconds_sum", "counter", "Seconds backend hooks took to answer.", per_hook(stats.seconds))
    w.metric("hook_seconds_count", "counter", "Backend hook answers timed.", per_hook(stats.answered))
