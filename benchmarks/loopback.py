"""Loopback helpers: server subprocesses, /proc readings and a minimal raw-socket client."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from . import frames

HOST = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid``, from /proc/PID/stat (CLK_TCK resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class ServerProc:
    """A server in its own process (started directly, so ``pid`` is the server's).

    Its stderr goes to a temporary file, not a pipe: a server that logs every reset connection
    would otherwise block once the pipe is full."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        timeout: float = 15.0,
        env: dict[str, str] | None = None,
        cwd: str = ROOT,
        prefix: Sequence[str] = (),
    ) -> None:
        self.name, self.port = name, port
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [*prefix, *argv],  # a prefix runs the server under a tool (valgrind: the same process)
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            env={**os.environ, **env} if env else None,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                err = self.stderr_tail()
                self.stderr.close()
                raise RuntimeError(f"{name} server exited ({self.proc.returncode}): {err}")
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"{name} server did not listen on {port} within {timeout:.0f} s"
                    ) from None
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """utime + stime of the server process, from /proc/PID/stat."""
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def stderr_tail(self, size: int = 600) -> str:
        """The last ``size`` bytes the server wrote to stderr."""
        self.stderr.seek(max(0, os.fstat(self.stderr.fileno()).st_size - size))
        return self.stderr.read().decode(errors="replace").strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def peer_server(impl: str, mode: str, prefix: Sequence[str] = (), timeout: float = 15.0) -> ServerProc:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.servers", impl, mode, "--port", str(port)]
    return ServerProc(impl, argv, port, timeout=timeout, prefix=prefix)


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read an HTTP response head; return ``(head, bytes after it)``."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed during handshake: {buf[:200]!r}")
        buf += chunk
        if len(buf) > 65536:
            raise ValueError("response head too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


class Client:
    """A blocking WebSocket client written by hand: handshake, then masked frames out."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req, key = frames.handshake_request(f"{HOST}:{port}")
        self.sock.sendall(req)
        head, self.buf = read_head(self.sock)
        frames.check_response(head, key)

    def recv_exact(self, n: int) -> bytes:
        buf = self.buf
        while len(buf) < n:
            chunk = self.sock.recv(max(65536, n - len(buf)))
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        self.buf = buf[n:]
        return buf[:n]

    def recv_into_exact(self, view: memoryview) -> None:
        """Fill ``view`` completely (for large payloads, without intermediate bytes objects)."""
        n, pos = len(view), 0
        if self.buf:
            take = min(len(self.buf), n)
            view[:take] = self.buf[:take]
            self.buf, pos = self.buf[take:], take
        while pos < n:
            got = self.sock.recv_into(view[pos:], n - pos)
            if not got:
                raise ConnectionError("server closed the connection")
            pos += got

    def close(self) -> None:
        try:
            self.sock.sendall(frames.build_frame(frames.OP_CLOSE, struct.pack("!H", 1000), key=os.urandom(4)))
            self.sock.settimeout(2)
            self.sock.recv(64)
        except OSError:
            pass
        self.sock.close()
