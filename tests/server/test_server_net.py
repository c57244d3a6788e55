"""bind_sockets / Listener / connect_socket on loopback."""

from __future__ import annotations

import socket

import pytest

from tests.ports import unused_port
from wsproto_lite.server.loop import EventLoop
from wsproto_lite.server.net import Listener, bind_sockets, connect_socket


def test_bind_localhost_v4_and_v6_share_the_port() -> None:
    socks = bind_sockets("localhost", 0)
    try:
        ports = {s.getsockname()[1] for s in socks}
        assert len(ports) == 1
    finally:
        for s in socks:
            s.close()


def test_reuse_port_allows_two_listeners() -> None:
    first = bind_sockets("127.0.0.1", 0, reuse_port=True)
    port = first[0].getsockname()[1]
    second = bind_sockets("127.0.0.1", port, reuse_port=True)
    for s in first + second:
        s.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_listener_accepts_and_connect_socket_connects(loop: EventLoop, host: str) -> None:
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    (sock,) = bind_sockets(host, 0)
    accepted: list[socket.socket] = []
    listener = Listener(loop, sock, lambda s, addr: accepted.append(s))
    result: list[object] = []
    connect_socket(loop, host, listener.address[1], lambda s, e: result.append(s or e), timeout=5)
    assert loop.run_until(lambda: bool(accepted and result), 5)
    assert isinstance(result[0], socket.socket)
    listener.close()
    for s in [*accepted, result[0]]:
        assert isinstance(s, socket.socket)
        s.close()


def test_connect_refused_reports_error(loop: EventLoop) -> None:
    port = unused_port()  # nothing listens there
    result: list[object] = []
    connect_socket(loop, "127.0.0.1", port, lambda sock, e: result.append(sock or e), timeout=5)
    assert loop.run_until(lambda: bool(result), 5)
    assert isinstance(result[0], ConnectionRefusedError)
