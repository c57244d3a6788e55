"""Junk from one client (hypothesis): the hub answers with errors, stays up, and the other client sees
nothing of it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.limits import RateLimits
from wsproto_lite.hub.protocol import (
    MAX_ID,
    METHODS,
    PONG,
    SEND,
    BadFrame,
    Command,
    DisconnectCode,
    parse_frame,
)
from wsproto_lite.server.errors import ConnectionClosed

from .conftest import HubThread, Raw

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
param_names = st.sampled_from(
    ["channel", "data", "recover", "since", "limit", "reverse", "token", "name", "x"]
)
channels = st.sampled_from(
    ["chat:a", "stock:*", "stock:B", "bench:c", "lobby", "nope:x", "", "chat:", "*"]
) | st.text(max_size=12)
param_values = (
    channels | json_values | st.fixed_dictionaries({"epoch": st.text(max_size=8), "offset": st.integers()})
)
commands = st.builds(
    lambda cid, method, params: {"id": cid, method: params},
    st.integers(min_value=-2, max_value=1000) | json_values,
    st.sampled_from(sorted(METHODS)) | st.text(max_size=10),
    st.dictionaries(param_names, param_values, max_size=4) | json_values,
)
frames = st.one_of(
    commands.map(json.dumps),
    st.lists(commands.map(json.dumps), min_size=2, max_size=3).map("\n".join),  # a batch
    json_values.map(json.dumps),
    st.text(max_size=200),
)

VICTIM_CHANNEL = "chat:victim-4f1c0e9a"


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[HubThread, Raw]]:
    # junk, not floods: the command rate limit (test_hub_limits.py) would answer the marker with 111
    # and a fresh attacker connection per example: the per-IP connection rate would refuse it with 429
    unlimited = RateLimits(
        commands_per_second=1e6,
        commands_burst=1e6,
        connections_per_second_per_ip=1e6,
        connections_burst_per_ip=1e6,
    )
    hub = HubThread(HubConfig(port=0, rate_limits=unlimited))
    victim = Raw(hub.url)
    victim.ok("connect")
    victim.ok("subscribe", {"channel": VICTIM_CHANNEL})
    yield hub, victim
    victim.close()
    hub.stop()


def _replies_expected(frame: str) -> int | None:
    """How many replies the hub owes for ``frame``; None when it must close the connection (3501): an
    unreadable frame, or a ``{}`` while no ping is outstanding (none is: the hub's clock is stepped)."""
    try:
        parsed = parse_frame(frame)
    except BadFrame:
        return None
    if any(isinstance(item, Command) and item.method == PONG for item in parsed):
        return None
    # ``send`` is fire-and-forget, with or without an id (centrifuge's client.go writes no reply for it)
    return sum(1 for item in parsed if not isinstance(item, Command) or (item.id and item.method != SEND))


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(frames, min_size=1, max_size=5))
def test_junk_never_crashes_the_hub_nor_reaches_another_connection(
    setup: tuple[HubThread, Raw], frames: list[str]
) -> None:
    hub, victim = setup
    attacker = Raw(hub.url)
    attacker.ok("connect")
    try:
        for frame in frames:
            expected = _replies_expected(frame)
            attacker.send(frame)
            if expected is None:  # unreadable: closed with 3501, never an ``id: 0`` reply
                code, _ = attacker.closed()
                assert code == DisconnectCode.BAD_REQUEST
                assert all("id" not in p for p in attacker.pushes)
                break
            replies = 0  # one reply per command with an id; pushes (from valid junk) may come between
            while replies < expected:
                got = attacker.recv(timeout=2)  # short: a failing example is re-run many times while shrunk
                if "id" in got:
                    replies += 1
                    assert got["id"] > 0 and len(got) == 2, got
        else:
            # the marker: the attacker's next command; its reply comes after anything the junk caused
            attacker.send({"id": MAX_ID, "publish": {"channel": VICTIM_CHANNEL, "data": "marker"}})
            while "id" not in (got := attacker.recv()):
                pass
            assert got["id"] == MAX_ID and "publish" in got, got
            first = victim.push()
            assert first["pub"]["data"] == "marker", first  # nothing before it
    finally:
        attacker.close()
    assert hub.wait_sessions(1)
    assert victim.roundtrip()


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=300))
def test_random_bytes_close_only_that_connection_1003(setup: tuple[HubThread, Raw], payload: bytes) -> None:
    hub, victim = setup
    intruder = Raw(hub.url)
    intruder.ok("connect")
    intruder.send(payload)  # a binary frame: RFC 6455 §7.4.1, 1003 "cannot accept this type of data"
    with pytest.raises(ConnectionClosed) as closed:
        intruder.recv()
    assert closed.value.code == 1003
    assert victim.roundtrip()
    assert hub.wait_sessions(1)
