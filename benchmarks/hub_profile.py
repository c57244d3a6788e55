"""Centrifugo's million-connection profile, scaled down: the hub on 2 workers over 2 Redis shards, and
python-socketio with its Redis manager, in one run.

``python -m benchmarks.hub_profile [--scale 0.01] [--seconds 60] [--procs 4] [--only hub,python-socketio]
[--out benchmarks/RESULTS-hub-profile.md]``

Centrifugo's published test: 1 M WebSocket connections on 20 nodes with 5 Redis shards, each connection on
a personal channel and a 10-member group channel, ~500 k deliveries/s, 200 k reconnects per minute, p99
delivery 200 ms. At ``--scale`` (1/100 by default): ``1e6 * scale`` connections, ``5e5 * scale``
deliveries/s (half through personal channels, half through group channels: ``--group-share``),
``2e5 * scale`` reconnects per minute, for ``--seconds``. Everything on 127.0.0.1:

- two ``redis-server`` processes (the shards), started here on free ports;
- the hub: ``python -m server hub --workers 2 --engine redis://A,redis://B`` (the supervisor and its two
  workers on one port; namespace ``prof`` with history, so reconnects recover);
- python-socketio: two ``benchmarks.hub_peers socketio-redis`` processes (uvicorn, ``AsyncRedisManager``
  on shard A: it has no sharding), users alternate between their ports;
- the load: ``--procs`` processes (``benchmarks/hub/profile.py``), each with its users and a publisher.

Reported per server: delivery latency p50/p99/max, lost and duplicated publications, reconnects and
recoveries, RSS of the server processes (idle, with every connection subscribed, at the end) and per
connection, CPU of the servers, of Redis and of the load generator. Every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import datetime
import math
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from .hub.loadgen import percentile
from .hub.profile import DRIVERS, GROUP, NAMESPACE, ProfileGen, Tally
from .loopback import CLK_TCK, HOST, PAGE, ROOT, ServerProc, cpu_seconds, free_port
from .servers import raise_nofile

FULL_CONNECTIONS = 1_000_000  # Centrifugo's test, scaled by --scale
FULL_DELIVERIES = 500_000  # per second
FULL_RECONNECTS = 200_000  # per minute
TARGETS = ("hub", "python-socketio")  # the default run
EXTRA = ("hub-1-redis", "hub-1w-redis", "hub-1w-memory")  # only when named in --only:
# the hub's 2 workers on one redis-server; one hub process (no supervisor) on redis A, on the memory engine

HUB_CONFIG = f"""
max_connections = 1000000

[limits]
max_channels_per_connection = 4

[rate_limits]  # as benchmarks/hub/unlimited.toml: the peer has no per-connection limits
commands_per_second = 1e9
commands_burst = 1e9
bytes_per_second = 1e12
bytes_burst = 1e12
connections_per_second_per_ip = 1e9
connections_burst_per_ip = 1e9

[namespaces.{NAMESPACE}]
history_size = 100
history_ttl = 300
allow_publish = true
"""


@dataclass
class Profile:
    connections: int
    deliveries: float  # per second
    reconnects: float  # per minute
    seconds: float
    procs: int
    group_share: float

    @classmethod
    def at(cls, scale: float, seconds: float, procs: int, group_share: float) -> Profile:
        unit = GROUP * procs  # every load process holds whole groups
        connections = max(unit, round(FULL_CONNECTIONS * scale / unit) * unit)
        return cls(connections, FULL_DELIVERIES * scale, FULL_RECONNECTS * scale, seconds, procs, group_share)

    def rates(self) -> tuple[float, float, float]:
        """Per load process: personal and group publications/s, reconnects/s."""
        personal = self.deliveries * (1 - self.group_share)
        group = self.deliveries * self.group_share / GROUP
        return personal / self.procs, group / self.procs, self.reconnects / 60 / self.procs


# -- the load processes ----------------------------------------------------------------------------------


def _load(driver: str, ports: list[int], first: int, count: int, profile: Profile, conn: Connection) -> None:
    raise_nofile()
    gen = ProfileGen(DRIVERS[driver](), ports, first, count)
    try:
        gen.open_all()
        conn.send(("ready", None))
        gen.watch(conn.fileno(), lambda: None)
        while not conn.poll():  # keep answering pings while the other processes connect
            gen.pump(0.1)
        conn.recv()
        cpu = time.process_time()
        gen.run(profile.seconds, *profile.rates())
        gen.drain()
        gen.tally.cpu = time.process_time() - cpu
        conn.send(("result", gen.account()))
    except Exception as exc:  # noqa: BLE001 - handed to the orchestrator, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        gen.close()
        conn.close()


class Loaders:
    """The load processes (forked), driven over one pipe each."""

    def __init__(self, driver: str, ports: list[int], profile: Profile) -> None:
        ctx = multiprocessing.get_context("fork")
        share = profile.connections // profile.procs
        self.procs: list[tuple[BaseProcess, Connection]] = []
        for k in range(profile.procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_load, args=(driver, ports, k * share, share, profile, child), daemon=True
            )
            proc.start()
            child.close()
            self.procs.append((proc, parent))

    def gather(self, kind: str, timeout: float) -> list[Any]:
        out = []
        for _, conn in self.procs:
            if not conn.poll(timeout):
                raise TimeoutError(f"a load process sent no {kind!r} within {timeout:.0f} s")
            got, value = conn.recv()
            if got != kind:
                raise RuntimeError(f"load process: {value}")
            out.append(value)
        return out

    def go(self) -> None:
        for _, conn in self.procs:
            conn.send("go")

    def stop(self) -> None:
        for proc, conn in self.procs:
            proc.join(10)
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, signal.SIGKILL)
                proc.join()
            conn.close()


# -- the servers -----------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Servers:
    """One target's server processes: ``procs`` (stopped by PID), ``pids`` (measured), ``ports``."""

    procs: list[ServerProc]
    pids: list[int]
    ports: list[int]

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids if alive(p))

    def troubles(self) -> list[str]:
        """Server processes that died (or hub workers the supervisor restarted), tracebacks they logged."""
        notes = [f"pid {pid} is gone" for pid in self.pids if not alive(pid)]
        workers = [pid for proc in self.procs for pid in children(proc.pid)]
        if len(self.pids) > len(self.procs) and sorted(workers) != sorted(self.pids[len(self.procs) :]):
            notes.append(f"hub workers now {workers}, were {self.pids[len(self.procs) :]} (restarted)")
        for proc in self.procs:
            proc.stderr.seek(0)
            log = proc.stderr.read().decode(errors="replace").splitlines()
            kept = ""
            for i, line in enumerate(log):
                if line.startswith("Traceback"):
                    if not kept:  # the whole log, for reading the tracebacks afterwards
                        kept = os.path.join(tempfile.gettempdir(), f"hub-profile-{proc.name}-{proc.pid}.log")
                        Path(kept).write_text("\n".join(log))
                    last = next((x for x in log[i + 1 :] if x and not x.startswith(" ")), "?")
                    notes.append(f"a traceback in {proc.name} pid {proc.pid}'s log ({kept}): `{last[:200]}`")
        return notes

    def stop(self) -> None:
        for proc in self.procs:
            proc.proc.terminate()
        deadline = time.monotonic() + 20  # the supervisor waits up to 10 s for its workers
        for proc in self.procs:
            try:
                proc.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            proc.stop()
        for pid in self.pids:  # the hub's workers, should the supervisor not have ended them
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def start_hub(shards: list[int], workdir: str, workers: int = 2) -> Servers:
    """The hub on ``workers`` processes over the Redis ``shards`` (one process: no supervisor; no shards:
    the memory engine)."""
    config = os.path.join(workdir, "hub-profile.toml")
    with open(config, "w") as f:
        f.write(HUB_CONFIG)
    port = free_port()
    engine = ",".join(f"redis://{HOST}:{p}/0" for p in shards) or "memory"
    profile_to = os.environ.get("HUB_PROFILE_CPROFILE")  # one process: its cProfile stats there
    python = (
        [sys.executable, "-m", "cProfile", "-o", profile_to]
        if profile_to and workers == 1
        else [sys.executable]
    )
    argv = [*python, "-m", "server", "hub", "--host", HOST, "--port", str(port)]
    argv += ["--workers", str(workers), "--engine", engine, "--config", config]
    proc = ServerProc("hub", argv, port, timeout=30)
    if workers == 1:
        return Servers([proc], [proc.pid], [port])
    deadline = time.monotonic() + 30
    while len(children(proc.pid)) < 2:
        if time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError("the hub's supervisor did not start 2 workers")
        time.sleep(0.1)
    time.sleep(2)  # the second worker binds the port too
    return Servers([proc], [proc.pid, *children(proc.pid)], [port])


def start_socketio(shards: list[int]) -> Servers:
    procs: list[ServerProc] = []
    try:
        for _ in range(2):
            port = free_port()
            argv = [sys.executable, "-m", "benchmarks.hub_peers", "socketio-redis", "--host", HOST]
            argv += ["--port", str(port), "--redis", f"redis://{HOST}:{shards[0]}/0"]
            procs.append(ServerProc("python-socketio", argv, port, timeout=30))
    except Exception:
        for p in procs:
            p.stop()
        raise
    return Servers(procs, [p.pid for p in procs], [p.port for p in procs])


def start_redis() -> ServerProc:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    return ServerProc("redis", [*argv, "--maxclients", "10000"], port)


# -- one target ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    target: str
    profile: Profile
    tally: Tally = field(default_factory=Tally)
    rss_idle: int = 0
    rss_connected: int = 0
    rss_end: int = 0
    server_cpu: float = 0.0
    redis_cpu: float = 0.0
    load_cpu: float = 0.0
    machine_cpu: float = 0.0  # every process on the machine, ours and others'
    wall: float = 0.0
    ramp: float = 0.0
    load_avg: float = 0.0
    failed: str = ""
    notes: list[str] = field(default_factory=list)


MAXIMA = ("backlog", "drain")  # the worst load process's; every other field adds up


def merge(tallies: list[Tally]) -> Tally:
    total = Tally()
    for t in tallies:
        for f in fields(Tally):
            if f.name in ("latencies", "arrivals", "acks"):
                getattr(total, f.name).extend(getattr(t, f.name))
            elif f.name == "closes":
                for key, n in t.closes.items():
                    total.closes[key] = total.closes.get(key, 0) + n
            elif f.name in MAXIMA:
                setattr(total, f.name, max(getattr(total, f.name), getattr(t, f.name)))
            else:
                setattr(total, f.name, getattr(total, f.name) + getattr(t, f.name))
    return total


def measure(target: str, profile: Profile, redis: list[ServerProc], workdir: str) -> Outcome:
    shards = [r.port for r in redis]
    if target == "python-socketio":
        servers = start_socketio(shards)
    elif target.startswith("hub-1w-"):
        servers = start_hub(shards[:1] if target == "hub-1w-redis" else [], workdir, workers=1)
    else:
        servers = start_hub(shards if target == "hub" else shards[:1], workdir)
    out = Outcome(target, profile)
    loaders: Loaders | None = None
    try:
        out.rss_idle = rss(servers.pids)
        started = time.monotonic()
        loaders = Loaders("python-socketio" if target == "python-socketio" else "hub", servers.ports, profile)
        loaders.gather("ready", timeout=300)
        out.ramp = time.monotonic() - started
        time.sleep(1)
        out.rss_connected = rss(servers.pids)
        cpu0, redis0, busy0 = servers.cpu(), _cpu(redis), machine_busy()
        t0 = time.monotonic()
        loaders.go()
        out.tally = merge(loaders.gather("result", timeout=profile.seconds + 120))
        out.wall = time.monotonic() - t0
        out.server_cpu, out.redis_cpu = servers.cpu() - cpu0, _cpu(redis) - redis0
        out.machine_cpu = machine_busy() - busy0
        out.load_cpu = out.tally.cpu
        out.rss_end = rss(servers.pids)
        out.load_avg = os.getloadavg()[0]
        out.notes = servers.troubles()
    finally:
        if loaders is not None:
            loaders.stop()
        servers.stop()
    return out


def machine_busy() -> float:
    """CPU seconds every process on the machine has used (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / CLK_TCK


def _cpu(procs: list[ServerProc]) -> float:
    return sum(p.cpu_seconds() for p in procs)


# -- the report ------------------------------------------------------------------------------------------


def _ms(values: Any, q: float) -> str:
    return f"{percentile(list(values), q) / 1e6:.1f}" if len(values) else "-"


def _unmade(t: Tally) -> str:
    notes = [f"{t.unacked:,} unacknowledged"] if t.unacked else []
    notes += [f"{t.unpublished:,} not sent"] if t.unpublished else []
    return f" ({', '.join(notes)})" if notes else ""


def _codes(closes: dict[str, int]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in sorted(closes.items()))


def label(out: Outcome) -> str:
    return f"{out.target}, {out.profile.group_share:.0%} group"


def row(out: Outcome) -> list[str]:
    if out.failed:
        return [label(out), f"failed: {out.failed}"] + [""] * (len(HEADER) - 2)
    profile = out.profile
    t = out.tally
    delivered_per_s = t.delivered / profile.seconds
    per_conn = (out.rss_connected - out.rss_idle) / profile.connections / 1024
    made = t.published - t.unacked
    return [
        label(out),
        f"{t.published:,}" + _unmade(t),
        f"{delivered_per_s:,.0f}",
        _ms(t.latencies, 50),
        _ms(t.latencies, 99),
        _ms(t.latencies, 100),
        f"{t.lost:,} of {t.expected:,}"
        + (f" (+{t.lost_unacked:,} of the unacknowledged)" if t.unacked else ""),
        f"{t.duplicated:,}",
        f"{_ms(t.acks, 50)} / {_ms(t.acks, 99)}" if len(t.acks) else "-",
        f"{t.reconnects:,} ({t.recovered:,} / {t.not_recovered:,})",
        f"{t.server_closed:,}" + (f" ({_codes(t.closes)})" if t.closes else ""),
        f"{t.backlog / 1024:,.0f}",
        f"{out.ramp:.0f} / {t.drain:.1f}",
        f"{out.rss_idle / 2**20:.0f} / {out.rss_connected / 2**20:.0f} / {out.rss_end / 2**20:.0f}",
        f"{per_conn:.1f}",
        f"{out.server_cpu / out.wall:.0%}" if out.wall else "-",
        f"{out.server_cpu / t.delivered * 1e6:.0f}" if t.delivered else "-",
        f"{out.server_cpu / made * 1e6:.0f}" if made else "-",
        f"{out.redis_cpu / out.wall:.0%}" if out.wall else "-",
        f"{out.load_cpu / out.wall:.0%}" if out.wall else "-",
        f"{out.machine_cpu / out.wall:.0%} of {os.cpu_count()}00%" if out.wall else "-",
    ]


HEADER = [
    "server",
    "publications",
    "deliveries/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "lost",
    "duplicated",
    "publish ack p50 / p99 ms",
    "reconnects (recovered / not)",
    "closed by server",
    "publisher backlog KiB",
    "ramp / drain s",
    "RSS MiB idle / connected / end",
    "KiB per connection",
    "server CPU",
    "server CPU µs per delivery",
    "per publication",
    "Redis CPU",
    "load CPU",
    "machine CPU (all processes)",
]


WINDOW = 10.0  # seconds


def by_window(tally: Tally, windows: int) -> list[str]:
    """p99 of the live deliveries that arrived in each ``WINDOW`` of the run, then of those after it."""
    buckets: list[list[float]] = [[] for _ in range(windows + 1)]
    for latency, at in zip(tally.latencies, tally.arrivals, strict=True):
        buckets[min(windows, int(at / 1e9 / WINDOW))].append(latency)
    return [f"{percentile(b, 99) / 1e6:.0f}" if b else "-" for b in buckets]


def report(outcomes: list[Outcome], scale: float, load_start: float, command: str) -> str:
    p = outcomes[0].profile
    shares = ", ".join(f"{o.profile.group_share:.0%}" for o in outcomes if o.target == outcomes[0].target)
    lines = [
        "# Scale profile: Centrifugo's million-connection test at "
        + (f"1/{round(1 / scale)}" if scale < 1 else f"{scale:g}"),
        "",
        f"Generated by `{command}` on "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs shared with other work: 1-minute load average {load_start:.1f} at the start, "
        + ", ".join(f"{o.load_avg:.1f} after {label(o)}" for o in outcomes)
        + ".",
        "",
        f"Profile: {p.connections:,} connections, each on a personal channel and a {GROUP}-member group "
        f"channel; {p.deliveries:,.0f} deliveries/s asked (of them through group channels: {shares}; the "
        "rest through personal ones: one publication each); "
        f"{p.reconnects:,.0f} reconnects per minute; {p.seconds:g} s; "
        f"{p.procs} load processes. Every server in the same run, one after the other.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(row(o)) + " |" for o in outcomes]
    notes = [f"- {label(o)}: {note}" for o in outcomes for note in o.notes]
    lines += ["", *notes] if notes else []
    windows = max(1, math.ceil(p.seconds / WINDOW))
    lines += [
        "",
        f"Delivery latency p99 (ms) per {WINDOW:g} s of the run, by arrival (the last column: the drain):",
        "",
        "| server | "
        + " | ".join(f"{k * WINDOW:g}-{(k + 1) * WINDOW:g} s" for k in range(windows))
        + " | after |",
        "|" + "---|" * (windows + 2),
    ]
    lines += [f"| {label(o)} | " + " | ".join(by_window(o.tally, windows)) + " |" for o in outcomes]
    lines += ["", *NOTES, ""]
    return "\n".join(lines)


NOTES = [
    "- hub: `python -m server hub --workers 2 --engine redis://A,redis://B` (supervisor + 2 workers on one "
    "port, channels sharded over 2 redis-server processes), namespace `prof` with history 100 / 300 s; "
    "a reconnect subscribes with `recover: true` from the last offset it saw (its recovered publications "
    "count as deliveries, not in the latency figures).",
    "- hub-1-redis (when run): the same hub with both workers on redis A alone; hub-1w-redis, hub-1w-memory "
    "(when run): one hub process (no supervisor) on redis A, on the in-memory engine.",
    "- python-socketio: 2 uvicorn processes (`benchmarks/hub_peers.py socketio-redis`), `AsyncRedisManager` "
    "on redis A (it cannot shard); a reconnect joins its two rooms again: what was published meanwhile is "
    "lost (it has no recovery).",
    "- Latency: receive time in the load process minus the `time.monotonic_ns()` stamp put in the payload "
    "when it was due (same clock), every live delivery. Lost: a publication to a user's channel that user "
    "never got by the end of the drain (after publishing stops: until all arrived, 5 s without a delivery, "
    "or 60 s); duplicated: got more than once. Publisher backlog: the most bytes of publications a server "
    "had not taken from a publisher connection (it stopped reading: it fell behind). Publications: sent; "
    "unacknowledged: the hub never answered the `publish` (or refused it), their deliveries are not in "
    "`lost` (shown apart); not sent: due while the server had closed the publisher (replaced at once).",
    "- Ramp: from starting the load processes until every connection was subscribed (200 handshakes in "
    "flight per load process); drain: after publishing stopped, until the last delivery (the slowest load "
    "process).",
    "- RSS: sum over the server processes (the hub's supervisor too); per connection = (connected - idle) / "
    "connections. CPU: share of one core over the run (publishing, reconnects and the drain).",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hub_profile", description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=0.01, help="of Centrifugo's 1 M profile (default 0.01)")
    ap.add_argument("--seconds", type=float, default=60.0, help="of publishing and reconnecting (default 60)")
    ap.add_argument("--procs", type=int, default=4, help="load processes (default 4)")
    ap.add_argument(
        "--group-share",
        default="0.5",
        help="of the deliveries through group channels (default 0.5); several (comma-separated): a pass each",
    )
    ap.add_argument(
        "--only", default=",".join(TARGETS), help="comma-separated, of " + ",".join(TARGETS + EXTRA)
    )
    ap.add_argument("--out", default=None, help="default: benchmarks/RESULTS-hub-profile.md at --scale 0.01")
    args = ap.parse_args(argv)
    only = [t for t in args.only.split(",") if t]
    if set(only) - set(TARGETS + EXTRA):
        ap.error(f"unknown target(s): {', '.join(sorted(set(only) - set(TARGETS + EXTRA)))}")
    shares = [float(x) for x in args.group_share.split(",") if x]
    if not shares or not all(0 <= x <= 1 for x in shares):
        ap.error("--group-share: numbers from 0 to 1")
    profiles = [Profile.at(args.scale, args.seconds, args.procs, x) for x in shares]
    profile = profiles[0]
    nofile = raise_nofile()
    need = math.ceil(profile.connections / 2) + 1000  # the busiest server process: half the connections
    if nofile < need:
        ap.error(f"RLIMIT_NOFILE {nofile} < {need}: raise `ulimit -n`")
    print(f"profile: {profile} (fd limit {nofile})", flush=True)
    out_path = args.out or (
        os.path.join(ROOT, "benchmarks", "RESULTS-hub-profile.md") if args.scale == 0.01 else None
    )
    load_start = os.getloadavg()[0]
    workdir = tempfile.mkdtemp(prefix="hub-profile-")
    redis = [start_redis(), start_redis()]
    outcomes = []
    try:
        for each in profiles:
            for target in only:
                try:
                    outcome = measure(target, each, redis, workdir)
                except Exception as exc:  # noqa: BLE001 - one server's failure is a result; the others run
                    outcome = Outcome(target, each, failed=f"{type(exc).__name__}: {exc}"[:300])
                outcomes.append(outcome)
                print(" | ".join(f"{h}: {v}" for h, v in zip(HEADER, row(outcome), strict=True)), flush=True)
    finally:
        for r in redis:
            r.stop()
    command = " ".join(["python -m benchmarks.hub_profile", *(argv if argv is not None else sys.argv[1:])])
    text = report(outcomes, args.scale, load_start, command)
    print(text)
    if out_path:
        with open(out_path, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
