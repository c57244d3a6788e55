"""A small selectors-based event loop: readiness callbacks, timers, thread-safe wake-ups, signals."""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["EventLoop", "Handle", "TimerHandle", "FileLike"]

logger = logging.getLogger("wsproto_lite.server.loop")

_MAX_SELECT_TIMEOUT = 24 * 3600.0


class FileLike(Protocol):
    """Anything the selector accepts: an object with ``fileno()``."""

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
        return (self.when, self._seq) < (other.when, other._seq)


class _Registration:
    """The reader and writer callbacks of one file descriptor."""

    __slots__ = ("reader", "writer")

    def __init__(self) -> None:
        self.reader: Callable[[], object] | None = None
        self.writer: Callable[[], object] | None = None


class EventLoop:
    """Single-threaded loop over ``selectors.DefaultSelector``.

    Everything but :meth:`call_soon_threadsafe` and :meth:`stop` must be called from the loop's thread.
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
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
        try:
            key = self._selector.get_key(fileobj)
        except KeyError:
            if callback is None:
                return
            reg = _Registration()
            if reader:
                reg.reader = callback
            else:
                reg.writer = callback
            self._selector.register(fileobj, self._mask(reg), reg)
            return
        reg = key.data
        if reader:
            reg.reader = callback
        else:
            reg.writer = callback
        mask = self._mask(reg)
        if mask == 0:
            self._selector.unregister(fileobj)
        elif mask != key.events:
            self._selector.modify(fileobj, mask, reg)

    @staticmethod
    def _mask(reg: _Registration) -> int:
        return (selectors.EVENT_READ if reg.reader else 0) | (selectors.EVENT_WRITE if reg.writer else 0)

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
            key = self._selector.unregister(fileobj)
        except (KeyError, ValueError):
            return
        key.data.reader = key.data.writer = None

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
        if self._ready or self._stopping:
            timeout: float | None = 0.0
        elif timers:
            timeout = min(max(0.0, timers[0].when - self.time()), _MAX_SELECT_TIMEOUT)
        else:
            timeout = None
        if max_wait is not None:
            timeout = max_wait if timeout is None else min(timeout, max_wait)
        for key, mask in self._selector.select(timeout):
            reg: _Registration = key.data
            if mask & selectors.EVENT_READ and reg.reader is not None:
                self._invoke(reg.reader)
            # the reader may have removed the writer: re-read it
            if mask & selectors.EVENT_WRITE and reg.writer is not None:
                self._invoke(reg.writer)
        now = self.time()
        while timers and (timers[0].when <= now or timers[0].cancelled):
            handle = heapq.heappop(timers)
            if handle.cancelled:
                self._cancelled_timers -= 1
            else:
                handle._loop = None
                self._ready.append(handle)
        for _ in range(len(self._ready)):
            self._ready.popleft()._run()

    @staticmethod
    def _invoke(callback: Callable[[], object]) -> None:
        try:
            callback()
        except Exception:
            logger.exception("I/O callback %r raised", callback)

    def close(self) -> None:
        """Release the selector and the self-pipe (the loop must not be running).

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
        for key in list(self._selector.get_map().values()):
            key.data.reader = key.data.writer = None
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
