"""``python -m server``: echo server and interactive client as subprocesses, run from the checkout."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.ports import unused_port
from wsproto_lite.server.client import ConnectionClosedError, connect

ROOT = Path(__file__).resolve().parents[2]
PY = [sys.executable, "-S", "-E"]  # no site-packages, no PYTHON* variables: the checkout and the stdlib only


def _run(*args: str, stdin: str = "", timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PY, "-m", "server", *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


@contextmanager
def echo_server(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m server echo --port 0 ...``; yields (process, url)."""
    proc = subprocess.Popen(
        [*PY, "-m", "server", "echo", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on" in line, line + (proc.stderr.read() if proc.stderr else "")
        yield proc, line.split()[-1] + "/"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_help_lists_subcommands() -> None:
    out = _run("--help")
    assert out.returncode == 0
    assert "echo" in out.stdout and "client" in out.stdout
    echo_help = _run("echo", "--help").stdout
    for flag in (
        "--host",
        "--port",
        "--tls-cert",
        "--tls-key",
        "--max-message-size",
        "--no-compression",
        "--trace",
    ):
        assert flag in echo_help


def test_echo_and_graceful_sigterm_sends_1001() -> None:
    with echo_server() as (proc, url):
        ws = connect(url, timeout=10)
        ws.send("via the CLI")
        assert ws.recv(timeout=10) == "via the CLI"
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=10)
        assert info.value.code == 1001
        ws.close()
        assert proc.wait(10) == 0


def test_client_pipes_stdin_and_prints_messages() -> None:
    with echo_server() as (_proc, url):
        out = _run("client", url, stdin="first line\nsecond line\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["< first line", "< second line"]
    assert "closed: 1000" in out.stderr


def test_trace_annotates_frames() -> None:
    with echo_server("--trace", "--no-compression") as (proc, url):
        out = _run("client", url, "--trace", stdin="traced\n")
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        server_err = proc.stderr.read() if proc.stderr else ""
    assert "< traced" in out.stdout
    assert "opcode=0x1 TEXT MASK=1 key=" in out.stderr  # the client masks
    assert "payload (unmasked for display): 'traced'" in server_err
    assert "FIN=1 RSV1=0 RSV2=0 RSV3=0 opcode=0x1 TEXT MASK=0 payload=6 bytes" in server_err
    assert "header bytes: 81 06" in server_err
    assert "close code=1000" in server_err


def test_tls_echo_and_client(cert_files: tuple[str, str, str]) -> None:
    cert, key, ca = cert_files
    with echo_server("--tls-cert", cert, "--tls-key", key) as (_proc, url):
        assert url.startswith("wss://")
        url = url.replace("127.0.0.1", "localhost")
        out = _run("client", url, "--ca-file", ca, stdin="over tls\n")
        assert out.stdout.splitlines() == ["< over tls"], out.stderr
        refused = _run("client", url, stdin="x\n")  # our test CA is not trusted by default
    assert refused.returncode == 1
    assert "certificate verification failed" in refused.stderr and "Traceback" not in refused.stderr


def _one_line_error(out: subprocess.CompletedProcess[str], words: str) -> None:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], out.stderr


def test_port_in_use_is_one_line() -> None:
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        out = _run("echo", "--port", str(busy.getsockname()[1]))
    finally:
        busy.close()
    _one_line_error(out, "cannot listen")


def test_bad_certificate_is_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    _one_line_error(_run("echo", "--port", "0", "--tls-cert", str(bogus)), "TLS certificate")
    _one_line_error(
        _run("echo", "--port", "0", "--tls-cert", str(tmp_path / "missing.pem")), "TLS certificate"
    )


def test_connection_refused_is_one_line() -> None:
    port = unused_port()  # nothing listens there
    _one_line_error(_run("client", f"ws://127.0.0.1:{port}/"), "cannot connect")
    _one_line_error(_run("client", "http://nope/"), "ws://")


def test_handshake_refusal_is_one_line() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class NotHere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), NotHere)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        out = _run("client", f"ws://127.0.0.1:{httpd.server_address[1]}/chat")
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(10)
    _one_line_error(out, "HTTP 404")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_health_endpoint() -> None:
    import urllib.request

    with echo_server() as (_proc, url):
        http = url.replace("ws://", "http://") + "health"
        assert urllib.request.urlopen(http, timeout=10).read() == b"ok\n"
