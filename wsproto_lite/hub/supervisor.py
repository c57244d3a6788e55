"""``python -m wsproto_lite hub --workers N``: N hub processes sharing one port, kept alive.

The supervisor starts N workers (``python -m wsproto_lite hub --workers 1 --reuse-port ...``: each binds the
port with ``SO_REUSEPORT``, the kernel spreads new connections over them), restarts a worker that dies
(after 0.5 s, doubling up to 10 s while it keeps dying within 30 s of its start), and on SIGTERM or
SIGINT sends SIGTERM to every worker (each tells its clients ``disconnect`` 4000 and closes them) and
waits at most ``shutdown_timeout`` seconds before SIGKILL.  Workers run in their own process group, so
a terminal's Ctrl-C reaches only the supervisor, which forwards it once.  SIGHUP is forwarded to every
worker (each re-reads its API keys from the config file; see ``HubServer.reload_api_keys``).

The workers share nothing but the port and the engine (Redis): several workers need one.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["Supervisor", "say", "worker_argv"]

RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 10.0
STABLE_AFTER = 30.0


def say(line: str, stream: TextIO | None = None) -> None:
    """Print ``line`` in one write: the supervisor and its workers share one output, and ``print`` writes
    the text and its newline separately when Python runs unbuffered (``PYTHONUNBUFFERED``, ``-u``), so two
    workers' start-up lines came out merged ("...websockethub listening...").  One write of a line (at most
    ``PIPE_BUF`` bytes) is never split by another process's."""
    out = sys.stdout if stream is None else stream
    out.write(line + "\n")
    out.flush()


@dataclass
class _Worker:
    slot: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    pids: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(self, worker_argv: Sequence[str], workers: int, *, shutdown_timeout: float = 10.0) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.worker_argv = list(worker_argv)
        self.workers = [_Worker(i) for i in range(workers)]
        self.shutdown_timeout = shutdown_timeout
        self.restarts = 0
        self._signals: list[int] = []

    def _say(self, text: str) -> None:
        say(f"supervisor: {text}")

    def _spawn(self, worker: _Worker) -> None:
        worker.proc = subprocess.Popen(self.worker_argv, process_group=0)
        worker.started = time.monotonic()
        worker.restart_at = None
        worker.pids.append(worker.proc.pid)
        self._say(f"worker {worker.slot} pid {worker.proc.pid}")

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def run(self) -> int:
        """Until SIGTERM/SIGINT; returns 0 after every worker exited."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_fd = signal.set_wakeup_fd(wake_w)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP)
        old = {s: signal.signal(s, self._on_signal) for s in handled}
        try:
            for worker in self.workers:
                self._spawn(worker)
            while not any(s in (signal.SIGTERM, signal.SIGINT) for s in self._signals):
                self._reap(restart=True)
                self._restart_due()
                timeout = self._next_timeout()
                select.select([wake_r], [], [], timeout)
                _drain(wake_r)
                if signal.SIGHUP in self._signals:
                    self._forward(signal.SIGHUP)
                self._signals = [s for s in self._signals if s not in (signal.SIGCHLD, signal.SIGHUP)]
            self._say("stopping the workers")
            return self._stop_all(wake_r)
        finally:
            signal.set_wakeup_fd(old_fd)
            for signum, handler in old.items():
                signal.signal(signum, handler)
            os.close(wake_r)
            os.close(wake_w)

    def _forward(self, signum: int) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signum)

    def _reap(self, restart: bool) -> None:
        now = time.monotonic()
        for worker in self.workers:
            proc = worker.proc
            if proc is None or proc.poll() is None:
                continue
            worker.proc = None
            if not restart:
                continue
            worker.failures = 1 if now - worker.started > STABLE_AFTER else worker.failures + 1
            delay = min(RESTART_DELAY * 2 ** (worker.failures - 1), MAX_RESTART_DELAY)
            worker.restart_at = now + delay
            code = proc.returncode
            self._say(f"worker {worker.slot} pid {proc.pid} exited with {code}; restarting in {delay:.1f} s")

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.proc is None and worker.restart_at is not None and worker.restart_at <= now:
                self.restarts += 1
                self._spawn(worker)

    def _next_timeout(self) -> float | None:
        due = [w.restart_at for w in self.workers if w.proc is None and w.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _stop_all(self, wake_r: int) -> int:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout
        while any(w.proc is not None for w in self.workers):
            self._reap(restart=False)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if any(w.proc is not None for w in self.workers):
                select.select([wake_r], [], [], min(left, 0.5))  # SIGCHLD wakes us
                _drain(wake_r)
        for worker in self.workers:
            if worker.proc is not None:
                self._say(f"worker {worker.slot} pid {worker.proc.pid} did not stop in time: SIGKILL")
                worker.proc.kill()
                worker.proc.wait()
                worker.proc = None
        self._say("stopped")
        return 0


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def worker_argv(args: Sequence[str]) -> list[str]:
    """The command line of one worker: this interpreter, ``-m wsproto_lite hub``, the given options."""
    return [sys.executable, "-m", "wsproto_lite", "hub", *args]
