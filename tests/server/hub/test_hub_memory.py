"""memory.py: history with epoch + offset, TTL, bounds per channel and global, presence counts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite.hub.engine import ClientInfo, Publication, Reply
from wsproto_lite.hub.memory import MemoryEngine
from wsproto_lite.hub.namespaces import NamespaceOptions
from wsproto_lite.hub.protocol import HubError, Position

KEEP3 = NamespaceOptions(history_size=3, history_ttl=10.0, allow_publish=True)
NONE = NamespaceOptions(allow_publish=True)


class Now:
    """The engine with every Reply unwrapped (the in-memory engine resolves them at once)."""

    def __init__(self, engine: MemoryEngine) -> None:
        self.engine = engine

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.engine, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            value = attr(*args, **kwargs)
            if isinstance(value, Reply):
                assert value.done  # the in-memory engine never makes the hub wait
                return value.result()
            return value

        return call


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_offsets_epoch_and_delivery() -> None:
    engine = Now(MemoryEngine())
    delivered: list[Publication] = []
    engine.start(delivered.append)
    first = engine.publish("c", "1", None, KEEP3)
    second = engine.publish("c", "2", '{"client":"x","user":""}', KEEP3)
    assert (first.offset, second.offset) == (1, 2) and first.epoch == second.epoch != ""
    assert delivered == [first, second]
    assert engine.position("c", KEEP3) == Position(first.epoch, 2)
    assert engine.publish("d", "1", None, NONE).offset is None
    assert engine.position("d", NONE) == Position("", 0)
    assert Now(MemoryEngine()).position("c", KEEP3).epoch != first.epoch  # another process: another epoch
    engine.close()
    engine.publish("c", "3", None, KEEP3)
    assert len(delivered) == 3  # closed: no more delivery


def test_size_bound_and_recovery() -> None:
    engine = Now(MemoryEngine())
    for i in range(1, 6):
        engine.publish("c", str(i), None, KEEP3)
    epoch = engine.position("c", KEEP3).epoch
    assert [
        p.offset for p in engine.history("c", KEEP3, since=None, limit=None, reverse=False).publications
    ] == [3, 4, 5]
    ok = engine.recover("c", KEEP3, Position(epoch, 2))
    assert ok.recovered and [p.offset for p in ok.publications] == [3, 4, 5]
    gap = engine.recover("c", KEEP3, Position(epoch, 1))
    assert not gap.recovered and [p.offset for p in gap.publications] == [3, 4, 5]
    assert not engine.recover("c", KEEP3, Position("other", 5)).recovered
    assert not engine.recover("c", KEEP3, Position(epoch, 6)).recovered  # from the future
    with pytest.raises(HubError) as info:
        engine.history("c", KEEP3, since=Position(epoch, 1), limit=None, reverse=False)
    assert info.value.code == 112
    assert engine.recover("c", NONE, Position(epoch, 1)).recovered is False


def test_ttl_and_stream_expiry() -> None:
    clock = Clock()
    engine = Now(MemoryEngine(clock=clock, stream_meta_ttl=100.0))
    engine.publish("c", "1", None, KEEP3)
    clock.now += 5
    engine.publish("c", "2", None, KEEP3)
    epoch = engine.position("c", KEEP3).epoch
    clock.now += 6  # the first is 11 s old: gone
    held = engine.history("c", KEEP3, since=None, limit=None, reverse=False).publications
    assert [p.offset for p in held] == [2]
    assert not engine.recover("c", KEEP3, Position(epoch, 0)).recovered
    assert engine.recover("c", KEEP3, Position(epoch, 1)).recovered
    clock.now += 50
    engine.expire()
    assert engine.history_bytes == 0 and engine.stream_count == 1  # epoch and offset kept a while
    clock.now += 100
    engine.expire()
    assert engine.stream_count == 0
    assert engine.position("c", KEEP3).epoch != epoch  # a new stream, a new epoch: no silent reuse
    assert not engine.recover("c", KEEP3, Position(epoch, 2)).recovered


def test_reading_creates_no_state() -> None:
    engine = Now(MemoryEngine())
    position = engine.position("empty", KEEP3)
    assert position.offset == 0
    assert engine.history("empty", KEEP3, since=position, limit=None, reverse=False).publications == []
    assert engine.recover("empty", KEEP3, position).recovered
    assert engine.stream_count == 0 and engine.history_bytes == 0
    # the first publication keeps the epoch a subscriber was told: it recovers everything
    engine.publish("empty", "1", None, KEEP3)
    recovered = engine.recover("empty", KEEP3, position)
    assert recovered.recovered and [p.offset for p in recovered.publications] == [1]


def test_global_bounds() -> None:
    big = NamespaceOptions(history_size=1000, history_ttl=60.0)
    engine = Now(MemoryEngine(max_history_bytes=10_000, max_streams=3))
    for _ in range(100):
        engine.publish("old", "x" * 100, None, big)
    for _ in range(10):
        engine.publish("new", "y" * 100, None, big)
    assert engine.history_bytes <= 10_000 and engine.evicted > 0
    new = engine.history("new", big, since=None, limit=None, reverse=False).publications
    assert len(new) == 10  # the least recently published stream paid first
    for name in ("a", "b", "c"):
        engine.publish(name, "1", None, big)
    assert engine.stream_count == 3


def test_presence_counts_users_once() -> None:
    engine = Now(MemoryEngine())
    engine.add_presence("c", ClientInfo("1", "alice"))
    engine.add_presence("c", ClientInfo("2", "alice"))
    engine.add_presence("c", ClientInfo("2", "alice"))  # idempotent
    engine.add_presence("c", ClientInfo("3", ""))
    engine.add_presence("c", ClientInfo("4", ""))
    assert engine.presence_stats("c") == (4, 3)  # alice once; anonymous connections one each
    assert {i.client for i in engine.presence("c")} == {"1", "2", "3", "4"}
    engine.remove_presence("c", "1")
    engine.remove_presence("c", "1")
    assert engine.presence_stats("c") == (3, 3)
    for client in ("2", "3", "4"):
        engine.remove_presence("c", client)
    assert engine.presence_stats("c") == (0, 0) and engine.presence_channel_count == 0
    engine.remove_presence("nowhere", "x")


@given(
    steps=st.lists(
        st.one_of(st.just("publish"), st.floats(min_value=0, max_value=8), st.just("expire")), max_size=40
    ),
    since=st.integers(min_value=0, max_value=45),
)
def test_recovery_is_all_or_nothing_never_a_silent_gap(steps: list[object], since: int) -> None:
    clock = Clock()
    engine = Now(MemoryEngine(clock=clock, max_history_bytes=2_000))
    for step in steps:
        if step == "publish":
            engine.publish("c", '"x"', None, KEEP3)
        elif step == "expire":
            engine.expire()
        else:
            clock.now += float(step)  # type: ignore[arg-type]
    position = engine.position("c", KEEP3)
    result = engine.recover("c", KEEP3, Position(position.epoch, since))
    offsets = [p.offset for p in result.publications]
    assert offsets == sorted(offsets) and all(o > since for o in offsets)  # type: ignore[operator]
    held = {p.offset for p in engine.history("c", KEEP3, since=None, limit=None, reverse=False).publications}
    missed = set(range(since + 1, position.offset + 1))
    assert result.recovered == (since <= position.offset and missed <= held)  # all or nothing, exactly
    if result.recovered:
        assert offsets == sorted(missed)  # every one, in order
