"""EventLoop: scheduling order, timers, cancellation, I/O callbacks, thread-safe wake-up, signals."""

from __future__ import annotations

import os
import signal
import socket
import threading

import pytest

from wsproto_lite.server.loop import EventLoop


def test_call_soon_runs_in_order(loop: EventLoop) -> None:
    seen: list[int] = []
    for i in range(5):
        loop.call_soon(seen.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [0, 1, 2, 3, 4]


def test_timers_fire_in_deadline_order_and_cancel(loop: EventLoop) -> None:
    seen: list[str] = []
    loop.call_later(0.03, seen.append, "c")
    loop.call_later(0.01, seen.append, "a")
    cancelled = loop.call_later(0.02, seen.append, "x")
    loop.call_later(0.02, seen.append, "b")
    cancelled.cancel()
    loop.call_later(0.04, loop.stop)
    loop.run_forever()
    assert seen == ["a", "b", "c"]


def test_many_cancelled_timers_are_compacted(loop: EventLoop) -> None:
    handles = [loop.call_later(100, lambda: None) for _ in range(2000)]
    for h in handles:
        h.cancel()
    assert len(loop._timers) < 2000
    assert loop.run_until(lambda: True, 0.1)


def test_callback_exception_does_not_kill_loop(loop: EventLoop) -> None:
    seen: list[int] = []

    def boom() -> None:
        raise ValueError("expected in test")

    loop.call_soon(boom)
    loop.call_soon(seen.append, 1)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [1]


def test_reader_and_writer_callbacks(loop: EventLoop) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    got: list[bytes] = []
    try:

        def on_read() -> None:
            got.append(b.recv(100))
            loop.remove_reader(b)

        def on_write() -> None:
            a.send(b"hello")
            loop.remove_writer(a)

        loop.add_reader(b, on_read)
        loop.add_writer(a, on_write)
        assert loop.run_until(lambda: bool(got), 5)
        assert got == [b"hello"]
    finally:
        loop.forget(a)
        loop.forget(b)
        a.close()
        b.close()


def test_call_soon_threadsafe_wakes_a_blocked_loop(loop: EventLoop) -> None:
    started = threading.Event()
    seen: list[str] = []

    def other() -> None:
        started.wait(5)
        loop.call_soon_threadsafe(seen.append, "from thread")
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(started.set)
    t = threading.Thread(target=other)
    t.start()
    loop.run_forever()  # no timers, no I/O: only the self-pipe can wake it
    t.join(5)
    assert seen == ["from thread"]


def test_stop_from_another_thread(loop: EventLoop) -> None:
    t = threading.Thread(target=loop.run_forever)
    t.start()
    loop.stop()
    t.join(5)
    assert not t.is_alive()


def test_signal_handler_runs_in_loop(loop: EventLoop) -> None:
    seen: list[str] = []

    def on_signal() -> None:
        seen.append("sig")
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, on_signal)
    try:
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.run_forever()
    finally:
        loop.remove_signal_handlers()
    assert seen == ["sig"]
    assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None) or callable(
        signal.getsignal(signal.SIGUSR1)
    )


def test_run_until_times_out(loop: EventLoop) -> None:
    assert loop.run_until(lambda: False, 0.01) is False


def test_a_due_timer_fires_once_when_an_io_callback_compacts_the_timers(loop: EventLoop) -> None:
    """Cancelling many timers from an I/O callback compacts the heap while run_once holds it."""
    fired: list[str] = []
    later = [loop.call_later(3600, fired.append, "never") for _ in range(300)]
    loop.call_at(loop.time() - 1, fired.append, "due")
    a, b = socket.socketpair()
    try:

        def readable() -> None:
            a.recv(1)
            loop.remove_reader(a)
            for handle in later:
                handle.cancel()

        loop.add_reader(a, readable)
        b.send(b"x")
        loop.run_once(0)
        loop.run_once(0)
        loop.run_once(0)
    finally:
        a.close()
        b.close()
    assert fired == ["due"]


@pytest.mark.parametrize("use_epoll", [True, False], ids=["epoll", "selectors"])
def test_both_pollers_deliver_reads_writes_and_eof(use_epoll: bool) -> None:
    """The epoll poller and the selectors fallback (other platforms) drive the same callbacks."""
    loop = EventLoop(use_epoll=use_epoll)
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    seen: list[bytes] = []
    try:

        def on_write() -> None:
            a.send(b"hello")
            loop.remove_writer(a)
            a.shutdown(socket.SHUT_WR)

        def on_read() -> None:
            seen.append(b.recv(100))

        loop.add_writer(a, on_write)
        loop.add_reader(b, on_read)
        assert loop.run_until(lambda: seen[-1:] == [b""], 5)  # the data, then EOF wakes the reader too
        assert seen == [b"hello", b""]
    finally:
        loop.forget(a)
        loop.forget(b)
        a.close()
        b.close()
        loop.close()


def test_forgotten_descriptor_in_the_same_batch_is_skipped(loop: EventLoop) -> None:
    """A callback that forgets another ready descriptor: that one's callback does not run."""
    pairs = [socket.socketpair() for _ in range(2)]
    ran: list[int] = []
    try:
        for i, (a, b) in enumerate(pairs):
            a.send(b"x")

            def on_read(i: int = i) -> None:
                ran.append(i)
                for _, other in pairs:
                    loop.forget(other)

            loop.add_reader(b, on_read)
        assert loop.run_until(lambda: bool(ran), 5)
        loop.run_once(0.05)
        assert len(ran) == 1
    finally:
        for a, b in pairs:
            a.close()
            b.close()
