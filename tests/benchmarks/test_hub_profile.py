"""The scale profile (benchmarks/hub_profile.py, benchmarks/hub/profile.py): the profile's numbers, the
load generator's accounting against the real servers (a reconnect recovers on the hub, loses on
python-socketio), every server process stopped, and the whole command end to end at a tiny scale.

Needs redis-server (the hub's engine and socketio's manager); the socketio parts need python-socketio.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.hub.profile import GROUP, HubDriver, ProfileGen, SocketIODriver, Tally, UserPeer
from benchmarks.hub_profile import (
    Profile,
    Servers,
    alive,
    by_window,
    children,
    merge,
    start_hub,
    start_redis,
    start_socketio,
)
from benchmarks.loopback import ROOT, ServerProc
from wsproto_lite import ClientConnection

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
HAVE_SOCKETIO = all(importlib.util.find_spec(m) for m in ("socketio", "uvicorn", "redis"))


def test_profile_is_centrifugos_scaled() -> None:
    p = Profile.at(0.01, 60, 4, 0.5)
    assert (p.connections, p.deliveries, p.reconnects) == (10_000, 5_000, 2_000)
    personal, group, reconnects = p.rates()
    assert personal * 4 + group * 4 * GROUP == pytest.approx(5_000)
    assert personal * 4 == pytest.approx(2_500)
    assert reconnects * 4 * 60 == pytest.approx(2_000)
    assert Profile.at(1e-6, 1, 3, 0.5).connections == 3 * GROUP  # whole groups in every load process
    assert Profile.at(0.0005, 1, 4, 0.5).connections % (4 * GROUP) == 0


def test_merge_adds_counts_and_joins_latencies() -> None:
    a, b = Tally(published=2, lost=1, cpu=0.5, backlog=7), Tally(published=3, duplicated=2, cpu=0.25, drain=2)
    a.latencies.extend([1, 2])
    b.latencies.append(3)
    total = merge([a, b])
    assert (total.published, total.lost, total.duplicated, total.cpu) == (5, 1, 2, 0.75)
    assert (total.backlog, total.drain) == (7, 2)  # the worst process's
    assert list(total.latencies) == [1, 2, 3]


def test_latency_by_window_of_arrival() -> None:
    tally = Tally()
    for ms, at_s in ((5, 1), (7, 2), (900, 12), (30, 25), (40, 99)):
        tally.latencies.append(ms * 1_000_000)
        tally.arrivals.append(at_s * 1_000_000_000)
    assert by_window(tally, 3) == ["7", "900", "30", "40"]  # 0-10, 10-20, 20-30 s, after


def test_publisher_keeps_what_the_socket_does_not_take_in_order() -> None:
    """A server that stops reading the publisher: its bytes wait in the backlog, none lost or reordered."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    peer = UserPeer(ours, ClientConnection("127.0.0.1:1", "/"), [], False)
    peer.user, peer.backlog = None, bytearray()
    try:
        peer.flush()  # the upgrade request
        sent = bytes(range(256)) * 8192  # 2 MiB: more than the socket buffers hold
        peer.backlog += sent
        peer.flush()
        assert peer.backlog  # the socket took only part of it, without raising
        got = bytearray()
        theirs.settimeout(5)
        while peer.backlog or len(got) < len(sent):
            got += theirs.recv(1 << 20)
            peer.flush()
        assert got.partition(b"\r\n\r\n")[2] == sent
    finally:
        ours.close()
        theirs.close()


@pytest.fixture(scope="module")
def shards() -> Iterator[list[ServerProc]]:
    redis = [start_redis(), start_redis()]
    try:
        yield redis
    finally:
        for r in redis:
            r.stop()


def _stopped(servers: Servers) -> None:
    servers.stop()
    assert not [pid for pid in servers.pids if alive(pid)]


def _away_while_published(gen: ProfileGen) -> Tally:
    """Every user connected; one drops, a publication goes to each of its channels, it comes back."""
    gen.open_all(timeout=30)
    assert gen.publisher is not None and all(u.ready for u in gen.users)
    user = gen.users[3]
    gen.disconnect(user)
    gen.publish_to(user.channels[0])
    gen.publish_to(user.channels[1])
    others = gen.users[:3] + gen.users[4:]
    deadline = time.monotonic() + 10
    while not all(u.got for u in others) and time.monotonic() < deadline:
        gen.pump(0.05)  # the group's publication reached everyone else: it is in the past for the user
    gen.connect(user, recover=True)
    gen.drain(quiet=1.0, limit=10)
    return gen.account()


def test_hub_reconnect_recovers_what_was_published_meanwhile(
    shards: list[ServerProc], tmp_path: Path
) -> None:
    servers = start_hub([r.port for r in shards], str(tmp_path))
    try:
        assert len(servers.pids) == 3  # the supervisor and its 2 workers
        gen = ProfileGen(HubDriver(), servers.ports, 0, GROUP)
        try:
            tally = _away_while_published(gen)
        finally:
            gen.close()
        assert servers.troubles() == []
        os.kill(servers.pids[1], signal.SIGKILL)  # a worker dies: the supervisor restarts it
        deadline = time.monotonic() + 10
        while servers.pids[1] in children(servers.pids[0]) or len(children(servers.pids[0])) < 2:
            assert time.monotonic() < deadline, "the supervisor did not restart its worker"
            time.sleep(0.05)
        assert any("restarted" in note for note in servers.troubles())
    finally:
        _stopped(servers)
    assert (tally.published, tally.expected) == (2, 1 + GROUP)
    assert (tally.lost, tally.duplicated, tally.errors, tally.unacked) == (0, 0, 0, 0)  # both acknowledged
    assert len(tally.acks) == 2 and min(tally.acks) > 0
    assert tally.delivered == 1 + GROUP
    assert (tally.recovered, tally.not_recovered, tally.recovered_deliveries) == (2, 0, 2)
    assert len(tally.latencies) == GROUP - 1  # live deliveries only


@pytest.mark.skipif(not HAVE_SOCKETIO, reason="python-socketio / uvicorn / redis not installed")
def test_socketio_reconnect_loses_what_was_published_meanwhile(shards: list[ServerProc]) -> None:
    servers = start_socketio([r.port for r in shards])
    try:
        gen = ProfileGen(SocketIODriver(), servers.ports, 0, GROUP)
        try:
            tally = _away_while_published(gen)
        finally:
            gen.close()
    finally:
        _stopped(servers)
    assert (tally.published, tally.expected) == (2, 1 + GROUP)
    assert (tally.lost, tally.duplicated) == (2, 0)
    assert tally.delivered == GROUP - 1 == len(tally.latencies)
    assert tally.recovered == tally.recovered_deliveries == 0


def test_one_command_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "profile.md"
    only = "hub,python-socketio" if HAVE_SOCKETIO else "hub"
    argv = [sys.executable, "-m", "benchmarks.hub_profile", "--scale", "0.0001", "--seconds", "2"]
    argv += ["--procs", "1", "--only", only, "--out", str(out)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows: dict[str, list[str]] = {}
    for line in out.read_text().splitlines():  # the first table: one row per server
        rows.setdefault(line.split(" | ")[0].lstrip("| "), line.split(" | "))
    hub = rows["hub, 50% group"]
    assert hub[6].startswith("0 of ") and hub[6] != "0 of 0"  # lost: none, of some
    assert hub[7] == "0"  # duplicated
    if HAVE_SOCKETIO:
        assert rows["python-socketio, 50% group"][6] != "0 of 0"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": ROOT}
