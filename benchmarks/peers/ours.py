"""Adapter for wsproto-lite (our sans-IO core), written against docs/core-api.md."""

from __future__ import annotations

import importlib.metadata

import wsproto_lite
from wsproto_lite import BinaryMessage, ClientConnection, Config, Request, ServerConnection, TextMessage

from . import host_request

MAX_SIZE = 2**26


def info() -> dict[str, str]:
    version = getattr(wsproto_lite, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version("wsproto-lite")
        except importlib.metadata.PackageNotFoundError:
            version = "work tree"
    enabled = getattr(wsproto_lite, "speedups_enabled", lambda: False)()
    accel = (
        "C speedups (wsproto_lite._cspeedups: masking, whole small frames, headers)"
        if enabled
        else "none (pure Python)"
    )
    return {"version": str(version), "accelerations": accel}


def _config() -> Config:
    return Config(max_message_size=MAX_SIZE)


def _server() -> ServerConnection:
    conn = ServerConnection(config=_config(), extensions=[])
    conn.receive_data(host_request())
    events = list(conn.events())
    assert len(events) == 1 and isinstance(events[0], Request), events
    conn.accept()
    conn.data_to_send()
    return conn


def _client() -> ClientConnection:
    client = ClientConnection(host="localhost", target="/", extensions=[], config=_config())
    server = ServerConnection(config=_config(), extensions=[])
    server.receive_data(client.data_to_send())
    (req,) = list(server.events())
    assert isinstance(req, Request)
    server.accept()
    client.receive_data(server.data_to_send())
    events = list(client.events())
    assert events and type(events[0]).__name__ == "Accepted", events
    return client


class Recv:
    def __init__(self) -> None:
        self.conn = _server()

    def feed(self, chunk: bytes) -> list[str | bytes]:
        conn = self.conn
        conn.receive_data(chunk)
        out: list[str | bytes] = []
        for ev in conn.events():
            if type(ev) is TextMessage or type(ev) is BinaryMessage:
                out.append(ev.data)
            else:
                raise AssertionError(f"unexpected event {ev!r}")
        return out


class Send:
    def __init__(self, role: str) -> None:
        self.conn = _server() if role == "server" else _client()

    def send(self, message: str | bytes) -> list[bytes]:
        # buffers_to_send(): no join, so large payloads are not copied (like aiohttp's two
        # transport.write calls and websockets' list of buffers).
        if isinstance(message, str):
            self.conn.send_text(message)
        else:
            self.conn.send_binary(message)
        return self.conn.buffers_to_send()


def recv_adapter() -> Recv:
    return Recv()


def send_adapter(role: str) -> Send:
    return Send(role)
