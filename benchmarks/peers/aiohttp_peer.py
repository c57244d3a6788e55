"""Adapter for aiohttp's WebSocket frame reader and writer.

aiohttp picks its Cython ``reader_c``/``mask`` at import time unless ``AIOHTTP_NO_EXTENSIONS`` is set,
so the pure-Python variant runs in a worker process with that variable.
"""

from __future__ import annotations

import aiohttp
from aiohttp._websocket import helpers as ws_helpers
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp._websocket.writer import WebSocketWriter
from aiohttp.http_websocket import WSMsgType

MAX_SIZE = 2**26
TEXT, BINARY = WSMsgType.TEXT, WSMsgType.BINARY


def info() -> dict[str, str]:
    reader = WebSocketReader.__module__.rsplit(".", 1)[-1]
    mask = ws_helpers.websocket_mask.__name__
    accel = "Cython reader_c + mask" if reader == "reader_c" else f"none ({reader}, {mask})"
    return {"version": aiohttp.__version__, "accelerations": accel}


class _Protocol:
    """The bits of aiohttp's BaseProtocol that the reader/writer touch (never paused here)."""

    _reading_paused = False
    _paused = False

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        self._reading_paused = False


class _Transport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def is_closing(self) -> bool:
        return False


class Recv:
    """The reader after aiohttp's own handshake: frames in, WSMessage tuples out on its queue.

    The queue is drained directly (``_buffer``) as ``ws.receive()`` would; a new adapter is made per
    repetition so its byte accounting never reaches the flow-control limit.
    """

    def __init__(self) -> None:
        self.queue = WebSocketDataQueue(_Protocol(), 2**30, loop=None)  # type: ignore[arg-type]
        self.reader = WebSocketReader(self.queue, MAX_SIZE, False, True)
        self.buffer = self.queue._buffer

    def feed(self, chunk: bytes) -> list[str | bytes]:
        self.reader.feed_data(chunk)
        buf = self.buffer
        out: list[str | bytes] = []
        while buf:
            msg, _size = buf.popleft()
            if msg[0] is TEXT or msg[0] is BINARY:
                out.append(msg[1])
            else:
                raise AssertionError(f"unexpected message {msg!r}")
        return out


class Send:
    """``WebSocketWriter.send_frame`` (what ``ws.send_str/send_bytes`` call), driven without a loop:
    uncompressed frames never suspend."""

    def __init__(self, role: str) -> None:
        self.transport = _Transport()
        self.writer = WebSocketWriter(_Protocol(), self.transport, use_mask=role == "client")  # type: ignore[arg-type]

    def send(self, message: str | bytes) -> list[bytes]:
        if isinstance(message, str):
            coro = self.writer.send_frame(message.encode("utf-8"), TEXT)
        else:
            coro = self.writer.send_frame(message, BINARY)
        try:
            coro.send(None)
        except StopIteration:
            pass
        else:
            raise AssertionError("send_frame suspended")
        out, self.transport.out = self.transport.out, []
        return out


def recv_adapter() -> Recv:
    return Recv()


def send_adapter(role: str) -> Send:
    return Send(role)
