"""A real redis-server for the tests: on a free 127.0.0.1 port, no persistence, stopped by PID."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from urllib.parse import quote

import pytest

from tests.ports import unused_port


def require_redis() -> str:
    """The redis-server binary; skips the test where it is missing, except in CI (which installs it)."""
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: .ci/run installs it (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        pytest.skip("redis-py is not installed: pip install 'wsproto-lite[redis]'")
    return found


class RedisServer:
    """``RedisServer()`` starts one; ``stop()`` / ``start()`` again on the same port (a restart).
    ``tls=(cert, key, ca)`` files: TLS only (``rediss://``, the URL names the CA)."""

    def __init__(self, tls: tuple[str, str, str] | None = None, unix_socket: str | None = None) -> None:
        self.binary = require_redis()
        self.port = unused_port()
        self.tls = tls
        self.unix_socket = unix_socket
        """Also listen on this Unix socket (``unix_url``)."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={quote(self.tls[2])}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.unix_socket}?db=0"

    def _listen_args(self) -> list[str]:
        if self.unix_socket is not None:
            return ["--port", str(self.port), "--unixsocket", self.unix_socket, "--unixsocketperm", "700"]
        if self.tls is None:
            return ["--port", str(self.port)]
        cert, key, ca = self.tls
        return [
            *("--port", "0", "--tls-port", str(self.port)),
            *("--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca),
            *("--tls-auth-clients", "no"),
        ]

    def _answers_ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as plain:
            s: socket.socket = plain
            if self.tls is not None:
                s = ssl.create_default_context(cafile=self.tls[2]).wrap_socket(
                    plain, server_hostname="localhost"
                )
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                *self._listen_args(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self._answers_ping():
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)  # polling a port that is not open yet: no event to wait for

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
