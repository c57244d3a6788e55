"""Adapter for ``websockets`` sans-IO ``ServerProtocol`` / ``ClientProtocol``.

With ``BENCH_WEBSOCKETS_PURE=1`` its C ``speedups.apply_mask`` is replaced by the pure-Python one
from ``websockets.utils`` (websockets falls back to it only when the extension fails to import).
"""

from __future__ import annotations

import os
from typing import Any, cast

import websockets
import websockets.frames
import websockets.utils
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from . import host_request

_frames_module: Any = websockets.frames
if os.environ.get("BENCH_WEBSOCKETS_PURE"):
    _frames_module.apply_mask = websockets.utils.apply_mask

MAX_SIZE = 2**26


def info() -> dict[str, str]:
    mod = _frames_module.apply_mask.__module__
    accel = (
        "C speedups (websockets.speedups.apply_mask)"
        if mod.endswith("speedups")
        else "none (utils.apply_mask)"
    )
    return {"version": str(getattr(websockets, "__version__", "?")), "accelerations": accel}


def _server() -> ServerProtocol:
    proto = ServerProtocol(max_size=MAX_SIZE)
    proto.receive_data(host_request())
    (req,) = proto.events_received()
    proto.send_response(proto.accept(cast(Any, req)))
    proto.data_to_send()
    return proto


def _client() -> ClientProtocol:
    client = ClientProtocol(parse_uri("ws://localhost/"), max_size=MAX_SIZE)
    client.send_request(client.connect())
    server = ServerProtocol(max_size=MAX_SIZE)
    for data in client.data_to_send():
        server.receive_data(data)
    (req,) = server.events_received()
    server.send_response(server.accept(cast(Any, req)))
    for data in server.data_to_send():
        client.receive_data(data)
    client.events_received()
    assert client.state.name == "OPEN", client.state
    return client


TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT


class Recv:
    """The sans-IO layer yields frames; decode text (UTF-8 validation) and join fragments as
    websockets' own asyncio layer does."""

    def __init__(self) -> None:
        self.proto = _server()
        self.parts: list[bytes] = []
        self.text = False

    def feed(self, chunk: bytes) -> list[str | bytes]:
        proto = self.proto
        proto.receive_data(chunk)
        out: list[str | bytes] = []
        frame: Any
        for frame in proto.events_received():
            op = frame.opcode
            if op is CONT:
                self.parts.append(frame.data)
                if not frame.fin:
                    continue
                data = b"".join(self.parts)
                self.parts.clear()
                out.append(data.decode() if self.text else data)
            elif op is TEXT or op is BINARY:
                if not frame.fin:
                    self.parts.append(frame.data)
                    self.text = op is TEXT
                    continue
                out.append(frame.data.decode() if op is TEXT else frame.data)
            else:
                raise AssertionError(f"unexpected frame {frame}")
        return out


class Send:
    def __init__(self, role: str) -> None:
        self.proto = _server() if role == "server" else _client()

    def send(self, message: str | bytes) -> list[bytes]:
        if isinstance(message, str):
            self.proto.send_text(message.encode())
        else:
            self.proto.send_binary(message)
        return self.proto.data_to_send()


def recv_adapter() -> Recv:
    return Recv()


def send_adapter(role: str) -> Send:
    return Send(role)
