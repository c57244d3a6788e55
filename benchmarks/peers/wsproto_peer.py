"""Adapter for ``wsproto`` (python-hyper), sans-IO."""

from __future__ import annotations

from typing import Any

import wsproto
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Message, Request, TextMessage

from . import host_request


def info() -> dict[str, str]:
    return {"version": wsproto.__version__, "accelerations": "none (pure Python)"}


def _server() -> WSConnection:
    conn = WSConnection(ConnectionType.SERVER)
    conn.receive_data(host_request())
    (req,) = list(conn.events())
    assert isinstance(req, Request)
    conn.send(AcceptConnection())
    return conn


def _pair() -> tuple[WSConnection, WSConnection]:
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="localhost", target="/")))
    (req,) = list(server.events())
    assert isinstance(req, Request)
    client.receive_data(server.send(AcceptConnection()))
    (acc,) = list(client.events())
    assert isinstance(acc, AcceptConnection)
    return client, server


class Recv:
    """wsproto yields messages piecewise (message_finished): assemble them like an app must."""

    def __init__(self) -> None:
        self.conn = _server()
        self.parts: list[Any] = []

    def feed(self, chunk: bytes) -> list[str | bytes]:
        conn = self.conn
        conn.receive_data(chunk)
        out: list[str | bytes] = []
        parts = self.parts
        for ev in conn.events():
            if isinstance(ev, Message):
                if ev.message_finished and not parts:
                    out.append(ev.data)
                elif ev.message_finished:
                    parts.append(ev.data)
                    out.append(("" if isinstance(ev, TextMessage) else b"").join(parts))
                    parts.clear()
                else:
                    parts.append(ev.data)
            else:
                raise AssertionError(f"unexpected event {ev!r}")
        return out


class Send:
    def __init__(self, role: str) -> None:
        self.conn = _server() if role == "server" else _pair()[0]

    def send(self, message: str | bytes) -> bytes:
        if isinstance(message, str):
            return self.conn.send(TextMessage(data=message))
        return self.conn.send(BytesMessage(data=message))


def recv_adapter() -> Recv:
    return Recv()


def send_adapter(role: str) -> Send:
    return Send(role)
