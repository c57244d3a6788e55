"""A small epoll (or selectors) event loop: readiness callbacks, timers, thread-safe wake-ups, signals."""

from __future__ import annotations

import heapq
import itertools
import logging
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from .poller import make_poller

__all__ = ["EventLoop", "Handle", "TimerHandle", "FileLike"]

logger = logging.getLogger("wsproto_lite.server.loop")

_MAX_SELECT_TIMEOUT = 24 * 3600.0


class FileLike(Protocol):
    """Anything the poller accepts: an object with ``fileno()``."""

    def fileno(self) -> int: ...


class Handle:
    """A scheduled callback; ``cancel()`` makes it a no-op and drops its references."""

    __slots__ = ("_callback", "_args", "cancelled")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._callback: Callable[..., object] | None = callback
        self._args = args
        self.cancelled = False

    def cancel(self) -> None:
        """Prevent the callback from running (idempotent)."""
        self.cancelled = True
        self._callback = None
        self._args = ()

    def _run(self) -> None:
        callback = self._callback
        if callback is None:
            return
        try:
            callback(*self._args)
        except Exception:
            logger.exception("callback %r raised", callback)


class TimerHandle(Handle):
    """A callback scheduled at a monotonic time ``when``."""

    __slots__ = ("when", "_seq", "_loop")

    def __init__(
        self,
        when: float,
        seq: int,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: EventLoop,
    ) -> None:
        super().__init__(callback, args)
        self.when = when
        self._seq = seq
        self._loop: EventLoop | None = loop

    def cancel(self) -> None:
        if not self.cancelled and self._loop is not None:
            self._loop._timer_cancelled()
        self._loop = None
        super().cancel()

    def __lt__(self, other: TimerHandle) -> bool:
        # the heap's order: by deadline, then by scheduling order (no tuples built: called log n times per
        # push and pop)
        when, other_when = self.when, other.when
        return when < other_when or (when == other_when and self._seq < other._seq)


class _Registration:
    """The reader and writer callbacks of one file descriptor, and the events it is polled for."""

    __slots__ = ("reader", "writer", "events")

    def __init__(self) -> None:
        self.reader: Callable[[], object] | None = None
        self.writer: Callable[[], object] | None = None
        self.events = 0


def _fd(fileobj: FileLike | int) -> int:
    return fileobj if isinstance(fileobj, int) else fileobj.fileno()


class EventLoop:
    """Single-threaded loop over ``select.epoll`` (``selectors`` where there is none: see :mod:`.poller`).

    Everything but :meth:`call_soon_threadsafe` and :meth:`stop` must be called from the loop's thread.
    """

    def __init__(self, *, use_epoll: bool = True) -> None:
        self._poller, self._in, self._out = make_poller(use_epoll)
        self._registrations: dict[int, _Registration] = {}
        #: Where the transports of this loop read small inputs before copying them out (one per loop: it is
        #: free again once a read returns; see ``SocketTransport._on_readable``). Grown on first use.
        self.read_scratch = memoryview(bytearray())
        self._ready: deque[Handle] = deque()
        self._timers: list[TimerHandle] = []
        self._cancelled_timers = 0
        self._seq = itertools.count()
        self._running = False
        self._stopping = False
        self._closed = False
        self._thread_id: int | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.add_reader(self._wake_r, self._drain_wakeups)
        self._old_signals: dict[int, Any] = {}

    # -- time and scheduling -------------------------------------------------------------------

    def time(self) -> float:
        """The loop's clock (``time.monotonic``)."""
        return time.monotonic()

    def call_soon(self, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` on the next iteration."""
        handle = Handle(callback, args)
        self._ready.append(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` after ``delay`` seconds; returns a cancellable handle."""
        return self.call_at(self.time() + max(0.0, delay), callback, *args)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` at loop time ``when``."""
        handle = TimerHandle(when, next(self._seq), callback, args, self)
        heapq.heappush(self._timers, handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> Handle:
        """Like :meth:`call_soon`, callable from any thread (or a signal handler): wakes the loop."""
        handle = Handle(callback, args)
        self._ready.append(handle)  # deque.append is atomic
        self._wakeup()
        return handle

    def _wakeup(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full: the loop will wake anyway
        except OSError:
            pass  # closed during shutdown

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _timer_cancelled(self) -> None:
        self._cancelled_timers += 1
        if self._cancelled_timers > 256 and self._cancelled_timers * 2 > len(self._timers):
            # in place: run_once may be holding this very list while a callback cancels timers
            self._timers[:] = [t for t in self._timers if not t.cancelled]
            heapq.heapify(self._timers)
            self._cancelled_timers = 0

    # -- file descriptors ----------------------------------------------------------------------

    def _update(self, fileobj: FileLike | int, reader: bool, callback: Callable[[], object] | None) -> None:
        fd = _fd(fileobj)
        reg = self._registrations.get(fd)
        if reg is None:
            if callback is None:
                return
            reg = _Registration()
            self._registrations[fd] = reg
        if reader:
            reg.reader = callback
        else:
            reg.writer = callback
        events = (self._in if reg.reader else 0) | (self._out if reg.writer else 0)
        if events == reg.events:
            return
        poller = self._poller
        if events == 0:
            del self._registrations[fd]
            poller.unregister(fd)
        elif reg.events == 0:
            poller.register(fd, events)
        else:
            poller.modify(fd, events)
        reg.events = events

    def add_reader(self, fileobj: FileLike | int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fileobj`` is readable (replaces a previous reader)."""
        self._update(fileobj, True, callback)

    def remove_reader(self, fileobj: FileLike | int) -> None:
        """Stop watching ``fileobj`` for readability (no error if it was not watched)."""
        self._update(fileobj, True, None)

    def add_writer(self, fileobj: FileLike | int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fileobj`` is writable (replaces a previous writer)."""
        self._update(fileobj, False, callback)

    def remove_writer(self, fileobj: FileLike | int) -> None:
        """Stop watching ``fileobj`` for writability (no error if it was not watched)."""
        self._update(fileobj, False, None)

    def forget(self, fileobj: FileLike | int) -> None:
        """Remove every callback of ``fileobj`` (call before closing it)."""
        try:
            fd = _fd(fileobj)
        except (OSError, ValueError):
            return
        reg = self._registrations.pop(fd, None)
        if reg is None:
            return
        reg.reader = reg.writer = None
        try:
            self._poller.unregister(fd)
        except (OSError, ValueError):
            pass  # already closed: the kernel dropped it from the poll set

    # -- signals -------------------------------------------------------------------------------

    def add_signal_handler(self, signum: int, callback: Callable[[], object]) -> None:
        """Run ``callback()`` in the loop when ``signum`` arrives (main thread only)."""

        def _on_signal(_signum: int, _frame: object) -> None:
            self.call_soon_threadsafe(callback)

        previous = signal.signal(signum, _on_signal)
        self._old_signals.setdefault(signum, previous)

    def remove_signal_handlers(self) -> None:
        """Restore the signal handlers replaced by :meth:`add_signal_handler`."""
        for signum, previous in self._old_signals.items():
            signal.signal(signum, previous)
        self._old_signals.clear()

    # -- running -------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True while :meth:`run_forever` is executing."""
        return self._running

    def in_loop_thread(self) -> bool:
        """True when called from the thread running the loop (or when it is not running)."""
        return self._thread_id is None or self._thread_id == threading.get_ident()

    def stop(self) -> None:
        """Make :meth:`run_forever` return after the current iteration (thread-safe)."""
        self._stopping = True
        self._wakeup()

    def run_forever(self) -> None:
        """Process events until :meth:`stop` is called."""
        if self._running:
            raise RuntimeError("loop already running")
        if self._closed:
            raise RuntimeError("loop is closed")
        self._running = True
        self._thread_id = threading.get_ident()
        try:
            while not self._stopping:
                self.run_once()
        finally:
            self._stopping = False
            self._running = False
            self._thread_id = None

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Run iterations until ``predicate()`` is true or ``timeout`` elapses; returns the predicate."""
        deadline = self.time() + timeout
        if not self._running:
            self._thread_id = threading.get_ident()
        while not predicate():
            remaining = deadline - self.time()
            if remaining <= 0:
                return False
            self.run_once(remaining)
        return True

    def run_once(self, max_wait: float | None = None) -> None:
        """One iteration: wait for I/O or the next timer, then run everything that is due."""
        timers = self._timers
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
            self._cancelled_timers -= 1
        timeout: float | None = None
        if self._ready or self._stopping:
            timeout = 0.0
        elif timers:
            timeout = timers[0].when - self.time()
            timeout = 0.0 if timeout < 0.0 else min(timeout, _MAX_SELECT_TIMEOUT)
        if max_wait is not None and (timeout is None or max_wait < timeout):
            timeout = max_wait
        registrations, not_in, not_out = self._registrations, ~self._in, ~self._out
        for fd, events in self._poller.poll(timeout):
            reg = registrations.get(fd)
            if reg is None:
                continue  # forgotten by a callback of this same batch
            # any bit but "writable" (data, EOF, an error, a hang-up) is for the reader, as in selectors;
            # called inline, not through a helper: one Python call less per event
            if events & not_out and (reader := reg.reader) is not None:
                try:
                    reader()
                except Exception:
                    logger.exception("I/O callback %r raised", reader)
            # the reader may have removed the writer: re-read it
            if events & not_in and (writer := reg.writer) is not None:
                try:
                    writer()
                except Exception:
                    logger.exception("I/O callback %r raised", writer)
        if timers:
            self._collect_due_timers()
        ready = self._ready
        if ready:
            for _ in range(len(ready)):
                ready.popleft()._run()

    def _collect_due_timers(self) -> None:
        """Move the timers that are due to the ready queue (dropping cancelled ones on the way)."""
        timers, now = self._timers, self.time()
        while timers and (timers[0].when <= now or timers[0].cancelled):
            handle = heapq.heappop(timers)
            if handle.cancelled:
                self._cancelled_timers -= 1
            else:
                handle._loop = None
                self._ready.append(handle)

    def close(self) -> None:
        """Release the poller and the self-pipe (the loop must not be running).

        Callbacks still scheduled are cancelled and callbacks still registered are dropped: they are
        often bound methods of objects that keep their handle (a timer of a connection), so dropping
        them here is what lets those objects be freed by reference counting.
        """
        if self._running:
            raise RuntimeError("cannot close a running loop")
        if self._closed:
            return
        self._closed = True
        self.remove_signal_handlers()
        for handle in [*self._ready, *self._timers]:
            handle.cancel()
        self._ready.clear()
        self._timers.clear()
        for reg in self._registrations.values():
            reg.reader = reg.writer = None
        self._registrations.clear()
        self._poller.close()
        self._wake_r.close()
        self._wake_w.close()
