"""The hub group: fan-out latency, throughput and memory per subscribed connection, for the hub and
what a Python user would pick instead, each server in its own process, one load generator.

Per repetition and target (targets interleaved, a fresh server each time):

1. publisher + 10 subscribers, 10 warm-up publications; server RSS;
2. up to ``subscribers`` (1 000) subscribed connections; server RSS again -> RSS per idle subscribed
   connection;
3. fan-out: ``rate`` (20) publications/s for ``count`` (100) publications; per publication the time
   from its stamp until the last subscriber read it -> p50, p99;
4. abort all but ``tp_subscribers`` (100); throughput: ``window`` publications kept in flight (a new one
   each time one reached every subscriber) -> deliveries/s, server CPU per delivery.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..loopback import HOST
from ..report import Table, median, ratio_cells
from ..servers import raise_nofile
from .fleet import Fleet
from .loadgen import percentile
from .targets import OURS, TARGETS, Target, Unavailable

WARM_SUBSCRIBERS = 10


@dataclass(frozen=True)
class Profile:
    subscribers: int = 1000
    rate: float = 20.0
    count: int = 100
    drain: float = 6.0  # seconds to wait after the last publication before giving up on it
    tp_subscribers: int = 100
    window: int = 32
    warmup: float = 0.5
    duration: float = 2.0
    settle: float = 0.5  # seconds between opening/aborting connections and reading /proc
    procs: int = 2  # subscriber processes of the load generator (fleet.py)


FULL = Profile()
QUICK = Profile(
    subscribers=20,
    count=5,
    drain=5.0,
    tp_subscribers=10,
    window=8,
    duration=0.5,
    settle=0.2,
)


def measure(target: Target, profile: Profile) -> dict[str, float]:
    """One repetition on a fresh server (raises ``Unavailable`` when it cannot start)."""
    server = target.start(HOST)
    gen: Fleet | None = None
    try:
        gen = Fleet(target, server.port, profile.procs)
        gen.open(WARM_SUBSCRIBERS, publisher=True)
        gen.fanout(rate=50, count=10, drain=5.0)
        time.sleep(profile.settle)
        rss0 = server.rss_bytes()
        gen.open(profile.subscribers - WARM_SUBSCRIBERS)
        time.sleep(profile.settle)
        rss1 = server.rss_bytes()
        cpu0, delivered0 = gen.cpu_seconds(), gen.gen.delivered
        latencies = gen.fanout(profile.rate, profile.count, profile.drain)
        client_cpu = (gen.cpu_seconds() - cpu0) / max(1, gen.gen.delivered - delivered0)
        gen.shrink(profile.tp_subscribers)
        time.sleep(profile.settle)
        tp = gen.throughput(profile.window, profile.warmup, profile.duration, server.cpu_seconds)
    finally:
        if gen is not None:
            gen.close()
        server.stop()
    done = [ns / 1e6 for ns in latencies if ns is not None]
    missing = len(latencies) - len(done)
    everything = done + [math.inf] * missing  # a publication that never completed is the slowest
    return {
        "p50_ms": percentile(everything, 50),
        "p99_ms": percentile(everything, 99),
        "incomplete": float(missing),
        "client_us": client_cpu * 1e6,
        "rss_kib": (rss1 - rss0) / (profile.subscribers - WARM_SUBSCRIBERS) / 1024,
        "deliveries_per_s": tp["deliveries_per_s"],
        "cpu_us": tp["cpu_us_per_delivery"],
    }


def _ms(v: float) -> str:
    if math.isinf(v):
        return "timeout"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


ROWS: list[tuple[str, str, bool, Callable[[float], str], str]] = [
    # label, key, higher is better, format, goal for the hub (issue 11)
    ("fan-out to {n}: last delivery p50 (ms)", "p50_ms", False, _ms, ">= 5x python-socketio"),
    ("fan-out to {n}: last delivery p99 (ms)", "p99_ms", False, _ms, "<= websockets"),
    (
        "  publications not complete after {drain:.0f} s (of {count})",
        "incomplete",
        False,
        "{:.0f}".format,
        "",
    ),
    ("  load generator CPU per delivery during the fan-out (us)", "client_us", False, "{:.1f}".format, ""),
    ("throughput into {tp} subscribers (deliveries/s)", "deliveries_per_s", True, "{:.0f}".format, ""),
    ("server CPU per delivery (us)", "cpu_us", False, "{:.1f}".format, "<= websockets"),
    ("server RSS per idle subscribed connection (KiB)", "rss_kib", False, "{:.1f}".format, "<= 20"),
]


def run(*, quick: bool, reps: int, infos: dict[str, dict[str, str]], notes: list[str]) -> list[Table]:
    profile = QUICK if quick else FULL
    reps = max(1, reps)  # 3 by default (python -m benchmarks): the group stays within ~3 minutes
    raise_nofile()  # the servers inherit it: 1 000 connections need more than a 1 024 soft limit
    targets: dict[str, Target] = {name: make() for name, make in TARGETS.items()}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    skipped: dict[str, str] = {}
    order = list(targets)
    for rep in range(reps):
        for name in order[rep % len(order) :] + order[: rep % len(order)]:  # rotate who goes first
            if name in skipped:
                continue
            try:
                results[name].append(measure(targets[name], profile))
                infos.setdefault(name, targets[name].info())
            except Unavailable as exc:
                skipped[name] = str(exc)
                print(f"hub: {name} skipped: {exc}", flush=True)
            except Exception as exc:  # noqa: BLE001 - reported, the other targets go on
                skipped[name] = f"failed: {type(exc).__name__}: {exc}"
                print(f"hub: {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
    for name, why in skipped.items():
        notes.append(f"hub: {name} not measured: {why}")
    return [table(profile, {n: r for n, r in results.items() if r}, reps)]


def _median(values: list[float]) -> float | None:
    """Median of the measured values (NaN = not measured in that repetition), None if none."""
    measured = [v for v in values if not math.isnan(v)]
    return median(measured) if measured else None


def _timeout_ratio(vals: dict[str, float | None], peer: str, ratio: str, bound_ms: float) -> str:
    """Against a peer that timed out, the drain time is a lower bound of its latency: "> N x"."""
    mine, other = vals.get(OURS), vals.get(peer)
    if mine is None or other is None or not math.isinf(other) or math.isinf(mine) or mine <= 0:
        return ratio
    return f"> {bound_ms / mine:.2f}x"


def table(profile: Profile, results: dict[str, list[dict[str, float]]], reps: int) -> Table:
    impls = [n for n in TARGETS if n in results]
    peers = [n for n in TARGETS if n != OURS]
    t = Table(
        title="Hub: pub/sub fan-out, throughput and memory (one server process each, one load generator)",
        key="hub",
        columns=["measure", *impls, *[f"{OURS} vs {p}" for p in peers], f"goal for {OURS}"],
        unit="see each row; ratio > 1 means the hub is better",
        chart_ylabel="ms until the last subscriber has it (lower is better)",
    )
    values = {"n": profile.subscribers, "tp": profile.tp_subscribers, "drain": profile.drain}
    for label, key, higher, fmt, goal in ROWS:
        vals = {i: _median([r[key] for r in results[i]]) for i in impls}
        finite = {i: (v if v is not None and math.isfinite(v) else None) for i, v in vals.items()}
        if key in ("incomplete", "client_us"):  # context for the rows above, not a comparison
            ratios = ["" for _ in peers]
        else:
            ratios = ratio_cells(finite, OURS, [OURS, *peers], higher)
        if key in ("p50_ms", "p99_ms"):
            ratios = [
                _timeout_ratio(vals, p, r, profile.drain * 1e3) for p, r in zip(peers, ratios, strict=True)
            ]
        cells = [fmt(v) if (v := vals[i]) is not None else "n/a" for i in impls]
        t.rows.append([label.format(**values, count=profile.count), *cells, *ratios, goal])
        if key in ("p50_ms", "p99_ms") and None not in finite.values():  # no bar for a timeout
            t.data[label.split(":")[1].split(" (")[0].strip()] = dict(finite)
    t.notes += [
        f"median of {reps} repetition(s), targets interleaved (a fresh server process each), the order "
        "rotated every repetition",
        f"fan-out: {profile.rate:g} publications/s for {profile.count / profile.rate:g} s to "
        f"{profile.subscribers} subscribers of one channel; latency = from the publisher's "
        "time.monotonic_ns() stamp inside the payload until the load generator read the last subscriber's "
        "copy (its own reading time included, the same for every server); a publication not complete "
        f"after the drain time counts as 'timeout'. The subscribers are spread over {profile.procs} "
        "processes of the load generator (benchmarks/hub/fleet.py), the publisher in a third; its CPU "
        "per delivery (all of them) is shown as context: not a comparison of servers",
        f"throughput: {profile.tp_subscribers} subscribers, {profile.window} publications in flight, "
        f"{profile.warmup:g} s warm-up then {profile.duration:g} s timed; server CPU = utime+stime of "
        "the server process (/proc/PID/stat, 10 ms ticks) / deliveries. The load generator (Python, on "
        "wsproto_lite.ClientConnection) may saturate before a fast server does: then deliveries/s is its "
        "limit, and CPU per delivery still compares the servers",
        f"memory: (RSS with {profile.subscribers} subscribed idle connections - RSS with "
        f"{WARM_SUBSCRIBERS} after a warm-up) / {profile.subscribers - WARM_SUBSCRIBERS}",
        "servers: hub = `python -m server hub` (benchmarks/hub/targets.py: HUB_COMMAND), channel "
        "`bench:fanout`; hub-asgi = the same hub as HubASGI mounted at /hub in a Starlette app on uvicorn "
        "(our WebSocket class), same config; python-socketio AsyncServer on uvicorn (rooms) and a "
        "websockets asyncio server with `websockets.broadcast` over a set; these three in "
        "benchmarks/hub_peers.py; all without "
        "compression; payload ~90 bytes of JSON",
    ]
    return t
