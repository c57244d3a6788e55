"""The hub benchmark's load generator: one publisher and many subscribers in one epoll loop.

Every connection is a raw non-blocking socket driven by a ``wsproto_lite.ClientConnection`` (the
handshake, masking, pongs and close replies are the core's); what is said over it is the target's
(``targets.py``). Publications carry ``time.monotonic_ns()`` at the moment they are sent; a
publication is *complete* when every subscriber has it, and its latency is the time from that stamp
until the last subscriber's socket read returned it (so the loop's own reading time is included,
the same for every server).
"""

from __future__ import annotations

import errno
import math
import select
import socket
import time
from collections.abc import Callable

from wsproto_lite import (
    Accepted,
    ClientConnection,
    Rejected,
    TextMessage,
)

from ..loopback import HOST
from ..scale import LINGER0
from .targets import Step, Target

IN, OUT = select.EPOLLIN, select.EPOLLOUT
RECV_SIZE = 65536  # below glibc's mmap threshold: a larger recv() buffer costs an mmap per call


class Peer:
    """One client connection: its socket, its core, the setup steps it still has to go through."""

    __slots__ = ("sock", "ws", "steps", "subscriber")

    def __init__(
        self, sock: socket.socket, ws: ClientConnection, steps: list[Step], subscriber: bool
    ) -> None:
        self.sock, self.ws, self.steps, self.subscriber = sock, ws, steps, subscriber

    def flush(self) -> None:
        out = self.ws.data_to_send()
        if out:
            self.sock.sendall(out)  # a few hundred bytes at most: the socket buffer takes them

    def say(self, text: str) -> None:
        self.ws.send_text(text)
        self.flush()


class LoadGen:
    """Connections to one server, the publications in flight and their completion times."""

    def __init__(self, target: Target, port: int, host: str = HOST) -> None:
        self.target, self.host, self.port = target, host, port
        self.ep = select.epoll()
        self.peers: dict[int, Peer] = {}
        self.subscribers: list[Peer] = []
        self.publisher: Peer | None = None
        self.pending = 0  # connections still in their handshake or setup steps
        self.seq = 0  # never reused within a run: replies and late deliveries stay unambiguous
        self.counts: dict[int, int] = {}  # seq -> deliveries so far, while incomplete
        self.latency_ns: dict[int, int] = {}  # seq -> stamp to last delivery, once complete
        self.watching: set[int] = set()  # the seqs of the current phase
        self.completed = 0
        self.delivered = 0
        self.lost = 0  # subscribers the server closed
        # Subscribers only, in a worker process (fleet.py): completions over *these* subscribers
        # go to ``report(seq, latency_ns)`` instead of being counted here.
        self.report: Callable[[int, int], None] | None = None
        self.extra: dict[int, Callable[[], None]] = {}  # other fds in the epoll set and their handler
        self.last_other = ""  # the last message to a subscriber that was no delivery (e.g. a disconnect)

    # -- connections ---------------------------------------------------------------------------

    def open(
        self, subscribers: int, publisher: bool = False, inflight: int = 200, timeout: float = 60
    ) -> None:
        """Add ``subscribers`` subscribed connections (and the publisher), at most ``inflight`` in
        their handshake at once; return when all are ready."""
        todo = [False] * subscribers + ([True] if publisher else [])
        deadline = time.monotonic() + timeout
        while todo or self.pending:
            while todo and self.pending < inflight:
                self._connect(is_publisher=todo.pop())
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(todo) + self.pending} connections not ready after {timeout:.0f} s")
            self.pump(0.5)
            self.check_lost()

    def _connect(self, is_publisher: bool) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)  # abort = RST, no TIME_WAIT
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        err = sock.connect_ex((self.host, self.port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise ConnectionError(f"connect: {errno.errorcode.get(err, err)}")
        ws = ClientConnection(f"{self.host}:{self.port}", self.target.path)
        peer = Peer(sock, ws, self.target.setup(subscribe=not is_publisher), not is_publisher)
        self.peers[sock.fileno()] = peer
        self.pending += 1
        self.ep.register(sock.fileno(), OUT)

    def _ready(self, peer: Peer) -> None:
        self.pending -= 1
        if peer.subscriber:
            self.subscribers.append(peer)
        else:
            self.publisher = peer

    def _next_step(self, peer: Peer) -> None:
        """Send the next setup message (if any), or declare the connection ready."""
        if not peer.steps:
            self._ready(peer)
            return
        message, is_reply = peer.steps[0]
        if message is not None:
            peer.steps[0] = (None, is_reply)
            peer.say(message)

    def watch(self, fd: int, handler: Callable[[], None]) -> None:
        """Call ``handler`` from ``pump`` whenever ``fd`` (not a connection of ours) is readable."""
        self.extra[fd] = handler
        self.ep.register(fd, IN)

    def shrink(self, subscribers: int) -> None:
        """Abort (RST) subscribers until ``subscribers`` remain."""
        while len(self.subscribers) > subscribers:
            self._drop(self.subscribers.pop())

    def _drop(self, peer: Peer) -> None:
        fd = peer.sock.fileno()
        if fd >= 0:
            self.peers.pop(fd, None)
            self.ep.unregister(fd)
        peer.sock.close()

    def close(self) -> None:
        for peer in list(self.peers.values()):
            self._drop(peer)
        self.subscribers.clear()
        self.publisher = None
        self.ep.close()

    def check_lost(self) -> None:
        """Raise if the server closed any subscriber (a slow-subscriber cut, a crash...)."""
        if self.lost:
            raise ConnectionError(
                f"the server closed {self.lost} subscriber connection(s); its last other message: "
                f"{self.last_other[:200]!r}"
            )

    # -- the loop ------------------------------------------------------------------------------

    def pump(self, timeout: float) -> None:
        """One epoll round: read every ready socket, handle what it brought."""
        peers = self.peers
        for fd, ev in self.ep.poll(timeout):
            peer = peers.get(fd)
            if peer is None:
                if fd in self.extra:
                    self.extra[fd]()
                continue
            if ev & OUT:
                self._connected(fd, peer)
                continue
            try:
                data = peer.sock.recv(RECV_SIZE)
            except ConnectionResetError:
                data = b""
            now = time.monotonic_ns()  # one clock reading per read: its messages arrived together
            ws = peer.ws
            ws.receive_data(data)
            for event in ws.events():
                if type(event) is TextMessage:
                    self._message(peer, event.data, now)
                else:
                    self._other(peer, event)
            if not data:
                self._closed(peer)
            else:
                peer.flush()  # a pong or a close reply the core queued, if any

    def _connected(self, fd: int, peer: Peer) -> None:
        err = peer.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise ConnectionError(f"connect to {self.target.name} failed: {errno.errorcode.get(err, err)}")
        peer.flush()  # the upgrade request
        self.ep.modify(fd, IN)

    def _message(self, peer: Peer, text: str, now: int) -> None:
        if peer.steps:
            if not peer.steps[0][1](text):
                if (answer := self.target.answer(text)) is not None:
                    peer.say(answer)
                return
            peer.steps.pop(0)
            self._next_step(peer)
            return
        got = self.target.delivery(text)
        if got is None:
            if peer.subscriber:
                self.last_other = text
            if (answer := self.target.answer(text)) is not None:
                peer.say(answer)
            return
        if not peer.subscriber:
            return
        self.delivered += 1
        seq, stamp = got
        count = self.counts.get(seq, 0) + 1
        if count == len(self.subscribers):
            self.counts.pop(seq, None)  # absent when there is one subscriber
            if self.report is not None:
                self.report(seq, now - stamp)
            else:
                self.complete(seq, now - stamp)
        else:
            self.counts[seq] = count

    def complete(self, seq: int, latency_ns: int) -> None:
        """Publication ``seq`` reached every subscriber, the last one ``latency_ns`` after its stamp."""
        if seq in self.watching:
            self.watching.discard(seq)
            self.latency_ns[seq] = latency_ns
            self.completed += 1

    def _other(self, peer: Peer, event: object) -> None:
        if isinstance(event, Accepted):
            self._next_step(peer)
        elif isinstance(event, Rejected):
            raise ConnectionError(
                f"{self.target.name} refused the upgrade: {event.status} {event.body[:200]!r}"
            )

    def _closed(self, peer: Peer) -> None:
        """The server closed this connection (EOF or reset)."""
        if peer.steps or peer.ws.state.name == "CONNECTING":
            raise ConnectionError(f"{self.target.name} closed a connection during its setup")
        if peer is self.publisher:
            raise ConnectionError(f"{self.target.name} closed the publisher connection")
        self.lost += 1
        self._drop(peer)

    # -- publications --------------------------------------------------------------------------

    def publish(self) -> int:
        assert self.publisher is not None, "open(..., publisher=True) first"
        self.seq += 1
        self.watching.add(self.seq)
        self.publisher.say(self.target.publish(self.seq, time.monotonic_ns()))
        return self.seq

    def _phase(self) -> None:
        """Forget incomplete publications of an earlier phase (their subscriber count is stale):
        only publications of the current phase are watched, and complete once."""
        self.counts.clear()
        self.watching.clear()

    def fanout(self, rate: float, count: int, drain: float) -> list[int | None]:
        """Publish ``count`` times at ``rate`` per second; wait up to ``drain`` seconds after the last
        one; return each publication's latency in ns (None: not complete by then)."""
        self._phase()
        first = self.completed
        seqs: list[int] = []
        interval = int(1e9 / rate)
        start = time.monotonic_ns()
        for i in range(count):
            due = start + i * interval
            while (now := time.monotonic_ns()) < due:
                self.pump((due - now) / 1e9)
            seqs.append(self.publish())
        self._wait(lambda: self.completed - first < count, drain)
        self.check_lost()
        return [self.latency_ns.get(s) for s in seqs]

    def _wait(self, busy: Callable[[], object], limit: float) -> None:
        deadline = time.monotonic() + limit
        while busy() and time.monotonic() < deadline:
            self.pump(0.05)

    def throughput(
        self, window: int, warmup: float, duration: float, cpu: Callable[[], float]
    ) -> dict[str, float]:
        """Keep ``window`` publications in flight (a new one each time one completes) for ``warmup``
        then ``duration`` seconds; deliveries/s and server CPU seconds over the timed part."""
        self._phase()
        published = self.completed

        def run(seconds: float) -> None:
            nonlocal published
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                while published - self.completed < window:
                    self.publish()
                    published += 1
                self.pump(0.05)
                self.check_lost()

        run(warmup)
        d0, c0, t0 = self.delivered, cpu(), time.perf_counter()
        run(duration)
        d1, c1, t1 = self.delivered, cpu(), time.perf_counter()
        self._wait(lambda: published > self.completed, 5.0)  # let the last ones land
        deliveries = d1 - d0
        return {
            "deliveries_per_s": deliveries / (t1 - t0),
            "cpu_us_per_delivery": (c1 - c0) / deliveries * 1e6 if deliveries else float("nan"),
            "deliveries": float(deliveries),
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]
