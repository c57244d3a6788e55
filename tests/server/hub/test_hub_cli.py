"""``python -m server hub``: help, config errors, a real start, the chat page, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.ports import unused_port

ROOT = Path(__file__).resolve().parents[3]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def test_help() -> None:
    out = _run("hub", "--help")
    assert out.returncode == 0
    for option in ("--host", "--port", "--config", "--internal-port", "--internal-host"):
        assert option in out.stdout
    assert "hub" in _run("--help").stdout


def test_a_bad_config_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "hub.toml"
    bad.write_text("prot = 1\n")
    out = _run("hub", "--config", str(bad))
    assert out.returncode == 2 and "unknown key 'prot'" in out.stderr


def test_start_serve_the_page_and_stop(tmp_path: Path) -> None:
    port = unused_port()
    config = tmp_path / "hub.json"
    config.write_text('{"namespaces": {"room": {"presence": true}}}')
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "hub", "--port", str(port), "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line
        assert "'room'" in proc.stdout.readline()
        report = [proc.stdout.readline() for _ in range(4)]  # what is open (report.py)
        assert report[0] == "anonymous connections: allowed (no authentication configured)\n"
        assert report[1].startswith("clients publish in: (default), 'chat'")
        assert report[2].startswith("WebSocket origins: any")
        assert report[3].startswith("HTTP API and /metrics: on the public port")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert page.status == 200 and b"<title>" in page.read()
            assert page.headers["Content-Type"].startswith("text/html")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/app.js", timeout=5) as script:
            assert b"connection/websocket" in script.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as health:
            assert health.read() == b"ok\n"
        from wsproto_lite.hub.client import HubClient

        with HubClient(f"ws://127.0.0.1:{port}/connection/websocket", reconnect=False) as client:
            assert client.presence_stats("room:1") == {"num_clients": 0, "num_users": 0}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_authentication_and_an_internal_address_in_the_start_up_report(tmp_path: Path) -> None:
    port, internal = unused_port(), unused_port()
    config = tmp_path / "hub.toml"
    config.write_text("[namespaces.room]\nallow_publish = true\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WSPROTO_HUB_JWT_SECRET": "s" * 32,
        "WSPROTO_HUB_API_KEYS": "k",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "hub", "--port", str(port), "--internal-port", str(internal)]
        + ["--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]
        assert lines[2] == "anonymous connections: refused (authentication is configured)\n"
        assert lines[3].startswith("clients publish in: 'room';")
        assert lines[4].startswith("WebSocket origins: the hub's own only (others: 403;")
        assert lines[5].startswith(f"HTTP API and /metrics: on the internal address 127.0.0.1:{internal};")
        request = urllib.request.Request(f"http://127.0.0.1:{internal}/metrics", headers={"X-API-Key": "k"})
        with urllib.request.urlopen(request, timeout=5) as metrics:
            assert b"wsproto_hub_connections 0" in metrics.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
