"""A bounded soak of the hub: thousands of authenticated connections subscribing, publishing, reconnecting
with recovery, some misbehaving; the hub's RSS and open fds sampled; every publication accounted for.

``python -m benchmarks.hub_soak [--duration 180] [--clients 2000] [--out benchmarks/RESULTS-hub-soak.md]``

The hub runs as ``python -m server hub`` in its own process (JWT secret and API key from the environment,
limits from a config file); the load runs in another process (``--load``, asyncio + the ``websockets``
client, one event loop). Roles of the clients:

- **steady** (40 %): subscribe to one channel of ``soak`` (50 channels, history on) and stay;
- **reconnecting** (35 %): subscribe, and every 5-20 s drop the connection and come back with
  ``recover: {epoch, offset}``;
- **publishers** (20 %): publish ``{"p": id, "s": seq}`` to random channels (about 100/s in all);
- **misbehaving** (5 %): in turn a bad token (expect 401), a binary frame (close 1003), an oversized
  command (error 106), a 2 MiB frame (close 1009), invalid JSON (error 107) and a flood of 400 commands
  without reading (errors 111, then close 1008).

Accounting: every acknowledged publication has an offset; a subscriber that was there from the start must
have received offsets 1..N of its channel exactly once; a reconnecting one must have a gap-free run from
where it first subscribed (when its recoveries said ``recovered: true``). Crashes: the hub process must be
alive at the end with no traceback in its log. RSS and fds: sampled every 10 s; at the end (every client
gone) the fds must be back at the idle count.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "soak-secret-" + "x" * 32
API_KEY = "soak-api-key-0123456789abcdef"
CHANNELS = 50
PUBLISH_RATE = 100.0  # per second, over all publishers

CONFIG = """
port = {port}
max_connections = 20000

[rate_limits]
# every load client comes from 127.0.0.1: the per-IP connection rate is raised for the soak
connections_per_second_per_ip = 2000
connections_burst_per_ip = 4000

[namespaces.soak]
history_size = 1000
history_ttl = 30         # shorter than the run: held history levels off, so RSS growth past it is a leak
allow_publish = true
"""


# -- the load process ------------------------------------------------------------------------------------


def _token(user: str, secret: str = SECRET) -> str:
    import jwt

    return str(jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, secret, algorithm="HS256"))


@dataclass
class Tally:
    received: dict[str, list[int]] = field(default_factory=dict)  # subscriber id -> offsets, in order
    channel_of: dict[str, str] = field(default_factory=dict)
    start_offset: dict[str, int] = field(default_factory=dict)
    steady: set[str] = field(default_factory=set)
    acked: dict[str, int] = field(default_factory=dict)  # channel -> publications acknowledged
    max_offset: dict[str, int] = field(default_factory=dict)
    publish_errors: dict[int, int] = field(default_factory=dict)
    reconnects: int = 0
    recovered: int = 0
    not_recovered: int = 0
    disconnects: dict[int, int] = field(default_factory=dict)
    misbehaviour: dict[str, dict[str, int]] = field(default_factory=dict)
    client_errors: int = 0

    def outcome(self, case: str, result: str) -> None:
        cases = self.misbehaviour.setdefault(case, {})
        cases[result] = cases.get(result, 0) + 1


class Conn:
    """A JSON command client over a websockets connection: replies by id, pushes to a callback."""

    def __init__(self, ws: Any, on_push: Any) -> None:
        self.ws = ws
        self.on_push = on_push
        self.next_id = 1
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.ensure_future(self._read())
        self.disconnect_code = 0

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                frame = json.loads(message)
                if "id" in frame:
                    future = self.waiting.pop(frame["id"], None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif frame.get("push") == "disconnect":
                    self.disconnect_code = frame["code"]
                else:
                    self.on_push(frame)
        except Exception:  # noqa: BLE001 - the connection went away; callers see it as ConnectionError
            pass
        finally:
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("closed"))

    async def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        cid = self.next_id
        self.next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[cid] = future
        await self.ws.send(json.dumps({"id": cid, "method": method, "params": params or {}}))
        return await asyncio.wait_for(future, timeout)

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


async def _open(url: str, user: str, on_push: Any) -> Conn:
    from websockets.asyncio.client import connect

    ws = await connect(url, compression=None, max_size=None, open_timeout=60, ping_interval=None)
    conn = Conn(ws, on_push)
    reply = await conn.call("connect", {"token": _token(user)})
    if "result" not in reply:
        raise ConnectionError(f"connect refused: {reply}")
    return conn


async def subscriber(url: str, name: str, tally: Tally, stop: asyncio.Event, reconnecting: bool) -> None:
    channel = f"soak:c{random.randrange(CHANNELS)}"
    tally.channel_of[name] = channel
    offsets = tally.received.setdefault(name, [])
    position: dict[str, Any] | None = None

    def on_push(frame: dict[str, Any]) -> None:
        if frame.get("push") == "pub":
            offsets.append(frame["offset"])

    while True:
        try:
            conn = await _open(url, name, on_push)
            params: dict[str, Any] = {"channel": channel}
            if position is not None:
                params["recover"] = position
                tally.reconnects += 1
            reply = await conn.call("subscribe", params)
            result = reply["result"]
            if position is None:
                tally.start_offset[name] = result["offset"]
            else:
                tally.recovered += result["recovered"]
                tally.not_recovered += not result["recovered"]
                offsets.extend(p["offset"] for p in result["publications"])
            epoch = result["epoch"]
            if reconnecting:
                try:
                    await asyncio.wait_for(stop.wait(), random.uniform(5, 20))
                except TimeoutError:
                    pass
            else:
                await stop.wait()
            if stop.is_set():
                await conn.call("ping")  # every push queued before it has arrived
            if conn.disconnect_code:
                tally.disconnects[conn.disconnect_code] = tally.disconnects.get(conn.disconnect_code, 0) + 1
            await conn.close()
            # max, not the last: pushes that follow the subscribe reply may be appended (by the reader task)
            # before the recovered publications of that reply
            position = {"epoch": epoch, "offset": max(offsets) if offsets else result["offset"]}
            if stop.is_set():
                break  # the last connection saw everything up to the end
        except Exception:  # noqa: BLE001 - counted, then the client tries again
            tally.client_errors += 1
            await asyncio.sleep(1)


async def publisher(url: str, name: str, tally: Tally, stop: asyncio.Event, rate: float) -> None:
    """Publishes until ``stop``; the subscribers are stopped only after every publisher has finished."""
    conn = await _open(url, name, lambda frame: None)
    seq = 0
    while not stop.is_set():
        await asyncio.sleep(random.expovariate(rate))
        if stop.is_set():
            break
        channel = f"soak:c{random.randrange(CHANNELS)}"
        seq += 1
        reply = await conn.call("publish", {"channel": channel, "data": {"p": name, "s": seq}})
        if "result" in reply:
            tally.acked[channel] = tally.acked.get(channel, 0) + 1
            tally.max_offset[channel] = max(tally.max_offset.get(channel, 0), reply["result"]["offset"])
        else:
            code = reply["error"]["code"]
            tally.publish_errors[code] = tally.publish_errors.get(code, 0) + 1
    await conn.close()


async def misbehaver(url: str, name: str, tally: Tally, stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    cases = ["bad_token", "binary", "oversized", "too_big_frame", "junk_json", "flood"]
    while not stop.is_set():
        case = random.choice(cases)
        try:
            if case == "bad_token":
                try:
                    ws = await connect(f"{url}?token={_token(name, 'wrong-' + SECRET)}", open_timeout=60)
                    tally.outcome(case, "accepted!")
                    await ws.close()
                except InvalidStatus as exc:
                    tally.outcome(case, f"HTTP {exc.response.status_code}")
                continue
            ws = await connect(url, compression=None, max_size=None, open_timeout=60, ping_interval=None)
            await ws.send(json.dumps({"id": 1, "method": "connect", "params": {"token": _token(name)}}))
            await ws.recv()
            try:
                if case == "binary":
                    await ws.send(b"\x00\x01junk")
                    await ws.recv()
                elif case == "oversized":
                    await ws.send(json.dumps({"id": 2, "method": "ping", "params": {"pad": "x" * 100_000}}))
                    tally.outcome(case, f"error {json.loads(await ws.recv())['error']['code']}")
                elif case == "too_big_frame":
                    await ws.send("x" * (2 << 20))
                    await ws.recv()
                elif case == "junk_json":
                    await ws.send("{oops")
                    tally.outcome(case, f"error {json.loads(await ws.recv())['error']['code']}")
                elif case == "flood":
                    for i in range(400):
                        await ws.send(json.dumps({"id": 10 + i, "method": "ping"}))
                    errors = 0
                    while True:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        errors += frame.get("error", {}).get("code") == 111
                await ws.close()
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                tally.outcome(case, f"close {code}")
        except Exception as exc:  # noqa: BLE001
            tally.outcome(case, f"client error {type(exc).__name__}")
        await asyncio.sleep(random.uniform(0.5, 2))


async def run_load(port: int, clients: int, duration: float) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{port}/connection/websocket"
    tally = Tally()
    stop = asyncio.Event()
    steady = int(clients * 0.40)
    reconnecting = int(clients * 0.35)
    publishers = int(clients * 0.20)
    bad = clients - steady - reconnecting - publishers
    stop_publishing = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []  # subscribers
    others: list[asyncio.Task[None]] = []  # publishers and misbehaving clients
    started = time.monotonic()
    for i in range(steady):
        name = f"steady{i}"
        tally.steady.add(name)
        tasks.append(asyncio.create_task(subscriber(url, name, tally, stop, reconnecting=False)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    # the steady ones are subscribed before anything is published: they must see every publication
    while len(tally.start_offset) < steady and time.monotonic() - started < 120:
        await asyncio.sleep(0.2)
    ramp = time.monotonic() - started
    for i in range(reconnecting):
        tasks.append(asyncio.create_task(subscriber(url, f"again{i}", tally, stop, reconnecting=True)))
    for i in range(publishers):
        rate = PUBLISH_RATE / publishers
        others.append(asyncio.create_task(publisher(url, f"pub{i}", tally, stop_publishing, rate)))
    for i in range(bad):
        others.append(asyncio.create_task(misbehaver(url, f"bad{i}", tally, stop_publishing)))
    print("load: all clients started", flush=True)
    await asyncio.sleep(duration)
    stop_publishing.set()
    results = await asyncio.gather(*others, return_exceptions=True)
    stop.set()  # every publication is acknowledged: the subscribers finish (reconnecting ones recover first)
    results += await asyncio.gather(*tasks, return_exceptions=True)
    task_errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return _account(tally, ramp, task_errors)


def _account(tally: Tally, ramp: float, task_errors: list[str]) -> dict[str, Any]:
    published = sum(tally.acked.values())
    steady_expected = steady_delivered = steady_missing = steady_dups = 0
    again_expected = again_delivered = again_missing = again_dups = 0
    per_channel: dict[str, dict[str, int]] = {}
    for name, offsets in tally.received.items():
        channel = tally.channel_of[name]
        final = tally.max_offset.get(channel, 0)
        start = tally.start_offset.get(name)
        if start is None:
            continue
        expected = set(range(start + 1, final + 1))
        got = set(offsets)
        missing = len(expected - got)
        dups = len(offsets) - len(got)
        row = per_channel.setdefault(
            channel, {"published": tally.acked.get(channel, 0), "expected": 0, "delivered": 0}
        )
        row["expected"] += len(expected)
        row["delivered"] += len(got & expected)
        if name in tally.steady:
            steady_expected += len(expected)
            steady_delivered += len(got & expected)
            steady_missing += missing
            steady_dups += dups
        else:
            again_expected += len(expected)
            again_delivered += len(got & expected)
            again_missing += missing
            again_dups += dups
    offsets_match = all(tally.max_offset.get(c, 0) == n for c, n in tally.acked.items())
    return {
        "ramp_seconds": round(ramp, 1),
        "published": published,
        "offsets_match_acks": offsets_match,
        "publish_errors": tally.publish_errors,
        "steady": [steady_expected, steady_delivered, steady_missing, steady_dups],
        "reconnecting": [again_expected, again_delivered, again_missing, again_dups],
        "reconnects": tally.reconnects,
        "recovered": tally.recovered,
        "not_recovered": tally.not_recovered,
        "disconnect_pushes": tally.disconnects,
        "misbehaviour": tally.misbehaviour,
        "client_errors": tally.client_errors,
        "task_errors": task_errors[:5],
        "channels": dict(sorted(per_channel.items(), key=lambda kv: int(kv[0].split("c")[-1]))[:5]),
    }


# -- the orchestrator ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _metrics(port: int) -> dict[str, float]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"apikey {API_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name.removeprefix("wsproto_hub_")] = float(value)
    return values


def _wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError("the hub exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the hub did not listen") from None
            time.sleep(0.1)


def soak(duration: float, clients: int) -> tuple[dict[str, Any], dict[str, Any]]:
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="hub-soak-")
    config = os.path.join(workdir, "hub.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(port=port))
    log_path = os.path.join(workdir, "hub.log")
    env = {
        **os.environ,
        "WSPROTO_HUB_JWT_SECRET": SECRET,
        "WSPROTO_HUB_API_KEYS": API_KEY,
        "PYTHONPATH": ROOT,
    }
    with open(log_path, "wb") as log:
        hub = subprocess.Popen(
            [sys.executable, "-m", "server", "hub", "--config", config],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    load: subprocess.Popen[str] | None = None
    samples: list[tuple[float, float, int, int, int]] = []
    try:
        _wait_listening(hub, port)
        time.sleep(1)
        idle_fds, idle_rss = _fds(hub.pid), _rss_mib(hub.pid)
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.hub_soak",
                "--load",
                "--port",
                str(port),
                "--clients",
                str(clients),
                "--duration",
                str(duration),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        started = time.monotonic()
        while load.poll() is None:
            time.sleep(10)
            if hub.poll() is not None:
                break
            metrics = _metrics(port)
            connections, history = int(metrics.get("connections", 0)), int(metrics.get("history_bytes", 0))
            samples.append(
                (time.monotonic() - started, _rss_mib(hub.pid), _fds(hub.pid), connections, history)
            )
            print(
                f"  t={samples[-1][0]:4.0f}s rss={samples[-1][1]:.1f} MiB fds={samples[-1][2]} "
                f"connections={connections}",
                flush=True,
            )
        assert load.stdout is not None
        output = load.stdout.read()
        load.wait()
        report = json.loads(output.strip().splitlines()[-1])
        time.sleep(3)  # the last closes
        alive = hub.poll() is None
        end = {
            "idle_fds": idle_fds,
            "idle_rss": idle_rss,
            "end_fds": _fds(hub.pid) if alive else -1,
            "end_rss": _rss_mib(hub.pid) if alive else -1,
            "samples": samples,
            "alive": alive,
            "metrics": _metrics(port) if alive else {},
        }
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        hub.terminate()
        try:
            hub.wait(15)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()
    with open(log_path, errors="replace") as f:
        log_text = f.read()
    end["tracebacks"] = log_text.count("Traceback")
    kinds: dict[str, int] = {}
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            j = i + 1
            while j < len(lines) and lines[j].startswith(" "):
                j += 1
            where = next((x.strip() for x in reversed(lines[i:j]) if x.strip().startswith("File")), "")
            kind = f"{lines[j] if j < len(lines) else '?'} at {where}"
            kinds[kind] = kinds.get(kind, 0) + 1
    end["traceback_kinds"] = kinds
    end["exit_code"] = hub.returncode
    return report, end


def write_results(
    path: str, report: dict[str, Any], end: dict[str, Any], duration: float, clients: int
) -> str:
    m = end["metrics"]
    steady, again = report["steady"], report["reconnecting"]
    first = end["samples"][0] if end["samples"] else (0, 0, 0, 0, 0)
    peak = max(end["samples"], key=lambda s: s[1]) if end["samples"] else first
    lines = [
        "# Hub soak (`python -m benchmarks.hub_soak`)",
        "",
        f"{datetime.date.today()}, Python {platform.python_version()}, {os.cpu_count()} cores (shared);"
        f" {clients} clients for {duration:.0f} s in one load process (asyncio + websockets client), the hub"
        " in another (`python -m server hub`, JWT auth, default rate limits except connections per IP).",
        "",
        "## Outcome",
        "",
        "| check | result |",
        "|---|---|",
        f"| hub crashes (alive at the end, tracebacks in its log) | {'alive' if end['alive'] else 'DEAD'},"
        f" {end['tracebacks']} tracebacks, exit code {end['exit_code']} after SIGTERM |",
        f"| open fds: idle before / at the end, every client gone | {end['idle_fds']} / {end['end_fds']} |",
        f"| RSS: idle / first sample under load / peak / end | {end['idle_rss']:.1f} / {first[1]:.1f} /"
        f" {peak[1]:.1f} / {end['end_rss']:.1f} MiB |",
        f"| publications acknowledged (offsets = acks on every channel) | {report['published']}"
        f" ({report['offsets_match_acks']}) |",
        f"| steady subscribers: expected / delivered / missing / duplicates | {steady[0]} / {steady[1]} /"
        f" {steady[2]} / {steady[3]} |",
        f"| reconnecting subscribers: expected / delivered / missing / duplicates | {again[0]} / {again[1]} /"
        f" {again[2]} / {again[3]} |",
        f"| reconnects with recovery: recovered / not | {report['recovered']} / {report['not_recovered']} |",
        f"| publish errors (code: count) | {report['publish_errors'] or 'none'} |",
        f"| disconnect pushes seen by subscribers | {report['disconnect_pushes'] or 'none'} |",
        f"| client-side errors (then retried) | {report['client_errors']} |",
        "",
        *(f"- traceback x{n}: `{kind}`" for kind, n in sorted(end["traceback_kinds"].items())),
        "",
        "## Misbehaving clients (case: outcome count)",
        "",
        "| case | outcomes |",
        "|---|---|",
    ]
    for case, outcomes in sorted(report["misbehaviour"].items()):
        lines.append(f"| {case} | {', '.join(f'{k}: {v}' for k, v in sorted(outcomes.items()))} |")
    lines += [
        "",
        "## Hub metrics at the end (`GET /metrics`)",
        "",
        "```",
        *(f"{k} {v:.0f}" for k, v in sorted(m.items())),
        "```",
        "",
        "## RSS and fds over time",
        "",
        "| t (s) | RSS (MiB) | fds | connections | history held (KiB) |",
        "|---|---|---|---|---|",
        *(f"| {t:.0f} | {rss:.1f} | {fds} | {c} | {h >> 10} |" for t, rss, fds, c, h in end["samples"]),
        "",
        "## Five channels: published, expected deliveries, delivered",
        "",
        "| channel | published | expected | delivered |",
        "|---|---|---|---|",
        *(
            f"| {c} | {row['published']} | {row['expected']} | {row['delivered']} |"
            for c, row in report["channels"].items()
        ),
        "",
    ]
    text = "\n".join(lines)
    with open(path, "w") as f:
        f.write(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hub_soak", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "RESULTS-hub-soak.md"))
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 20000)), hard))
        report = asyncio.run(run_load(args.port, args.clients, args.duration))
        print(json.dumps(report), flush=True)
        return 0
    print(f"hub soak: {args.clients} clients, {args.duration:.0f} s", flush=True)
    report, end = soak(args.duration, args.clients)
    print(write_results(args.out, report, end, args.duration, args.clients))
    ok = (
        end["alive"]
        and end["tracebacks"] == 0
        and report["steady"][2] == 0
        and end["end_fds"] == end["idle_fds"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
