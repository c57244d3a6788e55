"""The scale profile's load generator (``benchmarks/hub_profile.py``): users on a personal and a group
channel, publications at a fixed rate, reconnects at a fixed rate, every delivery accounted for.

One ``ProfileGen`` per load process owns users ``first .. first + count - 1`` (``first`` and ``count``
multiples of ``GROUP``, so each group's members are all in one process) and one publisher connection:
a process publishes only to its own users' channels, so it knows every publication's expected
recipients without talking to the others. User ``i`` is on ``prof:u{i}`` (personal) and
``prof:g{i // GROUP}`` (group). Connections are ``LoadGen``'s (raw sockets + ``ClientConnection`` in one
epoll loop); what is said over them is a ``Driver``'s:

- ``HubDriver``: Centrifugo's client protocol v2 (JSON). A reconnect subscribes with ``recover: true``
  and the ``epoch``/``offset`` of the last publication seen on that channel (PROTOCOL.md "Recovery");
  the publications of a recovered subscribe reply count as deliveries (not in the latency figures).
- ``SocketIODriver``: Socket.IO 5 over Engine.IO 4: ``subscribe`` events (with acks) join two rooms,
  ``publish`` events carry the room; a reconnect joins again and has no way to recover what it missed.

Accounting: each publication has a process-unique ``seq`` (in the payload, with its send time); every
user keeps the seqs it got. Lost: a publication to one of the user's channels it never got; duplicated:
one it got more than once. Latency: receive time minus the payload's ``time.monotonic_ns()`` stamp,
for every live delivery.
"""

from __future__ import annotations

import json
import random
import re
import socket
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from wsproto_lite import ClientConnection, CloseReceived, ConnectionState

from ..loopback import HOST
from ..scale import LINGER0
from .loadgen import OUT, LoadGen, Peer
from .targets import TEXT, Step, Target, stamp

GROUP = 10  # members of a group channel (Centrifugo's profile)
NAMESPACE = "prof"  # the hub config's namespace with history (hub_profile.py)


@dataclass(eq=False)
class User:
    index: int
    channels: tuple[str, str]
    peer: Peer | None = None
    ready: bool = False
    epochs: dict[str, str] = field(default_factory=dict)  # channel -> epoch (hub)
    offsets: dict[str, int] = field(default_factory=dict)  # channel -> last offset seen (hub)
    got: set[int] = field(default_factory=set)  # seqs delivered
    dups: int = 0


@dataclass
class Tally:
    """What one load process saw; ``merge``d over the processes by the orchestrator."""

    published: int = 0
    expected: int = 0  # deliveries of the acknowledged publications, once ``account``ed
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    recovered_deliveries: int = 0
    reconnects: int = 0
    recovered: int = 0  # subscribe replies with recovered: true
    not_recovered: int = 0
    server_closed: int = 0
    errors: int = 0
    unacked: int = 0  # publications the server never acknowledged (or refused): not in ``expected``
    lost_unacked: int = 0  # deliveries missing of those
    unpublished: int = 0  # publications due while the publisher was being reconnected
    closes: dict[str, int] = field(default_factory=dict)  # close code and reason sent by the server -> count
    backlog: int = 0  # the most bytes of publications the server had not taken from the publisher
    drain: float = 0.0  # seconds from the end of publishing until the last delivery (or the limit)
    cpu: float = 0.0  # seconds of this load process over the run and the drain
    latencies: array[int] = field(default_factory=lambda: array("q"))
    acks: array[int] = field(default_factory=lambda: array("q"))  # ns from publish to its acknowledgement
    arrivals: array[int] = field(default_factory=lambda: array("q"))  # ns after the run's start, per latency


class Driver(Protocol):
    name: str
    acks: bool  # the server acknowledges each publication (the reply to ``publish``)
    path: str

    def setup(self, gen: ProfileGen, user: User, recover: bool) -> list[Step]: ...

    def publisher_setup(self) -> list[Step]: ...

    def publish(self, rid: int, channel: str, seq: int, t_ns: int) -> str: ...

    def answer(self, text: str) -> str | None: ...

    def is_delivery(self, text: str) -> bool: ...


def _payload(seq: int, t_ns: int) -> str:
    return f'{{"bench_seq":{seq},"bench_t":{t_ns},"text":"{TEXT}"}}'


_OFFSET = re.compile(r'"offset":(\d+)')
_RID = re.compile(r'\{"id":(\d+),')


class HubDriver:
    name = "hub"
    acks = True
    path = "/connection/websocket"

    def setup(self, gen: ProfileGen, user: User, recover: bool) -> list[Step]:
        steps: list[Step] = [('{"id":1,"connect":{"name":"profile"}}', _reply(1, lambda r: None))]
        for rid, channel in enumerate(user.channels, start=2):
            params: dict[str, Any] = {"channel": channel, "recoverable": True}
            if recover and channel in user.epochs:
                params.update(recover=True, epoch=user.epochs[channel], offset=user.offsets.get(channel, 0))
            command = json.dumps({"id": rid, "subscribe": params}, separators=(",", ":"))
            steps.append((command, _reply(rid, _subscribed(gen, user, channel, recover))))
        return steps

    def publisher_setup(self) -> list[Step]:
        return [('{"id":1,"connect":{"name":"publisher"}}', _reply(1, lambda r: None))]

    def publish(self, rid: int, channel: str, seq: int, t_ns: int) -> str:
        return f'{{"id":{rid},"publish":{{"channel":"{channel}","data":{_payload(seq, t_ns)}}}}}'

    def answer(self, text: str) -> str | None:
        return "{}" if text == "{}" else None  # the hub's ping

    def is_delivery(self, text: str) -> bool:
        return text.startswith('{"push":{"channel"') and '"pub":' in text


def _reply(rid: int, handle: Callable[[dict[str, Any]], None]) -> Callable[[str], bool]:
    prefix = f'{{"id":{rid},'

    def is_reply(text: str) -> bool:
        if not text.startswith(prefix):
            return False
        msg = json.loads(text)
        if "error" in msg:
            raise RuntimeError(f"hub refused request {rid}: {msg['error']}")
        handle(msg)
        return True

    return is_reply


def _subscribed(gen: ProfileGen, user: User, channel: str, recover: bool) -> Callable[[dict[str, Any]], None]:
    def handle(msg: dict[str, Any]) -> None:
        result = msg["subscribe"]
        user.epochs[channel] = result.get("epoch", "")
        if recover:
            if result.get("recovered"):
                gen.tally.recovered += 1
            else:
                gen.tally.not_recovered += 1
            for pub in result.get("publications", ()):
                gen.got(user, pub["data"]["bench_seq"], None)
        user.offsets[channel] = max(user.offsets.get(channel, 0), result.get("offset", 0))

    return handle


class SocketIODriver:
    name = "python-socketio"
    acks = False  # the benchmark's publish event has none: every publication counts as made
    path = "/socket.io/?EIO=4&transport=websocket"

    def setup(self, gen: ProfileGen, user: User, recover: bool) -> list[Step]:
        steps = self.publisher_setup()
        for ack, room in enumerate(user.channels, start=1):  # ack ids 1, 2: replies "431[...]", "432[...]"
            steps.append((f'42{ack}["subscribe","{room}"]', _prefix(f"43{ack}")))
        return steps

    def publisher_setup(self) -> list[Step]:
        return [(None, _prefix("0{")), ("40", _prefix("40"))]  # Engine.IO open, Socket.IO CONNECT

    def publish(self, rid: int, channel: str, seq: int, t_ns: int) -> str:
        return f'42["publish",{{"room":"{channel}",' + _payload(seq, t_ns)[1:] + "]"

    def answer(self, text: str) -> str | None:
        return "3" + text[1:] if text[:1] == "2" else None  # Engine.IO PING -> PONG

    def is_delivery(self, text: str) -> bool:
        return text.startswith('42["pub"')


def _prefix(prefix: str) -> Callable[[str], bool]:
    return lambda text: text.startswith(prefix)


DRIVERS: dict[str, Callable[[], Driver]] = {"hub": HubDriver, "python-socketio": SocketIODriver}


class UserPeer(Peer):
    """A connection with its user (None: the publisher) and what the socket did not take yet: a server
    that falls behind stops reading the publisher, whose publications then wait here (their stamps
    taken when they were due, so the wait counts in their latency)."""

    __slots__ = ("user", "backlog")
    user: User | None
    backlog: bytearray

    def say(self, text: str) -> None:
        if self.ws.state is ConnectionState.OPEN:  # not once the server closed it: it is reconnected
            super().say(text)

    def flush(self) -> None:
        self.backlog += self.ws.data_to_send()
        if self.backlog:
            try:
                del self.backlog[: self.sock.send(self.backlog)]
            except BlockingIOError:
                pass


class ProfileGen(LoadGen):
    """Users ``first .. first + count - 1`` and a publisher, over ``ports`` (user ``i`` on
    ``ports[i % len(ports)]``)."""

    def __init__(self, driver: Driver, ports: list[int], first: int, count: int, host: str = HOST) -> None:
        super().__init__(cast("Target", _NoTarget(driver.path)), ports[0], host)
        self.driver, self.ports = driver, ports
        self.users = [
            User(i, (f"{NAMESPACE}:u{i}", f"{NAMESPACE}:g{i // GROUP}")) for i in range(first, first + count)
        ]
        self.first = first
        self.tally = Tally()
        self.members: dict[str, list[User]] = {}
        for user in self.users:
            for channel in user.channels:
                self.members.setdefault(channel, []).append(user)
        self.recipients: dict[int, str] = {}  # seq -> channel
        self.unacked: dict[int, int] = {}  # publish request id -> seq, until the server answers
        self.refused: set[int] = set()  # seqs the server answered with an error
        self.sent_at: dict[int, int] = {}  # seq -> when it was published, until acknowledged
        self.due = 0  # deliveries of every publication sent
        self.rid = 1
        self.started = time.monotonic_ns()  # of the run (``run``)

    # -- connections ---------------------------------------------------------------------------

    def connect(self, user: User | None, recover: bool = False) -> None:
        port = self.ports[(user.index if user else self.first) % len(self.ports)]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)  # abort = RST, no TIME_WAIT
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        sock.connect_ex((self.host, port))
        ws = ClientConnection(f"{self.host}:{port}", self.driver.path)
        steps = self.driver.setup(self, user, recover) if user else self.driver.publisher_setup()
        peer = UserPeer(sock, ws, steps, user is not None)
        peer.user, peer.backlog = user, bytearray()
        self.peers[sock.fileno()] = peer
        self.pending += 1
        self.ep.register(sock.fileno(), OUT)
        if user is not None:
            user.peer, user.ready = peer, False

    def open_all(self, inflight: int = 200, timeout: float = 240.0) -> None:
        todo = list(reversed(self.users))
        self.connect(None)
        deadline = time.monotonic() + timeout
        while todo or self.pending:
            while todo and self.pending < inflight:
                self.connect(todo.pop())
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(todo) + self.pending} connections not ready after {timeout:.0f} s")
            self.pump(0.2)

    def _ready(self, peer: Peer) -> None:
        self.pending -= 1
        user = getattr(peer, "user", None)
        if user is None:
            self.publisher = peer
        else:
            user.ready = True

    def disconnect(self, user: User) -> None:
        """Drop ``user``'s connection (RST)."""
        if user.peer is not None:
            if not user.ready:
                self.pending -= 1
            self._drop(user.peer)
            user.peer, user.ready = None, False

    def reconnect(self, user: User) -> None:
        """Drop ``user``'s connection and open a new one that subscribes again (recovering)."""
        self.disconnect(user)
        self.tally.reconnects += 1
        self.connect(user, recover=True)

    def _other(self, peer: Peer, event: object) -> None:
        if isinstance(event, CloseReceived):
            key = f"{event.code} {event.reason}".strip()
            self.tally.closes[key] = self.tally.closes.get(key, 0) + 1
        super()._other(peer, event)

    def _closed(self, peer: Peer) -> None:
        user = getattr(peer, "user", None)
        if user is None:  # the publisher: a new one (counted in ``closes``)
            self._drop(peer)
            self.publisher = None
            self.connect(None)
            return
        self.tally.server_closed += 1
        self.reconnect(user)  # what a client does; counted apart from the scheduled ones
        self.tally.reconnects -= 1

    # -- messages ------------------------------------------------------------------------------

    def _message(self, peer: Peer, text: str, now: int) -> None:
        for line in text.split("\n") if "\n" in text else (text,):
            self._line(peer, line, now)

    def _line(self, peer: Peer, text: str, now: int) -> None:
        user = getattr(peer, "user", None)
        if user is not None and self.driver.is_delivery(text):
            got = stamp(text)
            if got is not None:
                self.got(user, got[0], now - got[1])
                if (m := _OFFSET.search(text, len(text) - 30)) is not None:
                    channel = self.recipients.get(got[0])
                    if channel is not None:
                        user.offsets[channel] = max(user.offsets.get(channel, 0), int(m[1]))
            return
        if peer.steps and peer.steps[0][1](text):
            peer.steps.pop(0)
            self._next_step(peer)
        elif (answer := self.driver.answer(text)) is not None:
            peer.say(answer)
        else:
            rid = _RID.match(text)
            seq = self.unacked.pop(int(rid[1]), None) if rid and user is None else None
            if seq is not None:
                self.tally.acks.append(now - self.sent_at.pop(seq))
            if '"error"' in text:
                self.tally.errors += 1
                if seq is not None:
                    self.refused.add(seq)

    def got(self, user: User, seq: int, latency_ns: int | None) -> None:
        if seq in user.got:
            user.dups += 1
            return
        user.got.add(seq)
        if latency_ns is None:
            self.tally.recovered_deliveries += 1
        else:
            self.tally.latencies.append(latency_ns)
            self.tally.arrivals.append(time.monotonic_ns() - self.started)

    # -- the run -------------------------------------------------------------------------------

    def publish_to(self, channel: str) -> None:
        if self.publisher is None or self.publisher.ws.state is not ConnectionState.OPEN:
            self.tally.unpublished += 1  # the server closed the publisher: a new one is on its way
            return
        self.seq += 1
        self.rid += 1
        self.recipients[self.seq] = channel
        t_ns = time.monotonic_ns()
        if self.driver.acks:
            self.unacked[self.rid] = self.seq
            self.sent_at[self.seq] = t_ns
        self.tally.published += 1
        self.due += len(self.members[channel])
        self.publisher.say(self.driver.publish(self.rid, channel, self.seq, t_ns))

    def run(self, seconds: float, personal: float, group: float, reconnects: float) -> None:
        """``personal`` and ``group`` publications per second, ``reconnects`` per second, for ``seconds``."""
        users, groups = self.users, self.users[::GROUP]
        done = [0, 0, 0]
        start = time.monotonic()
        self.started = time.monotonic_ns()
        while (elapsed := time.monotonic() - start) < seconds:
            for k, rate in enumerate((personal, group, reconnects)):
                for _ in range(int(elapsed * rate) - done[k]):
                    done[k] += 1
                    if k == 2:
                        self.reconnect(random.choice(users))
                    else:
                        self.publish_to(random.choice(users if k == 0 else groups).channels[k])
            self.pump(0.002)
            if self.publisher is not None:
                self.publisher.flush()
                self.tally.backlog = max(self.tally.backlog, len(cast(UserPeer, self.publisher).backlog))

    def drain(self, quiet: float = 5.0, limit: float = 60.0) -> None:
        """Until every reconnect finished and every expected delivery arrived, or nothing arrived for
        ``quiet`` seconds (what is missing then is lost), at most ``limit`` seconds."""
        started = time.monotonic()
        deadline = started + limit
        last, last_change = -1, started
        while time.monotonic() < deadline:
            seen = sum(len(u.got) for u in self.users)
            if seen != last:
                last, last_change = seen, time.monotonic()
            if not self.pending and seen >= self.due:
                break
            if not self.pending and time.monotonic() - last_change > quiet:
                break
            self.pump(0.05)
            if self.publisher is not None:
                self.publisher.flush()
        self.tally.drain = min(last_change, time.monotonic()) - started

    def account(self) -> Tally:
        """Lost: deliveries missing of the publications the server acknowledged (all, without acks);
        those of publications never acknowledged (or refused) are counted apart."""
        tally = self.tally
        made: dict[str, list[int]] = {}
        unmade = set(self.unacked.values()) | self.refused
        tally.unacked = len(unmade)
        for seq, channel in self.recipients.items():
            if seq not in unmade:
                made.setdefault(channel, []).append(seq)
        tally.expected = sum(len(self.members[c]) * len(seqs) for c, seqs in made.items())
        for user in self.users:
            for channel in user.channels:
                for seq in made.get(channel, ()):
                    if seq not in user.got:
                        tally.lost += 1
            tally.delivered += len(user.got)
            tally.duplicated += user.dups
        for seq in unmade:
            tally.lost_unacked += sum(seq not in u.got for u in self.members[self.recipients[seq]])
        return tally


@dataclass
class _NoTarget:
    """``LoadGen`` wants a target (it reads only ``name`` and ``path`` here): the profile's connections
    are set up by the driver instead."""

    path: str
    name: str = "profile"
