"""Fan-out with JSON and protobuf subscribers mixed on one channel: the hub's CPU per delivery.

``python -m benchmarks.hub_protobuf [--subscribers N] [--publications P] [--reps R]`` prints a Markdown
table (RESULTS-hub-protobuf.md holds a run).  The hub runs as ``python -m server hub`` in its own process
(the benchmarks' unlimited rate limits); this process holds the clients, on 127.0.0.1 only:

- per scenario a channel with N subscribers: all JSON, half JSON and half protobuf
  (``centrifuge-protobuf``), or all protobuf;
- one JSON publisher sends P publications (~90 bytes of JSON each) as fast as the hub answers, then every
  subscriber is read until it has all P;
- in rounds of 100 (what the sockets hold while the subscribers are read one after the other); the hub's
  CPU time (``/proc/PID/schedstat``, nanoseconds on CPU) from the first publication to the last delivery,
  divided by N x P: the CPU per delivery, the publish commands included (amortised over N).

Scenarios are interleaved repetition by repetition on one hub; medians are reported with each one's
ratio to JSON only from the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from wsproto_lite.hub.pb_frames import SUBPROTOCOL, read_length
from wsproto_lite.hub.pb_wire import decode, encode, varint
from wsproto_lite.server.client import ClientWebSocket, connect

from .hub.targets import HUB_COMMAND, TEXT
from .loopback import HOST, ServerProc, free_port

SCENARIOS = {"JSON only": 0.0, "half protobuf": 0.5, "protobuf only": 1.0}


class Subscriber:
    """One blocking client, JSON or protobuf, subscribed to ``channel``."""

    def __init__(self, url: str, channel: str, protobuf: bool) -> None:
        self.protobuf = protobuf
        subprotocols = [SUBPROTOCOL] if protobuf else []
        self.ws: ClientWebSocket = connect(url, subprotocols=subprotocols, timeout=10, compression=False)
        self.command(1, "connect", {})
        self.command(2, "subscribe", {"channel": channel})

    def command(self, cid: int, method: str, params: dict[str, Any]) -> None:
        if self.protobuf:
            body = encode("Command", {"id": cid, method: params})
            self.ws.send(varint(len(body)) + body)
        else:
            self.ws.send(json.dumps({"id": cid, method: params}))
        while not self._is_reply(self.ws.recv(timeout=10), cid):
            pass

    def _is_reply(self, message: str | bytes, cid: int) -> bool:
        if isinstance(message, bytes):
            size, pos = read_length(message, 0)
            reply = decode("Reply", message[pos : pos + size])
        else:
            reply = json.loads(message.split("\n")[0])
        if "error" in reply:
            raise RuntimeError(f"hub refused: {reply}")
        return bool(reply.get("id") == cid)

    def drain(self, count: int) -> None:
        """Read until ``count`` publication pushes have arrived (one per frame)."""
        for _ in range(count):
            message = self.ws.recv(timeout=30)
            assert isinstance(message, bytes) == self.protobuf


def publish_all(publisher: ClientWebSocket, channel: str, count: int, first_id: int) -> None:
    for i in range(count):
        data = {"seq": i, "text": TEXT}
        publisher.send(json.dumps({"id": first_id + i, "publish": {"channel": channel, "data": data}}))
    replies = 0
    while replies < count:
        message = publisher.recv(timeout=30)
        assert isinstance(message, str)
        replies += sum(1 for line in message.split("\n") if '"publish"' in line)


ROUND = 100


def cpu_ns(pid: int) -> int:
    """Nanoseconds the process's threads have run on a CPU (finer than utime + stime's ticks)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def run_once(hub: ServerProc, url: str, share: float, n: int, p: int, rep: int) -> float:
    channel = f"bench:pb-{int(share * 100)}-{rep}"
    protobuf_count = round(n * share)
    subscribers = [Subscriber(url, channel, i < protobuf_count) for i in range(n)]
    publisher = Subscriber(url, channel + "-pub", False).ws
    try:
        cpu0 = cpu_ns(hub.pid)
        for start in range(0, p, ROUND):
            count = min(ROUND, p - start)
            publish_all(publisher, channel, count, 10 + start)
            for subscriber in subscribers:
                subscriber.drain(count)
        return (cpu_ns(hub.pid) - cpu0) / (n * p) / 1e3
    finally:
        for client in [*(s.ws for s in subscribers), publisher]:
            client.close(timeout=2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hub_protobuf", description=__doc__)
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--publications", type=int, default=200)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    port = free_port()
    argv_hub = [sys.executable, *(a.format(host=HOST, port=port) for a in HUB_COMMAND)]
    hub = ServerProc("hub", argv_hub, port)
    url = f"ws://{HOST}:{port}/connection/websocket"
    results: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    try:
        run_once(hub, url, 0.5, 10, 20, -1)  # warm-up
        for rep in range(args.reps):
            for name, share in SCENARIOS.items():
                results[name].append(run_once(hub, url, share, args.subscribers, args.publications, rep))
    finally:
        hub.stop()
    base = statistics.median(results["JSON only"])
    print(f"{args.subscribers} subscribers, {args.publications} publications, {args.reps} reps\n")
    print("| subscribers | hub CPU per delivery (µs, median) | vs JSON only | min-max |\n|---|---:|---:|---|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / base:.2f}x | {min(values):.2f}-{max(values):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
