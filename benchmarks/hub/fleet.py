"""The load generator spread over processes: subscribers in worker processes, the publisher here.

One Python process reads ~1 000 copies of a publication in tens of milliseconds on a busy 2-core
machine, close to the 50 ms between two publications at 20/s: it would measure its own queue. So
the subscribers are split over ``procs`` worker processes, each a ``LoadGen`` without a publisher
that reports, per publication, when *its* subscribers all had it (``time.monotonic_ns()`` is the same
clock in every process, so each worker computes the latency from the stamp in the payload). A
publication is complete when every worker reported it; its latency is the largest reported.

Worker protocol (``multiprocessing`` pipe, one per worker): commands ``("open", n)``, ``("shrink",
n)``, ``("stop", 0)``; replies ``("ok", subscribers)``, ``("done", [(seq, latency_ns)...],
deliveries so far)``, ``("error", message)``.
"""

from __future__ import annotations

import functools
import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from ..loopback import HOST, cpu_seconds
from .loadgen import LoadGen
from .targets import TARGETS, Target


def _worker(target_name: str, host: str, port: int, conn: Connection) -> None:
    gen = LoadGen(TARGETS[target_name](), port, host)
    done: list[tuple[int, int]] = []
    gen.report = lambda seq, latency: done.append((seq, latency))
    gen.watch(conn.fileno(), lambda: None)  # a command wakes the loop up
    sent = 0
    try:
        while True:
            while conn.poll():
                command, arg = conn.recv()
                if command == "stop":
                    return
                if command == "open":
                    gen.open(arg)
                elif command == "shrink":
                    gen.shrink(arg)
                conn.send(("ok", len(gen.subscribers)))
            gen.pump(0.05)
            gen.check_lost()
            if done or gen.delivered != sent:
                conn.send(("done", done, gen.delivered))
                done, sent = [], gen.delivered
    except Exception as exc:  # noqa: BLE001 - handed to the coordinator, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        gen.close()
        conn.close()


class Fleet:
    """Same measuring methods as ``LoadGen`` (``open``, ``shrink``, ``fanout``, ``throughput``),
    with the subscribers in ``procs`` worker processes."""

    def __init__(self, target: Target, port: int, procs: int = 2, host: str = HOST) -> None:
        self.gen = LoadGen(target, port, host)  # the publisher; completions come from the workers
        ctx = multiprocessing.get_context("fork")  # the workers need nothing but this module
        self.workers: list[tuple[BaseProcess, Connection]] = []
        self.sizes = [0] * procs
        self.delivered = [0] * procs
        self.acks = 0
        self.parts: dict[int, list[int]] = {}  # seq -> [workers that reported, largest latency]
        for i in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(target.name, host, port, child), daemon=True)
            proc.start()
            child.close()
            self.workers.append((proc, parent))
            self.gen.watch(parent.fileno(), functools.partial(self._from_worker, i))

    @property
    def subscribers(self) -> int:
        return sum(self.sizes)

    def _from_worker(self, i: int) -> None:
        conn = self.workers[i][1]
        while conn.poll():
            message = conn.recv()
            kind = message[0]
            if kind == "done":
                for seq, latency in message[1]:
                    self._merge(seq, latency)
                self.delivered[i] = message[2]
                self.gen.delivered = sum(self.delivered)
            elif kind == "ok":
                self.sizes[i] = message[1]
                self.acks += 1
            else:
                raise ConnectionError(f"subscriber process {i}: {message[1]}")

    def _merge(self, seq: int, latency: int) -> None:
        part = self.parts.get(seq)
        if part is None:
            part = self.parts[seq] = [0, 0]
        part[0] += 1
        part[1] = max(part[1], latency)
        if part[0] == sum(1 for n in self.sizes if n):
            del self.parts[seq]
            self.gen.complete(seq, part[1])

    def _command(self, command: str, totals: list[int], timeout: float = 60.0) -> None:
        """Send ``command`` with each worker's target count; wait until every worker answered."""
        self.acks = 0
        for (_, conn), n in zip(self.workers, totals, strict=True):
            conn.send((command, n))
        deadline = time.monotonic() + timeout
        while self.acks < len(self.workers):
            if time.monotonic() > deadline:
                raise TimeoutError(f"subscriber processes did not finish {command!r} in {timeout:.0f} s")
            self.gen.pump(0.5)
        self.parts.clear()  # the subscriber counts changed: partial reports are stale

    def _split(self, total: int) -> list[int]:
        k = len(self.workers)
        return [total // k + (1 if i < total % k else 0) for i in range(k)]

    def open(self, subscribers: int, publisher: bool = False) -> None:
        """Add ``subscribers`` subscribed connections over the workers (and the publisher here)."""
        totals = self._split(self.subscribers + subscribers)
        self._command("open", [t - n for t, n in zip(totals, self.sizes, strict=True)])
        if publisher:
            self.gen.open(0, publisher=True)

    def shrink(self, subscribers: int) -> None:
        self._command("shrink", self._split(subscribers))

    def fanout(self, rate: float, count: int, drain: float) -> list[int | None]:
        return self.gen.fanout(rate, count, drain)

    def throughput(
        self, window: int, warmup: float, duration: float, cpu: Callable[[], float]
    ) -> dict[str, float]:
        return self.gen.throughput(window, warmup, duration, cpu)

    def cpu_seconds(self) -> float:
        """CPU time of the whole load generator: this process and its workers."""
        return time.process_time() + sum(cpu_seconds(p.pid) for p, _ in self.workers if p.pid)

    def close(self) -> None:
        for _, conn in self.workers:
            try:
                conn.send(("stop", 0))
            except OSError:
                pass
        for proc, conn in self.workers:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join()
            conn.close()
        self.gen.close()
