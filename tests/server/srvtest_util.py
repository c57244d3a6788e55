"""Helpers shared by the tests/server modules."""

from __future__ import annotations

from server.transport import BaseProtocol, SocketTransport


class Recorder(BaseProtocol):
    def __init__(self) -> None:
        self.transport: SocketTransport | None = None
        self.data = bytearray()
        self.eof = False
        self.lost: list[BaseException | None] = []
        self.events: list[str] = []

    def connection_made(self, transport: SocketTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")
