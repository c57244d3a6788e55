"""Hostile or broken peers; after each, a fresh client must still get an echo."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from srvtest_util import ServerThread, assert_echo_works, raw_connect, raw_handshake, read_until_closed

from wsproto_lite.server.options import Options

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(options=Options(max_message_size=1 << 20)) as st:
        yield st


def _mask(payload: bytes, key: bytes = b"\x01\x02\x03\x04") -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _close_code(data: bytes) -> int | None:
    """Code of the first (unmasked, server) close frame in ``data``."""
    pos = 0
    while pos + 2 <= len(data):
        b0, b1 = data[pos], data[pos + 1] & 0x7F
        header = 2
        if b1 == 126:
            b1, header = struct.unpack_from("!H", data, pos + 2)[0], 4
        elif b1 == 127:
            b1, header = struct.unpack_from("!Q", data, pos + 2)[0], 10
        if b0 & 0x0F == 0x8:
            return int.from_bytes(data[pos + header : pos + header + 2], "big") if b1 >= 2 else 1005
        pos += header + b1
    return None


def test_200_half_finished_handshakes(server: ServerThread) -> None:
    socks = [raw_connect(server.port) for _ in range(200)]
    try:
        for s in socks:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websock")
        assert_echo_works(f"ws://127.0.0.1:{server.port}/")
        assert server.connection_count() >= 200
    finally:
        for s in socks:
            s.close()
    assert server.wait_connections(0)
    assert_echo_works(server.url)


def test_64k_header_line_is_refused(server: ServerThread) -> None:
    sock = raw_connect(server.port)
    try:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may hang up before we finish: fine
        answer = read_until_closed(sock)
    finally:
        sock.close()
    assert answer == b"" or answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer[:80]
    assert_echo_works(server.url)


def test_plain_http_get_gets_426(server: ServerThread) -> None:
    sock = raw_connect(server.port)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = read_until_closed(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 426"), answer[:80]
    assert_echo_works(server.url)


def test_frame_claiming_2_63_bytes_gets_1009(server: ServerThread) -> None:
    sock = raw_connect(server.port)
    try:
        raw_handshake(sock)
        sock.sendall(b"\x82\xff" + struct.pack("!Q", 2**63 - 1) + b"\x01\x02\x03\x04" + b"\x00" * 100)
        answer = read_until_closed(sock)
    finally:
        sock.close()
    assert _close_code(answer) == 1009
    assert_echo_works(server.url)


def test_abrupt_resets_mid_message(server: ServerThread) -> None:
    for i in range(20):
        sock = raw_connect(server.port)
        raw_handshake(sock)
        # announce 500 000 bytes, send a part of them, then RST
        sock.sendall(b"\x82\xff" + struct.pack("!Q", 500_000) + b"\x01\x02\x03\x04" + b"\x00" * (1000 * i))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    assert server.wait_connections(0)
    assert_echo_works(server.url)


def test_garbage_after_handshake_gets_protocol_error(server: ServerThread) -> None:
    sock = raw_connect(server.port)
    try:
        raw_handshake(sock)
        sock.sendall(b"\x81\x05hello")  # unmasked client frame: 1002
        answer = read_until_closed(sock)
    finally:
        sock.close()
    assert _close_code(answer) == 1002
    assert_echo_works(server.url)


def _vm(pid: int, field: str) -> int:
    """A /proc/PID/status field in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_slow_consumer_200_mib_keeps_rss_bounded() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("srvtest_flood_server.py")), "1.0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(ROOT),
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        assert_echo_works(f"ws://127.0.0.1:{port}/")  # warm up, so the baseline includes imports
        baseline = _vm(proc.pid, "VmRSS")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        try:
            raw_handshake(sock)
            sock.sendall(b"\x81\x89\x01\x02\x03\x04" + _mask(b"flood 200"))
            line = proc.stdout.readline()  # the warm-up client's close
            assert line.startswith("closed 1000"), line
            line = proc.stdout.readline()  # printed when the server dropped us; we never read
        finally:
            sock.close()
        peak = _vm(proc.pid, "VmHWM")
        growth_mib = (peak - baseline) / 1024
        print(
            f"slow consumer: baseline {baseline / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, "
            f"growth {growth_mib:.1f} MiB"
        )
        assert line.startswith("closed 1006 (1008, 'slow consumer')"), line
        assert growth_mib < 64, f"server RSS grew by {growth_mib:.1f} MiB for a 200 MiB flood"
        assert_echo_works(f"ws://127.0.0.1:{port}/")
    finally:
        proc.terminate()
        try:
            assert (
                proc.wait(30) == 0
            )  # SIGTERM: graceful shutdown (at most 5 s of closing handshakes), exit 0
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGUSR1)  # its stacks to the captured stderr: where it hangs
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
            raise
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_too_many_fragments_gets_1009() -> None:
    with ServerThread(options=Options(max_fragments=100)) as st:
        sock = raw_connect(st.port)
        try:
            raw_handshake(sock)
            key = b"\x01\x02\x03\x04"
            # a binary message opened with one byte, then 200 one-byte continuations: frame 101 is refused
            sock.sendall(b"\x02\x81" + key + b"\x00" + (b"\x00\x81" + key + b"\x00") * 200)
            answer = read_until_closed(sock)
        finally:
            sock.close()
        assert _close_code(answer) == 1009
        assert_echo_works(st.url)


def test_failing_close_survives_unread_input() -> None:
    """The peer is still sending when the server fails the connection: the 1009 must reach it.

    A socket closed with unread input answers with a reset, which on a real network can destroy the
    close frame still in flight. The transport half-closes and drains the input instead (lingering
    close): the peer's send completes without a reset, then it reads the close frame and EOF.
    """
    with ServerThread(options=Options(max_message_size=1024)) as st:
        sock = raw_connect(st.port)
        try:
            raw_handshake(sock)
            size = 4 << 20  # far more than the kernel buffers hold: the server cannot have read it all
            header = b"\x82\xff" + struct.pack("!Q", size) + b"\x01\x02\x03\x04"
            outcome: list[object] = []
            sender = threading.Thread(target=_send_quietly, args=(sock, header + b"\x00" * size, outcome))
            sender.start()
            sender.join(20)  # read only once everything was sent (or refused by a reset)
            answer = read_until_closed(sock)
        finally:
            sock.close()
        assert outcome == ["sent"]  # drained, not reset
        assert _close_code(answer) == 1009
        assert_echo_works(st.url)


def _send_quietly(sock: socket.socket, data: bytes, outcome: list[object]) -> None:
    try:
        sock.sendall(data)
        outcome.append("sent")
    except OSError as exc:
        outcome.append(exc)
