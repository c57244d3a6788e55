"""What both roles do on a bare trio stream: where it leads, and the opening handshake over it."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from wsproto_lite import Accepted, Connection, Event, HTTPRequest, Rejected
from wsproto_lite import ConnectionClosed as CoreClosed  # ours is the exception the application sees


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection, or a listening address."""

    address: str
    port: int
    is_ssl: bool

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        default = 443 if self.is_ssl else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{'wss' if self.is_ssl else 'ws'}://{host}{port}"


def stream_endpoint(stream: trio.abc.Stream, local: bool) -> Endpoint | None:
    is_ssl = isinstance(stream, trio.SSLStream)
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if not isinstance(inner, trio.SocketStream):
        return None
    address = inner.socket.getsockname() if local else inner.socket.getpeername()
    return Endpoint(address[0], address[1], is_ssl)


def as_bytes(data: bytes | bytearray) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)  # TLS streams may return a bytearray


async def opening_handshake(stream: trio.abc.Stream, core: Connection, receive_size: int) -> Event:
    """Write the core's output and feed it input until the handshake has an outcome; return that event."""
    while True:
        output = core.data_to_send()
        if output:
            await stream.send_all(output)
        for event in core.events():
            if isinstance(event, (HTTPRequest, Accepted, Rejected, CoreClosed)):  # Request is an HTTPRequest
                return event
        core.receive_data(as_bytes(await stream.receive_some(receive_size)))


async def answer_and_close(stream: trio.abc.Stream, core: Connection, timeout: float) -> None:
    """Write the core's HTTP answer (an error or a rejection) and close the stream."""
    with trio.move_on_after(timeout):
        try:
            await stream.send_all(core.data_to_send())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await trio.aclose_forcefully(stream)
