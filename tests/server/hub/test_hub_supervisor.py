"""Hub processes: ``--workers`` (supervisor.py) and a node killed with SIGKILL, with a real redis-server."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import unused_port
from wsproto_lite.hub.protocol import DisconnectCode
from wsproto_lite.hub.supervisor import say
from wsproto_lite.server.client import connect

from .conftest import HubThread, Raw
from .redis_util import RedisServer

ROOT = Path(__file__).resolve().parents[3]


class Process:
    """``python -m server hub ...`` with its output read line by line in a thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "hub", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # unbuffered, as services often run (a worker's line used to come out in two writes then)
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []  # the lines expect() has read, for a failure's message
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The next line matching ``pattern``; fails with what the process printed if none comes in time."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                status = self.proc.poll()
                printed = "".join(self.seen[-40:]) or "(nothing)\n"
                waited = f"no line matching {pattern!r} in {timeout} s (exit status {status})"
                raise AssertionError(f"{waited}; it printed:\n{printed}") from None
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


def test_several_workers_need_a_shared_engine() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "server", "hub", "--workers", "2", "--port", str(unused_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "--engine redis://" in out.stderr and "share" in out.stderr


def test_two_workers_a_killed_one_is_restarted_and_sigterm_stops_all(redis_server: RedisServer) -> None:
    port = unused_port()
    engine = f"{redis_server.url}?prefix=w{secrets.token_hex(3)}"
    hub = Process("--workers", "2", "--port", str(port), "--engine", engine)
    try:
        pids = [int(hub.expect(r"worker \d pid (\d+)").group(1)) for _ in range(2)]
        for _ in range(2):
            hub.expect(r"hub listening")
        url = f"ws://127.0.0.1:{port}/connection/websocket"
        os.kill(pids[0], signal.SIGKILL)
        assert hub.expect(rf"worker 0 pid {pids[0]} exited with -9; restarting")
        new_pid = int(hub.expect(r"worker 0 pid (\d+)$").group(1))
        assert new_pid not in pids
        hub.expect(r"hub listening")
        # both workers serve one hub: a publication through one reaches a subscriber on any
        subscribers = []
        for _ in range(6):  # the kernel spreads connections over the workers
            r = Raw(url)
            r.ok("connect")
            r.ok("subscribe", {"channel": "chat:w"})
            subscribers.append(r)
        publisher = Raw(url)
        publisher.ok("connect")
        publisher.ok("publish", {"channel": "chat:w", "data": "hi"})
        for r in subscribers:
            push = r.push()
            while "join" in push:
                push = r.push()
            assert push["pub"]["data"] == "hi"
        pids.append(new_pid)
        started = time.monotonic()
        hub.proc.send_signal(signal.SIGTERM)
        assert hub.proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 15  # bounded: every worker closed its clients and exited
        for r in subscribers:
            assert r.closed()[0] == DisconnectCode.SHUTDOWN  # 3001: reconnect
            r.close()
        publisher.close()
    finally:
        hub.stop()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)  # only if the supervisor failed to stop it
            except ProcessLookupError:
                pass


def test_workers_stop_when_their_supervisor_is_killed(redis_server: RedisServer) -> None:
    port = unused_port()
    hub = Process("--workers", "2", "--port", str(port), "--engine", redis_server.url)
    pids = [int(hub.expect(r"worker \d pid (\d+)").group(1)) for _ in range(2)]
    try:
        for _ in range(2):
            hub.expect(r"hub listening")
        hub.proc.send_signal(signal.SIGKILL)  # no chance to forward anything
        hub.proc.wait(10)
        for _ in range(2):
            hub.expect(r"the supervisor is gone")
        deadline = time.monotonic() + 15
        for pid in pids:
            while _alive(pid):
                assert time.monotonic() < deadline, "an orphaned worker kept running"
                time.sleep(0.1)  # polling another process's exit: no event to wait for
    finally:
        hub.stop()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_sigkilled_node_leaves_presence_within_its_ttl(redis_server: RedisServer) -> None:
    from wsproto_lite.hub.redis_engine import RedisEngine

    prefix = "k" + secrets.token_hex(3)
    port = unused_port()
    node = Process(
        "--workers",
        "1",
        "--port",
        str(port),
        "--engine",
        f"{redis_server.url}?presence_ttl=1&prefix={prefix}",
    )
    other = HubThread(engine=lambda: RedisEngine(redis_server.url, prefix=prefix, presence_ttl=1.0))
    try:
        node.expect(r"hub listening")
        doomed = Raw(f"ws://127.0.0.1:{port}/connection/websocket")
        doomed.ok("connect", {"name": "doomed"})
        doomed.ok("subscribe", {"channel": "chat:k"})
        watcher = Raw(other.url)
        watcher.ok("connect")
        assert watcher.ok("presence_stats", {"channel": "chat:k"}) == {"num_clients": 1, "num_users": 1}
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        killed = time.monotonic()
        while watcher.ok("presence_stats", {"channel": "chat:k"})["num_clients"]:
            assert time.monotonic() - killed < 10, "the dead node's presence did not expire"
            time.sleep(0.2)  # polling Redis's expiry: no event to wait for
        assert watcher.ok("presence", {"channel": "chat:k"}) == {"presence": {}}
        watcher.close()
        doomed.close()
    finally:
        node.stop()
        other.stop()


def test_http_api_publish_on_one_node_reaches_a_subscriber_on_another(redis_server: RedisServer) -> None:
    """Two hub processes sharing a Redis: ``POST /api/publish`` on A, the ``pub`` push on B's subscriber."""
    prefix = "h" + secrets.token_hex(3)
    key = "k-" + secrets.token_hex(12)
    engine = f"{redis_server.url}?prefix={prefix}"
    ports = [unused_port(), unused_port()]
    # the API key on A only: B, with no authentication configured, takes the anonymous subscriber
    a, b = (
        Process("--workers", "1", "--port", str(port), "--engine", engine, env=env)
        for port, env in zip(ports, ({"WSPROTO_HUB_API_KEYS": key}, {}), strict=True)
    )
    try:
        a.expect(r"hub listening")
        b.expect(r"hub listening")
        subscriber = Raw(f"ws://127.0.0.1:{ports[1]}/connection/websocket")
        subscriber.ok("connect")
        sub = subscriber.ok("subscribe", {"channel": "chat:x-node"})
        for body in (
            {"channel": "chat:x-node", "data": {"via": "api"}},
            {"channel": "chat:x-node", "data": 2},
        ):
            request = urllib.request.Request(
                f"http://127.0.0.1:{ports[0]}/api/publish",
                data=json.dumps(body).encode(),
                method="POST",
                headers={"Authorization": f"apikey {key}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                result = json.loads(response.read())["result"]
            assert result["epoch"] == sub["epoch"]
            push = subscriber.push()
            assert push == {
                "channel": "chat:x-node",
                "pub": {"offset": result["offset"], "data": body["data"]},
            }
        assert result["offset"] == 2
        subscriber.close()
    finally:
        a.stop()
        b.stop()


def test_sighup_to_the_supervisor_reloads_every_workers_api_keys(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """SIGHUP reaches the workers (not the supervisor's default action: exit): a revoked key's
    connections are closed with 3500 on every worker, and the supervisor keeps running."""
    old, new = "k-old-" + secrets.token_hex(8), "k-new-" + secrets.token_hex(8)
    config = tmp_path / "hub.toml"
    config.write_text(f'[auth]\napi_keys = ["{old}"]\n')
    port = unused_port()
    engine = f"{redis_server.url}?prefix=s{secrets.token_hex(3)}"
    hub = Process("--workers", "2", "--port", str(port), "--engine", engine, "--config", str(config))
    pids: list[int] = []
    servers: list[Raw] = []
    try:
        pids = [int(hub.expect(r"worker \d pid (\d+)").group(1)) for _ in range(2)]
        for _ in range(2):
            hub.expect(r"hub listening")
        for _ in range(6):  # the kernel spreads them over both workers
            url = f"ws://127.0.0.1:{port}/connection/websocket"
            headers = {"Authorization": f"apikey {old}"}
            r = Raw(url, connect(url, timeout=10, compression=False, headers=headers))
            r.ok("connect")
            servers.append(r)
        config.write_text(f'[auth]\napi_keys = ["{new}"]\n')
        hub.proc.send_signal(signal.SIGHUP)
        for r in servers:
            assert r.closed(timeout=10) == (DisconnectCode.INVALID_TOKEN, "unauthorized")
        assert hub.proc.poll() is None and all(_alive(pid) for pid in pids)
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # still listening
    finally:
        for r in servers:
            r.close()
        hub.stop()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class _Writes(io.StringIO):
    """A text stream that keeps each write apart (what the pipe would get, one system call each)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)


def test_a_line_is_one_write() -> None:
    """The supervisor and its workers share one output; print() wrote the text and its newline apart
    (unbuffered Python), and two workers' start-up lines came out as one ("...websockethub listening")."""
    out = _Writes()
    say("hub listening: here", out)
    say("supervisor: worker 1 pid 7", out)
    assert out.writes == ["hub listening: here\n", "supervisor: worker 1 pid 7\n"]
