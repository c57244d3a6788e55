"""aio.py: a hub connection over coroutines, driven by a fake asyncio stack whose sends can be held.

Each test runs in its own ``asyncio.run``; ``settle()`` lets the loop run every ready callback (a bounded
number of passes: scheduling, not time).
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from wsproto_lite import Request, prepare_message
from wsproto_lite.hub.aio import AsyncConnection, PeerClosed, PreparedTexts
from wsproto_lite.server.handler import Handler
from wsproto_lite.server.options import Options

T = TypeVar("T")

REQUEST = Request("GET", "/ws", (("Host", "x"),))


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), 10)

    return asyncio.run(bounded())


async def settle(passes: int = 50) -> None:
    for _ in range(passes):
        await asyncio.sleep(0)


class Stack:
    """What an ASGI server does for one connection: messages in, sends out (held while ``gate`` is shut)."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | bytes | PeerClosed] = asyncio.Queue()
        self.gate = asyncio.Event()
        self.gate.set()
        self.sent: list[str | bytes] = []
        self.closes: list[tuple[int, str]] = []
        self.receives = 0
        self.fail: BaseException | None = None

    async def send_text(self, message: str | bytes) -> None:
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.sent.append(message)

    async def send_close(self, code: int, reason: str) -> None:
        await self.gate.wait()
        self.closes.append((code, reason))
        self.inbox.put_nowait(PeerClosed(code, reason))  # the peer answers our close

    async def next_message(self) -> str | bytes | PeerClosed:
        self.receives += 1
        return await self.inbox.get()


class Recorder(Handler):
    """Answers each message with ``reply`` (if set); records the callbacks."""

    def __init__(self, reply: str = "") -> None:
        self.reply = reply
        self.events: list[Any] = []

    def on_open(self, conn: Any) -> None:
        self.events.append("open")

    def on_message(self, conn: Any, message: str | bytes) -> None:
        self.events.append(message)
        if self.reply:
            conn.send(self.reply)

    def on_writable(self, conn: Any) -> None:
        self.events.append("writable")

    def on_close(self, conn: Any, code: int, reason: str) -> None:
        self.events.append(("close", code, reason))


def connection(handler: Handler, stack: Stack, **options: Any) -> AsyncConnection:
    return AsyncConnection(
        handler,
        Options(**options),
        REQUEST,
        ("127.0.0.1", 1),
        send_text=stack.send_text,
        send_close=stack.send_close,
    )


def test_messages_in_order_then_the_close_with_its_code_and_reason() -> None:
    async def main() -> None:
        stack, handler = Stack(), Recorder("pong")
        conn = connection(handler, stack)
        task = asyncio.create_task(conn.run(stack.next_message))
        stack.inbox.put_nowait("ping1")
        stack.inbox.put_nowait("ping2")
        await settle()
        assert conn.send("last") and conn.send_prepared(prepare_message("shared"))
        conn.close(4001, "slow")
        assert not conn.send("dropped")  # after the close: nothing more is queued
        await task
        assert stack.sent == ["pong", "pong", "last", "shared"]
        assert stack.closes == [(4001, "slow")]
        assert handler.events == ["open", "ping1", "ping2", ("close", 4001, "slow")]
        assert conn.closed and conn.close_code == 4001 and conn.buffered_amount == 0

    run(main)


def test_reading_stops_over_the_high_watermark_and_resumes_under_the_low_one() -> None:
    async def main() -> None:
        stack, handler = Stack(), Recorder("r" * 60)
        conn = connection(handler, stack, write_high_water=100, write_low_water=25)
        stack.gate.clear()  # the peer reads nothing: every send waits
        for i in range(5):
            stack.inbox.put_nowait(f"m{i}")
        task = asyncio.create_task(conn.run(stack.next_message))
        await settle()
        # two answers queued (120 > 100): no third message taken while they wait
        assert stack.receives == 2 and conn.buffered_amount == 120
        assert not conn.writable and stack.inbox.qsize() == 3
        stack.gate.set()
        await settle()
        assert stack.receives == 6 and stack.inbox.empty()  # all five taken, waiting for the sixth
        assert handler.events[:4] == ["open", "m0", "m1", "writable"]
        assert len(stack.sent) == 5 and conn.buffered_amount == 0 and conn.writable
        stack.inbox.put_nowait(PeerClosed(1000))
        await task

    run(main)


class Pausing(Recorder):
    """Pauses the connection's messages at the second one (the hub, with commands waiting on its engine)."""

    def on_message(self, conn: Any, message: str | bytes) -> None:
        super().on_message(conn, message)
        if message == "m1":
            conn.pause_messages()


def test_pause_messages_takes_no_more_until_resumed() -> None:
    async def main() -> None:
        stack, handler = Stack(), Pausing()
        conn = connection(handler, stack)
        for i in range(4):
            stack.inbox.put_nowait(f"m{i}")
        task = asyncio.create_task(conn.run(stack.next_message))
        await settle()
        assert handler.events == ["open", "m0", "m1"] and stack.inbox.qsize() == 2  # not taken
        assert conn.send("still sends") and conn.writable  # only reading waits
        conn.resume_messages()
        await settle()
        assert handler.events == ["open", "m0", "m1", "m2", "m3"] and stack.inbox.empty()
        conn.resume_messages()  # not paused: nothing to do
        stack.inbox.put_nowait(PeerClosed(1000))
        await task
        assert stack.sent == ["still sends"]

    run(main)


def test_send_drops_over_the_hard_limit() -> None:
    async def main() -> None:
        stack = Stack()
        conn = connection(Recorder(), stack, write_high_water=100, write_hard_limit=150)
        stack.gate.clear()
        task = asyncio.create_task(conn.run(stack.next_message))
        await settle()
        assert conn.send("x" * 100) and conn.send("x" * 60)  # 160: over the hard limit now
        assert not conn.send("x") and not conn.send_prepared(prepare_message("y"))
        assert conn.buffered_amount == 160
        stack.gate.set()
        stack.inbox.put_nowait(PeerClosed(1001))
        await task
        assert stack.sent == ["x" * 100, "x" * 60]

    run(main)


def test_a_close_that_cannot_go_out_is_aborted_after_close_timeout() -> None:
    async def main() -> None:
        stack, handler = Stack(), Recorder()
        conn = connection(handler, stack, close_timeout=0.05)
        stack.gate.clear()  # the peer never reads: the queued message, then the close, never leave
        task = asyncio.create_task(conn.run(stack.next_message))
        await settle()
        conn.send("stuck")
        conn.close(4001, "slow")
        await task  # returns: aborted by the close timer, the stack then drops the connection
        assert handler.events == ["open", ("close", 1006, "")]
        assert stack.sent == [] and stack.closes == []
        await settle()  # the cancelled writer has ended (an unfinished task would warn at exit)

    run(main)


def test_abort_ends_run_while_it_waits_for_a_message() -> None:
    async def main() -> None:
        stack, handler = Stack(), Recorder()
        conn = connection(handler, stack)
        task = asyncio.create_task(conn.run(stack.next_message))
        await settle()
        assert stack.receives == 1  # waiting for the peer
        conn.abort()
        await task
        assert handler.events == ["open", ("close", 1006, "")]
        assert not task.cancelled()  # the stack's task returns normally

    run(main)


def test_a_failed_send_drops_the_queue_and_the_disconnect_follows() -> None:
    async def main() -> None:
        stack, handler = Stack(), Recorder()
        conn = connection(handler, stack)
        stack.fail = OSError("client disconnected")
        task = asyncio.create_task(conn.run(stack.next_message))
        await settle()
        conn.send("a")
        conn.send("b")
        await settle()
        assert conn.buffered_amount == 0 and not conn.send("c")  # the peer is gone
        stack.inbox.put_nowait(PeerClosed(1006))  # what the stack reports next
        await task
        assert handler.events == ["open", ("close", 1006, "")]

    run(main)


def test_the_stacks_own_cancellation_still_ends_the_connection() -> None:
    async def main() -> None:
        stack, handler = Stack(), Recorder()
        conn = connection(handler, stack)
        task = asyncio.create_task(conn.run(stack.next_message))
        await settle()
        task.cancel()  # the server shuts down its task
        with pytest.raises(asyncio.CancelledError):
            await task
        assert handler.events == ["open", ("close", 1006, "")]

    run(main)


@pytest.mark.parametrize("ending", ["peer", "ours", "abort", "close timeout"])
def test_the_connection_is_freed_without_gc(ending: str) -> None:
    async def main() -> weakref.ref[AsyncConnection]:
        stack = Stack()
        conn = connection(Recorder("r"), stack, close_timeout=0.05)
        task = asyncio.create_task(conn.run(stack.next_message))
        stack.inbox.put_nowait("m")
        await settle()
        if ending == "peer":
            stack.inbox.put_nowait(PeerClosed(1000))
        elif ending == "ours":
            conn.close(4000, "bye")
        elif ending == "abort":
            conn.abort()
        else:
            stack.gate.clear()
            conn.send("stuck")
            conn.close(4000, "bye")
        await task
        await settle()
        weak = weakref.ref(conn)
        del conn, task
        return weak

    gc.collect()
    gc.disable()
    try:
        weak = run(main)
        assert weak() is None
    finally:
        gc.enable()


def test_prepared_frames_of_every_length_form_are_decoded_once() -> None:
    texts = PreparedTexts()
    for text in ("short", "é" * 100, "x" * 70_000):  # 7-bit, 16-bit and 64-bit lengths (RFC 6455 §5.2)
        prepared = prepare_message(text)
        first = texts.message_of(prepared)
        assert first == text and texts.message_of(prepared) is first
    assert texts.message_of(prepare_message(b"\x00\xff")) == b"\x00\xff"
