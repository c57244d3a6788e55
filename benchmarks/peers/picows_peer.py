"""Adapter for picows' receive path: its ``WSProtocol`` (Cython, the whole protocol) fed as its transports
feed it, through the BufferedProtocol interface (``get_buffer`` then ``buffer_updated``), after its own
server handshake; every frame its listener is given becomes ``str``/``bytes`` as a picows application
makes it (``get_payload_as_utf8_text`` / ``get_payload_as_bytes``).

picows has no sans-IO API, so its protocol object is built here as ``ws_create_server`` builds it (the
positional arguments of picows 2.x), inside an event loop (it asks for the running one), and given a
stand-in transport around a real, idle TCP socket (``connection_made`` sets TCP_NODELAY on it; nothing is
sent or read on it).  Copying each chunk into the buffer picows hands out stands for the kernel's copy
into it (``recv_into``); the other implementations get the chunk as the ``bytes`` a ``recv`` made.

Receive only: picows writes small frames straight to its socket, so its send path cannot be captured
without a real connection (the loopback echo benchmarks measure it there).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import picows
from picows import WSAutoPingStrategy, WSListener, WSMsgType
from picows.picows import WSProtocol

from . import host_request

MAX_SIZE = 2**26
TEXT, BINARY = WSMsgType.TEXT, WSMsgType.BINARY


def info() -> dict[str, str]:
    return {"version": picows.__version__, "accelerations": "Cython (whole protocol), SIMD unmasking"}


class _Transport(asyncio.Transport):
    """What ``WSProtocol`` asks of its transport while it reads: the socket's options, and ``write`` for
    the 101 answer."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        sock = self._sock
        extra = {"socket": sock, "peername": sock.getpeername(), "sockname": sock.getsockname()}
        return extra.get(name, default)

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class _Listener(WSListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.messages: list[str | bytes] = []

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        # Unfragmented messages only (what the benchmark sends), as benchmarks/servers.py reads them.
        op = frame.msg_type
        if op is TEXT:
            self.messages.append(frame.get_payload_as_utf8_text())
        elif op is BINARY:
            self.messages.append(frame.get_payload_as_bytes())
        else:
            raise AssertionError(f"unexpected frame {op!r}")


class _Shared:
    """One event loop and one idle connected TCP socket for every adapter of this process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        self.peer = socket.create_connection(listener.getsockname())
        self.sock, _ = listener.accept()
        listener.close()


_shared: _Shared | None = None


class Recv:
    def __init__(self) -> None:
        global _shared
        if _shared is None:
            _shared = _Shared()
        self.listener = _Listener()
        self.protocol: Any = _shared.loop.run_until_complete(self._protocol())
        self.protocol.connection_made(_Transport(_shared.sock))
        self._feed(host_request())
        if self.protocol.transport is None or self.listener.messages:
            raise AssertionError("picows did not accept the handshake")

    async def _protocol(self) -> Any:
        return WSProtocol(
            None,  # host and port: a server
            None,  # path
            False,  # is_client_side
            lambda _request: self.listener,
            logging.getLogger("benchmarks.picows"),
            True,  # disconnect_on_exception
            None,  # websocket_handshake_timeout
            False,  # enable_auto_ping
            20,
            20,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # enable_auto_pong
            MAX_SIZE,  # max_frame_size
            None,  # extra_headers
            16 * 1024,  # read_buffer_init_size (ws_create_server's default)
        )

    def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        protocol = self.protocol
        while view:
            buffer = protocol.get_buffer(-1)
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]

    def feed(self, chunk: bytes) -> list[str | bytes]:
        self._feed(chunk)
        out, self.listener.messages = self.listener.messages, []
        return out


def recv_adapter() -> Recv:
    return Recv()


def send_adapter(role: str) -> Any:
    raise NotImplementedError("picows: receive only (see the module docstring)")
